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

"""Scheduling rules: priority, deadline, order, priority hold and rate floor."""

import dataclasses
import math
import random

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.scheduling.policy import hold_for, select_fifo, select_priority
from inferedge_orchestrator.scheduling.queues import Entry
from inferedge_orchestrator.scheduling.service import (FAST_QUANTILE, FAST_Z,
                                                       predicted_lognormal_quantile,
                                                       student_t_quantile)
from inferedge_orchestrator.scheduling.task import TaskState
from inferedge_orchestrator.tools.simulation import periodic_trace, Simulation

from .conftest import two_tasks


class FakeFrame:

    def __init__(self, seq):
        self.seq = seq


def states(*tasks):
    config = load_config({'tasks': [dict(t) for t in tasks]})
    return [TaskState(t, i, 10.0, 64) for i, t in enumerate(config.tasks)]


def test_strict_priority_then_earliest_deadline():
    low, high_a, high_b = states({'name': 'low', 'priority': 1},
                                 {'name': 'a', 'priority': 5},
                                 {'name': 'b', 'priority': 5})
    low.queue.push(Entry(0.1, FakeFrame(1), 0.0))
    high_a.queue.push(Entry(0.9, FakeFrame(2), 0.0))
    high_b.queue.push(Entry(0.5, FakeFrame(3), 0.0))
    tasks = sorted([low, high_a, high_b], key=lambda t: -t.priority)
    chosen, holds = select_priority(tasks, 0.0, True, True)
    assert chosen is high_b and holds == []


def high_and_low(high_budget_ms, high_queue, low_ms):
    """Return a high task with frames every 10 ms (8 ms each) at 0, 10 and 20 ms, and a low."""
    high, low = states({'name': 'high', 'priority': 9, 'latency_budget_ms': high_budget_ms,
                        'queue_size': high_queue, 'worker_options': {'latency_ms': 8}},
                       {'name': 'low', 'worker_options': {'latency_ms': low_ms}})
    high.set_expected(0.008)
    low.set_expected(low_ms / 1000.0)
    for t in (0.0, 0.01, 0.02):
        high.count_routed(t, 0.0, 'camera')
    return high, low


def test_hold_when_the_job_would_overflow_a_higher_priority_queue():
    # A queue of 2, a generous budget, the next frame due now: a 21 ms job would see 3 frames
    # arrive, one more than the queue holds; started just after one, it would not.
    high, low = high_and_low(500, 2, 21)
    assert hold_for(low, [high, low], 0.0299)[0] is high
    low.set_expected(0.012)  # two frames by its end: the queue holds them
    assert hold_for(low, [high, low], 0.0299)[0] is None
    low.set_expected(0.045)  # an overflow whenever it starts: holding would only starve it
    assert hold_for(low, [high, low], 0.0299)[0] is None


def test_fifo_takes_arrival_order():
    a, b = states({'name': 'a', 'priority': 9}, {'name': 'b'})
    b.queue.push(Entry(5.0, FakeFrame(1), 0.0))
    a.queue.push(Entry(0.1, FakeFrame(2), 0.0))
    assert select_fifo([a, b]) is b


def test_hold_when_expected_frame_would_miss():
    high, low = high_and_low(40, 8, 45)
    blocker, wake = hold_for(low, [high, low], 0.025)
    assert blocker is high and wake > 0.025
    # With a generous budget, the expected frame still makes it: no hold.
    high.config = dataclasses.replace(high.config, latency_budget_ms=200.0)
    assert hold_for(low, [high, low], 0.025)[0] is None
    # A source silent for more than two intervals is not expected any more.
    high.config = dataclasses.replace(high.config, latency_budget_ms=40.0)
    assert hold_for(low, [high, low], 0.5)[0] is None


def test_priority_hold_prevents_expiry_in_simulation():
    trace = periodic_trace(['camera'], 200, 0.01)
    held = Simulation(two_tasks(40.0)).run(trace, 2.24)['final']['tasks']
    unheld = Simulation(two_tasks(40.0, priority_hold=False)).run(trace, 2.24)['final']['tasks']
    assert held['detector']['dropped'] == 0 and held['detector']['executed'] == 200
    assert held['classifier']['held_for_priority'] > 0
    assert unheld['detector']['dropped'] > 10  # ~28 expire without the hold


def test_rate_floor_runs_a_task_priority_alone_would_starve():
    config = {
        'orchestrator': {'shedding': {'enabled': False}},
        'tasks': [
            {'name': 'busy', 'priority': 100, 'latency_budget_ms': 500, 'queue_size': 8,
             'worker_options': {'latency_ms': 10}},
            {'name': 'starved', 'priority': 1, 'latency_budget_ms': 1000, 'queue_size': 2,
             'worker_options': {'latency_ms': 5}},
        ],
    }
    trace = periodic_trace(['camera'], 500, 0.01)  # busy alone fills the slot: 100%
    plain = Simulation(config).run(trace, 5.0)['final']['tasks']
    assert plain['starved']['executed'] <= 1
    config['tasks'][1]['min_rate_hz'] = 4.0
    floored = Simulation(config).run(trace, 5.0)['final']['tasks']
    assert floored['starved']['executed'] >= 4 * 4  # about min_rate_hz over the run
    assert floored['busy']['executed'] > 400


