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

"""Load shedding: attribution of risk, the load rule, limits, floors, recovery, reset."""

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.config.model import SheddingConfig
from inferedge_orchestrator.scheduling.shedding import LoadShedder
from inferedge_orchestrator.scheduling.task import TaskState
from inferedge_orchestrator.telemetry.counters import RateMeter
from inferedge_orchestrator.telemetry.decisions import DecisionLog


def setup(service_ms=(10.0, 20.0, 20.0), **low):
    config = load_config({'tasks': [{'name': 'high', 'priority': 10, 'latency_budget_ms': 100},
                                    {'name': 'mid', 'priority': 5},
                                    dict({'name': 'low', 'priority': 1}, **low)]})
    tasks = [TaskState(t, i, 10.0, 64) for i, t in enumerate(config.tasks)]
    for task, service in zip(tasks, service_ms):
        task.set_expected(service / 1000.0)
    log = DecisionLog(100)
    return LoadShedder(SheddingConfig(), log), tasks, log


def admit(tasks, now, count):
    """Make every task's admitted, started and arrival rate `count` Hz over the last second."""
    for task in tasks:
        task.admitted_rate = RateMeter()
        task.routed_rate = RateMeter()
        task.started_rate = RateMeter()
        for i in range(count):
            for meter in (task.admitted_rate, task.routed_rate, task.started_rate):
                meter.add(now - i / count)


def blocked_miss(task, blocking_s=0.03):
    task.risk.loss('deadline_miss', True)
    task.risk.blocking.append(blocking_s)
    task.risk.service.append(0.012)


def test_a_loss_that_blocking_explains_limits_the_lowest_priority_task_first():
    shedder, tasks, log = setup()
    high, mid, low = tasks
    admit(tasks, 1.0, 30)
    high.risk.loss('expired', True)
    high.risk.blocking.append(0.04)
    shedder.tick(1.0, tasks, {'high': 0, 'mid': 0, 'low': 0})
    assert low.shed_limit_hz == 15.0 and mid.shed_limit_hz == 0.0
    events = [(d.event, d.reason, d.task, d.protected_task) for d in log.recent()]
    assert events == [('SHED_START', 'expired', 'low', 'high'),
                      ('LIMIT', 'expired', 'low', 'high')]
    limit = log.recent()[-1]
    assert limit.blocking_ms == 40.0
    assert limit.own_service_ms == 10.0  # no job ran in the tick: its prediction
    assert abs(limit.freed_load_share - 15 * 0.020) < 1e-9  # 30 -> 15 Hz of 20 ms jobs
    blocked_miss(high)
    shedder.tick(1.5, tasks, {})
    assert low.shed_limit_hz == 7.5  # 0.5 x min(current limit, admitted rate)
    assert log.recent()[-1].own_service_ms == 12.0


def test_a_loss_its_own_service_time_explains_sheds_nothing():
    shedder, tasks, log = setup()
    admit(tasks, 1.0, 30)
    high = tasks[0]
    for reason in ('expired', 'predicted_late', 'queue_overflow', 'deadline_miss', 'timeout'):
        high.risk.loss(reason, False)
    high.risk.end_to_end = [0.095] * 10  # p95 above 80% of the 100 ms budget...
    high.risk.unblocked_end_to_end = [0.094] * 10  # ...and not because of blocking
    shedder.tick(1.0, tasks, {})
    assert not shedder.active and log.total == 0


def test_a_p95_that_blocking_explains_is_a_risk():
    shedder, tasks, log = setup()
    high, mid, low = tasks
    admit(tasks, 1.0, 30)
    high.risk.end_to_end = [0.095] * 10
    high.risk.unblocked_end_to_end = [0.05] * 10  # without blocking: well within 80 ms
    shedder.tick(1.0, tasks, {})
    assert low.shed_limit_hz == 15.0 and shedder.last_risk == ('high', 'latency_p95')


