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
Scheduling rules on random noisy scenarios under the virtual clock (hypothesis, derandomized).

A scenario: 3-5 tasks on one slot, one or two inputs at 5-30 Hz with lognormal transport ages,
lognormal service times scaled to a total utilisation of 0.5-2.0, random priorities, queue
sizes and budgets. Each is run twice, with on_deadline drop and run, and must keep:
- both accounting invariants at every snapshot;
- with shedding off (so that only the drop predictor differs), within-budget frames with drop
  >= 0.98 x with run, in total or task by task in priority order: a frame the drop predictor
  throws away had a small chance, and the slot time it frees must buy more frames than those
  chances were worth, in all or for a task of higher priority (strict priorities let a lower
  task pay for a higher one's gain);
- overloaded, drop mode starts at most half as many stale jobs as run mode (a job that could
  no longer make its deadline when it started, even with a fast run: wasted work);
- shedding never costs the highest-priority task within-budget frames;
- no task starves by its own predicted_late drops: alone on the slot, with a budget above its
  median service time, it starts a job in every 2 s;
- light load (utilisation <= 0.7, budgets and queues that hold one job of every task):
  no shedding decision, and every task executes >= 95% of its frames.

The examples are derandomized (the same in every run); PROPERTY_SEED=N draws others:
    PROPERTY_SEED=7 python3 -m pytest test/test_scheduling_properties.py
"""

import math
import os
import tempfile

from hypothesis import given
from hypothesis import strategies as st
from inferedge_orchestrator import draws
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.telemetry.job_trace import read_trace, TraceRecorder
from inferedge_orchestrator.tools.simulation import Simulation

from .property_settings import p99_ms, property_test

SECONDS = 8.0


@st.composite
def scenarios(draw, light=False):
    inputs = {}
    for name in ('a', 'b')[:draw(st.integers(1, 2))]:
        inputs[name] = {'rate_hz': draw(st.sampled_from([5.0, 10.0, 15.0, 20.0, 30.0])),
                        'age_ms': draw(st.floats(1.0, 10.0)),
                        'age_jitter_ms': draw(st.floats(0.0, 4.0)),
                        'age_distribution': 'lognormal'}
    count = draw(st.integers(3, 5))
    load = draw(st.floats(0.5, 0.7) if light else st.floats(0.5, 2.0))
    weights = [draw(st.floats(0.2, 1.0)) for _ in range(count)]
    priorities = draw(st.lists(st.integers(1, 99), min_size=count, max_size=count, unique=True))
    tasks = []
    for index in range(count):
        name = draw(st.sampled_from(sorted(inputs)))
        mean = 1000.0 * load * weights[index] / sum(weights) / inputs[name]['rate_hz']
        tasks.append({'name': f't{index}', 'inputs': [name], 'priority': priorities[index],
                      'queue_size': draw(st.integers(1, 4)),
                      'worker_options': {'latency_ms': mean,
                                         'jitter_ms': mean * draw(st.floats(0.0, 0.4)),
                                         'distribution': 'lognormal', 'seed': index}})
    # One job of every task, at its p99, and the transport age: the longest a frame plausibly
    # waits and runs under non-preemptive priorities when nothing is overloaded.
    round_ms = sum(p99_ms(t['worker_options']['latency_ms'], t['worker_options']['jitter_ms'])
                   for t in tasks)
    round_ms += max(p99_ms(i['age_ms'], i['age_jitter_ms']) for i in inputs.values())
    for task in tasks:
        own = p99_ms(task['worker_options']['latency_ms'], task['worker_options']['jitter_ms'])
        if light:
            # Above the round within shedding's p95 bound (0.8 of the budget), by 1% at least:
            # exactly at it, float noise decides (a tie found on another seed).
            task['latency_budget_ms'] = round_ms / 0.8 * draw(st.floats(1.01, 2.0))
            interval = 1000.0 / inputs[task['inputs'][0]]['rate_hz']
            task['queue_size'] = min(8, math.ceil(round_ms / interval) + 1)
        else:
            task['latency_budget_ms'] = max(1.2 * own, draw(st.floats(0.5, 2.0)) * round_ms)
    config = {'orchestrator': {'pools': {'cpu': {'slots': 1}},
                               'telemetry': {'resources': False, 'period_s': 0.5}},
              'inputs': inputs, 'tasks': tasks}
    return config, load


def arrivals(config):
    trace = []
    for name, spec in config['inputs'].items():
        trace += [(i / spec['rate_hz'], name) for i in range(int(SECONDS * spec['rate_hz']))]
    return sorted(trace)


def run(config, on_deadline, trace_path=None):
    config = dict(config, tasks=[dict(t, on_deadline=on_deadline) for t in config['tasks']])
    trace = TraceRecorder(trace_path) if trace_path else None
    snapshots = []
    report = Simulation(config, trace=trace).run(arrivals(config), SECONDS + 1.0,
                                                 snapshot_every=0.5,
                                                 on_snapshot=snapshots.append)
    if trace is not None:
        trace.close()
    return report, snapshots


def within(report, name=None):
    tasks = report['final']['tasks']
    return sum(t['completed_within_budget'] for n, t in tasks.items() if name in (None, n))


def not_worse(config, first, second):
    """
    Whether first has >= 0.98 x the within-budget frames of second, in total or by priority.

    By priority: tasks are compared from the highest priority down; a task with fewer than
    0.98 x the other's (a count, so rounded down) fails, unless a higher-priority task already
    got more (strict priorities: a lower-priority task may pay for a higher-priority one's
    gain). In total: all tasks' within-budget frames together.
    """
    if within(first) >= math.floor(0.98 * within(second)):
        return True
    for task in sorted(config['tasks'], key=lambda t: -t['priority']):
        mine, theirs = within(first, task['name']), within(second, task['name'])
        if mine > theirs:
            return True
        if mine < math.floor(0.98 * theirs):
            return False
    return True


def stale_starts(config, path):
    """
    Count the jobs that started when they could no longer make their deadline.

    That is: even a fast run (the 5th percentile of the task's service-time distribution)
    from the job's start would end after the frame's deadline. Such a job is wasted work;
    a frame that started in time and merely ran long is not counted.
    """
    fast = {t['name']: draws.sample(t['worker_options']['distribution'],
                                    t['worker_options']['latency_ms'],
                                    t['worker_options']['jitter_ms'], 0.05) / 1000.0
            for t in config['tasks']}
    budget = {t['name']: t['latency_budget_ms'] / 1000.0 for t in config['tasks']}
    return sum(1 for r in read_trace(path) if r['start'] is not None and
               r['start'] + fast[r['task']] > r['arrival'] - r['age'] + budget[r['task']])


def idle_windows(config, task, window_s=2.0):
    """
    Return the windows of window_s in which task, alone on the slot, started no job.

    Alone, nothing else can delay it: a gap is its own predictions' doing (a predicted_late
    latch), which the probes must prevent when its budget exceeds its median service time.
    """
    alone = dict(config, tasks=[dict(task, on_deadline='drop')])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'alone.jsonl')
        trace = TraceRecorder(path)
        Simulation(alone, trace=trace).run(arrivals(alone), SECONDS)
        trace.close()
        starts = sorted(r['start'] for r in read_trace(path) if r['start'] is not None)
    edges = [0.0] + starts + [SECONDS]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b - a > window_s]


@property_test
@given(scenarios())
def test_drop_mode_keeps_what_run_mode_makes_and_runs_fewer_late_frames(scenario):
    config, load = scenario
    config = dict(config, orchestrator=dict(config['orchestrator'],
                                            shedding={'enabled': False}))
    with tempfile.TemporaryDirectory() as folder:
        paths = [os.path.join(folder, f'{mode}.jsonl') for mode in ('drop', 'run')]
        dropping, snapshots = run(config, 'drop', paths[0])
        running, _ = run(config, 'run', paths[1])
        stale = [stale_starts(config, path) for path in paths]
    for snapshot in snapshots:
        assert check_invariants(snapshot) == []
    assert dropping['invariant_violations'] == running['invariant_violations'] == []
    assert not_worse(config, dropping, running)
    if load > 1.0 and stale[1] >= 10:
        assert stale[0] <= 0.5 * stale[1]


@property_test
@given(scenarios())
def test_shedding_never_costs_the_highest_priority_task(scenario):
    config, _ = scenario
    top = max(config['tasks'], key=lambda t: t['priority'])['name']
    shedding = {}
    for enabled in (True, False):
        changed = dict(config, orchestrator=dict(config['orchestrator'],
                                                 shedding={'enabled': enabled}))
        shedding[enabled] = run(changed, 'drop')[0]
    assert within(shedding[True], top) >= math.floor(0.98 * within(shedding[False], top))


@property_test
@given(scenarios())
def test_no_task_is_starved_by_its_own_predicted_late_drops(scenario):
    config, _ = scenario
    for task in config['tasks']:
        if task['latency_budget_ms'] > task['worker_options']['latency_ms']:
            assert idle_windows(config, task) == [], task


@property_test
@given(scenarios(light=True))
def test_light_load_sheds_nothing_and_runs_nearly_every_frame(scenario):
    config, _ = scenario
    report, snapshots = run(config, 'drop')
    assert report['final']['decisions']['by_event'][reasons.SHED_START] == 0
    for name, task in report['final']['tasks'].items():
        assert task['executed'] >= 0.95 * task['routed'], (name, task['dropped_by_reason'])
    for snapshot in snapshots:
        assert check_invariants(snapshot) == []
