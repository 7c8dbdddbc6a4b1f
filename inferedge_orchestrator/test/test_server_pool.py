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
Server pools without a server: the breaker, the dispatch drops, the probes and the outcomes.

A fake remote worker stands in for the triton worker (test_triton.py runs a real server); its
config is a triton task's, so the engine makes the pool a server pool.
"""

import threading
import time

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import (ConfigError, RequestDropped, RequestTimedOut,
                                                     ServerUnavailable)
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.workers.base import Worker
from inferedge_orchestrator.workers.dummy import DummyWorker
import numpy as np
import pytest

IMAGE = np.zeros((8, 8, 3), np.uint8)
SERVER = {'url': '127.0.0.1:1', 'model_name': 'm'}


class FakeServer:
    """The state of a pretend server: up or not, and what its probes saw."""

    def __init__(self):
        self.up = True
        self.outcome = None  # an exception every request raises while set
        self.probe_times = []
        self.probing = 0
        self.most_probing = 0
        self.lock = threading.Lock()


class FakeRemote(Worker):
    """Answers in 2 ms while its server is up; records what each request carried."""

    kind = 'triton'
    remote = True

    def __init__(self, task_name, options, slots, server):
        super().__init__(task_name, options, slots)
        self.fake = server
        self.requests = []

    def infer(self, frame, budget_s=None, priority_rank=None):
        self.requests.append((frame.seq, budget_s, priority_rank))
        if not self.fake.up:
            raise ServerUnavailable('127.0.0.1:1: failed to connect: Connection refused')
        if self.fake.outcome is not None:
            raise self.fake.outcome
        time.sleep(0.002)
        return InferenceOutput({'y': np.zeros(1)})

    def probe(self):
        fake = self.fake
        with fake.lock:
            fake.probing += 1
            fake.most_probing = max(fake.most_probing, fake.probing)
            fake.probe_times.append(time.monotonic())
            up = fake.up
        time.sleep(0.01)  # a probe takes a while: a second one must not start meanwhile
        with fake.lock:
            fake.probing -= 1
        if not up:
            raise ServerUnavailable('127.0.0.1:1: Connection refused')
        return '127.0.0.1:1: model m ready'


def config(priorities=(10,), on_deadline='drop', probe_s=0.05, probe_max_s=0.2):
    tasks = [{'name': 'local', 'pool': 'cpu', 'priority': 50, 'latency_budget_ms': 10000.0,
              'queue_size': 8, 'worker_options': {'latency_ms': 1.0}}]
    tasks += [{'name': f'remote{i}', 'pool': 'server', 'priority': priority,
               'latency_budget_ms': 5000.0, 'queue_size': 8, 'worker': 'triton',
               'on_deadline': on_deadline, 'worker_options': dict(SERVER)}
              for i, priority in enumerate(priorities)]
    return {'orchestrator': {'pools': {'cpu': {'slots': 1},
                                       'server': {'slots': 2, 'probe_backoff_s': probe_s,
                                                  'probe_backoff_max_s': probe_max_s}},
                             'telemetry': {'resources': False, 'period_s': 0.1}},
            'tasks': tasks}


def engine_with(fake, cfg, **kwargs):
    def factory(task, slots):
        if task.worker == 'triton':
            return FakeRemote(task.name, task.worker_options, slots, fake)
        return DummyWorker(task.name, task.worker_options, slots)
    return Engine(cfg, worker_factory=factory, **kwargs)


def feed(engine, seconds, hz=100.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        engine.submit('camera', IMAGE, age_s=0.0)
        time.sleep(1.0 / hz)


def test_a_lost_server_opens_the_breaker_its_frames_are_dropped_and_probes_back_off():
    fake = FakeServer()
    decisions = []
    engine = engine_with(fake, config(), on_decision=decisions.append)
    engine.start()
    try:
        feed(engine, 0.3)
        fake.up = False
        down_at = time.monotonic()
        feed(engine, 1.0)
        snapshot = engine.snapshot()
        assert snapshot.pools['server'].server_down
        assert snapshot.tasks['remote0'].slots_down == 2  # /diagnostics: ERROR
        fake.up = True
        up_at = time.monotonic()
        feed(engine, 0.5)
        assert engine.drain(5.0)
        snapshot = engine.snapshot()
    finally:
        engine.stop()
    remote, local = snapshot.tasks['remote0'], snapshot.tasks['local']
    assert check_invariants(snapshot) == []
    # The jobs in flight when it went failed; everything after was dropped at dispatch.
    assert 1 <= remote.failed_by_reason[reasons.SERVER_UNAVAILABLE] <= 2
    assert remote.failed == remote.failed_by_reason[reasons.SERVER_UNAVAILABLE]
    assert remote.dropped_by_reason[reasons.SERVER_UNAVAILABLE] > 50
    assert remote.executed > 50  # before and after the outage
    assert local.failed == local.dropped == 0 and local.executed == local.routed
    events = [d.event for d in decisions]
    assert events.count(reasons.SERVER_DOWN) == 1 and events.count(reasons.SERVER_UP) == 1
    down = next(d for d in decisions if d.event == reasons.SERVER_DOWN)
    assert down.reason == reasons.SERVER_UNAVAILABLE and 'Connection refused' in down.detail
    up = next(d for d in decisions if d.event == reasons.SERVER_UP)
    assert up.reason == reasons.RECOVERED and 'model m ready' in up.detail
    pool = snapshot.pools['server']
    assert (pool.backend, pool.server_down, pool.outages) == ('server', False, 1)
    # One probe at a time, each after a backoff of 0.05 s doubling up to 0.2 s: at most
    # 0.05, 0.15, 0.35, 0.55, ... after the outage began, so about 7 in its 1.0 s.
    times = fake.probe_times
    assert fake.most_probing == 1 and pool.probes == len(times)
    gaps = np.diff([down_at] + times)
    assert all(gap >= 0.045 for gap in gaps), gaps
    assert all(gap <= 0.2 + 0.15 for gap in gaps[1:]), gaps  # capped (+ a loaded machine)
    assert len(times) <= 2 + (up_at - down_at - 0.15) / 0.2 + 1
    assert times[-1] >= up_at  # the first probe after the server came back closed it
    assert not any(t.name.startswith('inferedge-probe') for t in threading.enumerate())


def test_a_server_drop_is_counted_with_its_reason_and_the_servers_message():
    fake = FakeServer()
    decisions = []
    engine = engine_with(fake, config(), on_decision=decisions.append)
    engine.start()
    try:
        fake.outcome = RequestDropped(reasons.EXPIRED, '127.0.0.1:1: Request timeout expired')
        for _ in range(3):
            engine.submit('camera', IMAGE, age_s=0.0)
            assert engine.drain(5.0)
        fake.outcome = RequestDropped(reasons.QUEUE_OVERFLOW, 'Exceeds maximum queue size')
        engine.submit('camera', IMAGE, age_s=0.0)
        assert engine.drain(5.0)
        time.sleep(0.3)  # the DROP decisions of the period
        snapshot = engine.snapshot()
    finally:
        engine.stop()
    remote = snapshot.tasks['remote0']
    assert remote.dropped_by_reason == {reasons.EXPIRED: 3, reasons.QUEUE_OVERFLOW: 1}
    assert remote.failed == remote.executed == 0
    assert check_invariants(snapshot) == []
    drops = {d.reason: d for d in decisions if d.event == reasons.DROP and d.task == 'remote0'}
    assert drops[reasons.EXPIRED].detail == '127.0.0.1:1: Request timeout expired'
    assert drops[reasons.QUEUE_OVERFLOW].detail == 'Exceeds maximum queue size'
    assert not snapshot.pools['server'].server_down  # the server answered


def test_a_transport_timeout_is_a_timed_out_result_and_the_breaker_stays_closed():
    fake = FakeServer()
    results, decisions = [], []
    engine = engine_with(fake, config(), on_result=results.append,
                         on_decision=decisions.append)
    engine.start()
    try:
        fake.outcome = RequestTimedOut('127.0.0.1:1: no answer within client_timeout_ms 100')
        engine.submit('camera', IMAGE, age_s=0.0)
        assert engine.drain(5.0)
        deadline = time.monotonic() + 5.0
        while not any(r.task == 'remote0' for r in results) and time.monotonic() < deadline:
            time.sleep(0.01)
        fake.outcome = None
        engine.submit('camera', IMAGE, age_s=0.0)
        assert engine.drain(5.0)
        snapshot = engine.snapshot()
    finally:
        engine.stop()
    remote = [r for r in results if r.task == 'remote0']
    assert [r.status for r in remote] == [reasons.TIMED_OUT, reasons.OK]
    assert remote[0].reason == reasons.TIMEOUT and 'client_timeout_ms 100' in remote[0].detail
    timeouts = [d for d in decisions if d.event == reasons.WORKER_TIMEOUT_EVENT]
    assert len(timeouts) == 1 and 'client_timeout_ms' in timeouts[0].detail
    assert snapshot.tasks['remote0'].failed_by_reason == {reasons.TIMEOUT: 1}
    assert check_invariants(snapshot) == []


def test_requests_carry_the_budget_left_and_the_rank_of_the_priority_in_the_pool():
    fake = FakeServer()
    engine = engine_with(fake, config(priorities=(100, 40, 40, 5)))
    engine.start()
    try:
        engine.submit('camera', IMAGE, age_s=0.5)
        assert engine.drain(5.0)
        ranks = {name: engine.tasks[name].worker.requests[-1][2]
                 for name in ('remote0', 'remote1', 'remote2', 'remote3')}
        assert ranks == {'remote0': 0, 'remote1': 1, 'remote2': 1, 'remote3': 2}
        budget = engine.tasks['remote0'].worker.requests[-1][1]
        assert 4.0 < budget < 4.5  # 5 s budget, 0.5 s old at arrival
        engine.update_task('remote3', priority=200)  # ranks follow a retuned priority
        engine.submit('camera', IMAGE, age_s=0.0)
        assert engine.drain(5.0)
        assert engine.tasks['remote3'].worker.requests[-1][2] == 0
        assert engine.tasks['remote0'].worker.requests[-1][2] == 1
    finally:
        engine.stop()
    fake = FakeServer()
    engine = engine_with(fake, config(on_deadline='run'))
    engine.start()
    try:
        engine.submit('camera', IMAGE, age_s=0.0)
        assert engine.drain(5.0)
        assert engine.tasks['remote0'].worker.requests[-1][1] is None  # runs late frames too
    finally:
        engine.stop()


def test_a_server_pool_is_checked_with_the_config():
    base = config()
    cfg = config()
    cfg['orchestrator']['pools']['server']['isolation'] = 'process'
    with pytest.raises(ConfigError, match=r'orchestrator\.pools\.server\.isolation: '
                                          r"'process' is not allowed for the server pool"):
        load_config(cfg)
    cfg = config()
    cfg['tasks'][0]['pool'] = 'server'
    with pytest.raises(ConfigError, match=r'tasks\.local\.pool: .server. is the server pool'):
        load_config(cfg)
    cfg = config(priorities=(10, 20))
    cfg['tasks'][2]['worker_options'] = dict(SERVER, url='10.0.0.2:8001')
    with pytest.raises(ConfigError, match=r'tasks\.remote1\.worker_options\.url: '
                                          r'grpc://10\.0\.0\.2:8001 is not the server'):
        load_config(cfg)
    cfg = config()
    cfg['tasks'][1]['worker_options'] = dict(SERVER, protocol='http', ssl=True)
    with pytest.raises(ConfigError, match=r'worker_options\.ssl: TLS is supported with '
                                          'protocol grpc only'):
        load_config(cfg)
    cfg = config()
    cfg['tasks'][1]['worker_options'] = dict(SERVER, root_certificates='/ca.pem')
    with pytest.raises(ConfigError, match=r'root_certificates: is set but ssl is false'):
        load_config(cfg)
    cfg = config()
    cfg['tasks'][1]['worker_options'] = dict(SERVER, headers='{"x-token": 5}')
    with pytest.raises(ConfigError, match=r'worker_options\.headers'):
        load_config(cfg)
    cfg = config()
    cfg['tasks'][1]['worker_options'] = dict(SERVER, headers='{"X-Token": "secret"}')
    assert load_config(cfg).tasks[1].worker_options['headers'] == {'x-token': 'secret'}
    assert load_config(base).pools['server'].probe_backoff_s == 0.05


def test_the_model_queue_settings_decide_what_a_request_carries(core_log):
    from inferedge_orchestrator.workers.triton import TritonWorker
    worker = TritonWorker('remote', TritonWorker.validate_options(dict(SERVER), 'w'))
    policy = {'allow_timeout_override': True, 'default_timeout_microseconds': '60000000'}
    cases = [({}, 0, False, ['dynamic_batching (Triton']),
             ({'dynamic_batching': {}}, 0, False, ['priority_levels', 'allow_timeout_override']),
             ({'dynamic_batching': {'priority_levels': '2', 'default_queue_policy': dict(
                 policy, default_timeout_microseconds='0')}}, 2, False, ['allow_timeout']),
             ({'dynamic_batching': {'priority_levels': 3, 'default_queue_policy': policy}},
              3, True, [])]
    for config, levels, timeouts, missing in cases:
        core_log.clear()
        worker._read_queue_policy(config)
        assert (worker.priority_levels, worker.sends_timeout) == (levels, timeouts), config
        text = ' '.join(r.getMessage() for r in core_log)
        assert all(item in text for item in missing) and bool(text) == bool(missing), text
