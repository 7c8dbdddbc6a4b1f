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
Launch test: a task whose child process crashes periodically beside a steady task.

The task `crashy` runs in a process pool and kills its child with SIGSEGV on every 6th call;
`steady` runs in a thread pool of its own on the same camera. The node stays up, `steady`
executes every frame it is routed, each crash of `crashy` is a worker_crashed failure with a
respawn, /diagnostics shows `crashy` ERROR while `steady` stays OK, and the shutdown leaves no
child process behind. The process pool runs its children at idle priority (SCHED_IDLE, nice
19): every thread of every child, respawned ones too, while the node's threads stay normal.
"""

import os
import time
import unittest

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import camera_node, launch_test_description, NOT_BUILT
from .ros_test_env import orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 52
NODE = '/inferedge_orchestrator'
TOPIC = '/isolation_test/image'
CRASH_EVERY = 6


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    orchestrator = orchestrator_node({
        'telemetry_period_s': 0.5,
        'camera.topic': TOPIC,
        'camera.reliability': 'reliable',
        'camera.depth': 10,
        'pools': ['local', 'isolated'],
        'local.slots': 1,
        'isolated.slots': 1,
        'isolated.isolation': 'process',
        'isolated.os_policy': 'idle',
        'isolated.os_nice': 19,
        'tasks': ['steady', 'crashy'],
        'steady.pool': 'local',
        'steady.latency_budget_ms': 5000.0,
        'steady.queue_size': 10,
        'steady.worker_options.latency_ms': 5.0,
        'crashy.pool': 'isolated',
        'crashy.latency_budget_ms': 5000.0,
        'crashy.queue_size': 10,
        'crashy.worker_options.latency_ms': 5.0,
        'crashy.worker_options.crash_every': CRASH_EVERY,
    })
    camera = camera_node(topic=TOPIC, fps=10.0, reliability='reliable')
    return launch_test_description(DOMAIN_ID, camera, orchestrator, orchestrator=orchestrator)


def worker_children():
    """
    Return the live child processes of this test's node, wherever they are now.

    Spawned children run multiprocessing.spawn and inherit the node's environment, with this
    file's ROS_DOMAIN_ID: that finds them also after the node exited (an orphan is re-parented).
    """
    return ros_test_env.processes_with(
        b'multiprocessing.spawn', environment=f'ROS_DOMAIN_ID={DOMAIN_ID}'.encode(), live=True)


class TestIsolation(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'isolation_test'

    def test_1_crashes_stay_in_their_task(self):
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        listener = self.listener
        listener.subscribe(DiagnosticArray, '/diagnostics')  # from the start
        first = listener.telemetry_after(f'{NODE}/telemetry', uptime_s=2.0, timeout=90.0)
        self.assertTrue(worker_children(), 'the process pool has no child process')
        last = listener.telemetry_after(
            f'{NODE}/telemetry', timeout=90.0, predicate=lambda m: next(
                p.respawns for p in m.pools if p.name == 'isolated') >= 2 and m.uptime_s >=
            first.uptime_s + 4.0)
        tasks = {t.name: t for t in last.tasks}
        steady, crashy = tasks['steady'], tasks['crashy']
        crashed = {r.reason: r.count for r in crashy.failed_by_reason}.get('worker_crashed', 0)
        self.assertGreaterEqual(crashed, 2)
        self.assertEqual(crashy.failed, crashed)
        # Nothing else of crashy failed, and steady ran every frame the camera sent meanwhile.
        self.assertEqual(steady.failed + steady.dropped, 0)
        self.assertTrue(listener.ran_every_frame(first, last, 'steady'))
        pool = next(p for p in last.pools if p.name == 'isolated')
        self.assertGreaterEqual(pool.crashes, 2)
        self.assertEqual(listener.invariant_violations(last), [])
        seen = listener.diagnostic_levels('crashy', DiagnosticStatus.ERROR)
        self.assertEqual(seen.get('task steady'), {DiagnosticStatus.OK})
        self.assertEqual(listener.get_parameters(NODE, ['isolated.isolation']), ['process'])
        # A child respawned (twice by now) sets its threads once it has started Python: look
        # until one is seen with all its threads idle at nice 19.
        settled, deadline = None, time.monotonic() + 20.0
        while settled is None and time.monotonic() < deadline:
            for child in worker_children():
                try:
                    threads = set(thread_scheduling(child).values()) - {None}
                    node = int(read_stat(child)[1])  # its parent
                except OSError:
                    continue  # it crashed meanwhile
                if threads == {(19, os.SCHED_IDLE)}:
                    settled = child
                    break
            time.sleep(0.05)
        self.assertIsNotNone(settled, 'no child ran all its threads at SCHED_IDLE, nice 19')
        self.assertEqual({p for _, p in filter(None, thread_scheduling(node).values())},
                         {os.SCHED_OTHER})


def read_stat(path_or_pid) -> list:
    """Return the fields of a /proc stat file after the command's name (state first)."""
    path = path_or_pid if isinstance(path_or_pid, str) else f'/proc/{path_or_pid}/stat'
    with open(path, encoding='ascii') as stream:
        return stream.read().rsplit(')', 1)[1].split()


def thread_scheduling(pid: int) -> dict:
    """Return {thread id: (nice, policy)} of process pid; None for a thread that ended."""
    threads = {}
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            fields = read_stat(f'/proc/{pid}/task/{tid}/stat')
            threads[tid] = (int(fields[16]), int(fields[38]))
        except OSError:
            threads[tid] = None
    return threads


@launch_testing.post_shutdown_test()
class TestIsolationShutdown(unittest.TestCase):

    def test_exit_codes_and_no_child_left(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
        self.assertEqual(ros_test_env.left_after(worker_children, 5.0), [])