def test_student_t_quantiles_match_the_tables():
    # t(0.05) for 4, 10 and 30 degrees of freedom: -2.132, -1.812, -1.697.
    for dof, table in ((4, -2.132), (10, -1.812), (30, -1.697)):
        assert abs(student_t_quantile(FAST_Z, dof) - table) < 0.002


def predicted_fast(samples):
    logs = [math.log(s) for s in samples]
    return predicted_lognormal_quantile(len(logs), sum(logs), sum(x * x for x in logs), FAST_Z)


def test_the_fast_prediction_is_cautious_with_few_samples_and_right_with_many():
    draws = random.Random(3)
    mu, sigma = math.log(0.010), 0.25
    true_fast = math.exp(mu + FAST_Z * sigma)
    # Over many small windows, a next sample falls below the predicted quantile about
    # FAST_QUANTILE of the time: the bound accounts for the fit's own uncertainty.
    below = 0
    trials = 4000
    for _ in range(trials):
        window = [draws.lognormvariate(mu, sigma) for _ in range(5)]
        below += draws.lognormvariate(mu, sigma) < predicted_fast(window)
    assert abs(below / trials - FAST_QUANTILE) < 0.015
    many = [draws.lognormvariate(mu, sigma) for _ in range(5000)]
    assert abs(predicted_fast(many) / true_fast - 1.0) < 0.03
    assert math.isclose(predicted_fast([0.02] * 7), 0.02, rel_tol=1e-6)  # constant: that time


def test_predictions_follow_a_task_that_changed_within_three_samples():
    # The first faster sample widens the fit (its fast quantile near 0): the next ones are
    # judged by the band from before the streak began.
    (task,) = states({'name': 'slow_start', 'worker_options': {'latency_ms': 2}})
    task.set_expected(0.002)
    for _ in range(10):
        task.record_service(0.100)
    assert task.predicted_s == 0.100 and math.isclose(task.fast_s, 0.100)
    for _ in range(3):
        task.record_service(0.002)
    assert task.predicted_s < 0.01
    # The same times a hair apart (clock and float noise) are no change at all.
    (steady,) = states({'name': 'steady'})
    for index in range(20):
        steady.record_service(0.05 + (1e-12 if index % 2 else -1e-12))
    assert math.isclose(steady.fast_s, 0.05) and steady.predicted_s <= 0.05 + 1e-9


def test_before_enough_samples_the_high_prediction_is_the_slowest_seen():
    (task,) = states({'name': 'early'})
    task.set_expected(0.050)
    task.record_service(0.080)
    assert task.predicted_s == 0.080  # not the guess: a job as slow has been seen
    task.record_service(0.030)
    assert task.predicted_s == 0.080 and task.median_s == 0.050  # the guess until 5 samples


def test_the_hold_expects_a_frame_at_its_stamp_plus_the_smallest_recent_age():
    (task,) = states({'name': 'camera_task', 'latency_budget_ms': 100})
    # Taken every 100 ms; transport ages 2 to 9 ms.
    for index, age in enumerate((0.009, 0.002, 0.005, 0.008)):
        task.count_routed(index * 0.1 + age, age, 'camera')
    arrival, deadline = task.next_expected_frame(0.31)
    assert math.isclose(arrival, 0.4 + 0.002) and math.isclose(deadline, 0.4 + 0.1)


def test_hold_probes_of_a_noisy_task_do_not_cost_the_higher_task_its_frames():
    # A 153 +- 38 ms task under a 102 ms one whose 5 Hz frames leave it room only when it runs
    # short: its measured p95 holds it, and its mean (the worker's guess) would not. Probes
    # that ended within the measured band used to count as disputing it: a probe every 3 held
    # frames, each a coin toss for the higher task's next frame (83 of 100 within budget).
    def task(name, priority, budget, mean, spread, seed):
        return {'name': name, 'priority': priority, 'latency_budget_ms': budget,
                'queue_size': 1, 'worker_options': {'latency_ms': mean, 'jitter_ms': spread,
                                                    'distribution': 'lognormal', 'seed': seed}}
    config = {'orchestrator': {'telemetry': {'resources': False},
                               'shedding': {'enabled': False}},
              'inputs': {'camera': {'rate_hz': 5.0, 'age_ms': 1.0}},
              'tasks': [task('top', 3, 205.0, 102.0, 0.0, 1),
                        task('noisy', 2, 410.0, 153.0, 38.0, 2),
                        task('short', 1, 410.0, 45.0, 0.0, 3)]}
    tasks = Simulation(config).run(periodic_trace(['camera'], 100, 0.2), 20.5)['final']['tasks']
    assert tasks['top']['completed_within_budget'] >= 97
    assert tasks['noisy']['executed'] > 0 and tasks['noisy']['held_for_priority'] > 0
