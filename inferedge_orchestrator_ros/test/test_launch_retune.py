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
Launch test: live retuning with parameters while the node is active.

A priority swap (set atomically) takes effect at once: comparing the executed-count increments
of successive telemetry messages, the promoted task leads in 2 consecutive periods within the
first 5 after the swap; both changes are announced as PARAM_CHANGE decisions. A bad value and a
structural parameter are refused with a reason, and nothing changes. A live setting of the
node's own (publish_tensors, an input's stale_after_s) is announced too, with no task.
"""

import unittest

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import camera_node, launch_test_description, NOT_BUILT
from .ros_test_env import orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 45
NODE = '/inferedge_orchestrator'
TOPIC = '/retune_test/image'


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    orchestrator = orchestrator_node({
            'telemetry_period_s': 1.0,
            'camera.topic': TOPIC,
            'tasks': ['detector', 'classifier'],
            'detector.priority': 100,
            'detector.latency_budget_ms': 200,
            'detector.worker_options.latency_ms': 25.0,
            'classifier.priority': 50,
            'classifier.latency_budget_ms': 200,
            'classifier.worker_options.latency_ms': 25.0,
    })
    return launch_test_description(DOMAIN_ID, camera_node(topic=TOPIC, fps=30.0), orchestrator)


def increments(messages, name):
    executed = [next(t.executed for t in m.tasks if t.name == name) for m in messages]
    return [after - before for before, after in zip(executed, executed[1:])]


class TestRetune(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'retune_test'

    def test_1_priority_swap(self):
        from inferedge_orchestrator_msgs.msg import SchedulerDecision
        listener = self.listener
        decisions = listener.subscribe(SchedulerDecision, f'{NODE}/decisions')
        before = listener.telemetry_after(f'{NODE}/telemetry', uptime_s=3.0, timeout=60.0)
        executed = {t.name: t.executed for t in before.tasks}
        self.assertGreater(executed['detector'], executed['classifier'])
        result = listener.set_parameters(NODE, {'detector.priority': 10,
                                                'classifier.priority': 100}, atomically=True)
        self.assertTrue(result.successful, result.reason)
        messages = listener.telemetry(f'{NODE}/telemetry')
        start = len(messages) - 1  # the last message before the swap took effect, or after
        listener.telemetry_after(f'{NODE}/telemetry', timeout=30.0,
                                 predicate=lambda m: len(messages) >= start + 6)
        window = messages[start:start + 6]
        promoted = increments(window, 'classifier')
        demoted = increments(window, 'detector')
        leads = [p > d for p, d in zip(promoted, demoted)]
        self.assertTrue(any(a and b for a, b in zip(leads, leads[1:])),
                        f'classifier {promoted} vs detector {demoted} per period')
        self.assertTrue(listener.spin_until(lambda: {
            d.task for d in decisions if d.event == SchedulerDecision.PARAM_CHANGE} >=
            {'detector', 'classifier'}, 10.0))
        priorities = {t.name: t.priority for t in messages[-1].tasks}
        self.assertEqual(priorities, {'detector': 10, 'classifier': 100})

    def test_2_bad_values_are_refused(self):
        listener = self.listener
        for name, value, why in [('detector.priority', 5000, 'out of range'),
                                 ('detector.latency_budget_ms', -1.0, 'out of range'),
                                 ('classifier.drop_policy', 'random', 'allowed'),
                                 ('detector.worker', 'tensorrt', 'cannot change while'),
                                 ('tasks', ['detector'], 'cannot change while')]:
            result = listener.set_parameters(NODE, {name: value})[0]
            self.assertFalse(result.successful, name)
            self.assertIn(why, result.reason)
        self.assertEqual(listener.get_parameters(NODE, ['detector.priority', 'tasks']),
                         [10, ['detector', 'classifier']])
        # an integer for a floating-point parameter is fine
        result = listener.set_parameters(NODE, {'detector.latency_budget_ms': 150})[0]
        self.assertTrue(result.successful, result.reason)

    def test_3_node_settings_are_announced(self):
        from inferedge_orchestrator_msgs.msg import SchedulerDecision
        listener = self.listener
        decisions = listener.subscribe(SchedulerDecision, f'{NODE}/decisions')
        result = listener.set_parameters(NODE, {'publish_tensors': True,
                                                'camera.stale_after_s': 3.0}, atomically=True)
        self.assertTrue(result.successful, result.reason)

        def announced():
            return sorted(d.detail for d in decisions
                          if d.event == SchedulerDecision.PARAM_CHANGE and not d.task)
        self.assertTrue(listener.spin_until(lambda: len(announced()) >= 2, 10.0), announced())
        self.assertEqual(announced(), ['camera.stale_after_s: 2.0 -> 3.0',
                                       'publish_tensors: False -> True'])


@launch_testing.post_shutdown_test()
class TestRetuneShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
