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
A task slower than its whole budget is probed, not latched: no predicted_late latch.

Seen with the real models on a loaded machine: once the detector's predicted service time
exceeded what was left of its budget, every frame was dropped as predicted_late on arrival, so
no new measurement could ever bring the prediction down. Now, after PROBE_AFTER consecutive
predicted_late drops, the task's next frame runs anyway and is measured.
"""

from inferedge_orchestrator_ros import reasons
from inferedge_orchestrator_ros.job_trace import read_trace, TraceRecorder
from inferedge_orchestrator_ros.scheduler import PROBE_AFTER
from inferedge_orchestrator_ros.simulation import periodic_trace, Simulation


def config(latency_ms, budget_ms):
    return {
        'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'priority': 100, 'latency_budget_ms': budget_ms,
                   'queue_size': 2, 'worker_options': {'latency_ms': latency_ms}}],
    }


def longest_predicted_late_run(path):
    """Return the most predicted_late drops in a row of the detector, in stamp order."""
    outcomes = sorted((r['seq'], r['reason']) for r in read_trace(path))
    longest = run = 0
    for _, reason in outcomes:
        run = run + 1 if reason == reasons.PREDICTED_LATE else 0
        longest = max(longest, run)
    return longest


def test_a_task_predicted_slower_than_its_budget_runs_one_frame_in_four(tmp_path):
    # 60 ms of work per frame against a 50 ms budget, a frame every 100 ms: every frame is
    # predicted late, so 3 are dropped and the 4th runs (late) and is measured.
    trace = TraceRecorder(str(tmp_path / 'trace.jsonl'))
    report = Simulation(config(60.0, 50.0), trace=trace).run(
        periodic_trace(['camera'], 50, 0.1), 5.5)
    trace.close()
    task = report['final']['tasks']['detector']
    assert task['executed'] == 50 // (PROBE_AFTER + 1)
    assert task['completed_within_budget'] == 0
    assert task['dropped_by_reason'] == {reasons.PREDICTED_LATE: 50 - task['executed']}
    assert longest_predicted_late_run(trace.path) == PROBE_AFTER
    assert report['invariant_violations'] == []


def test_after_a_slow_spell_the_probes_bring_the_prediction_back(tmp_path):
    # 60 ms per frame for the first 20 frames, then 20 ms; budget 50 ms, a frame every 100 ms.
    simulation = Simulation(config(60.0, 50.0), service_time=lambda job: (
        0.060 if job.frame.seq <= 20 else 0.020))
    outcomes = {}
    simulation._on_result = lambda result: outcomes.setdefault(result.seq, result)
    report = simulation.run(periodic_trace(['camera'], 60, 0.1), 6.5)
    task = report['final']['tasks']['detector']
    assert task['executed'] >= 60 - 20 - 2 * (PROBE_AFTER + 1)
    assert all(outcomes[seq].deadline_met for seq in range(40, 61))
    assert task['completed_within_budget'] >= 60 - 20 - 2 * (PROBE_AFTER + 1)


def test_frames_of_a_hopeless_task_that_wait_past_their_deadline_expire():
    # 120 ms of work, a frame every 50 ms, budget 100 ms: probes run; frames queued behind a
    # running probe are predicted late, and none waits past its deadline.
    report = Simulation(config(120.0, 100.0)).run(periodic_trace(['camera'], 50, 0.05), 3.0)
    task = report['final']['tasks']['detector']
    assert task['executed'] == 50 // (PROBE_AFTER + 1)
    assert set(task['dropped_by_reason']) <= {reasons.PREDICTED_LATE, reasons.EXPIRED}
    assert report['invariant_violations'] == []


def test_a_feasible_prediction_still_sheds_frames_that_would_be_late():
    # 40 ms of work, budget 50 ms, two frames at once: the second would end at 80 ms.
    trace = [(0.0, 'camera'), (0.0, 'camera')]
    report = Simulation(config(40.0, 50.0)).run(trace, 1.0)
    task = report['final']['tasks']['detector']
    assert task['executed'] == 1
    assert task['dropped_by_reason'] == {reasons.PREDICTED_LATE: 1}
