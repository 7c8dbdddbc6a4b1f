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

"""Timeouts: a job past timeout_ms is failed (TIMED_OUT); a slot stuck past 3x is retired."""

import threading
import time

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.workers.base import Worker
import numpy as np

IMAGE = np.zeros((8, 8, 3), dtype=np.uint8)


def make_config(timeout_ms, latency_ms=10.0, budget_ms=2000.0, slots=1, queue_size=4):
    return {
        'orchestrator': {'pools': {'cpu': {'slots': slots}},
                         'shedding': {'enabled': False},
                         'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'priority': 10, 'latency_budget_ms': budget_ms,
                   'queue_size': queue_size, 'timeout_ms': timeout_ms,
                   'worker_options': {'latency_ms': latency_ms}}],
    }


class Recorder:
    """Collects results and decisions from the engine's callbacks."""

    def __init__(self):
        self.results = []
        self.decisions = []
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def on_result(self, result):
        with self.lock:
            self.results.append((time.monotonic() - self.start, result))

    def on_decision(self, decision):
        with self.lock:
            self.decisions.append(decision)

    def wait_for(self, predicate, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.005)
        return False

    def statuses(self):
        return [(r.seq, r.status, r.reason) for _, r in self.results]

    def events(self, event):
        return [d for d in self.decisions if d.event == event]


class HangingWorker(Worker):
    """A worker whose infer() blocks until released (a stuck native call)."""

    kind = 'hanging'

    def __init__(self, release, replaceable=True):
        super().__init__('detector', {}, 1)
        self.release = release
        self.replaceable = replaceable
        self.calls = 0
        self.closed = False

    def infer(self, frame):
        self.calls += 1
        self.release.wait(10.0)
        return InferenceOutput({'late': np.ones(1)})

    def close(self):
        self.closed = True


class FastWorker(Worker):
    """A worker that answers at once; its load() may wait on an event."""

    kind = 'fast'

    def __init__(self, loaded=None):
        super().__init__('detector', {}, 1)
        self.loaded = loaded
        self.load_calls = 0
        self.warmups = []
        self.calls = 0

    def load(self):
        self.load_calls += 1
        if self.loaded is not None:
            self.loaded.wait(10.0)

    def warmup(self, runs):
        self.warmups.append(runs)

    def infer(self, frame):
        self.calls += 1
        return InferenceOutput({'ok': np.zeros(1)}, 0.0, 0.0)


def start_engine(config, factory=None):
    recorder = Recorder()
    engine = Engine(config, on_result=recorder.on_result, on_decision=recorder.on_decision,
                    worker_factory=factory)
    engine.start()
    recorder.start = time.monotonic()
    return engine, recorder


def test_dummy_that_outlives_timeout_is_failed_with_reason_timeout():
    # 150 ms of work against a 60 ms timeout: failed at ~60 ms; the slot stays busy until the
    # call returns at 150 ms, before the 180 ms (3 x timeout) retirement.
    engine, recorder = start_engine(make_config(timeout_ms=60.0, latency_ms=150.0))
    try:
        engine.submit('camera', IMAGE, age_s=0.0)
        assert recorder.wait_for(lambda r: r.results)
        when, result = recorder.results[0]
        assert result.status == reasons.TIMED_OUT
        assert result.reason == reasons.TIMEOUT
        assert 'no result after 60 ms' in result.detail
        # Delivered promptly: after the timeout, well before the 150 ms job returns.
        assert 0.05 <= when < 0.14, when
        snapshot = engine.snapshot()
        task = snapshot.tasks['detector']
        assert task.failed_by_reason == {reasons.TIMEOUT: 1}
        assert task.in_flight == 0
        # Python cannot cancel the call: the slot stays busy until infer() returns.
        assert snapshot.pools['cpu'].busy == 1
        assert engine.drain(2.0)
        time.sleep(0.2)  # past the job's end: its late output is discarded, nothing retired
        snapshot = engine.snapshot()
        pool = snapshot.pools['cpu']
        assert (pool.busy, pool.retired, pool.slots) == (0, 0, 1)
        assert recorder.statuses() == [(1, reasons.TIMED_OUT, reasons.TIMEOUT)]
        assert len(recorder.events(reasons.WORKER_TIMEOUT_EVENT)) == 1
        assert not recorder.events(reasons.WORKER_ERROR_EVENT)
        assert check_invariants(snapshot) == []
    finally:
        engine.close()


def test_slot_is_free_again_after_a_timed_out_job_returns():
    engine, recorder = start_engine(make_config(timeout_ms=40.0, latency_ms=80.0))
    try:
        engine.submit('camera', IMAGE, age_s=0.0)
        assert recorder.wait_for(lambda r: len(r.results) == 1)
        time.sleep(0.08)
        engine.update_task('detector', timeout_ms=0.0)
        engine.submit('camera', IMAGE, age_s=0.0)
        assert recorder.wait_for(lambda r: len(r.results) == 2)
        assert recorder.statuses()[1] == (2, reasons.OK, '')
        task = engine.snapshot().tasks['detector']
        assert (task.executed, task.failed) == (1, 1)
    finally:
        engine.close()


