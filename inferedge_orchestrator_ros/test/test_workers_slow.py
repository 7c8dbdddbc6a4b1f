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
A worker slower than its task's whole budget keeps running: no predicted_late latch.

Seen with the real models on a loaded machine: once the detector's predicted service time
(p95 of its recent service times) exceeded its budget, every frame was dropped as
predicted_late on arrival, so no new measurement could ever bring the prediction down.
"""

from inferedge_orchestrator_ros import reasons
from inferedge_orchestrator_ros.simulation import periodic_trace, Simulation


def config(latency_ms, budget_ms):
    return {
        'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'priority': 100, 'latency_budget_ms': budget_ms,
                   'queue_size': 2, 'worker_options': {'latency_ms': latency_ms}}],
    }


def test_a_task_predicted_slower_than_its_budget_still_runs_its_frames():
    # 60 ms of work per frame against a 50 ms budget, a frame every 100 ms: each frame can
    # run at once (late); none may be shed as predicted_late for ever.
    report = Simulation(config(60.0, 50.0)).run(periodic_trace(['camera'], 50, 0.1), 5.0)
    task = report['final']['tasks']['detector']
    assert task['executed'] == 50
    assert task['completed_within_budget'] == 0
    assert reasons.PREDICTED_LATE not in task['dropped_by_reason']
    assert report['invariant_violations'] == []


def test_frames_that_wait_past_their_deadline_are_still_dropped_as_expired():
    # 120 ms of work, a frame every 50 ms: the queue fills; waiting frames expire.
    report = Simulation(config(120.0, 100.0)).run(periodic_trace(['camera'], 50, 0.05), 3.0)
    task = report['final']['tasks']['detector']
    assert 15 <= task['executed'] <= 22
    assert task['dropped_by_reason'].get(reasons.EXPIRED, 0) > 0
    assert reasons.PREDICTED_LATE not in task['dropped_by_reason']
    assert report['invariant_violations'] == []


def test_a_feasible_prediction_still_sheds_frames_that_would_be_late():
    # 40 ms of work, budget 50 ms, two frames at once: the second would end at 80 ms.
    trace = [(0.0, 'camera'), (0.0, 'camera')]
    report = Simulation(config(40.0, 50.0)).run(trace, 1.0)
    task = report['final']['tasks']['detector']
    assert task['executed'] == 1
    assert task['dropped_by_reason'] == {reasons.PREDICTED_LATE: 1}
