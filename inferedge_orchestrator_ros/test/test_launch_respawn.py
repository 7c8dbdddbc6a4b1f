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
Launch test: a node that dies and is respawned by launch (Node(respawn=True)).

The node runs its task in a process pool (two child processes, each with a shared-memory
segment named after the node's pid) with a report_path. Three lives of one launch action:
life 1 is stopped by SIGINT (a clean exit: it writes the report); launch starts life 2, which
is killed by SIGKILL while its children run jobs (a crash: no report); launch starts life 3,
stopped by the launch's own shutdown. Each new life configures, activates and publishes on the
same topics; the children of the killed life are gone within seconds and its segments are
unlinked; the report of life 1 is kept (report.1.json) when life 3 writes report.json. The
times from each stop to the first result of the next life are printed (-s shows them).
"""

import glob
import json
import os
import shutil
import signal
import tempfile
import time
import unittest

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import camera_node, launch_test_description, NOT_BUILT
from .ros_test_env import orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 38
NODE = '/inferedge_orchestrator'
TOPIC = '/respawn_test/image'
RESULTS = f'{NODE}/detector/result'
RESPAWN_DELAY_S = 0.5
REPORTS = os.path.join(tempfile.gettempdir(), f'inferedge_respawn_test_{os.getpid()}')
REPORT = os.path.join(REPORTS, 'report.json')
LIVES = []  # the node's pid in each life, in order (the shutdown tests read it)
CHILDREN = []  # the child processes seen in every life


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    shutil.rmtree(REPORTS, ignore_errors=True)
    orchestrator = orchestrator_node({
        'telemetry_period_s': 0.5,
        'report_path': REPORT,
        'deactivate_timeout_s': 2.0,
        'camera.topic': TOPIC,
        'camera.reliability': 'reliable',
        'camera.depth': 10,
        'pools': ['isolated'],
        'isolated.slots': 2,
        'isolated.isolation': 'process',
        'tasks': ['detector'],
        'detector.pool': 'isolated',
        'detector.latency_budget_ms': 5000.0,
        'detector.queue_size': 4,
        # Two jobs of 150 ms at 10 frames/s: both children are mostly inside a job.
        'detector.worker_options.latency_ms': 150.0,
    }, respawn=True, respawn_delay=RESPAWN_DELAY_S)
    camera = camera_node(topic=TOPIC, fps=10.0, reliability='reliable', depth=10)
    return launch_test_description(DOMAIN_ID, camera, orchestrator, orchestrator=orchestrator)


def node_processes() -> list:
    """Return the live orchestrator processes of this test's domain (one, between deaths)."""
    return ros_test_env.processes_with(b'inferedge_orchestrator_ros/orchestrator',
                                       environment=f'ROS_DOMAIN_ID={DOMAIN_ID}'.encode(),
                                       live=True)


def parent_of(pid: int) -> int:
    """Return the parent of process pid (0: it is gone)."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as stream:
            return int(stream.read().rsplit(')', 1)[1].split()[1])
    except OSError:
        return 0


def children_of(pid: int) -> list:
    """Return the live child processes of pid: the pool's children and the resource tracker."""
    return [child for child in ros_test_env.processes_with(b'multiprocessing', live=True)
            if parent_of(child) == pid]


def alive(pids) -> list:
    """Return those of pids that still run (wherever they were re-parented), zombies not."""
    running = set(ros_test_env.processes_with(b'multiprocessing', live=True))
    return [pid for pid in pids if pid in running]


def segments_of(pid: int) -> list:
    """Return the shared-memory segments named after process pid."""
    return glob.glob(f'/dev/shm/inferedge_{pid}_*')


def read_report(path: str) -> dict:
    with open(path, encoding='utf-8') as stream:
        return json.load(stream)


class TestRespawn(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'respawn_test'

    def next_life(self, before: int, stopped_at: float) -> int:
        """
        Wait for the node launch starts after pid before died; return its pid.

        It must configure, activate and publish results again: its first result ends the time
        printed since stopped_at. The new process starts respawn_delay after the old one
        ended: what the old one published has arrived by then.
        """
        from inferedge_orchestrator_msgs.msg import InferenceResult
        listener = self.listener
        results = listener.subscribe(InferenceResult, RESULTS)
        pid = [None]

        def started():
            pid[0] = next((p for p in node_processes() if p != before), None)
            return pid[0] is not None
        self.assertTrue(listener.spin_until(started, 60.0), 'launch did not respawn the node')
        results.clear()
        self.assertTrue(listener.spin_until(lambda: bool(results), 90.0),
                        f'no result of the respawned node {pid[0]}')
        seconds = time.monotonic() - stopped_at
        self.assertEqual(listener.lifecycle_state(NODE), 'active')
        print(f'life {len(LIVES) + 1} (pid {pid[0]}): first result {seconds:.2f} s after the '
              f'previous life was stopped (respawn_delay {RESPAWN_DELAY_S} s)')
        LIVES.append(pid[0])
        return pid[0]

    def running(self, pid: int) -> list:
        """Wait until the node pid runs jobs in both children; return the children's pids."""
        listener = self.listener
        telemetry = listener.telemetry_after(
            f'{NODE}/telemetry', timeout=60.0,
            predicate=lambda m: m.tasks[0].executed >= 10 and m.pools[0].busy >= 1)
        self.assertEqual(listener.invariant_violations(telemetry), [])
        children = children_of(pid)
        # Two pool children and multiprocessing's resource tracker.
        self.assertEqual(len(children), 3, children)
        self.assertTrue(segments_of(pid))
        CHILDREN.extend(children)
        return children

    def test_1_three_lives(self):
        # Launch may still be between fork and exec when the test starts: wait for the node.
        self.listener.spin_until(lambda: len(node_processes()) == 1, 30.0)
        first = node_processes()
        self.assertEqual(len(first), 1, first)
        LIVES.append(first[0])
        self.running(first[0])
        topics = self.publisher_topics()

        # Life 1 exits cleanly (SIGINT, as Ctrl-C): it writes its report; launch starts life 2.
        stopped = time.monotonic()
        os.kill(first[0], signal.SIGINT)
        second = self.next_life(first[0], stopped)
        self.assertEqual(read_report(REPORT)['node']['pid'], first[0])
        self.assertEqual(self.publisher_topics(), topics)
        children = self.running(second)

        # Life 2 crashes (SIGKILL) in the middle of its jobs: no report; launch starts life 3.
        stopped = time.monotonic()
        os.kill(second, signal.SIGKILL)
        left = ros_test_env.left_after(lambda: alive(children), 10.0)
        print(f'children of the killed node gone after {time.monotonic() - stopped:.2f} s')
        self.assertEqual(left, [], 'children of the killed node are left')
        self.assertEqual(ros_test_env.left_after(lambda: segments_of(second), 10.0), [])
        self.next_life(second, stopped)
        self.assertEqual(self.publisher_topics(), topics)
        # Nothing wrote over life 1's report (life 2 never wrote one, life 3 has not yet).
        self.assertEqual(read_report(REPORT)['node']['pid'], first[0])
        self.assertEqual(os.listdir(REPORTS), ['report.json'])

    def publisher_topics(self) -> list:
        """Return the topics the node publishes (its results, telemetry, decisions...)."""
        from rclpy._rclpy_pybind11 import NodeNameNonExistentError
        node = self.listener.node
        found = []

        def seen():
            try:
                found[:] = sorted(name for name, _ in node.get_publisher_names_and_types_by_node(
                    'inferedge_orchestrator', '/') if name.startswith(NODE))
            except NodeNameNonExistentError:
                pass  # not discovered yet
            return RESULTS in found
        self.assertTrue(self.listener.spin_until(seen, 30.0), found)
        return found


@launch_testing.post_shutdown_test()
class TestRespawnShutdown(unittest.TestCase):

    def test_reports_and_nothing_left(self, proc_info):
        self.addCleanup(shutil.rmtree, REPORTS, ignore_errors=True)
        # The last life exits 0 at the launch's shutdown (SIGINT) and writes its report.
        launch_testing.asserts.assertExitCodes(proc_info)
        self.assertEqual(len(LIVES), 3, 'the active test did not reach the third life')
        first, _, third = LIVES
        self.assertEqual(sorted(os.listdir(REPORTS)), ['report.1.json', 'report.json'])
        kept, last = read_report(f'{REPORTS}/report.1.json'), read_report(REPORT)
        self.assertEqual((kept['node']['pid'], last['node']['pid']), (first, third))
        for report in (kept, last):
            self.assertEqual(report['invariant_violations'], [])
            self.assertGreater(report['final']['tasks']['detector']['executed'], 0)
        self.assertEqual(ros_test_env.left_after(lambda: alive(CHILDREN), 5.0), [])
        for pid in LIVES:
            self.assertEqual(ros_test_env.left_after(lambda: segments_of(pid), 5.0), [])
