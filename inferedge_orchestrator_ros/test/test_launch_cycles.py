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
Launch test: 20 lifecycle cycles under load leave nothing behind.

configure -> activate (frames flowing, both pools overloaded) -> deactivate -> cleanup, 20
times, with a thread pool and a process pool: no transition fails, and after every cleanup the
node has the threads, open fds and child processes it had after the first (read from /proc).
benchmarks/lifecycle_cycles.py runs 1000 (docs/reliability.md).
"""

import unittest

from inferedge_orchestrator import read_process_stats
import launch_testing
import launch_testing.asserts
import pytest

from .ros_test_env import (camera_node, launch_test_description, NOT_BUILT, orchestrator_node,
                           package_available)

BUILT = package_available()
DOMAIN_ID = 54
NODE = '/inferedge_orchestrator'
TOPIC = '/cycles_test/image'
CYCLES = 20


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    orchestrator = orchestrator_node({
        'autostart': False,
        'telemetry_period_s': 0.5,
        'deactivate_timeout_s': 0.05,
        'camera.topic': TOPIC,
        'pools': ['local', 'isolated'],
        'isolated.isolation': 'process',
        'tasks': ['detector', 'ocr'],
        'detector.pool': 'local',
        'detector.worker_options.latency_ms': 40.0,
        'ocr.pool': 'isolated',
        'ocr.worker_options.latency_ms': 40.0,
    })
    return launch_test_description(DOMAIN_ID, camera_node(topic=TOPIC, fps=30.0), orchestrator,
                                   orchestrator=orchestrator)


class TestCycles(unittest.TestCase):

    def test_cycles_under_load(self, orchestrator, proc_info):
        from lifecycle_msgs.msg import Transition

        from .ros_launch_helpers import Listener
        # The test may begin before launch has started the process (no pid yet).
        proc_info.assertWaitForStartup(process=orchestrator, timeout=30)
        listener = Listener(DOMAIN_ID, 'cycles_test')
        pid = orchestrator.process_details['pid']
        baseline, changed = None, []
        try:
            for cycle in range(CYCLES):
                listener.transition(NODE, Transition.TRANSITION_CONFIGURE)
                listener.transition(NODE, Transition.TRANSITION_ACTIVATE)
                listener.spin_until(lambda: False, 0.2)  # under load for a while
                listener.transition(NODE, Transition.TRANSITION_DEACTIVATE)
                listener.transition(NODE, Transition.TRANSITION_CLEANUP)
                stats = read_process_stats(pid)
                held = (stats.threads, stats.fds, stats.children)
                if baseline is None:
                    baseline = held
                elif held != baseline:
                    changed.append((cycle, held))
            self.assertEqual(listener.lifecycle_state(NODE), 'unconfigured')
        finally:
            listener.close()
        self.assertEqual(changed, [], f'threads, fds, children after the first: {baseline}')


@launch_testing.post_shutdown_test()
class TestCyclesShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
