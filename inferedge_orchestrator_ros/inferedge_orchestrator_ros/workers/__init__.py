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
Workers run one task's inference; the engine calls them from its slot threads.

The interface (docs/engine_api.md): load() once before the task takes frames (slow work: model
loading, sessions, contexts), warmup(n), infer(frame) -> InferenceOutput, close(). Options are
validated by the worker class without importing its runtime (onnxruntime, tensorrt).
"""

from dataclasses import dataclass
import importlib
from typing import Any, Callable, Dict

from inferedge_orchestrator_ros.config import ConfigError
import numpy as np

# kind -> 'module:Class'; modules import their runtimes lazily, in load().
WORKER_KINDS = {
    'dummy': 'inferedge_orchestrator_ros.workers.dummy:DummyWorker',
    'onnxruntime': 'inferedge_orchestrator_ros.workers.onnx:OnnxWorker',
    'tensorrt': 'inferedge_orchestrator_ros.workers.tensorrt:TensorRTWorker',
}


@dataclass
class InferenceOutput:
    """What infer() returns: named output arrays and the time spent in each phase (s)."""

    outputs: Dict[str, np.ndarray]
    preprocess_s: float = 0.0
    inference_s: float = 0.0


class Worker:
    """Base class of workers; one instance per task, called from the task's pool slots."""

    kind = 'base'
    # A worker whose slot got stuck can be replaced by a fresh instance of the same kind.
    replaceable = True
    # Whether simulated_service_time() works: the virtual clock can run it.
    simulates = False
    # option name -> (default, check(where, value) -> value)
    OPTIONS: Dict[str, Any] = {}

    def __init__(self, task_name: str, options: Dict[str, Any], slots: int = 1):
        self.task_name = task_name
        self.options = options
        self.slots = slots

    @classmethod
    def validate_options(cls, options: Dict[str, Any], where: str) -> Dict[str, Any]:
        """Return the options with defaults filled in; raise ConfigError naming the field."""
        if not isinstance(options, dict):
            raise ConfigError(f'{where}: expected a mapping, got {options!r}')
        validated = {}
        for key, value in options.items():
            if key not in cls.OPTIONS:
                raise ConfigError(f'{where}: unknown key {key!r} for worker {cls.kind!r}; '
                                  f'known keys: {", ".join(cls.OPTIONS)}')
            validated[key] = cls.OPTIONS[key][1](f'{where}.{key}', value)
        for key, (default, _) in cls.OPTIONS.items():
            if key not in validated:
                if default is REQUIRED:
                    raise ConfigError(f'{where}: missing required key {key!r} for worker '
                                      f'{cls.kind!r}')
                validated[key] = default
        return validated

    def load(self) -> None:
        """Do the slow work (load models, create sessions) before the task takes frames."""

    def warmup(self, runs: int) -> None:
        """Run the model on dummy input runs times; called after load()."""

    def infer(self, frame) -> InferenceOutput:
        raise NotImplementedError

    def close(self) -> None:
        """Release models and device memory."""

    def expected_latency_s(self) -> float:
        """Return a service-time guess used before measurements exist (0 = unknown)."""
        return 0.0

    def fast_latency_s(self) -> float:
        """Return a service time the worker rarely beats, before measurements (0 = unknown)."""
        return 0.0

    def simulated_service_time(self, frame) -> float:
        """Return the service time of frame without running it (virtual-clock simulation)."""
        raise NotImplementedError(f'worker {self.kind!r} cannot run under the virtual clock')


class _Required:
    """Marks an option without a default."""

    def __repr__(self):
        return 'REQUIRED'


REQUIRED = _Required()


def worker_class(kind: str) -> type:
    """Return the Worker class of kind (imports its module, not its runtime)."""
    try:
        module_name, class_name = WORKER_KINDS[kind].split(':')
    except KeyError:
        raise ConfigError(f'worker: {kind!r} is not allowed; allowed: '
                          f'{", ".join(WORKER_KINDS)}') from None
    return getattr(importlib.import_module(module_name), class_name)


def validate_worker_options(kind: str, options: Dict[str, Any], where: str) -> Dict[str, Any]:
    return worker_class(kind).validate_options(options or {}, where)


def create_worker(kind: str, task_name: str, options: Dict[str, Any], slots: int = 1) -> Worker:
    return worker_class(kind)(task_name, options, slots)


WorkerFactory = Callable[[Any, int], Worker]  # (TaskConfig, slots) -> Worker
