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
Launch test: malformed images are counted per reason and the node keeps running.

The input is reliable with depth >= N; the test publishes N images, M of them malformed in each
of the ways the node checks (unknown encoding, zero size, step < width x channels, data shorter
than step x height, more than max_image_pixels), waits until the telemetry shows received == N
and checks malformed == M by reason, both invariants, and that the node is still alive.
"""

import array
import unittest

from inferedge_orchestrator import reasons
import launch_testing
import launch_testing.asserts
import pytest

from .ros_test_env import launch_test_description, NOT_BUILT, orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 43
NODE = '/inferedge_orchestrator'
TOPIC = '/malformed_test/image'
GOOD_COPIES = 3  # good images between the malformed ones


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    orchestrator = orchestrator_node({
            'tasks': ['detector'],
            'max_image_pixels': 100000,
            'telemetry_period_s': 0.2,
            'camera.topic': TOPIC,
            'camera.reliability': 'reliable',
            'camera.depth': 100,
            'detector.latency_budget_ms': 1000,
            'detector.queue_size': 100,
            'detector.worker_options.latency_ms': 1.0,
    })
    return launch_test_description(DOMAIN_ID, orchestrator, orchestrator=orchestrator)


def _image(width=64, height=48, encoding='rgb8', step=None, size=None):
    from sensor_msgs.msg import Image
    msg = Image(width=width, height=height, encoding=encoding)
    msg.step = width * 3 if step is None else step
    msg.data = array.array('B', bytes(msg.step * height if size is None else size))
    return msg


MALFORMED = [
    ({'encoding': 'rgb16'}, reasons.UNKNOWN_ENCODING),
    ({'width': 0, 'size': 0}, reasons.ZERO_SIZE),
    ({'step': 100}, reasons.STEP_TOO_SMALL),
    ({'size': 1000}, reasons.DATA_TOO_SHORT),
    ({'width': 1000, 'height': 1000, 'size': 16}, reasons.TOO_MANY_PIXELS),
    ({'height': 0, 'size': 0}, reasons.ZERO_SIZE),
]


class TestMalformed(unittest.TestCase):

    def test_malformed_images_are_counted(self, proc_info, orchestrator):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from .ros_launch_helpers import Listener
        listener = Listener(DOMAIN_ID, 'malformed_test')
        try:
            total = len(MALFORMED) * (GOOD_COPIES + 1) + GOOD_COPIES
            publisher = listener.node.create_publisher(
                Image, TOPIC, QoSProfile(depth=total, reliability=ReliabilityPolicy.RELIABLE))
            listener.telemetry_after(f'{NODE}/telemetry', timeout=60.0)  # the node is active
            listener.wait_for_subscribers(publisher)
            clock = listener.node.get_clock()
            sent = 0
            for fields, _ in MALFORMED + [({}, None)]:
                for _ in range(GOOD_COPIES):
                    good = _image()
                    good.header.stamp = clock.now().to_msg()
                    publisher.publish(good)
                    sent += 1
                if fields:
                    publisher.publish(_image(**fields))
                    sent += 1
            self.assertEqual(sent, total)
            telemetry = listener.telemetry_after(
                f'{NODE}/telemetry', timeout=60.0,
                predicate=lambda m: m.inputs[0].received == total and
                m.tasks[0].queued + m.tasks[0].in_flight == 0)
            camera = telemetry.inputs[0]
            expected = {}
            for _, reason in MALFORMED:
                expected[reason] = expected.get(reason, 0) + 1
            self.assertEqual(camera.malformed, len(MALFORMED))
            self.assertEqual({r.reason: r.count for r in camera.malformed_by_reason}, expected)
            self.assertEqual(camera.accepted, total - len(MALFORMED))
            self.assertEqual(telemetry.tasks[0].routed, camera.accepted)
            self.assertEqual(listener.invariant_violations(telemetry), [])
            # still alive: the process runs and telemetry keeps coming
            from launch.events.process import ProcessExited
            self.assertNotIsInstance(proc_info[orchestrator], ProcessExited)
            later = listener.telemetry_after(f'{NODE}/telemetry',
                                             uptime_s=telemetry.uptime_s + 0.3, timeout=10.0)
            self.assertEqual(later.node_state, 'active')
        finally:
            listener.close()


@launch_testing.post_shutdown_test()
class TestMalformedShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
