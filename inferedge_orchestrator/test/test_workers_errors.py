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

"""Every worker error path: the engine keeps running and the frame is failed with its reason."""

import threading
import time

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import WorkerLoadError
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.workers.base import Worker
import numpy as np
import pytest

from .conftest import isolated

IMAGE = np.zeros((8, 8, 3), dtype=np.uint8)


def config(worker_options=None, slots=1):
    return {
        'orchestrator': {'pools': {'cpu': {'slots': slots}}, 'shedding': {'enabled': False},
                         'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'latency_budget_ms': 2000.0, 'queue_size': 8,
                   'worker_options': worker_options or {'latency_ms': 1.0}}],
    }


class Faulty(Worker):
    """Fails on the first call in the way given, then answers normally."""

    kind = 'faulty'

    def __init__(self, failure):
        super().__init__('detector', {}, 1)
        self.failure = failure
        self.calls = 0

    def infer(self, frame):
        self.calls += 1
        if self.calls == 1:
            return self.failure(frame)
        return InferenceOutput({'ok': np.ones(1)}, 0.0, 0.0)


def raise_runtime(frame):
    raise RuntimeError('CUDA error: an illegal memory access')


def raise_system_exit(frame):
    raise SystemExit(3)


def return_none(frame):
    return None


def return_dict(frame):
    return {'boxes': np.zeros(4)}


def read_image(frame):
    return InferenceOutput({'shape': np.asarray(frame.image.shape)})


def run_frames(engine_config, frames, factory=None, encoded=None, isolation='thread'):
    results = []
    lock = threading.Lock()

    def on_result(result):
        with lock:
            results.append(result)

    engine = Engine(isolated(engine_config, isolation), on_result=on_result,
                    worker_factory=factory)
    engine.start()
    try:
        for index in range(frames):
            data = encoded if (encoded is not None and index == 0) else IMAGE
            assert engine.submit('camera', data, age_s=0.0).accepted
            engine.drain(5.0)
        assert engine.drain(5.0)
        assert engine.state == 'running'
        snapshot = engine.snapshot()
    finally:
        engine.close()
    return sorted(results, key=lambda r: r.seq), snapshot


@pytest.mark.parametrize('failure, detail', [
    (raise_runtime, 'RuntimeError: CUDA error: an illegal memory access'),
    (raise_system_exit, 'SystemExit: 3'),
    (return_none, 'TypeError: infer() returned NoneType, not InferenceOutput'),
    (return_dict, 'TypeError: infer() returned dict, not InferenceOutput'),
])
def test_worker_failure_fails_the_frame_and_the_engine_keeps_running(failure, detail):
    worker = Faulty(failure)
    results, snapshot = run_frames(config(), 3, lambda task, slots: worker)
    assert [(r.status, r.reason) for r in results] == [
        (reasons.FAILED, reasons.WORKER_ERROR), (reasons.OK, ''), (reasons.OK, '')]
    assert results[0].detail == detail
    assert results[0].outputs == {}
    task = snapshot.tasks['detector']
    assert task.failed_by_reason == {reasons.WORKER_ERROR: 1}
    assert (task.executed, task.failed, task.in_flight) == (2, 1, 0)
    assert snapshot.pools['cpu'].busy == 0
    assert check_invariants(snapshot) == []


def test_dummy_fail_every_fails_every_nth_frame(isolation):
    results, snapshot = run_frames(config({'latency_ms': 0.0, 'fail_every': 2}), 4,
                                   isolation=isolation)
    assert [r.status for r in results] == [reasons.OK, reasons.FAILED] * 2
    assert all('DummyWorkerError: injected failure on call' in r.detail
               for r in results if r.status == reasons.FAILED)
    assert snapshot.tasks['detector'].failed_by_reason == {reasons.WORKER_ERROR: 2}


def test_undecodable_bytes_fail_with_decode_error():
    pytest.importorskip('cv2')
    worker = Faulty(read_image)
    results, snapshot = run_frames(config(), 2, lambda task, slots: worker,
                                   encoded=b'definitely not an image')
    assert (results[0].status, results[0].reason) == (reasons.FAILED, reasons.DECODE_ERROR)
    assert 'DecodeError' in results[0].detail
    assert results[1].status == reasons.OK
    assert snapshot.tasks['detector'].failed_by_reason == {reasons.DECODE_ERROR: 1}
    assert snapshot.inputs['camera'].decode_errors == 1


def test_failures_on_several_slots_at_once():
    class AlwaysFails(Worker):

        def infer(self, frame):
            time.sleep(0.01)
            raise ValueError('bad tensor')

    worker = AlwaysFails('detector', {}, 3)
    results, snapshot = run_frames(config(slots=3), 6, lambda task, slots: worker)
    assert [r.reason for r in results] == [reasons.WORKER_ERROR] * 6
    assert snapshot.tasks['detector'].failed == 6
    assert check_invariants(snapshot) == []


def test_a_broken_result_callback_does_not_stop_the_slot():
    calls = []

    def on_result(result):
        calls.append(result.seq)
        raise RuntimeError('subscriber bug')

    engine = Engine(config(), on_result=on_result)
    engine.start()
    try:
        for _ in range(3):
            engine.submit('camera', IMAGE, age_s=0.0)
            assert engine.drain(5.0)
        assert calls == [1, 2, 3]
        assert engine.snapshot().tasks['detector'].executed == 3
    finally:
        engine.close()


class BrokenLoad(Worker):

    def __init__(self, stage):
        super().__init__('detector', {}, 1)
        self.stage = stage
        self.closed = False

    def load(self):
        if self.stage == 'load':
            raise FileNotFoundError('model.onnx: no such file')

    def warmup(self, runs):
        if self.stage == 'warmup':
            raise MemoryError('out of device memory')

    def close(self):
        self.closed = True


@pytest.mark.parametrize('stage, message', [
    ('load', 'FileNotFoundError: model.onnx: no such file'),
    ('warmup', 'MemoryError: out of device memory'),
    ('create', 'ValueError: no such engine'),
])
def test_a_worker_that_cannot_load_is_a_worker_load_error_naming_the_task(stage, message):
    def factory(task, slots):
        if stage == 'create':
            raise ValueError('no such engine')
        return BrokenLoad(stage)

    engine = Engine(config(), worker_factory=factory)
    with pytest.raises(WorkerLoadError, match="task 'detector': worker 'dummy' failed") as info:
        engine.load()
    assert message in str(info.value)
    assert engine.state == 'created'


def test_a_worker_whose_close_raises_does_not_stop_close():
    class BadClose(Worker):

        def infer(self, frame):
            return InferenceOutput({})

        def close(self):
            raise RuntimeError('driver gone')

    engine = Engine(config(), worker_factory=lambda task, slots: BadClose('detector', {}, 1))
    engine.start()
    engine.close()
    assert engine.state == 'closed'
