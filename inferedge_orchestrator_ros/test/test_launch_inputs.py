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
Launch test: inputs and health: QoS, compressed images and diagnostics.

Four synthetic cameras: best effort (raw), reliable (raw), reliable JPEG
(sensor_msgs/CompressedImage) and one at 10 fps offering a 40 ms deadline. The orchestrator
subscribes to each with matching QoS (the last with a 40 ms deadline: misses are counted), and
once more, reliable, to the best-effort camera: that input counts an incompatible-QoS event
and receives nothing (its diagnostic turns ERROR once stale). A corrupt JPEG published by the test
counts once on the input (decode_errors) and fails its task with reason decode_error. The
task whose dummy worker fails every call reports ERROR on /diagnostics; a healthy one OK.
"""

import array
import unittest

from inferedge_orchestrator import reasons
import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import (by_name, camera_node, launch_test_description, NOT_BUILT,
                           orchestrator_node, package_available)

BUILT = package_available()
DOMAIN_ID = 46
NODE = '/inferedge_orchestrator'
PREFIX = '/inputs_test'


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    orchestrator = orchestrator_node({
            'telemetry_period_s': 0.5,
            'inputs': ['be', 'rel', 'jpeg', 'mismatch', 'paced'],
            'be.topic': f'{PREFIX}/be',
            'be.reliability': 'best_effort',
            'be.expected_rate_hz': 5.0,
            'rel.topic': f'{PREFIX}/rel',
            'rel.reliability': 'reliable',
            'rel.depth': 5,
            'jpeg.topic': f'{PREFIX}/jpeg',
            'jpeg.message_type': 'compressed_image',
            'jpeg.reliability': 'reliable',
            'jpeg.depth': 10,
            'mismatch.topic': f'{PREFIX}/be',
            'mismatch.reliability': 'reliable',
            'mismatch.stale_after_s': 1.0,
            'paced.topic': f'{PREFIX}/paced',
            'paced.deadline_ms': 40.0,
            'tasks': ['on_be', 'on_rel', 'on_jpeg'],
            'on_be.inputs': ['be'],
            'on_be.worker_options.latency_ms': 2.0,
            'on_rel.inputs': ['rel'],
            'on_rel.worker_options.latency_ms': 2.0,
            'on_rel.worker_options.fail_every': 1,
            'on_jpeg.inputs': ['jpeg'],
            'on_jpeg.worker_options.latency_ms': 2.0,
            # The corrupt image must reach a worker even when delivery is slow: a budget that no
            # delivery delay exceeds keeps it from expiring before it is decoded.
            'on_jpeg.latency_budget_ms': 5000.0,
    })
    return launch_test_description(
        DOMAIN_ID,
        camera_node('camera_be', topic=f'{PREFIX}/be', reliability='best_effort'),
        camera_node('camera_rel', topic=f'{PREFIX}/rel', reliability='reliable', depth=5),
        camera_node('camera_paced', topic=f'{PREFIX}/paced', fps=10.0, deadline_ms=40.0),
        camera_node('camera_jpeg', topic=f'{PREFIX}/jpeg', reliability='reliable', depth=5,
                    format='jpeg', fps=10.0),
        orchestrator)


class TestInputs(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'inputs_test'

    def test_best_effort_and_reliable_cameras(self):
        telemetry = self.listener.telemetry_after(
            f'{NODE}/telemetry', timeout=60.0,
            predicate=lambda m: all(by_name(m.inputs)[i].received >= 10 for i in ('be', 'rel')))
        inputs, tasks = by_name(telemetry.inputs), by_name(telemetry.tasks)
        self.assertEqual(inputs['be'].topic, f'{PREFIX}/be')
        self.assertGreater(tasks['on_be'].executed, 0)
        self.assertEqual(tasks['on_rel'].executed, 0)
        self.assertEqual({r.reason for r in tasks['on_rel'].failed_by_reason},
                         {reasons.WORKER_ERROR})
        self.assertEqual(self.listener.invariant_violations(telemetry), [])

    def test_incompatible_qos_is_counted(self):
        telemetry = self.listener.telemetry_after(
            f'{NODE}/telemetry', timeout=30.0,
            predicate=lambda m: by_name(m.inputs)['mismatch'].incompatible_qos > 0)
        self.assertEqual(by_name(telemetry.inputs)['mismatch'].received, 0)

    def test_deadline_misses_are_counted(self):
        telemetry = self.listener.telemetry_after(
            f'{NODE}/telemetry', timeout=30.0,
            predicate=lambda m: by_name(m.inputs)['paced'].deadline_missed > 0)
        paced = by_name(telemetry.inputs)['paced']
        self.assertGreater(paced.received, 0)  # a 10 fps camera offering a 40 ms deadline
        self.assertEqual(paced.incompatible_qos, 0)

    def test_compressed_input_with_a_corrupt_image(self):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage
        listener = self.listener
        listener.telemetry_after(
            f'{NODE}/telemetry', timeout=30.0,
            predicate=lambda m: by_name(m.tasks)['on_jpeg'].executed >= 3)
        publisher = listener.node.create_publisher(
            CompressedImage, f'{PREFIX}/jpeg',
            QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        listener.wait_for_subscribers(publisher)
        corrupt = CompressedImage(format='jpeg')
        corrupt.header.stamp = listener.node.get_clock().now().to_msg()
        corrupt.data = array.array('B', b'\xff\xd8\xff\xe0' + bytes(200))
        publisher.publish(corrupt)
        telemetry = listener.telemetry_after(
            f'{NODE}/telemetry', timeout=30.0,
            predicate=lambda m: by_name(m.inputs)['jpeg'].decode_errors >= 1)
        jpeg, task = by_name(telemetry.inputs)['jpeg'], by_name(telemetry.tasks)['on_jpeg']
        self.assertEqual(jpeg.decode_errors, 1)
        self.assertEqual(jpeg.malformed, 0)
        self.assertEqual([(r.reason, r.count) for r in task.failed_by_reason],
                         [(reasons.DECODE_ERROR, 1)])
        self.assertGreater(task.executed, 0)
        self.assertEqual(self.listener.invariant_violations(telemetry), [])

    def test_diagnostics_levels(self):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        arrays = self.listener.subscribe(DiagnosticArray, '/diagnostics')
        wanted = {'task on_rel': DiagnosticStatus.ERROR, 'task on_be': DiagnosticStatus.OK,
                  'input be': DiagnosticStatus.OK, 'input mismatch': DiagnosticStatus.ERROR}
        seen = {}

        def levels_seen():
            for message in arrays:
                for status in message.status:
                    seen.setdefault(status.name.split(': ', 1)[-1], set()).add(status.level)
            arrays.clear()
            return all(level in seen.get(name, ()) for name, level in wanted.items())
        self.assertTrue(self.listener.spin_until(levels_seen, 30.0), seen)


@launch_testing.post_shutdown_test()
class TestInputsShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
