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
Which queue overflows blocking explains, under the virtual clock (shedding acts on those only).

Seen on a loaded machine (issue 30): the node's executor, starved of CPU, delivered the camera's
frames in bursts and every job ran long; the high-priority task's queue overflowed while a short
lower-priority job happened to hold the slot, and shedding started (reason queue_overflow,
blocking p95 3 ms against its own service p95 176 ms). Its own service time explained those
losses: no limit on the other task could prevent them.
"""

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.tools.simulation import Simulation


def two_tasks(high_ms, low_ms, high_queue):
    def task(name, priority, latency_ms, queue):
        return {'name': name, 'priority': priority, 'latency_budget_ms': 1000.0,
                'queue_size': queue, 'worker_options': {'latency_ms': latency_ms}}
    return {'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
            'inputs': {'camera': {}},
            'tasks': [task('high', 10, high_ms, high_queue), task('low', 1, low_ms, 4)]}


def run(config, arrivals, seconds):
    return Simulation(config).run(arrivals, seconds)


def bursts(period_s, size, seconds):
    """Return frames delivered size at a time every period_s, stamped 1/15 s apart."""
    arrivals, now = [], 0.0
    while now < seconds:
        arrivals += [(now, 'camera', (size - 1 - i) / 15.0) for i in range(size)]
        now += period_s
    return arrivals


def test_overflows_of_a_burst_while_a_short_lower_job_runs_shed_nothing():
    # high's six 40 ms jobs per 210 ms burst overload the slot by themselves; each burst lands
    # while one of low's 8 ms jobs runs, and high's queue (4) overflows by two at once.
    report = run(two_tasks(40.0, 8.0, 4), bursts(0.21, 6, 20.0), 20.0)
    high = report['final']['tasks']['high']
    assert high['dropped_by_reason'].get(reasons.QUEUE_OVERFLOW, 0) >= 90  # one a burst
    assert report['final']['decisions']['by_event'][reasons.SHED_START] == 0
    assert report['invariant_violations'] == []


def test_overflows_behind_a_long_lower_job_still_shed_it():
    # low's 150 ms jobs hold the slot while high's 5 ms frames (15 Hz) overflow its queue of 1.
    arrivals = [(i / 15.0, 'camera', 0.0) for i in range(300)]
    report = run(two_tasks(5.0, 150.0, 1), arrivals, 20.0)
    shed = [d for d in report['decisions'] if d['event'] == reasons.SHED_START]
    assert shed and shed[0]['reason'] == reasons.QUEUE_OVERFLOW, report['decisions'][:5]
    assert shed[0]['task'] == 'low' and shed[0]['protected_task'] == 'high'
