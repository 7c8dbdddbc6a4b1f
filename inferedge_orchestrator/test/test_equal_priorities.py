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
Tasks of one priority under sustained overload share the slots fairly (virtual clock).

A robot with several cameras runs one detector task per camera, all of one priority. A
scenario: 2 to 8 such tasks (one camera each, the same rate, budget, queue and lognormal
service time), one or two slots, an overload of 1.2x to 4x, cameras in step or at random
phases, lognormal transport ages. Each must keep:
- every task with frames routed executes some;
- Jain's fairness index over the tasks' within-budget frames >= 0.98;
- the level's within-budget frames >= 90% of what its slots can run in the same time (the
  tasks' own service draws back to back: the capacity);
- executed frames that end after their deadline <= 5% of those executed (wasted work);
- both accounting invariants.

The examples are derandomized; PROPERTY_SEED=N draws others (docs/scheduling.md lists the
seeds run).
"""

from hypothesis import given
from hypothesis import strategies as st
from inferedge_orchestrator import draws
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.tools.simulation import Simulation

from .property_settings import p99_ms, property_test

SECONDS = 20.0


def camera_level(cameras, rate_hz, budget_ms, queue_size, latency_ms, jitter_ms, slots=1,
                 age_ms=5.0, age_jitter_ms=2.0):
    """Return a config of one detector task per camera, all at priority 100."""
    inputs = {f'cam{index}': {'rate_hz': rate_hz, 'age_ms': age_ms,
                              'age_jitter_ms': age_jitter_ms, 'age_distribution': 'lognormal'}
              for index in range(cameras)}
    tasks = [{'name': f'detector_{name}', 'inputs': [name], 'priority': 100,
              'latency_budget_ms': budget_ms, 'queue_size': queue_size,
              'worker_options': {'latency_ms': latency_ms, 'jitter_ms': jitter_ms,
                                 'distribution': 'lognormal'}}
             for name in inputs]
    return {'orchestrator': {'pools': {'cpu': {'slots': slots}},
                             'telemetry': {'resources': False, 'period_s': 1.0}},
            'inputs': inputs, 'tasks': tasks}


def camera_arrivals(config, seconds, phases=None):
    """Every camera's frames at its rate, shifted by its phase (s; default: all in step)."""
    trace = []
    for index, (name, spec) in enumerate(config['inputs'].items()):
        phase = phases[index] if phases else 0.0
        trace += [(phase + i / spec['rate_hz'], name)
                  for i in range(int(seconds * spec['rate_hz']))]
    return sorted(trace)


def capacity(config, seconds):
    """
    Return how many frames the pool's slots can run in seconds, back to back.

    The service times are the first task's own draws (the dummy's: its seed, its name, frame
    sequence 1, 2, ...), shared out over the slots.
    """
    task = config['tasks'][0]
    options = task['worker_options']
    key = draws.name_key(task['name'])
    slot_time = seconds * config['orchestrator']['pools']['cpu']['slots']
    total, count = 0.0, 0
    while True:
        u = draws.unit(options.get('seed', 0), key, count + 1)
        total += draws.sample('lognormal', options['latency_ms'], options['jitter_ms'],
                              u) / 1000.0
        if total > slot_time:
            return count
        count += 1


