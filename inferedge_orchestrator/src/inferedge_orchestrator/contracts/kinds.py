# Copyright The inferedge_orchestrator_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.


"""
The names the config allows for kinds, and where each kind lives.

A kind's class is imported by its module path when a task first uses it (a plugin lookup):
validating a config loads the kinds it names, so no validation ever runs against a registry
still waiting for its modules, and a layer below the workers and decoders names them without
importing them.
"""

import importlib
from typing import Any, Dict, Tuple

from inferedge_orchestrator.contracts.errors import ConfigError

# The sampling distributions of the dummy worker's service times and of synthetic transport.
DISTRIBUTIONS = ('fixed', 'uniform', 'normal', 'lognormal')


class Kinds:
    """A registry of kinds by name: kind -> 'module:Class', the class imported on first use."""

    def __init__(self, what: str, paths: Dict[str, str]):
        self.what = what  # 'worker' or 'decoder', for errors
        self._paths = dict(paths)
        self._classes: Dict[str, type] = {}

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(self._paths)

    def cls(self, kind: str) -> type:
        """Return the class of kind; ConfigError names the kinds allowed."""
        found = self._classes.get(kind)
        if found is not None:
            return found
        try:
            module_name, class_name = self._paths[kind].split(':')
        except KeyError:
            raise ConfigError(f'{self.what}: {kind!r} is not allowed; allowed: '
                              f'{", ".join(self._paths)}') from None
        found = self._classes[kind] = getattr(importlib.import_module(module_name), class_name)
        return found

    def validate(self, kind: str, options: Any, where: str) -> Dict[str, Any]:
        """Return kind's options with defaults filled in; ConfigError names the field."""
        return self.cls(kind).validate_options(options or {}, where)

    def create(self, kind: str, *args: Any) -> Any:
        """Return a new instance of kind's class made with args."""
        return self.cls(kind)(*args)


WORKERS = Kinds('worker', {
    'dummy': 'inferedge_orchestrator.workers.dummy:DummyWorker',
    'onnxruntime': 'inferedge_orchestrator.workers.onnx:OnnxWorker',
    'tensorrt': 'inferedge_orchestrator.workers.tensorrt:TensorRTWorker',
    'triton': 'inferedge_orchestrator.workers.triton:TritonWorker',
})
DECODERS = Kinds('decoder', {
    'none': 'inferedge_orchestrator.decoders.base:Decoder',
    'yolo': 'inferedge_orchestrator.decoders.detection:YoloDecoder',
    'boxes': 'inferedge_orchestrator.decoders.detection:BoxesDecoder',
    'classification': 'inferedge_orchestrator.decoders.classification:ClassificationDecoder',
})
