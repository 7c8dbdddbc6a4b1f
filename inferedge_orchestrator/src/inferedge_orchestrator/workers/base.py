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
The worker interface: one task's inference, called by the engine from its slot threads.

The interface (docs/engine_api.md): load() once before the task takes frames (slow work: model
loading, sessions, contexts), warmup(n), infer(frame) -> InferenceOutput, close(). Options are
validated by the worker class without importing its runtime (onnxruntime, tensorrt).
"""

from typing import Any, Callable, Dict, List, Sequence

from inferedge_orchestrator.config.schema import check_options, Field
from inferedge_orchestrator.contracts.inference import InferenceOutput, ModelInfo


class Worker:
    """Base class of workers; one instance per task, called from the task's pool slots."""

    kind = 'base'
    # A worker whose slot got stuck can be replaced by a fresh instance of the same kind.
    replaceable = True
    # Its model runs on a server: its pool is a server pool (engine/backends.py), whose slots
    # are requests in flight; infer() then also takes budget_s and priority_rank.
    remote = False
    # Whether simulated_service_time() works: the virtual clock can run it.
    simulates = False
    # option name -> its Field (config/schema.py): the schema of worker_options
    OPTIONS: Dict[str, Field] = {}

    def __init__(self, task_name: str, options: Dict[str, Any], slots: int = 1):
        self.task_name = task_name
        self.options = options
        self.slots = slots

    @classmethod
    def validate_options(cls, options: Dict[str, Any], where: str) -> Dict[str, Any]:
        """Return the options with defaults filled in; raise ConfigError naming the field."""
        return check_options(where, options, cls.OPTIONS, f'worker {cls.kind!r}')

    @classmethod
    def server(cls, options: Dict[str, Any]) -> str:
        """Return the server a remote worker's options name ('' for a local worker)."""
        return ''

    def load(self) -> None:
        """Do the slow work (load models, create sessions) before the task takes frames."""

    def warmup(self, runs: int) -> None:
        """Run the model on dummy input runs times; called after load()."""

    def infer(self, frame) -> InferenceOutput:
        raise NotImplementedError

    # -- batches (a task's max_batch > 1: scheduling/batching.py) ---------------------------

    def batch_limit(self) -> int:
        """Return the most frames its model takes in one call, after load() (1: no batches)."""
        return 1

    def warmup_batches(self, sizes: Sequence[int], runs: int) -> None:
        """Run the model runs times at each batch size of sizes; called after warmup()."""

    def expected_batch_latency_s(self, size: int) -> float:
        """Return a batch of size's service-time guess before measurements (0 = unknown)."""
        return 0.0

    def fast_batch_latency_s(self, size: int) -> float:
        """Return a service time a batch of size rarely beats, before measurements (0)."""
        return 0.0

    def infer_batch(self, frames: Sequence) -> List[InferenceOutput]:
        """Run frames in one model call; return one output per frame, in their order."""
        raise NotImplementedError(f'worker {self.kind!r} takes one frame a call')

    def simulated_batch_time(self, frames: Sequence) -> float:
        """Return the service time of a batch of frames without running it (virtual clock)."""
        raise NotImplementedError(f'worker {self.kind!r} takes one frame a call')

    def abort(self, thread_id: int) -> bool:
        """
        Stop the call that slot thread thread_id is in (its job timed out); True if it did.

        A thread cannot be stopped: the default does nothing and the slot stays busy until the
        call returns; a process worker kills the child that runs it.
        """
        return False

    def close(self) -> None:
        """Release models and device memory."""

    def slots_down(self) -> int:
        """Return how many of its slots cannot run a job now (a child being started again)."""
        return 0

    def model_info(self):
        """Return the loaded model's output shapes and metadata (decoders check them)."""
        return ModelInfo()

    def expected_latency_s(self) -> float:
        """Return a service-time guess used before measurements exist (0 = unknown)."""
        return 0.0

    def fast_latency_s(self) -> float:
        """Return a service time the worker rarely beats, before measurements (0 = unknown)."""
        return 0.0

    def simulated_service_time(self, frame) -> float:
        """Return the service time of frame without running it (virtual-clock simulation)."""
        raise NotImplementedError(f'worker {self.kind!r} cannot run under the virtual clock')


WorkerFactory = Callable[[Any, int], Worker]  # (TaskConfig, slots) -> Worker
