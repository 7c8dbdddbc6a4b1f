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

"""The dummy worker: fixed or sampled latency, busy-wait mode, injected failures."""

import threading
import time

from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.contracts.kinds import WORKERS
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.workers.dummy import DummyWorker, DummyWorkerError
import numpy as np
import pytest


def dummy(**options):
    return DummyWorker('task', DummyWorker.validate_options(options, 'w'))


def frame():
    return Frame('camera', 1, 0.0, 0.0, image=np.zeros((4, 6, 3), np.uint8))


def test_the_four_kinds_are_registered_and_import_lazily():
    assert set(WORKERS.names) == {'dummy', 'onnxruntime', 'tensorrt', 'triton'}
    assert WORKERS.cls('onnxruntime').kind == 'onnxruntime'
    assert WORKERS.cls('tensorrt').kind == 'tensorrt'
    assert WORKERS.cls('triton').kind == 'triton' and WORKERS.cls('triton').remote
    with pytest.raises(ConfigError, match="worker: 'trt' is not allowed"):
        WORKERS.cls('trt')


def test_fixed_latency_sleeps_and_returns_the_image_shape():
    worker = dummy(latency_ms=20.0)
    worker.load()
    worker.warmup(2)
    assert worker.loaded and worker.warmups == 2
    start = time.perf_counter()
    out = worker.infer(frame())
    assert time.perf_counter() - start >= 0.019
    assert out.outputs['shape'].tolist() == [4, 6, 3]
    assert out.inference_s >= 0.019
    assert worker.expected_latency_s() == pytest.approx(0.02)


@pytest.mark.parametrize('distribution', ['uniform', 'normal', 'lognormal'])
def test_sampled_latencies_follow_the_distribution(distribution):
    worker = dummy(latency_ms=40.0, jitter_ms=10.0, distribution=distribution, seed=7)
    samples = np.array([worker.sample_latency_s(seq) for seq in range(4000)]) * 1000
    assert samples.min() >= 0.0
    assert samples.mean() == pytest.approx(40.0, abs=1.0)
    if distribution == 'uniform':
        assert samples.min() >= 30.0 and samples.max() <= 50.0
    else:
        assert samples.std() == pytest.approx(10.0, rel=0.1)


def test_a_frame_gets_the_same_latency_whatever_the_order_and_the_instance():
    options = {'latency_ms': 40.0, 'jitter_ms': 10.0, 'distribution': 'lognormal', 'seed': 7}
    first, second = dummy(**options), dummy(**options)
    forward = [first.sample_latency_s(seq) for seq in range(50)]
    backward = [second.sample_latency_s(seq) for seq in reversed(range(50))]
    assert forward == backward[::-1] and len(set(forward)) == 50
    other_seed = dummy(**dict(options, seed=8))
    other_task = DummyWorker('other', DummyWorker.validate_options(options, 'w'))
    assert other_seed.sample_latency_s(3) != forward[3] != other_task.sample_latency_s(3)
    assert first.simulated_service_time(Frame('camera', 3, 0.0, 0.0)) == forward[3]


def test_no_jitter_means_a_fixed_latency_whatever_the_distribution():
    worker = dummy(latency_ms=5.0, distribution='normal')
    assert {worker.sample_latency_s(seq) for seq in range(10)} == {0.005}


def test_busy_wait_spins_and_holds_the_gil():
    worker = dummy(latency_ms=60.0, busy_wait=True)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    start = time.perf_counter()
    worker.infer(frame())
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    assert elapsed >= 0.059
    # The spinning thread gives the GIL up only at the interpreter's switch interval (5 ms),
    # so the 1 ms ticker gets far fewer ticks than 60 during the spin.
    during = [t for t in ticks if start <= t <= start + elapsed]
    assert len(during) < 40


def test_fail_every_raises_on_every_nth_call():
    worker = dummy(latency_ms=0.0, fail_every=3)
    outcomes = []
    for _ in range(6):
        try:
            worker.infer(frame())
            outcomes.append('ok')
        except DummyWorkerError as error:
            outcomes.append(str(error))
    assert outcomes == ['ok', 'ok', 'injected failure on call 3', 'ok', 'ok',
                        'injected failure on call 6']


def test_option_errors_name_the_field():
    with pytest.raises(ConfigError, match="w.distribution: 'gamma' is not allowed; allowed: "
                                          'fixed, uniform, normal, lognormal'):
        dummy(distribution='gamma')
    with pytest.raises(ConfigError, match='w.latency_ms: -1 is out of range; '
                                          'allowed: a number >= 0'):
        dummy(latency_ms=-1)
    with pytest.raises(ConfigError, match='w.busy_wait: 1 is not a boolean'):
        dummy(busy_wait=1)
    worker = WORKERS.create('dummy', 't', DummyWorker.validate_options({}, 'w'))
    assert worker.options == {'latency_ms': 10.0, 'jitter_ms': 0.0, 'distribution': 'fixed',
                              'seed': 0, 'busy_wait': False, 'fail_every': 0, 'allocate_mb': 0,
                              'crash_every': 0, 'hang_every': 0, 'hang_s': 3600.0,
                              'leak_kib': 0, 'batch_limit': 1, 'per_item_ms': 0.0}
