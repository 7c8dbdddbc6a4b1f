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

"""Load shedding: risk, limits, floors, recovery, reset."""

from inferedge_orchestrator_ros.config import load_config
from inferedge_orchestrator_ros.config import SheddingConfig
from inferedge_orchestrator_ros.decisions import DecisionLog
from inferedge_orchestrator_ros.scheduler import TaskState
from inferedge_orchestrator_ros.shedding import LoadShedder
from inferedge_orchestrator_ros.telemetry import RateMeter


def setup(**low):
    config = load_config({'tasks': [{'name': 'high', 'priority': 10, 'latency_budget_ms': 100},
                                    {'name': 'mid', 'priority': 5},
                                    dict({'name': 'low', 'priority': 1}, **low)]})
    tasks = [TaskState(t, i, 10.0, 64) for i, t in enumerate(config.tasks)]
    log = DecisionLog(100)
    return LoadShedder(SheddingConfig(), log), tasks, log


def admit(tasks, now, count):
    """Make every task's admitted and arrival rate `count` Hz over the second before now."""
    for task in tasks:
        task.admitted_rate = RateMeter()
        task.routed_rate = RateMeter()
        for i in range(count):
            task.admitted_rate.add(now - i / count)
            task.routed_rate.add(now - i / count)


def test_risk_limits_the_lowest_priority_task_first():
    shedder, tasks, log = setup()
    high, mid, low = tasks
    admit(tasks, 1.0, 30)
    high.tick_expired = 2
    shedder.tick(1.0, tasks, {'high': 0, 'mid': 0, 'low': 0})
    assert low.shed_limit_hz == 15.0 and mid.shed_limit_hz == 0.0
    events = [(d.event, d.reason, d.task, d.protected_task) for d in log.recent()]
    assert events == [('SHED_START', 'expired', 'low', 'high'),
                      ('LIMIT', 'expired', 'low', 'high')]
    high.tick_misses = 1
    shedder.tick(1.5, tasks, {})
    assert low.shed_limit_hz == 7.5  # 0.5 x min(current limit, admitted rate)


def test_floor_is_respected_then_the_next_task_is_limited():
    shedder, tasks, _ = setup(min_rate_hz=10.0)
    high, mid, low = tasks
    for now in (1.0, 1.5, 2.0):
        admit(tasks, now, 30)
        high.tick_end_to_end = [0.095] * 10  # p95 above 80% of the 100 ms budget
        shedder.tick(now, tasks, {})
    assert low.shed_limit_hz == 10.0  # 15 -> max(floor, 7.5)
    assert mid.shed_limit_hz == 15.0


def test_backlog_and_recovery():
    shedder, tasks, log = setup()
    high, mid, low = tasks
    shedder.config.backlog_threshold = 4
    admit(tasks, 1.0, 20)
    shedder.tick(1.0, tasks, {'high': 1, 'mid': 2, 'low': 3})
    assert low.shed_limit_hz == 10.0 and shedder.last_risk == ('high', 'backlog')
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
    tasks[2].tick_expired = 5
    shedder.tick(1.0, tasks, {})
    assert not shedder.active and log.total == 0


def test_reset_lifts_all_limits():
    shedder, tasks, log = setup()
    admit(tasks, 1.0, 30)
    tasks[0].tick_expired = 1
    shedder.tick(1.0, tasks, {})
    shedder.reset(1.2, tasks, {})
    assert all(t.shed_limit_hz == 0.0 for t in tasks) and not shedder.active
    assert log.recent()[-1].event == 'SHED_STOP' and log.recent()[-1].reason == 'param_change'
