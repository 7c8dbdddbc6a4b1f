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

"""A worker that sleeps for a fixed or sampled latency: for demos, tests and simulation."""

import itertools
import os
import signal
import time
from typing import List

from inferedge_orchestrator import draws
from inferedge_orchestrator.config.schema import setting, table
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.contracts.kinds import DISTRIBUTIONS
from inferedge_orchestrator.workers.base import Worker
import numpy as np


class DummyWorkerError(RuntimeError):
    """Raised on purpose by a dummy configured with fail_every."""


class DummyWorker(Worker):
    """
    Sleep latency_ms (fixed, or sampled from a distribution) and return the image shape.

    A sampled latency is a function of (seed, task name, frame sequence number): the same frame
    gets the same latency whatever order it runs in, in real time and under the virtual clock.

    busy_wait spins instead of sleeping: it holds the GIL for the whole latency, as pure-Python
    preprocessing would, so other Python threads (the executor included) stall meanwhile.
    fail_every N raises on every Nth call, to exercise the error paths; crash_every, hang_every
    and leak_kib stand in for a segfault, a call stuck in native code and a memory leak.
    """

    kind = 'dummy'
    simulates = True
    OPTIONS = table(
        setting('latency_ms', 10.0, 'mean latency', low=0.0, unit='ms'),
        setting('jitter_ms', 0.0, 'spread (standard deviation; uniform: half-width)', low=0.0,
                unit='ms'),
        setting('distribution', 'fixed', 'latency distribution', choices=DISTRIBUTIONS),
        setting('seed', 0, 'seed of its draws', low=0, high=2 ** 31),
        setting('busy_wait', False, 'spin instead of sleeping: holds the GIL, as pure-Python '
                'preprocessing would'),
        setting('fail_every', 0, 'raise on every Nth call (0: never)', low=0, high=2 ** 31),
        setting('allocate_mb', 0, 'allocate and touch this much memory on each call (0: none; '
                'for the address-space limit of process isolation)', low=0, high=2 ** 20,
                unit='MB'),
        setting('crash_every', 0, 'kill its own process with SIGSEGV on every Nth call (0: '
                'never; for process isolation tests: in a thread pool it kills the engine)',
                low=0, high=2 ** 31),
        setting('hang_every', 0, 'block on every Nth call for hang_s, as a call stuck in native '
                'code would (0: never)', low=0, high=2 ** 31),
        setting('hang_s', 3600.0, 'how long a hanging call blocks', low=0.0, unit='s'),
        setting('batch_limit', 1, 'the most frames its model takes in one call (1: no batches)',
                low=1, high=1024),
        setting('per_item_ms', 0.0, 'what each frame after the first adds to a batch: a batch of '
                'n takes latency_ms + per_item_ms x (n - 1)', low=0.0, unit='ms'),
        setting('leak_kib', 0, 'keep this much memory for good on each call: the leak canary '
                'of the soak test (0: none)', low=0, high=2 ** 20, unit='KiB'),
    )

    def __init__(self, task_name, options, slots=1):
        super().__init__(task_name, options, slots)
        self._key = draws.name_key(task_name)
        self._calls = itertools.count(1)
        self._leaked: List[bytearray] = []
        self.loaded = False
        self.warmups = 0

    def load(self) -> None:
        self.loaded = True

    def warmup(self, runs: int) -> None:
        self.warmups += runs

    def expected_latency_s(self) -> float:
        return self.options['latency_ms'] / 1000.0

    def fast_latency_s(self) -> float:
        """Return the 5th percentile of its latency distribution."""
        options = self.options
        return draws.sample(options['distribution'], options['latency_ms'], options['jitter_ms'],
                            0.05) / 1000.0

    def sample_latency_s(self, sequence: int) -> float:
        """Return the latency of the frame with this sequence number (s)."""
        options = self.options
        u = draws.unit(options['seed'], self._key, sequence)
        return draws.sample(options['distribution'], options['latency_ms'], options['jitter_ms'],
                            u) / 1000.0

    def simulated_service_time(self, frame) -> float:
        return self.sample_latency_s(frame.seq)

    def batch_limit(self) -> int:
        return self.options['batch_limit']

    def expected_batch_latency_s(self, size: int) -> float:
        return self.expected_latency_s() + self._extra_items_s(size)

    def fast_batch_latency_s(self, size: int) -> float:
        return self.fast_latency_s() + self._extra_items_s(size)

    def _extra_items_s(self, size: int) -> float:
        return self.options['per_item_ms'] * (size - 1) / 1000.0

    def simulated_batch_time(self, frames) -> float:
        """Return the first frame's sampled latency plus per_item_ms for each other frame."""
        return self.sample_latency_s(frames[0].seq) + self._extra_items_s(len(frames))

    def infer_batch(self, frames) -> List[InferenceOutput]:
        """Sleep as simulated_batch_time() says (one call: fail_every counts it once)."""
        if len(frames) > self.options['batch_limit']:
            raise ValueError(f'a batch of {len(frames)} frames > batch_limit '
                             f'{self.options["batch_limit"]}')
        start = time.perf_counter()
        shapes = [frame.image.shape for frame in frames]
        preprocess_s = time.perf_counter() - start
        call = next(self._calls)
        latency = self.simulated_batch_time(frames)
        begin = time.perf_counter()
        if latency > 0:
            time.sleep(latency)
        every = self.options['fail_every']
        if every and call % every == 0:
            raise DummyWorkerError(f'injected failure on call {call}')
        inference_s = time.perf_counter() - begin
        return [InferenceOutput({'shape': np.asarray(shape, dtype=np.int32)},
                                preprocess_s / len(frames), inference_s) for shape in shapes]

    def infer(self, frame) -> InferenceOutput:
        start = time.perf_counter()
        shape = frame.image.shape  # decodes an encoded frame, as a real worker would
        preprocess_s = time.perf_counter() - start
        call = next(self._calls)  # atomic under the GIL: slots share the worker
        latency = self.sample_latency_s(frame.seq)
        begin = time.perf_counter()
        if self.options['busy_wait']:
            while time.perf_counter() - begin < latency:
                pass
        elif latency > 0:
            time.sleep(latency)
        every = self.options['fail_every']
        if every and call % every == 0:
            raise DummyWorkerError(f'injected failure on call {call}')
        if self.options['allocate_mb']:
            np.ones(self.options['allocate_mb'] * 1024 * 1024, dtype=np.uint8)
        crash = self.options['crash_every']
        if crash and call % crash == 0:
            os.kill(os.getpid(), signal.SIGSEGV)
        hang = self.options['hang_every']
        if hang and call % hang == 0:
            time.sleep(self.options['hang_s'])
        if self.options['leak_kib']:
            self._leaked.append(bytearray(self.options['leak_kib'] * 1024))
        return InferenceOutput({'shape': np.asarray(shape, dtype=np.int32)}, preprocess_s,
                               time.perf_counter() - begin)