def jain(values):
    """Return Jain's fairness index of values (1: all equal; 1/n: one gets everything)."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 1.0


def simulate(config, seconds, phases=None):
    snapshots = []
    report = Simulation(config).run(camera_arrivals(config, seconds, phases), seconds,
                                    snapshot_every=1.0, on_snapshot=snapshots.append)
    return report, snapshots


def check_level(config, seconds, report, snapshots):
    """Assert the properties of the module docstring; return the figures."""
    tasks = report['final']['tasks']
    within = [t['completed_within_budget'] for t in tasks.values()]
    executed = sum(t['executed'] for t in tasks.values())
    figures = {'within': within, 'executed': executed, 'capacity': capacity(config, seconds),
               'jain': jain(within)}
    for snapshot in snapshots:
        assert check_invariants(snapshot) == []
    assert report['invariant_violations'] == []
    for name, task in tasks.items():
        assert task['routed'] == 0 or task['executed'] > 0, (name, figures)
    assert figures['jain'] >= 0.98, figures
    assert sum(within) >= 0.9 * figures['capacity'], figures
    assert executed - sum(within) <= 0.05 * executed, figures
    return figures


def draw_overload(draw, build):
    """
    Draw an overloaded scenario of 2 to 8 identical cameras; return (build(...), phases).

    build(cameras, rate_hz, budget_ms, queue_size, latency_ms, jitter_ms, slots, age_ms,
    age_jitter_ms) makes the config: one task per camera, or one task over them all.
    """
    cameras = draw(st.integers(2, 8))
    slots = draw(st.integers(1, 2))
    rate = draw(st.sampled_from([10.0, 15.0, 20.0, 30.0]))
    overload = draw(st.floats(1.2, 4.0))
    latency = 1000.0 * overload * slots / (cameras * rate)
    jitter = latency * draw(st.floats(0.05, 0.3))
    age, age_jitter = draw(st.floats(1.0, 10.0)), draw(st.floats(0.0, 4.0))
    # Room for a job after the transport and one frame interval: a frame that can still make
    # it is then always queued or on its way, so the slots can be kept busy with such frames.
    budget = (p99_ms(latency, jitter) + p99_ms(age, age_jitter) + 1000.0 / rate) * \
        draw(st.floats(1.0, 2.0))
    config = build(cameras, rate, budget, draw(st.integers(1, 4)), latency, jitter, slots, age,
                   age_jitter)
    phases = None
    if draw(st.booleans()):  # cameras at random phases; in step otherwise
        phases = [draw(st.floats(0.0, 1.0 / rate)) for _ in range(cameras)]
    return config, phases


@st.composite
def overloaded_levels(draw):
    return draw_overload(draw, camera_level)


@property_test
@given(overloaded_levels())
def test_tasks_of_one_priority_share_an_overloaded_pool_fairly(scenario):
    config, phases = scenario
    report, snapshots = simulate(config, SECONDS, phases)
    check_level(config, SECONDS, report, snapshots)


@st.composite
def mixed_levels(draw):
    """Draw a level of 2 to 8 tasks of one priority that differ in rate, service and budget."""
    count = draw(st.integers(2, 8))
    slots = draw(st.integers(1, 2))
    overload = draw(st.floats(1.2, 4.0))
    rates = [draw(st.sampled_from([5.0, 10.0, 15.0, 20.0, 30.0])) for _ in range(count)]
    weights = [draw(st.floats(0.2, 1.0)) for _ in range(count)]
    inputs, tasks = {}, []
    for index, (rate, weight) in enumerate(zip(rates, weights)):
        latency = 1000.0 * overload * slots * weight / sum(weights) / rate
        jitter = latency * draw(st.floats(0.05, 0.3))
        age, age_jitter = draw(st.floats(1.0, 10.0)), draw(st.floats(0.0, 4.0))
        inputs[f'cam{index}'] = {'rate_hz': rate, 'age_ms': age, 'age_jitter_ms': age_jitter,
                                 'age_distribution': 'lognormal'}
        budget = (p99_ms(latency, jitter) + p99_ms(age, age_jitter) + 1000.0 / rate) * \
            draw(st.floats(1.0, 2.0))
        tasks.append({'name': f'task{index}', 'inputs': [f'cam{index}'], 'priority': 100,
                      'latency_budget_ms': budget, 'queue_size': draw(st.integers(1, 4)),
                      'worker_options': {'latency_ms': latency, 'jitter_ms': jitter,
                                         'distribution': 'lognormal', 'seed': index}})
    return {'orchestrator': {'pools': {'cpu': {'slots': slots}},
                             'telemetry': {'resources': False, 'period_s': 1.0}},
            'inputs': inputs, 'tasks': tasks}


@property_test
@given(mixed_levels())
def test_no_task_of_a_level_starves_and_few_jobs_run_late(config):
    report, snapshots = simulate(config, SECONDS, phases=[i / 97.0 for i in range(8)])
    for snapshot in snapshots:
        assert check_invariants(snapshot) == []
    tasks = report['final']['tasks']
    executed = sum(t['executed'] for t in tasks.values())
    within = sum(t['completed_within_budget'] for t in tasks.values())
    for name, task in tasks.items():
        assert task['executed'] > 0, (name, task['dropped_by_reason'])
    assert executed - within <= 0.05 * executed, (executed, within)


def test_four_cameras_in_step_each_get_their_share():
    """The issue's case: 4 x 15 Hz, 55 +- 12 ms on one slot, budget 150 ms, queues of 2."""
    seconds = 60.0
    config = camera_level(4, 15.0, 150.0, 2, 55.0, 12.0)
    report, snapshots = simulate(config, seconds)
    figures = check_level(config, seconds, report, snapshots)
    # Before the fix: 696, 56, 0 and 1 within budget (Jain 0.29), 30% of the executed late.
    assert min(figures['within']) >= 0.9 * max(figures['within']), figures
