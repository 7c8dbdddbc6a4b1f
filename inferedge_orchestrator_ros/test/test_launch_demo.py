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
Launch test: the demo (synthetic camera + orchestrator with three dummy workers, overloaded).

(a) results, telemetry and decisions arrive; (b) after 10 s of overload the detector executed
more than the classifier, which executed more than the ocr; the detector dropped at most 1% of
its routed frames; the other two only dropped for rate_limited, expired, predicted_late or
queue_overflow; both invariants hold; (d) every process exits with code 0 after shutdown.
Counts and order only: no wall-clock latency is asserted.
"""

import unittest

from inferedge_orchestrator import reasons
from inferedge_orchestrator_ros.environment import share
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing
import launch_testing.asserts
from launch_testing_ros import WaitForTopics
import pytest

from . import ros_test_env
from .ros_test_env import launch_test_description, NOT_BUILT, package_available

BUILT = package_available()
DOMAIN_ID = 41
NODE = '/inferedge_orchestrator'
ALLOWED_SHED_REASONS = {reasons.RATE_LIMITED, reasons.EXPIRED, reasons.PREDICTED_LATE,
                        reasons.QUEUE_OVERFLOW}


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    return launch_test_description(DOMAIN_ID, IncludeLaunchDescription(
        PythonLaunchDescriptionSource(share('launch', 'demo.launch.py'))))


class TestDemo(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'demo_test_listener'

    def test_1_results_telemetry_and_decisions_arrive(self):
        from inferedge_orchestrator_msgs.msg import (InferenceResult, OrchestratorTelemetry,
                                                     SchedulerDecision)
        topics = [(f'{NODE}/detector/result', InferenceResult),
                  (f'{NODE}/telemetry', OrchestratorTelemetry),
                  (f'{NODE}/decisions', SchedulerDecision)]
        with WaitForTopics(topics, timeout=60.0) as wait:
            self.assertEqual(wait.topics_received(), {name for name, _ in topics})
            result = wait.received_messages(f'{NODE}/detector/result')[0]
            self.assertEqual(result.header.frame_id, 'camera')

    def test_2_overload_keeps_the_detector(self):
        telemetry = self.listener.telemetry_after(f'{NODE}/telemetry', uptime_s=10.0,
                                                  timeout=60.0)
        tasks = {task.name: task for task in telemetry.tasks}
        detector, classifier, ocr = tasks['detector'], tasks['classifier'], tasks['ocr']
        self.assertGreater(detector.executed, classifier.executed)
        self.assertGreater(classifier.executed, ocr.executed)
        self.assertLessEqual(detector.dropped, 0.01 * detector.routed,
                             [(r.reason, r.count) for r in detector.dropped_by_reason])
        for task in (classifier, ocr):
            self.assertGreater(task.dropped, 0)
            self.assertLessEqual({r.reason for r in task.dropped_by_reason},
                                 ALLOWED_SHED_REASONS)
        self.assertEqual(self.listener.invariant_violations(telemetry), [])


@launch_testing.post_shutdown_test()
class TestDemoShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
