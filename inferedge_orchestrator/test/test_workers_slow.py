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
no new measurement could ever bring the prediction down. Now, after PROBE_AFTER predicted_late
drops, the task's next frame runs anyway and is measured; probes that confirm the prediction
are spaced out (one budget, doubling, at most PROBE_INTERVAL_MAX_S apart).
"""

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.scheduling.service import MIN_SAMPLES
from inferedge_orchestrator.scheduling.task import PROBE_AFTER, PROBE_INTERVAL_MAX_S
from inferedge_orchestrator.telemetry.job_trace import read_trace, TraceRecorder
from inferedge_orchestrator.tools.simulation import periodic_trace, Simulation

MEASURED = 4 * MIN_SAMPLES  # frames that measure a service time well


def config(latency_ms, budget_ms):
    return {
        'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'priority': 100, 'latency_budget_ms': budget_ms,
                   'queue_size': 2, 'worker_options': {'latency_ms': latency_ms}}],
    }


def traced(tmp_path, cfg, trace, until, **simulation):
    recorder = TraceRecorder(str(tmp_path / 'trace.jsonl'))
    report = Simulation(cfg, trace=recorder, **simulation).run(trace, until)
    recorder.close()
    return report, sorted(read_trace(recorder.path), key=lambda r: r['seq'])


def longest_gap_between_jobs(records):
    starts = [r['start'] for r in records if r['start'] is not None]
    return max(b - a for a, b in zip(starts, starts[1:]))


def test_a_task_slower_than_its_budget_keeps_being_measured(tmp_path):
    # 60 ms of work per frame against a 50 ms budget, a frame every 100 ms: the first
    # MIN_SAMPLES frames run (nothing is measured yet), then every frame is predicted late;
    # after PROBE_AFTER drops one runs anyway, and while the probes end late they are spaced
    # out, at most PROBE_INTERVAL_MAX_S apart.
    report, records = traced(tmp_path, config(60.0, 50.0), periodic_trace(['camera'], 100, 0.1),
                             10.5)
    task = report['final']['tasks']['detector']
    assert task['completed_within_budget'] == 0
    assert set(task['dropped_by_reason']) == {reasons.PREDICTED_LATE}
    assert MIN_SAMPLES + 5 <= task['executed'] <= MIN_SAMPLES + 15  # probes, not every frame
    assert longest_gap_between_jobs(records) <= PROBE_INTERVAL_MAX_S + (PROBE_AFTER + 1) * 0.1
    assert report['invariant_violations'] == []


def test_after_a_slow_spell_the_probes_bring_the_prediction_back():
    # 60 ms per frame for the first 30 frames, then 20 ms; budget 50 ms, a frame every 100 ms.
    simulation = Simulation(config(60.0, 50.0), service_time=lambda job: (
        0.060 if job.frame.seq <= 30 else 0.020))
    outcomes = {}
    simulation._on_result = lambda result: outcomes.setdefault(result.seq, result)
    report = simulation.run(periodic_trace(['camera'], 80, 0.1), 8.5)
    # The first probe after the spell ends within budget: from then on every frame runs.
    recovered = min(seq for seq, result in outcomes.items() if seq > 30)
    assert recovered <= 30 + PROBE_AFTER + 1 + int(PROBE_INTERVAL_MAX_S / 0.1)
    assert all(seq in outcomes and outcomes[seq].deadline_met for seq in range(recovered, 81))
    assert report['final']['tasks']['detector']['completed_within_budget'] == 81 - recovered


def test_frames_of_a_hopeless_task_go_as_predicted_late_not_after_waiting(tmp_path):
    # 120 ms of work, a frame every 50 ms, budget 100 ms: once measured, frames are dropped
    # when they arrive instead of waiting in the queue until they expire.
    report, records = traced(tmp_path, config(120.0, 100.0),
                             periodic_trace(['camera'], 100, 0.05), 5.5)
    task = report['final']['tasks']['detector']
    assert task['dropped_by_reason'].get(reasons.PREDICTED_LATE, 0) > 60
    late = [r for r in records if r['seq'] > 2 * MEASURED and r['outcome'] == 'DROPPED']
    assert late and {r['reason'] for r in late} == {reasons.PREDICTED_LATE}
    assert report['invariant_violations'] == []


def test_a_measured_task_sheds_a_frame_that_would_end_late():
    # 40 ms of work, budget 50 ms: measured on MEASURED frames 100 ms apart, then two
    # frames at once: the second would end at 80 ms.
    start = MEASURED * 0.1
    trace = periodic_trace(['camera'], MEASURED, 0.1) + [(start, 'camera'), (start, 'camera')]
    report = Simulation(config(40.0, 50.0)).run(trace, start + 1.0)
    task = report['final']['tasks']['detector']
    assert task['executed'] == MEASURED + 1
    assert task['dropped_by_reason'] == {reasons.PREDICTED_LATE: 1}
