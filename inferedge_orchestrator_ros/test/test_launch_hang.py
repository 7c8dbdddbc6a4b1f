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
Launch test: a worker that hangs (a call that never returns) beside a steady task.

The task `hangs` blocks on every 8th call (a thread pool: the call cannot be stopped); its
timeout_ms fails the job TIMED_OUT (reason timeout), the slot is retired at 3 x timeout_ms and
a fresh worker takes a new slot. /diagnostics shows `hangs` ERROR, `steady` (a pool of its own)
keeps the camera's rate, the node answers parameter gets throughout, and it exits by itself
with code 0 although the stuck calls never return.
"""

import unittest

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import camera_node, launch_test_description, NOT_BUILT
from .ros_test_env import orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 53
NODE = '/inferedge_orchestrator'
TOPIC = '/hang_test/image'


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    orchestrator = orchestrator_node({
        'telemetry_period_s': 0.5,
        'camera.topic': TOPIC,
        'camera.reliability': 'reliable',
        'camera.depth': 10,
        'pools': ['local', 'other'],
        'tasks': ['steady', 'hangs'],
        'steady.pool': 'local',
        'steady.latency_budget_ms': 5000.0,
        'steady.queue_size': 10,
        'steady.worker_options.latency_ms': 5.0,
        'hangs.pool': 'other',
        'hangs.latency_budget_ms': 5000.0,
        'hangs.queue_size': 10,
        'hangs.timeout_ms': 200.0,
        'hangs.worker_options.latency_ms': 5.0,
        'hangs.worker_options.hang_every': 8,
    })
    camera = camera_node(topic=TOPIC, fps=10.0, reliability='reliable')
    return launch_test_description(DOMAIN_ID, camera, orchestrator)


class TestHang(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'hang_test'

    def test_1_a_hung_call_times_out_and_its_slot_is_replaced(self):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from inferedge_orchestrator_msgs.msg import SchedulerDecision
        listener = self.listener
        listener.subscribe(DiagnosticArray, '/diagnostics')  # from the start
        decisions = listener.subscribe(SchedulerDecision, f'{NODE}/decisions')
        first = listener.telemetry_after(f'{NODE}/telemetry', uptime_s=1.0, timeout=90.0)
        answers = []
        last = first
        while True:  # the node answers a parameter get in every period meanwhile
            answers.append(listener.get_parameters(NODE, ['hangs.timeout_ms']))
            pool = next(p for p in last.pools if p.name == 'other')
            if pool.retired >= 2 and last.uptime_s >= first.uptime_s + 4.0:
                break
            self.assertLess(last.uptime_s, first.uptime_s + 60.0, 'no second retirement')
            uptime = last.uptime_s
            last = listener.telemetry_after(f'{NODE}/telemetry', timeout=30.0,
                                            predicate=lambda m: m.uptime_s > uptime)
        self.assertTrue(answers and all(a == [200.0] for a in answers), answers)
        tasks = {t.name: t for t in last.tasks}
        hangs, steady = tasks['hangs'], tasks['steady']
        timeouts = {r.reason: r.count for r in hangs.failed_by_reason}.get('timeout', 0)
        self.assertGreaterEqual(timeouts, 2)
        self.assertEqual(hangs.failed, timeouts)
        pool = next(p for p in last.pools if p.name == 'other')
        self.assertEqual(pool.slots, 1, 'a fresh worker took each retired slot')
        self.assertGreater(hangs.executed, 0)
        self.assertEqual(steady.failed + steady.dropped, 0)
        self.assertTrue(listener.ran_every_frame(first, last, 'steady'))
        self.assertEqual(listener.invariant_violations(last), [])
        self.assertTrue(listener.spin_until(lambda: any(
            d.event == SchedulerDecision.WORKER_TIMEOUT and d.task == 'hangs'
            for d in decisions), 10.0))
        seen = listener.diagnostic_levels('hangs', DiagnosticStatus.ERROR)
        self.assertEqual(seen.get('task steady'), {DiagnosticStatus.OK})


@launch_testing.post_shutdown_test()
class TestHangShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        # 0: the node ends by itself, without waiting for the calls that never return.
        launch_testing.asserts.assertExitCodes(proc_info)
