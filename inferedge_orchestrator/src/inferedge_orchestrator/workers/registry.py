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

"""The worker kinds by name: their classes are imported on demand, their runtimes in load()."""

from typing import Any, Callable, Dict

from inferedge_orchestrator.config.schema import class_of_kind
from inferedge_orchestrator.workers.base import Worker

# kind -> 'module:Class'; modules import their runtimes lazily, in load().
WORKER_KINDS = {
    'dummy': 'inferedge_orchestrator.workers.dummy:DummyWorker',
    'onnxruntime': 'inferedge_orchestrator.workers.onnx:OnnxWorker',
    'tensorrt': 'inferedge_orchestrator.workers.tensorrt:TensorRTWorker',
    'triton': 'inferedge_orchestrator.workers.triton:TritonWorker',
}


def worker_class(kind: str) -> type:
    """Return the Worker class of kind (imports its module, not its runtime)."""
    return class_of_kind(WORKER_KINDS, kind, 'worker')


def validate_worker_options(kind: str, options: Dict[str, Any], where: str) -> Dict[str, Any]:
    return worker_class(kind).validate_options(options or {}, where)


def create_worker(kind: str, task_name: str, options: Dict[str, Any], slots: int = 1) -> Worker:
    return worker_class(kind)(task_name, options, slots)


WorkerFactory = Callable[[Any, int], Worker]  # (TaskConfig, slots) -> Worker
