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

"""Process isolation: workers in child processes that can die, hang or be killed."""

import glob
import os
import signal

from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.telemetry import reasons
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.workers.process import pid_of_children
import numpy as np

IMAGE = np.zeros((24, 32, 3), np.uint8)


def config(slots=1, timeout_ms=0.0, **worker_options):
    return {'orchestrator': {'pools': {'cpu': {'slots': slots, 'isolation': 'process'}},
                             'telemetry': {'resources': False}},
            'tasks': [{'name': 'task', 'latency_budget_ms': 10000.0, 'queue_size': 16,
                       'timeout_ms': timeout_ms,
                       'worker_options': dict({'latency_ms': 1.0}, **worker_options)}]}


def run(engine, frames):
    results = []
    engine._on_result = results.append
    for _ in range(frames):
        engine.submit('camera', IMAGE, age_s=0.0)
        assert engine.drain(30.0)
    return sorted(results, key=lambda r: r.seq)


def segments():
    return set(glob.glob('/dev/shm/psm_*'))


def test_the_model_runs_in_a_child_process_and_leaves_nothing_behind():
    before = segments()
    engine = Engine(config())
    engine.start()
    worker = engine.tasks['task'].worker
    pids = pid_of_children(worker)
    assert pids and all(pid not in (None, os.getpid()) for pid in pids)
    results = run(engine, 3)
    assert [r.status for r in results] == [reasons.OK] * 3
    assert results[0].outputs['shape'].tolist() == [24, 32, 3]
    engine.close()
    for pid in pids:  # gone, not a zombie
        assert not os.path.exists(f'/proc/{pid}') or \
            open(f'/proc/{pid}/stat').read().split()[2] == 'Z'
    assert segments() == before


def test_a_crashing_child_fails_only_its_job_and_is_respawned():
    engine = Engine(config(crash_every=3))
    engine.start()
    try:
        results = run(engine, 7)
        snapshot = engine.snapshot()
        worker = engine.tasks['task'].worker
        decisions = engine.decisions_since(0)
    finally:
        engine.close()
    statuses = [(r.status, r.reason) for r in results]
    assert statuses[2] == (reasons.FAILED, reasons.WORKER_CRASHED)
    assert statuses[5] == (reasons.FAILED, reasons.WORKER_CRASHED)
    assert [s for i, s in enumerate(statuses) if i not in (2, 5)] == [(reasons.OK, '')] * 5
    assert 'child process died' in results[2].detail
    assert worker.crashes == 2 and worker.respawns == 2
    assert snapshot.tasks['task'].failed_by_reason == {reasons.WORKER_CRASHED: 2}
    assert (snapshot.pools['cpu'].crashes, snapshot.pools['cpu'].respawns) == (2, 2)
    events = [d.event for d in decisions]
    assert events.count(reasons.WORKER_CRASH_EVENT) == 2
    assert events.count(reasons.WORKER_RESPAWN_EVENT) == 2
    assert check_invariants(snapshot) == []


def test_a_child_killed_from_outside_while_idle_costs_no_frame():
    engine = Engine(config())
    engine.start()
    try:
        assert [r.status for r in run(engine, 1)] == [reasons.OK]
        worker = engine.tasks['task'].worker
        os.kill(pid_of_children(worker)[0], signal.SIGKILL)
        worker._all[0].process.join(5.0)  # dead before the next frame comes
        results = run(engine, 2)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    # It died holding no job: the next frame respawns it first and runs.
    assert [(r.status, r.reason) for r in results] == [(reasons.OK, '')] * 2
    assert (snapshot.pools['cpu'].crashes, snapshot.pools['cpu'].respawns) == (0, 1)


def test_a_timed_out_child_is_killed_and_the_slot_runs_the_next_job():
    engine = Engine(config(timeout_ms=300.0, latency_ms=5000.0))
    engine.start()
    try:
        engine.submit('camera', IMAGE, age_s=0.0)
        assert engine.drain(10.0)  # the timeout frees the slot: no retirement
        snapshot = engine.snapshot()
    finally:
        engine.close(timeout=10.0)
    assert snapshot.tasks['task'].failed_by_reason == {reasons.TIMEOUT: 1}
    assert snapshot.pools['cpu'].retired == 0


def test_a_child_over_its_address_space_limit_crashes_alone():
    data = config(allocate_mb=2048)
    data['orchestrator']['pools']['cpu']['address_space_mb'] = 1536
    engine = Engine(data)
    engine.start()
    try:
        results = run(engine, 1)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    assert [(r.status, r.reason) for r in results] == [(reasons.FAILED, reasons.WORKER_CRASHED)]
    assert 'exit code 3' in results[0].detail
    assert snapshot.pools['cpu'].crashes == 1
