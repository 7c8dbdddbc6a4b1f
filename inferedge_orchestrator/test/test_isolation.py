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
import re
import signal
import time

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import ConfigError, WorkerLoadError
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.workers.process import (ChildSettings, pid_of_children, settle_child,
                                                    THREAD_VARIABLES)
import numpy as np
import pytest

from .onnx_models import identity_model, require_onnx

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
    return set(glob.glob(f'/dev/shm/inferedge_{os.getpid()}_*'))


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
    assert len(segments() - before) == 1  # the slot's frame segment, named after this process
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


def test_a_child_killed_from_outside_mid_job_fails_that_job_and_is_respawned():
    engine = Engine(config(latency_ms=400.0))
    engine.start()
    try:
        results = []
        engine._on_result = results.append
        engine.submit('camera', IMAGE, age_s=0.0)
        worker = engine.tasks['task'].worker
        deadline = time.monotonic() + 10.0
        while not engine.snapshot().pools['cpu'].busy and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # inside the 400 ms call
        os.kill(pid_of_children(worker)[0], signal.SIGKILL)
        assert engine.drain(10.0)
        results += run(engine, 1)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    assert [(r.status, r.reason) for r in results] == [
        (reasons.FAILED, reasons.WORKER_CRASHED), (reasons.OK, '')]
    assert 'exit code -9' in results[0].detail
    assert (snapshot.pools['cpu'].crashes, snapshot.pools['cpu'].respawns) == (1, 1)
    assert check_invariants(snapshot) == []


def test_respawns_back_off_while_the_child_keeps_crashing_and_the_task_is_down_meanwhile():
    engine = Engine(config(crash_every=1))
    down_at_crash = []
    engine.start()
    try:
        def on_result(result):
            down_at_crash.append(engine.snapshot().tasks['task'].slots_down)
        engine._on_result = on_result
        for _ in range(4):
            engine.submit('camera', IMAGE, age_s=0.0)
            assert engine.drain(30.0)
        worker = engine.tasks['task'].worker
        deadline = time.monotonic() + 10.0
        while worker.slots_down() and time.monotonic() < deadline:
            time.sleep(0.01)
        snapshot = engine.snapshot()
        decisions = engine.decisions_since(0)
    finally:
        engine.close()
    assert down_at_crash == [1, 1, 1, 1]  # each crash: down until its respawn succeeds
    assert snapshot.tasks['task'].failed_by_reason == {reasons.WORKER_CRASHED: 4}
    assert snapshot.tasks['task'].slots_down == 0
    respawns = [d.detail for d in decisions if d.event == reasons.WORKER_RESPAWN_EVENT]
    backoffs = [float(re.search(r'backoff ([0-9.]+) s', d).group(1)) for d in respawns]
    # The first respawn at once, then 0.1 s doubling while no job ends well.
    assert backoffs == [0.0, 0.1, 0.2, 0.4]


def test_each_child_runs_on_the_cpus_and_thread_counts_of_its_pool():
    cpu = min(os.sched_getaffinity(0))
    data = config(slots=2)
    data['orchestrator']['pools']['cpu'].update(cpus=str(cpu), child_threads=2)
    engine = Engine(data)
    engine.start()
    try:
        pids = pid_of_children(engine.tasks['task'].worker)
        assert [os.sched_getaffinity(pid) for pid in pids] == [{cpu}, {cpu}]
        assert [r.status for r in run(engine, 2)] == [reasons.OK] * 2
    finally:
        engine.close()


def thread_scheduling(pid):
    """Return {thread id: (nice, policy)} of every thread of process pid (/proc)."""
    threads = {}
    for path in glob.glob(f'/proc/{pid}/task/*/stat'):
        with open(path, encoding='ascii') as stream:
            fields = stream.read().rsplit(')', 1)[1].split()  # after the command's name
        threads[int(path.split('/')[-2])] = (int(fields[16]), int(fields[38]))
    return threads