def test_a_task_whose_load_is_below_min_load_share_is_never_limited():
    # low: 2 ms jobs at 20 Hz add 4% of the pool; mid: 20 ms jobs at 20 Hz add 40%.
    shedder, tasks, log = setup(service_ms=(10.0, 20.0, 2.0))
    high, mid, low = tasks
    admit(tasks, 1.0, 20)
    blocked_miss(high)
    shedder.tick(1.0, tasks, {})
    assert low.shed_limit_hz == 0.0 and mid.shed_limit_hz == 10.0
    assert log.recent()[-1].task == 'mid'


def test_the_cheap_middle_task_is_not_shed_when_the_lowest_is_at_its_floor():
    # The real failure: a 1-3 ms classifier limited ahead of a 20 ms recognizer at its floor.
    shedder, tasks, log = setup(service_ms=(50.0, 2.0, 20.0), min_rate_hz=10.0)
    high, classifier, recognizer = tasks
    for now in (1.0, 1.5, 2.0, 2.5):
        admit(tasks, now, 15)
        blocked_miss(high)
        shedder.tick(now, tasks, {})
    assert recognizer.shed_limit_hz == 10.0  # 15 -> max(floor, 7.5)
    assert classifier.shed_limit_hz == 0.0  # 15 Hz x 2 ms: 3% of the pool


def test_floor_is_respected_then_the_next_task_is_limited():
    shedder, tasks, _ = setup(min_rate_hz=10.0)
    high, mid, low = tasks
    for now in (1.0, 1.5, 2.0):
        admit(tasks, now, 30)
        blocked_miss(high)
        shedder.tick(now, tasks, {})
    assert low.shed_limit_hz == 10.0  # 15 -> max(floor, 7.5)
    assert mid.shed_limit_hz == 15.0


def test_backlog_counts_only_while_the_protected_task_is_blocked():
    shedder, tasks, log = setup()
    high, mid, low = tasks
    shedder.config.backlog_threshold = 4
    admit(tasks, 1.0, 20)
    high.risk.blocking = [0.0, 0.0]  # it ran twice, never behind lower-priority work
    shedder.tick(1.0, tasks, {'high': 1, 'mid': 2, 'low': 3})
    assert not shedder.active
    high.risk.blocking = [0.0, 0.02]
    shedder.tick(1.5, tasks, {'high': 1, 'mid': 2, 'low': 3})
    assert low.shed_limit_hz == 10.0 and shedder.last_risk == ('high', 'backlog')


def test_recovery_raises_then_lifts_the_limits():
    shedder, tasks, log = setup()
    high, mid, low = tasks
    admit(tasks, 1.0, 20)
    blocked_miss(high)
    shedder.tick(1.0, tasks, {})
    assert low.shed_limit_hz == 10.0
    now = 1.0
    while shedder.active and now < 60:
        now += 0.5
        admit(tasks, now, 20)
        shedder.tick(now, tasks, {})
    assert not shedder.active and low.shed_limit_hz == 0.0
    raised = [d for d in log.recent() if d.event == 'LIMIT' and d.reason == 'recovered']
    assert raised[0].time >= 3.0  # recovery waits 2 s without risk
    assert [d.limit_hz for d in raised[:2]] == [11.0, 12.0]  # +1 Hz per tick
    assert log.recent()[-1].event == 'SHED_STOP'


def test_lowest_priority_at_risk_alone_sheds_nothing():
    shedder, tasks, log = setup()
    admit(tasks, 1.0, 30)
    tasks[2].risk.loss('expired', True, 5)
    shedder.tick(1.0, tasks, {})
    assert not shedder.active and log.total == 0


def test_reset_lifts_all_limits():
    shedder, tasks, log = setup()
    admit(tasks, 1.0, 30)
    blocked_miss(tasks[0])
    shedder.tick(1.0, tasks, {})
    assert shedder.active
    shedder.reset(1.2, tasks, {})
    assert all(t.shed_limit_hz == 0.0 for t in tasks) and not shedder.active
    assert log.recent()[-1].event == 'SHED_STOP' and log.recent()[-1].reason == 'param_change'
