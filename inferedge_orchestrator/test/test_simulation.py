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

"""The engine under the virtual clock: acceptance scenarios, determinism, invariants."""

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.tools.simulation import compare_overload
from inferedge_orchestrator.tools.simulation import periodic_trace
from inferedge_orchestrator.tools.simulation import Simulation
import pytest

from .conftest import two_tasks


def test_phase3_overload_acceptance(example_path):
    result = compare_overload(example_path('prototype', 'phase3_overload.json'), 200)
    orchestrated = result['modes']['priority']['tasks']
    fifo = result['modes']['fifo']['tasks']
    detector = orchestrated['detector']
    assert detector['executed'] == 200 and detector['dropped'] == 0
    assert detector['max_ms'] <= 60.0
    assert fifo['detector']['p95_ms'] >= 4 * detector['p95_ms']
    assert orchestrated['classifier']['completed_within_budget'] >= 5
    for mode in result['modes'].values():
        assert mode['invariant_violations'] == []


def test_phase3_with_tight_detector_budget():
    result = compare_overload(two_tasks(40.0), 200)
    tasks = result['modes']['priority']['tasks']
    assert tasks['detector']['dropped'] == 0
    assert tasks['classifier']['completed_within_budget'] >= 3


@pytest.mark.parametrize('mode', ['fifo', 'priority'])
def test_timers_do_not_flood_the_event_queue(mode):
    simulation = Simulation(two_tasks(mode=mode))
    simulation.run(periodic_trace(['camera'], 100, 0.01), 1.25)
    # arrivals + completions + a few timers per frame, not one wake-up per microsecond
    assert simulation.events_processed < 100 * 6


def test_fifo_has_no_expiry_no_shedding_no_hold():
    result = compare_overload(two_tasks(), 200)
    fifo = result['modes']['fifo']
    for task in fifo['tasks'].values():
        assert set(task['dropped_by_reason']) <= {'queue_overflow'}
        assert task['held_for_priority'] == 0
    assert fifo['decisions']['by_event']['SHED_START'] == 0


def test_same_config_and_trace_give_the_same_report():
    trace = periodic_trace(['camera'], 300, 0.007)
    config = two_tasks()
    config['tasks'][1]['worker_options'].update(jitter_ms=10.0, distribution='lognormal',
                                                seed=3)
    first = Simulation(config).run(trace, 2.5)
    second = Simulation(config).run(trace, 2.5)
    assert first == second
    assert first['final']['tasks']['classifier']['executed'] > 0


def test_shedding_limits_then_recovers():
    config = two_tasks()
    decisions = []
    simulation = Simulation(config)
    simulation.engine.decisions._on_decision = decisions.append
    trace = periodic_trace(['camera'], 200, 0.01)  # 2 s of overload, then 8 s of nothing
    report = simulation.run(trace + [(2.0 + i * 0.2, 'camera') for i in range(40)], 10.0)
    events = [d.event for d in decisions]
    assert 'SHED_START' in events and 'LIMIT' in events and 'SHED_STOP' in events
    start = next(d for d in decisions if d.event == 'SHED_START')
    assert start.task == 'classifier' and start.protected_task == 'detector'
    assert start.reason in ('backlog', 'expired', 'predicted_late', 'deadline_miss',
                            'latency_p95')
    assert report['final']['shedding']['active'] is False
    drops = [d for d in decisions if d.event == 'DROP']
    assert drops and all(d.count > 0 for d in drops)


@st.composite
def scenarios(draw):
    count = draw(st.integers(1, 4))
    tasks = []
    for index in range(count):
        tasks.append({
            'name': f't{index}',
            'inputs': [draw(st.sampled_from(['a', 'b']))],
            'priority': draw(st.integers(0, 5)),
            'latency_budget_ms': draw(st.floats(5.0, 300.0)),
            'queue_size': draw(st.integers(1, 6)),
            'drop_policy': draw(st.sampled_from(['drop_oldest', 'drop_newest'])),
            'order': draw(st.sampled_from(['oldest_first', 'newest_first'])),
            'max_rate_hz': draw(st.sampled_from([0.0, 20.0])),
            'min_rate_hz': draw(st.sampled_from([0.0, 5.0])),
            'on_deadline': draw(st.sampled_from(['drop', 'run'])),
            'enabled': draw(st.booleans()) or index == 0,
            'timeout_ms': draw(st.sampled_from([0.0, 30.0])),
            'worker_options': {'latency_ms': draw(st.floats(0.5, 40.0)),
                               'jitter_ms': draw(st.floats(0.0, 20.0)),
                               'distribution': 'uniform', 'seed': index},
        })
    config = {'orchestrator': {'mode': draw(st.sampled_from(['priority', 'fifo'])),
                               'pools': {'cpu': {'slots': draw(st.integers(1, 2))}},
                               'shedding': {'backlog_threshold': draw(st.integers(0, 6))},
                               'telemetry': {'period_s': 0.2}},
              'inputs': {'a': {}, 'b': {}},  # an input no task reads still counts frames
              'tasks': tasks}
    times = draw(st.lists(st.floats(0.0, 1.5), min_size=1, max_size=150))
    trace = sorted((t, draw(st.sampled_from(['a', 'b']))) for t in times)
    return config, trace


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_invariants_hold_at_every_snapshot(scenario):
    config, trace = scenario
    snapshots = []
    simulation = Simulation(config)
    report = simulation.run(trace, 2.0, snapshot_every=0.05, on_snapshot=snapshots.append)
    assert len(snapshots) >= 30
    for snapshot in snapshots:
        assert check_invariants(snapshot) == []
    assert report['invariant_violations'] == []
    final = report['final']
    assert sum(i['received'] for i in final['inputs'].values()) == len(trace)
