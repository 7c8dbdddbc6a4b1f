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
Launch test: every lifecycle transition under load, driven over the lifecycle services.

configure -> activate (frames flowing) -> deactivate under load (nothing left queued or in
flight; what did not finish in deactivate_timeout_s is dropped with reason deactivated) ->
cleanup -> a changed task list (the tasks parameter, set while unconfigured) -> configure ->
activate -> shutdown: the process then exits by itself with code 0 (no thread left behind)
and writes its report.
"""

import json
import os
import tempfile
import unittest

from inferedge_orchestrator import reasons
import launch_testing
import launch_testing.asserts
import pytest

from .ros_test_env import (camera_node, launch_test_description, NOT_BUILT, orchestrator_node,
                           package_available)

BUILT = package_available()
DOMAIN_ID = 44
NODE = '/inferedge_orchestrator'
TOPIC = '/lifecycle_test/image'
REPORT = os.path.join(tempfile.gettempdir(), f'inferedge_lifecycle_test_{os.getpid()}.json')


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    orchestrator = orchestrator_node({
            'autostart': False,
            'report_path': REPORT,
            'telemetry_period_s': 0.5,
            'deactivate_timeout_s': 0.05,
            'camera.topic': TOPIC,
            'tasks': ['detector', 'ocr'],
            'detector.priority': 100,
            'detector.worker_options.latency_ms': 10.0,
            'ocr.priority': 10,
            'ocr.latency_budget_ms': 2000.0,
            'ocr.queue_size': 8,
            'ocr.worker_options.latency_ms': 40.0,
            # only configured after the task list changes to [detector, classifier]
            'classifier.priority': 50,
            'classifier.worker_options.latency_ms': 5.0,
    })
    return launch_test_description(DOMAIN_ID, camera_node(topic=TOPIC, fps=30.0), orchestrator,
                                   orchestrator=orchestrator)


class TestLifecycle(unittest.TestCase):

    def test_transitions_under_load(self, proc_info, orchestrator):
        from lifecycle_msgs.msg import Transition

        from .ros_launch_helpers import Listener
        listener = Listener(DOMAIN_ID, 'lifecycle_test')
        try:
            self.assertEqual(listener.lifecycle_state(NODE), 'unconfigured')
            listener.transition(NODE, Transition.TRANSITION_CONFIGURE)
            listener.transition(NODE, Transition.TRANSITION_ACTIVATE)
            busy = listener.telemetry_after(
                f'{NODE}/telemetry', timeout=30.0,
                predicate=lambda m: m.node_state == 'active' and m.tasks[0].executed >= 20)
            self.assertEqual([t.name for t in busy.tasks], ['detector', 'ocr'])

            listener.transition(NODE, Transition.TRANSITION_DEACTIVATE)
            final = listener.telemetry_after(
                f'{NODE}/telemetry', timeout=10.0,
                predicate=lambda m: m.node_state == 'inactive')
            for task in final.tasks:
                self.assertEqual((task.queued, task.in_flight), (0, 0), task.name)
                self.assertLessEqual({r.reason for r in task.dropped_by_reason},
                                     set(reasons.DROP_REASONS) - {reasons.SHUTDOWN})
            self.assertEqual(listener.invariant_violations(final), [])
            self.assertEqual(listener.lifecycle_state(NODE), 'inactive')

            listener.transition(NODE, Transition.TRANSITION_CLEANUP)
            self.assertEqual(listener.lifecycle_state(NODE), 'unconfigured')
            listener.set_parameters(NODE, {'tasks': ['detector', 'classifier']})
            listener.transition(NODE, Transition.TRANSITION_CONFIGURE)
            self.assertEqual(listener.declared(NODE, ['ocr.priority', 'classifier.priority']),
                             [False, True])
            listener.transition(NODE, Transition.TRANSITION_ACTIVATE)
            again = listener.telemetry_after(
                f'{NODE}/telemetry', timeout=30.0,
                predicate=lambda m: [t.name for t in m.tasks] == ['detector', 'classifier'] and
                m.node_state == 'active' and m.tasks[1].executed >= 5)
            self.assertEqual(again.tasks[0].routed, again.inputs[0].accepted)

            listener.transition(NODE, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        finally:
            listener.close()
        proc_info.assertWaitForShutdown(process=orchestrator, timeout=20)
        with open(REPORT, encoding='utf-8') as stream:
            report = json.load(stream)
        os.unlink(REPORT)
        self.assertEqual(report['invariant_violations'], [])
        self.assertEqual(sorted(report['final']['tasks']), ['classifier', 'detector'])


@launch_testing.post_shutdown_test()
class TestLifecycleShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