def test_stuck_slot_is_retired_and_a_fresh_worker_takes_its_place():
    release = threading.Event()
    replacement_loaded = threading.Event()
    workers = []

    def factory(task, slots):
        worker = HangingWorker(release) if not workers else FastWorker(replacement_loaded)
        workers.append(worker)
        return worker

    engine, recorder = start_engine(make_config(timeout_ms=30.0), factory)
    try:
        engine.submit('camera', IMAGE, age_s=0.0)
        assert recorder.wait_for(lambda r: r.events(reasons.WORKER_ERROR_EVENT))
        retired = recorder.events(reasons.WORKER_ERROR_EVENT)[0]
        assert retired.reason == reasons.SLOT_RETIRED
        assert retired.task == 'detector'
        assert 'pool capacity 0' in retired.detail
        assert recorder.statuses() == [(1, reasons.TIMED_OUT, reasons.TIMEOUT)]
        assert recorder.results[0][0] < 0.09  # TIMED_OUT long before the 90 ms retirement
        snapshot = engine.snapshot()
        assert snapshot.pools['cpu'].slots == 0  # capacity -1 while the new one loads
        assert snapshot.pools['cpu'].retired == 1
        # The fresh worker is created with the pool's size, loaded and warmed up off the lock.
        engine.submit('camera', IMAGE, age_s=0.0)
        assert engine.snapshot().tasks['detector'].queued == 1
        replacement_loaded.set()
        assert recorder.wait_for(lambda r: len(r.results) == 2)
        assert recorder.statuses()[1] == (2, reasons.OK, '')
        assert len(workers) == 2 and workers[1].load_calls == 1 and workers[1].calls == 1
        assert workers[1].warmups == [0]
        assert len(recorder.events(reasons.WORKER_ERROR_EVENT)) == 2  # retired, then replaced
        snapshot = engine.snapshot()
        assert snapshot.pools['cpu'].slots == 1
        assert snapshot.pools['cpu'].retired == 1
        assert check_invariants(snapshot) == []
        # The stuck call returns at last: its output is discarded and its thread ends.
        release.set()
        time.sleep(0.05)
        assert recorder.statuses() == [(1, reasons.TIMED_OUT, reasons.TIMEOUT),
                                       (2, reasons.OK, '')]
        task = engine.snapshot().tasks['detector']
        assert (task.executed, task.failed, task.in_flight) == (1, 1, 0)
        assert workers[0].closed  # the replaced worker is released once its call returned
    finally:
        release.set()
        replacement_loaded.set()
        engine.close()
    assert not [t for t in threading.enumerate() if t.name.startswith('inferedge-')]


def test_stuck_slot_of_a_non_replaceable_worker_stays_retired():
    release = threading.Event()
    worker = HangingWorker(release, replaceable=False)
    engine, recorder = start_engine(make_config(timeout_ms=20.0, budget_ms=100.0, queue_size=2),
                                    lambda task, slots: worker)
    try:
        engine.submit('camera', IMAGE, age_s=0.0)
        assert recorder.wait_for(lambda r: r.events(reasons.WORKER_ERROR_EVENT))
        time.sleep(0.05)
        snapshot = engine.snapshot()
        pool = snapshot.pools['cpu']
        assert (pool.slots, pool.retired) == (0, 1)
        assert len(recorder.events(reasons.WORKER_ERROR_EVENT)) == 1  # no replacement
        # The engine keeps running: new frames are admitted and expire unserved.
        for _ in range(3):
            assert engine.submit('camera', IMAGE, age_s=0.0).accepted
        assert engine.drain(2.0)
        task = engine.snapshot().tasks['detector']
        assert task.failed_by_reason == {reasons.TIMEOUT: 1}
        assert sum(task.dropped_by_reason.values()) == 3
        assert check_invariants(engine.snapshot()) == []
    finally:
        release.set()
        engine.close()


def test_failed_replacement_keeps_the_engine_running_and_is_reported():
    release = threading.Event()
    calls = []

    def factory(task, slots):
        calls.append(slots)
        if len(calls) == 1:
            return HangingWorker(release)
        raise RuntimeError('model file vanished')

    engine, recorder = start_engine(make_config(timeout_ms=20.0, slots=2), factory)
    try:
        engine.submit('camera', IMAGE, age_s=0.0)
        assert recorder.wait_for(lambda r: len(r.events(reasons.WORKER_ERROR_EVENT)) == 2)
        retired, failed = recorder.events(reasons.WORKER_ERROR_EVENT)
        assert retired.reason == reasons.SLOT_RETIRED
        assert 'model file vanished' in failed.detail
        assert calls == [2, 2]  # the fresh worker would serve the pool's 2 slots
        snapshot = engine.snapshot()
        pool = snapshot.pools['cpu']
        assert (pool.slots, pool.retired) == (1, 1)
        assert engine.state == 'running'
    finally:
        release.set()
        engine.close()


def test_timeout_under_the_virtual_clock_retires_without_threads():
    from inferedge_orchestrator.tools.simulation import Simulation
    config = make_config(timeout_ms=50.0, latency_ms=200.0)
    simulation = Simulation(config)
    report = simulation.run([(0.0, 'camera')], until=1.0)
    final = report['final']
    assert final['tasks']['detector']['failed_by_reason'] == {reasons.TIMEOUT: 1}
    assert final['pools']['cpu']['retired'] == 1
    assert final['decisions']['by_event'][reasons.WORKER_TIMEOUT_EVENT] == 1
    assert final['decisions']['by_event'][reasons.WORKER_ERROR_EVENT] == 1
    assert report['invariant_violations'] == []
