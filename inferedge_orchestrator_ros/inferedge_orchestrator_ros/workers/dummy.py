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
import threading
import time

from inferedge_orchestrator_ros.workers import InferenceOutput
from inferedge_orchestrator_ros.workers import options as opt
from inferedge_orchestrator_ros.workers import Worker
import numpy as np


class DummyWorkerError(RuntimeError):
    """Raised on purpose by a dummy configured with fail_every."""


class DummyWorker(Worker):
    """
    Sleep latency_ms (fixed, or sampled from a distribution) and return the image shape.

    busy_wait spins instead of sleeping: it holds the GIL for the whole latency, as pure-Python
    preprocessing would, so other Python threads (the executor included) stall meanwhile.
    fail_every N raises on every Nth call, to exercise the error paths.
    """

    kind = 'dummy'
    OPTIONS = {
        'latency_ms': (10.0, opt.number()),
        'jitter_ms': (0.0, opt.number()),
        'distribution': ('fixed', opt.choice('fixed', 'uniform', 'normal', 'lognormal')),
        'seed': (0, opt.integer()),
        'busy_wait': (False, opt.boolean),
        'fail_every': (0, opt.integer()),
    }

    def __init__(self, task_name, options, slots=1):
        super().__init__(task_name, options, slots)
        self._rng = np.random.default_rng(options['seed'])
        self._rng_lock = threading.Lock()
        self._calls = itertools.count(1)
        self.loaded = False
        self.warmups = 0

    def load(self) -> None:
        self.loaded = True

    def warmup(self, runs: int) -> None:
        self.warmups += runs

    def expected_latency_s(self) -> float:
        return self.options['latency_ms'] / 1000.0

    def sample_latency_s(self) -> float:
        mean = self.options['latency_ms']
        jitter = self.options['jitter_ms']
        kind = self.options['distribution']
        if kind == 'fixed' or jitter == 0.0:
            return mean / 1000.0
        with self._rng_lock:
            if kind == 'uniform':
                value = self._rng.uniform(mean - jitter, mean + jitter)
            elif kind == 'normal':
                value = self._rng.normal(mean, jitter)
            else:  # lognormal with the given mean and standard deviation
                sigma2 = np.log1p((jitter / mean) ** 2) if mean > 0 else 0.0
                value = self._rng.lognormal(np.log(max(mean, 1e-9)) - sigma2 / 2,
                                            np.sqrt(sigma2))
        return max(0.0, float(value)) / 1000.0

    def simulated_service_time(self, frame) -> float:
        return self.sample_latency_s()

    def infer(self, frame) -> InferenceOutput:
        start = time.perf_counter()
        shape = frame.image.shape  # decodes an encoded frame, as a real worker would
        preprocess_s = time.perf_counter() - start
        call = next(self._calls)  # atomic under the GIL: slots share the worker
        latency = self.sample_latency_s()
        begin = time.perf_counter()
        if self.options['busy_wait']:
            while time.perf_counter() - begin < latency:
                pass
        elif latency > 0:
            time.sleep(latency)
        every = self.options['fail_every']
        if every and call % every == 0:
            raise DummyWorkerError(f'injected failure on call {call}')
        return InferenceOutput({'shape': np.asarray(shape, dtype=np.int32)}, preprocess_s,
                               time.perf_counter() - begin)
