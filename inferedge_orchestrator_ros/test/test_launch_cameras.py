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
Launch test: one detector task over three cameras, under a namespace.

Three synthetic cameras in /robot2 (front, left, and rear, which stops after 20 frames) feed
one task with inputs [front, left, rear]: each camera's results arrive on its own topic,
/robot2/inferedge_orchestrator/detector/<camera>/result, with that camera's header; once the
rear camera stops, its input's diagnostics and the task's status of that camera go to ERROR
(stale) while the other two cameras' frames keep running; the telemetry counts every camera
and the invariants hold per camera. Per-camera priorities and budgets change live
(`ros2 param set`), and a list that does not match the inputs is refused with the reason.
The node runs the multi-threaded executor here (executor_threads 4: each camera's images in a
callback group of their own, taken at once); the other launch tests run the default one.
"""

import unittest

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import launch_test_description, NOT_BUILT, orchestrator_node
from .ros_test_env import package_available

BUILT = package_available()
DOMAIN_ID = 58
NAMESPACE = 'robot2'
NODE = f'/{NAMESPACE}/inferedge_orchestrator'
CAMERAS = ('front', 'left', 'rear')


def camera(name: str, **parameters):
    from launch_ros.actions import Node
    return Node(package='inferedge_orchestrator_ros', executable='synthetic_camera',
                name=f'{name}_camera', namespace=NAMESPACE, output='screen',
                parameters=[dict({'fps': 10.0, 'width': 160, 'height': 120,
                                  'topic': f'{name}/image_raw', 'frame_id': name,
                                  'reliability': 'reliable'}, **parameters)])


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    parameters = {'telemetry_period_s': 0.5, 'executor_threads': 4,
                  'inputs': list(CAMERAS), 'tasks': ['detector'],
                  'detector.inputs': list(CAMERAS), 'detector.latency_budget_ms': 1000.0,
                  'detector.worker_options.latency_ms': 5.0}
    for name in CAMERAS:
        parameters.update({f'{name}.topic': f'{name}/image_raw', f'{name}.reliability':
                           'reliable', f'{name}.stale_after_s': 1.0})
    return launch_test_description(
        DOMAIN_ID, camera('front'), camera('left'), camera('rear', count=20),
        orchestrator_node(parameters, namespace=NAMESPACE))


class TestCameras(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'cameras_test_listener'

    def test_1_each_camera_has_its_own_result_topic(self):
        from inferedge_orchestrator_msgs.msg import InferenceResult
        results = {name: self.listener.subscribe(InferenceResult,
                                                 f'{NODE}/detector/{name}/result')
                   for name in CAMERAS}
        self.assertTrue(self.listener.spin_until(
            lambda: all(len(r) >= 3 for r in results.values()), 60.0),
            {name: len(r) for name, r in results.items()})
        for name, messages in results.items():
            self.assertEqual({m.input for m in messages}, {name})
            self.assertEqual({m.header.frame_id for m in messages}, {name})

    def test_2_a_camera_that_stops_shows_while_the_others_run_on(self):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        arrays = self.listener.subscribe(DiagnosticArray, '/diagnostics')

        def level(name):
            for message in reversed(arrays):
                for status in message.status:
                    if status.name.endswith(name):
                        return status.level
            return None
        self.assertTrue(self.listener.spin_until(
            lambda: level('input rear') == DiagnosticStatus.ERROR and
            level('task detector camera rear') == DiagnosticStatus.ERROR, 60.0),
            (level('input rear'), level('task detector camera rear')))
        self.assertEqual(level('input front'), DiagnosticStatus.OK)
        self.assertNotEqual(level('task detector camera front'), DiagnosticStatus.ERROR)
        self.assertNotEqual(level('task detector camera left'), DiagnosticStatus.ERROR)
        first = self.listener.telemetry_after(f'{NODE}/telemetry')
        later = self.listener.telemetry_after(f'{NODE}/telemetry', first.uptime_s + 2.0)
        [task] = later.tasks
        self.assertEqual(list(task.inputs), list(CAMERAS))
        cameras = {c.input: c for c in task.cameras}
        before = {c.input: c for c in first.tasks[0].cameras}
        # Its frames before the subscription matched are lost; none come after the 20th.
        self.assertTrue(0 < cameras['rear'].routed <= 20, cameras['rear'].routed)
        self.assertEqual(cameras['rear'].routed, before['rear'].routed)
        for name in ('front', 'left'):
            self.assertGreater(cameras[name].executed, before[name].executed)
        self.assertEqual(self.listener.invariant_violations(later), [])

    def test_3_camera_priorities_and_budgets_change_live(self):
        listener = self.listener
        result = listener.set_parameters(NODE, {'detector.camera_priority': [100, 100, 10],
                                                'detector.camera_budget_ms': [500, 500, 2000]},
                                         atomically=True)
        self.assertTrue(result.successful, result.reason)  # integers for a budget: accepted
        self.assertEqual(listener.get_parameters(NODE, ['detector.camera_priority']),
                         [[100, 100, 10]])
        [refused] = listener.set_parameters(NODE, {'detector.camera_priority': [100, 10]})
        self.assertFalse(refused.successful)
        self.assertIn('detector.camera_priority', refused.reason)
        self.assertIn('has 2 value(s) for 3 inputs', refused.reason)
        first = listener.telemetry_after(f'{NODE}/telemetry')
        later = listener.telemetry_after(f'{NODE}/telemetry', first.uptime_s + 2.0)
        [task] = later.tasks
        self.assertEqual(task.priority, 100)  # front and left frames keep coming
        self.assertEqual(listener.invariant_violations(later), [])


@launch_testing.post_shutdown_test()
class TestCamerasShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
