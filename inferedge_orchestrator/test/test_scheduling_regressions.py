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
The two failures seen with the real models, replayed under the virtual clock with noise.

The three rapidocr models on one cpu slot, as dummies of their measured speeds: detector
(priority 100) lognormal 56 +- 12 ms, classifier (50, 300 ms budget) 2 +- 0.5 ms, recognizer
(10, 500 ms) 20 +- 5 ms; a camera whose frames arrive after a lognormal 7 +- 3 ms transport age.
1. Detector budget 80 ms at 15 fps: the p95 of its service time (~78 ms) exceeds what is left
   of its budget after transport (~73 ms); the p95-based drop rule then dropped nearly every
   frame as predicted_late, for ever.
2. Detector budget 150 ms: at 10 fps all three fit and nothing may be shed (latency_p95 fired
   on the detector's own slow inference); at 15 fps the classifier, whose work costs almost
   nothing, was shed ahead of the recognizer.
"""

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.tools.simulation import periodic_trace, Simulation

SECONDS = 30.0


def rapidocr(budget_ms, fps, detector_only=False, on_deadline='drop'):
    def task(name, priority, budget, mean, spread, queue, seed):
        return {'name': name, 'priority': priority, 'latency_budget_ms': budget,
                'queue_size': queue, 'on_deadline': on_deadline,
                'worker_options': {'latency_ms': mean, 'jitter_ms': spread,
                                   'distribution': 'lognormal', 'seed': seed}}
    tasks = [task('detector', 100, budget_ms, 56.0, 12.0, 1, 1)]
    if not detector_only:
        tasks += [task('classifier', 50, 300.0, 2.0, 0.5, 2, 2),
                  task('recognizer', 10, 500.0, 20.0, 5.0, 2, 3)]
    return {'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
            'inputs': {'camera': {'rate_hz': fps, 'age_ms': 7.0, 'age_jitter_ms': 3.0,
                                  'age_distribution': 'lognormal'}},
            'tasks': tasks}


def simulate(config, fps):
    simulation = Simulation(config)
    frames = int(SECONDS * fps)
    return simulation.run(periodic_trace(['camera'], frames, 1.0 / fps), SECONDS + 0.5)


def test_an_80_ms_budget_with_transport_age_does_not_latch():
    report = simulate(rapidocr(80.0, 15.0), 15.0)
    alone = simulate(rapidocr(80.0, 15.0, detector_only=True, on_deadline='run'), 15.0)
    detector = report['final']['tasks']['detector']
    assert detector['predicted_service_ms'] > 80.0 - 7.0  # the old rule's latch condition
    assert detector['executed'] >= 0.9 * detector['routed']  # it was 160 of 705
    # Within budget: as many as the detector alone on the slot, running every frame.
    assert detector['completed_within_budget'] >= \
        0.98 * alone['final']['tasks']['detector']['completed_within_budget']
    assert report['invariant_violations'] == []


def test_when_all_three_fit_nothing_is_shed():
    report = simulate(rapidocr(150.0, 10.0), 10.0)
    assert report['final']['decisions']['by_event'][reasons.SHED_START] == 0
    for task in report['final']['tasks'].values():
        assert task['executed'] >= 0.95 * task['routed']


def test_the_cheap_classifier_is_never_limited_and_the_others_use_the_spare_time():
    report = simulate(rapidocr(150.0, 15.0), 15.0)
    alone = simulate(rapidocr(150.0, 15.0, detector_only=True, on_deadline='run'), 15.0)
    limited = {d['task'] for d in report['decisions'] if d['event'] == reasons.LIMIT}
    assert 'classifier' not in limited
    tasks = report['final']['tasks']
    assert tasks['detector']['completed_within_budget'] >= \
        0.97 * alone['final']['tasks']['detector']['completed_within_budget']
    # The slot time the detector leaves, used by the other two (in priority order).
    spare = SECONDS + 0.5 - tasks['detector']['busy_s']
    used = tasks['classifier']['busy_s'] + tasks['recognizer']['busy_s']
    assert used >= 0.5 * spare
    assert tasks['classifier']['executed'] >= tasks['recognizer']['executed']


def test_a_slow_start_does_not_hold_a_cheap_task_for_good():
    # Seen over ROS: the classifier's first runs took 108 ms (3 ms after), its measured p95
    # held it behind the detector on every frame, and no new measurement ever came. The
    # probes that its worker's own guess (2 ms) allows measure it again.
    def slow_start(job):
        if job.task.name == 'classifier' and job.frame.seq < 40:
            return 0.100
        return job.worker.simulated_service_time(job.frame)
    simulation = Simulation(rapidocr(150.0, 15.0), service_time=slow_start)
    frames = int(SECONDS * 15.0)
    report = simulation.run(periodic_trace(['camera'], frames, 1.0 / 15.0), SECONDS + 0.5)
    steady = simulate(rapidocr(150.0, 15.0), 15.0)
    tasks = report['final']['tasks']
    assert tasks['classifier']['predicted_service_ms'] < 10.0
    # Held for good it ran 7 of 450; the shedding limits of the slow spell recover slower.
    assert tasks['classifier']['executed'] >= 0.2 * tasks['classifier']['routed']
    assert tasks['detector']['completed_within_budget'] >= \
        0.98 * steady['final']['tasks']['detector']['completed_within_budget']
    assert report['invariant_violations'] == []


def two_pools(config):
    """Put the detector on a pool of its own, the others on a background pool."""
    config['orchestrator']['pools'] = {'detector': {'slots': 1}, 'background': {'slots': 1}}
    for task in config['tasks']:
        task['pool'] = 'detector' if task['name'] == 'detector' else 'background'
    return config


def test_a_background_pool_neither_holds_nor_blocks_nor_is_shed_for_the_detector():
    # Pools run at once (the OS preempts a niced background child): a background job is not
    # blocking, so no hold keeps the background slot idle for the detector, no loss of the
    # detector is blamed on it and shedding never limits it. Under one slot all three happen.
    report = simulate(two_pools(rapidocr(80.0, 15.0)), 15.0)
    alone = simulate(rapidocr(80.0, 15.0, detector_only=True, on_deadline='run'), 15.0)
    tasks = report['final']['tasks']
    assert tasks['detector']['completed_within_budget'] >= \
        0.98 * alone['final']['tasks']['detector']['completed_within_budget']
    for name in ('classifier', 'recognizer'):
        assert tasks[name]['executed'] >= 0.95 * tasks[name]['routed']
        assert tasks[name]['held_for_priority'] == 0
    events = {d['event'] for d in report['decisions']}
    assert reasons.LIMIT not in events and reasons.SHED_START not in events
    assert report['invariant_violations'] == []
    one_slot = simulate(rapidocr(80.0, 15.0), 15.0)['final']['tasks']
    assert one_slot['recognizer']['held_for_priority'] > 0


def test_a_rate_floor_is_kept_beside_a_detector_that_fills_the_slot():
    """
    The classifier's 1 Hz floor beside the detector over four cameras (multicamera.py).

    A floor checked only when the rate over the last second has fallen short starts each
    floor job a detector job late: 0.97 Hz over ROS. Checked at the next chance, it keeps 1 Hz.
    """
    cameras = [f'cam{index}' for index in range(4)]
    config = {
        'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
        'inputs': {name: {'rate_hz': 15.0, 'age_ms': 5.0} for name in cameras},
        'tasks': [
            {'name': 'detector', 'inputs': cameras, 'priority': 100, 'latency_budget_ms': 150.0,
             'queue_size': 1, 'worker_options': {'latency_ms': 55.0}},
            {'name': 'classifier', 'inputs': ['cam0'], 'priority': 50, 'min_rate_hz': 1.0,
             'latency_budget_ms': 300.0, 'queue_size': 2, 'worker_options': {'latency_ms': 5.0}},
        ]}
    seconds = 120.0
    report = Simulation(config).run(periodic_trace(cameras, int(15 * seconds), 1 / 15.0),
                                    seconds)
    classifier = report['final']['tasks']['classifier']
    assert classifier['executed'] >= seconds - 1, classifier['executed']
    assert report['invariant_violations'] == []
