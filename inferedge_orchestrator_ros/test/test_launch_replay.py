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
Launch test: a rosbag2 (mcap) replayed with `ros2 bag play --clock` to use_sim_time nodes.

The test writes a bag with rosbag2_py: 200 images stamped 12 days after the epoch (long past),
at 30 Hz, after a marker message one second earlier (so that the player's /clock runs before
the first image). Two nodes subscribe to the images: `sim` with use_sim_time:=true and `wall`
without. Before the replay one image is published to them by hand: the sim node has seen no
/clock yet (its clock reads 0), so that frame counts as stamp_fallback (docs/node.md). During the
replay the sim node measures ages with the bag's clock: no stamp_fallback, small transport
ages, and its results carry the bag's stamps; the wall node counts every replayed frame as
stamp_fallback (12 days old, beyond max_stamp_age_ms).
"""

import os
import shutil
import subprocess
import tempfile
import unittest

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import launch_test_description, NOT_BUILT, package_available
from .ros_test_env import ros_environment

BUILT = package_available()
DOMAIN_ID = 59
TOPIC = '/replay_test/image'
FRAMES = 200
RATE_HZ = 30.0
START_S = 12 * 24 * 3600  # the bag's first image stamp (s since the epoch)
BAG = os.path.join(tempfile.gettempdir(), f'inferedge_replay_test_{os.getpid()}')


def bag_stamps():
    """Return the stamps (ns) of the bag's images."""
    return [int((START_S + index / RATE_HZ) * 1e9) for index in range(FRAMES)]


def write_bag(path):
    """Write the test bag (mcap): the marker at START_S - 1 s, then the images."""
    import rosbag2_py
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    shutil.rmtree(path, ignore_errors=True)
    writer = rosbag2_py.SequentialWriter()
    writer.open(rosbag2_py.StorageOptions(uri=path, storage_id='mcap'),
                rosbag2_py.ConverterOptions('cdr', 'cdr'))
    for topic_id, (topic, type_name) in enumerate((('/replay_test/start', 'std_msgs/msg/String'),
                                                   (TOPIC, 'sensor_msgs/msg/Image'))):
        writer.create_topic(rosbag2_py.TopicMetadata(id=topic_id, name=topic, type=type_name,
                                                     serialization_format='cdr'))
    writer.write('/replay_test/start', serialize_message(String(data='start')),
                 int((START_S - 1.0) * 1e9))
    for stamp in bag_stamps():
        image = Image(height=24, width=32, encoding='rgb8', step=96, data=bytes(24 * 96))
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 1000000000)
        image.header.frame_id = 'bag_camera'
        writer.write(TOPIC, serialize_message(image), stamp)
    del writer  # closes the bag


def replay_node(namespace, use_sim_time):
    from launch_ros.actions import Node
    return Node(package='inferedge_orchestrator_ros', executable='orchestrator',
                name='inferedge_orchestrator', namespace=namespace, output='screen',
                parameters=[{'use_sim_time': use_sim_time, 'telemetry_period_s': 0.5,
                             'max_stamp_age_ms': 5000.0, 'camera.topic': TOPIC,
                             'camera.reliability': 'reliable', 'camera.depth': 300,
                             'tasks': ['detector'], 'detector.queue_size': 300,
                             'detector.latency_budget_ms': 60000.0,
                             'detector.on_deadline': 'run',
                             'detector.worker_options.latency_ms': 1.0}])


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    write_bag(BAG)
    return launch_test_description(DOMAIN_ID, replay_node('sim', True),
                                   replay_node('wall', False))


class TestReplay(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'replay_test'

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(BAG, ignore_errors=True)

    def test_replay_with_the_bag_clock(self):
        from inferedge_orchestrator_msgs.msg import InferenceResult
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        listener = self.listener
        results = listener.subscribe(
            InferenceResult, '/sim/inferedge_orchestrator/detector/result',
            QoSProfile(depth=300, reliability=ReliabilityPolicy.RELIABLE))
        for namespace in ('sim', 'wall'):
            listener.telemetry_after(f'/{namespace}/inferedge_orchestrator/telemetry',
                                     timeout=60.0)
        # One frame before any /clock: the sim node's clock still reads 0.
        publisher = listener.node.create_publisher(
            Image, TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        listener.wait_for_subscribers(publisher, count=2)
        early = Image(height=24, width=32, encoding='rgb8', step=96, data=bytes(24 * 96))
        early.header.stamp.sec = START_S
        publisher.publish(early)
        self.assertTrue(listener.spin_until(lambda: len(results) == 1, 20.0))
        listener.node.destroy_publisher(publisher)

        play = subprocess.run(['ros2', 'bag', 'play', '--clock', '100', BAG],
                              env=dict(os.environ, **ros_environment(DOMAIN_ID)),
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(play.returncode, 0, play.stdout + play.stderr)
        total = FRAMES + 1
        telemetry = {}
        for namespace in ('sim', 'wall'):
            telemetry[namespace] = listener.telemetry_after(
                f'/{namespace}/inferedge_orchestrator/telemetry', timeout=60.0,
                predicate=lambda m: m.inputs[0].received == total and
                m.tasks[0].executed == total)
        sim, wall = telemetry['sim'], telemetry['wall']
        self.assertEqual(sim.inputs[0].stamp_fallback, 1)  # the early frame only
        self.assertEqual(wall.inputs[0].stamp_fallback, total)  # 12 days old on the wall clock
        self.assertTrue(listener.spin_until(lambda: len(results) == total, 20.0))
        replayed = results[1:]
        stamps = [r.header.stamp.sec * 1000000000 + r.header.stamp.nanosec for r in replayed]
        self.assertEqual(sorted(stamps), bag_stamps())
        self.assertTrue(all(r.header.frame_id == 'bag_camera' for r in replayed))
        transport = next(s for s in sim.tasks[0].latency if s.series == 'transport')
        self.assertLess(transport.p95_ms, 1000.0, 'ages not measured with the bag clock')
        for message in (sim, wall):
            self.assertEqual(listener.invariant_violations(message), [])


@launch_testing.post_shutdown_test()
class TestReplayShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