@pytest.mark.parametrize('policy, nice', [('normal', 19), ('idle', 0), ('idle', 19),
                                          ('batch', 10)])
def test_every_thread_of_a_child_runs_under_the_os_policy_of_its_pool(tmp_path, policy, nice):
    # The onnxruntime worker starts its intra-op threads at load, after the child set its
    # policy: they inherit it; numpy's BLAS threads were there before and are set one by one.
    require_onnx()
    data = config()
    data['orchestrator']['pools']['cpu'].update(os_policy=policy, os_nice=nice)
    data['tasks'][0].update(worker='onnxruntime', worker_options={
        'model_path': identity_model(tmp_path, [1, 3, 8, 8]), 'intra_op_threads': 2})
    engine = Engine(data)
    engine.start()
    expected = (max(nice, os.getpriority(os.PRIO_PROCESS, 0)),
                {'normal': os.SCHED_OTHER, 'idle': os.SCHED_IDLE,
                 'batch': os.SCHED_BATCH}[policy])
    try:
        worker = engine.tasks['task'].worker
        assert [r.status for r in run(engine, 2)] == [reasons.OK] * 2
        threads = thread_scheduling(pid_of_children(worker)[0])
        assert len(threads) >= 3  # its main thread, BLAS's and onnxruntime's
        assert set(threads.values()) == {expected}, threads
        if policy == 'idle' and nice:  # a respawned child is set alike
            os.kill(pid_of_children(worker)[0], signal.SIGKILL)
            assert [r.status for r in run(engine, 2)][-1] == reasons.OK
            assert set(thread_scheduling(pid_of_children(worker)[0]).values()) == {expected}
        # The engine's own threads (the node's executor, DDS) stay in the normal class.
        assert {p for _, p in thread_scheduling(os.getpid()).values()} == {os.SCHED_OTHER}
    finally:
        engine.close()


@pytest.mark.parametrize('key, value', [('os_policy', 'idle'), ('os_nice', 19)])
def test_os_scheduling_settings_on_a_thread_pool_are_a_config_error(key, value):
    data = config()
    data['orchestrator']['pools']['cpu'].update({'isolation': 'thread', key: value})
    with pytest.raises(ConfigError, match=f'orchestrator.pools.cpu.{key}: .* needs isolation: '
                       'process'):
        load_config(data)


@pytest.mark.parametrize('key, value', [('os_policy', 'fifo'), ('os_nice', -5),
                                        ('os_nice', 20)])
def test_raising_priority_is_not_offered(key, value):
    data = config()
    data['orchestrator']['pools']['cpu'][key] = value
    with pytest.raises(ConfigError, match=f'orchestrator.pools.cpu.{key}'):
        load_config(data)


def test_the_thread_count_reaches_the_numeric_libraries_and_onnxruntime(monkeypatch):
    for variable in THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    options = settle_child(ChildSettings(threads=3), 'onnxruntime', {'intra_op_threads': 0})
    assert options == {'intra_op_threads': 3}
    assert all(os.environ[variable] == '3' for variable in THREAD_VARIABLES)
    assert settle_child(ChildSettings(threads=3), 'onnxruntime', {'intra_op_threads': 1}) == {
        'intra_op_threads': 1}  # the task's own setting wins
    assert settle_child(ChildSettings(threads=3), 'dummy', {}) == {}


@pytest.mark.parametrize('cpus, message', [
    ('3-1', 'ends before it starts'), ('a', 'is not a CPU id'), (4, 'is not a string')])
def test_a_bad_cpu_list_is_a_config_error(cpus, message):
    data = config()
    data['orchestrator']['pools']['cpu']['cpus'] = cpus
    with pytest.raises(ConfigError, match=f'orchestrator.pools.cpu.cpus: .*{message}'):
        load_config(data)


def test_a_worker_factory_is_refused_for_a_process_pool():
    with pytest.raises(WorkerLoadError, match='thread pools only'):
        Engine(config(), worker_factory=lambda task, slots: None).load()
