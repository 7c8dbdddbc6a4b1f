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
The engine in real time: threads, results, malformed input, shutdown, retuning.

Every test that takes engine_factory runs on both pool back-ends, threads and child processes.
"""

import threading
import time

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import ConfigError, WorkerLoadError
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.workers.base import Worker
import numpy as np
import pytest

from .conftest import isolated

IMAGE = np.zeros((48, 64, 3), dtype=np.uint8)


def config(*tasks, **orchestrator):
    return {'orchestrator': orchestrator,
            'tasks': [dict({'worker_options': {'latency_ms': 2.0}}, **t) for t in tasks]}


@pytest.fixture
def engine_factory(isolation):
    engines = []

    def make(cfg, **kwargs):
        engine = Engine(isolated(cfg, isolation), **kwargs)
        engines.append(engine)
        return engine
    yield make
    for engine in engines:
        engine.close(timeout=2.0)


def test_results_carry_timings_and_meta(engine_factory):
    results = []
    engine = engine_factory(config({'name': 'a'}, {'name': 'b', 'priority': 3}),
                            on_result=results.append)
    engine.start()
    before = threading.active_count()
    submission = engine.submit('camera', IMAGE, age_s=0.004, meta='header-1')
    assert submission.accepted and submission.seq == 1 and submission.dropped == ()
    assert engine.drain(2.0)
    assert sorted(r.task for r in results) == ['a', 'b']
    for result in results:
        assert result.status == reasons.OK and result.meta == 'header-1'
        assert result.outputs['shape'].tolist() == [48, 64, 3]
        assert result.inference_s >= 0.0015 and result.end_to_end_s >= 0.004 + 0.0015
        assert result.end_to_end_s >= result.queue_wait_s + result.service_s
    engine.stop()
    assert threading.active_count() == before - 2  # one slot thread and the timer joined


def test_the_callers_latency_series_are_kept_with_the_tasks():
    engine = Engine(config({'name': 'a'}), latency_series=('transport', 'node_overhead'))
    for transport in (0.004, None, -0.002):
        engine.record_latency('a', {'transport': transport, 'node_overhead': 0.001})
    live = engine.snapshot().tasks['a'].latency
    assert live['transport'].count == 2 and live['node_overhead'].count == 3
    assert live['transport'].max_ms == pytest.approx(4.0)
    assert live['inference'].count == 0  # the engine's own series beside them
    run = engine.report()['final']['tasks']['a']['run_latency']
    assert run['transport']['count'] == 2
    # A stamp ahead of the clock counts as 0: the mean is of 4 ms and 0.
    assert run['transport']['mean_ms'] == pytest.approx(2.0)
    with pytest.raises(KeyError):
        engine.record_latency('a', {'undeclared': 0.001})
    engine.close()


@pytest.mark.parametrize('data, expected', [
    (np.zeros((0, 4, 3), np.uint8), reasons.ZERO_SIZE),
    (np.zeros((4, 4, 3), np.float32), reasons.BAD_ARRAY),
    (np.zeros((4, 4, 3), np.uint16), reasons.BAD_ARRAY),  # rgb8 holds uint8
    (np.zeros((4, 4), np.float64), reasons.BAD_ARRAY),
    (np.zeros((4, 4, 2), np.uint8), reasons.UNKNOWN_ENCODING),
    (np.zeros((100, 100, 3), np.uint8), reasons.TOO_MANY_PIXELS),
    ('not an image', reasons.BAD_ARRAY),
    (b'', reasons.ZERO_SIZE),
])
def test_malformed_frames_are_counted_with_reasons(engine_factory, data, expected):
    engine = engine_factory(config({'name': 'a'}, max_image_pixels=5000))
    engine.start()
    submission = engine.submit('camera', data, 0.0)
    assert not submission.accepted and submission.reason == expected
    snapshot = engine.snapshot()
    camera = snapshot.inputs['camera']
    assert camera.received == 1 and camera.malformed_by_reason == {expected: 1}
    assert snapshot.tasks['a'].routed == 0
    assert check_invariants(snapshot) == []


@pytest.mark.parametrize('data, encoding, accepted', [
    (np.zeros((4, 4), np.uint16), '16UC1', '16UC1'),
    (np.zeros((4, 4), np.float32), '32FC1', '32FC1'),
    (np.zeros((4, 4, 1), np.float32), None, '32FC1'),
    (np.zeros((4, 4), np.uint16), None, 'mono16'),
    (np.zeros((4, 4), np.uint8), '32FC1', None),
    (np.zeros((4, 4), np.float32), 'mono16', None),
])
def test_depth_images_keep_their_element_type(engine_factory, data, encoding, accepted):
    results = []
    engine = engine_factory(config({'name': 'a'}), on_result=results.append)
    engine.start()
    submission = engine.submit('camera', data, 0.0, encoding)
    assert submission.accepted == (accepted is not None)
    if accepted is None:
        assert submission.reason == reasons.BAD_ARRAY
        return
    assert engine.drain(2.0)
    assert results[0].status == reasons.OK


def test_unknown_input_and_caller_rejections(engine_factory):
    engine = engine_factory(config({'name': 'a'}))
    engine.start()
    assert engine.submit('nope', IMAGE, 0.0).reason == reasons.UNKNOWN_INPUT
    engine.submit('camera', malformed=reasons.STEP_TOO_SMALL)
    snapshot = engine.snapshot()
    assert snapshot.unknown_input == 1
    assert snapshot.inputs['camera'].malformed_by_reason == {reasons.STEP_TOO_SMALL: 1}


@pytest.mark.parametrize('age', [None, -0.5, 6.0])
def test_stamp_fallback(engine_factory, age):
    results = []
    engine = engine_factory(config({'name': 'a'}), on_result=results.append)
    engine.start()
    engine.submit('camera', IMAGE, age)
    engine.drain(2.0)
    assert engine.snapshot().inputs['camera'].stamp_fallback == 1
    assert results[0].end_to_end_s < 1.0  # age 0 was used


def test_a_stamp_slightly_ahead_uses_age_0_without_a_fallback(engine_factory):
    # Under use_sim_time the node's clock moves in /clock steps: a stamp 10 ms ahead is normal.
    engine = engine_factory(config({'name': 'a'}, max_stamp_lead_ms=50.0))
    engine.start()
    assert engine.submit('camera', IMAGE, -0.010).accepted
    assert engine.submit('camera', IMAGE, -0.060).accepted
    assert engine.drain(2.0)
    assert engine.snapshot().inputs['camera'].stamp_fallback == 1  # only the one 60 ms ahead


def test_encoded_frame_is_decoded_once_and_shared(engine_factory):
    cv2 = pytest.importorskip('cv2', reason='OpenCV (opencv-python-headless) is not installed')
    ok, png = cv2.imencode('.png', np.full((20, 30, 3), 7, np.uint8))
    assert ok
    results = []
    # Budgets no machine load can break: every frame must reach a worker.
    engine = engine_factory(config({'name': 'a', 'latency_budget_ms': 60000},
                                   {'name': 'b', 'latency_budget_ms': 60000},
                                   pools={'cpu': {'slots': 2}}), on_result=results.append)
    engine.start()
    assert engine.submit('camera', png.tobytes(), 0.0).accepted
    assert engine.submit('camera', png.tobytes()[:40], 0.0).accepted  # truncated
    assert engine.drain(10.0)
    ok_results = [r for r in results if r.status == reasons.OK]
    assert [r.outputs['shape'].tolist() for r in ok_results] == [[20, 30, 3]] * 2
    failed = [r for r in results if r.status == reasons.FAILED]
    assert len(failed) == 2 and {r.reason for r in failed} == {reasons.DECODE_ERROR}
    snapshot = engine.snapshot()
    assert snapshot.inputs['camera'].decode_errors == 1  # once per frame, not per task
    assert snapshot.tasks['a'].failed_by_reason == {reasons.DECODE_ERROR: 1}
    assert check_invariants(snapshot) == []


def test_stop_drops_queued_and_joins(engine_factory):
    engine = engine_factory(config({'name': 'slow', 'queue_size': 10, 'latency_budget_ms': 5000,
                                    'worker_options': {'latency_ms': 300.0}}))
    engine.start()
    for _ in range(5):
        engine.submit('camera', IMAGE, 0.0)
    time.sleep(0.05)
    engine.stop(timeout=0.05)
    snapshot = engine.snapshot()
    task = snapshot.tasks['slow']
    assert task.dropped_by_reason == {reasons.SHUTDOWN: 5}  # 4 queued + 1 abandoned
    assert task.queued == 0 and task.in_flight == 0 and snapshot.state == 'stopped'
    assert check_invariants(snapshot) == []
    after = engine.submit('camera', IMAGE, 0.0)
    assert after.dropped == (('slow', reasons.DEACTIVATED),)


def test_pause_drops_with_deactivated_then_resumes(engine_factory):
    engine = engine_factory(config({'name': 'a'}))
    engine.start()
    engine.pause()
    assert engine.submit('camera', IMAGE, 0.0).dropped == (('a', reasons.DEACTIVATED),)
    engine.resume()
    assert engine.submit('camera', IMAGE, 0.0).dropped == ()
    assert engine.drain(2.0)
    assert engine.snapshot().tasks['a'].executed == 1


def test_worker_errors_fail_the_frame_and_the_engine_goes_on(engine_factory):
    results = []
    engine = engine_factory(config({'name': 'flaky', 'queue_size': 10,
                                    'worker_options': {'latency_ms': 1.0, 'fail_every': 2}}),
                            on_result=results.append)
    engine.start()
    for _ in range(6):
        engine.submit('camera', IMAGE, 0.0)
        time.sleep(0.005)
    assert engine.drain(2.0)
    task = engine.snapshot().tasks['flaky']
    assert task.executed == 3 and task.failed_by_reason == {reasons.WORKER_ERROR: 3}
    assert {r.detail for r in results if r.status == reasons.FAILED} == {
        'DummyWorkerError: injected failure on call 2', 'DummyWorkerError: injected failure '
        'on call 4', 'DummyWorkerError: injected failure on call 6'}


def test_load_error_names_the_task():
    class Broken(Worker):

        def load(self):
            raise FileNotFoundError('model.onnx')

    engine = Engine(config({'name': 'det'}), worker_factory=lambda task, slots: Broken(
        task.name, task.worker_options, slots))
    with pytest.raises(WorkerLoadError, match="task 'det': worker 'dummy' failed to load: "
                                              'FileNotFoundError: model.onnx'):
        engine.start()


def test_update_task_validates_then_applies(engine_factory):
    decisions = []
    engine = engine_factory(config({'name': 'a', 'queue_size': 6, 'latency_budget_ms': 5000,
                                    'worker_options': {'latency_ms': 100.0}}),
                            on_decision=decisions.append)
    engine.start()
    for _ in range(6):
        engine.submit('camera', IMAGE, 0.0)
    with pytest.raises(ConfigError, match='tasks.a.queue_size: 0 is out of range'):
        engine.update_task('a', queue_size=0)
    with pytest.raises(ConfigError, match='tasks.a.worker: cannot change while running'):
        engine.update_task('a', worker='onnxruntime')
    assert engine.config.task('a').queue_size == 6
    decision = engine.update_task('a', queue_size=2, priority=4)
    assert decision.event == 'PARAM_CHANGE' and decision.count == 3
    assert 'queue_size: 6 -> 2' in decision.detail
    task = engine.snapshot().tasks['a']
    assert task.dropped_by_reason == {reasons.QUEUE_RESIZED: 3} and task.priority == 4


def test_invariants_under_concurrent_submitters(engine_factory):
    engine = engine_factory(config(
        {'name': 'a', 'priority': 5, 'latency_budget_ms': 30, 'queue_size': 3},
        {'name': 'b', 'latency_budget_ms': 50, 'queue_size': 2, 'max_rate_hz': 100,
         'worker_options': {'latency_ms': 4.0, 'jitter_ms': 3.0, 'distribution': 'uniform'}},
        {'name': 'c', 'inputs': ['side'], 'order': 'newest_first', 'drop_policy': 'drop_newest'},
        pools={'cpu': {'slots': 2}}))
    engine.start()
    stop = threading.Event()
    problems = []

    def submit(name):
        while not stop.is_set():
            engine.submit(name, IMAGE, 0.001)
            time.sleep(0.0005)

    threads = [threading.Thread(target=submit, args=(name,)) for name in ('camera', 'side')]
    for thread in threads:
        thread.start()
    for _ in range(30):
        problems += check_invariants(engine.snapshot())
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    engine.stop()
    final = engine.snapshot()
    problems += check_invariants(final)
    assert problems == []
    assert final.tasks['a'].executed > 0 and final.tasks['b'].dropped > 0
