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
`top` for real: in a tmux pane of its own tmux server, against the demo's node and camera.

The test types keys (send-keys) and reads the screen (capture-pane) as a user would see it:
the task names and the drop-reason column; each task's executed/s equal to the rate of two
consecutive telemetry messages the test received itself; pause freezes the screen across two
telemetry periods and resuming moves it again; a resize redraws within the new width; the
node stopped shows the waiting state, started again shows its tasks again; q quits with 0.
Then a bag of the same topics, recorded by the test, replayed with --print.
"""

import os
import re
import shutil
import subprocess
import time
import unittest

import rclpy  # noqa: F401 - marks a ROS test module (skipped by name without ROS)

from .ros_test_env import missing, NOT_BUILT, package_available, ros_environment
from .ros_test_env import stop_processes

DOMAIN_ID = 60
NODE = '/inferedge_orchestrator'
TASKS = ('detector', 'classifier', 'ocr')
WIDTH, HEIGHT = 200, 50
ROW = re.compile(r'^(?P<task>\w+)\s+(?P<priority>\d+)\s+(?P<executed>\d+\.\d)\s+'
                 r'(?P<within>\d+\.\d)\s+\d+\+\d+')


def cannot_run() -> str:
    """Return why these tests cannot run here ('' when they can)."""
    if not package_available():
        return NOT_BUILT
    if shutil.which('tmux') is None:
        return 'tmux not installed (apt install tmux)'
    return missing('rich')


class Tmux:
    """One tmux server of the test's own (its own socket): never the user's sessions."""

    def __init__(self, command: list, environment: dict):
        self.socket = f'inferedge_top_{os.getpid()}'
        self._environment = environment
        self.run('new-session', '-d', '-s', 'top', '-x', str(WIDTH), '-y', str(HEIGHT),
                 ' '.join(command))
        self.run('set-option', '-t', 'top', 'remain-on-exit', 'on')

    def run(self, *arguments, check=True) -> str:
        done = subprocess.run(['tmux', '-L', self.socket, *arguments], env=self._environment,
                              capture_output=True, text=True, timeout=10, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f'tmux {" ".join(arguments)}: {done.stderr}')
        return done.stdout

    def screen(self) -> str:
        return self.run('capture-pane', '-p', '-t', 'top')

    def keys(self, keys: str) -> None:
        self.run('send-keys', '-t', 'top', keys)

    def pane(self, field: str) -> str:
        return self.run('display-message', '-p', '-t', 'top', f'#{{{field}}}').strip()

    def close(self) -> None:
        self.run('kill-server', check=False)


class TopUnderTmux(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        why = cannot_run()
        if why:
            raise unittest.SkipTest(why)
        from inferedge_orchestrator_ros.environment import executable, share
        from .ros_launch_helpers import Listener
        cls.environment = dict(os.environ, **ros_environment(DOMAIN_ID))
        cls.executable, cls.params = staticmethod(executable), share('config', 'demo.yaml')
        cls.logs = []
        cls.camera = cls.start('synthetic_camera')
        cls.node = cls.start('orchestrator')
        cls.listener = Listener(DOMAIN_ID, 'top_test_listener')
        cls.telemetry = cls.listener.telemetry(f'{NODE}/telemetry')
        # The shell prints top's exit status on the pane (tmux's own pane_dead_status is not
        # always recorded).
        cls.tmux = Tmux(['sh', '-c', f"'{executable('top')} --node {NODE}; "
                         f"echo TOP_EXIT=$?; sleep 60'"], cls.environment)

    @classmethod
    def tearDownClass(cls):
        cls.tmux.close()
        stop_processes([cls.node, cls.camera])
        cls.listener.close()
        for log in cls.logs:
            log.close()

    @classmethod
    def start(cls, name: str) -> subprocess.Popen:
        log = open(os.devnull, 'w', encoding='utf-8')
        cls.logs.append(log)
        return subprocess.Popen([cls.executable(name), '--ros-args', '--params-file',
                                 cls.params], env=cls.environment, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_screen(self, condition, timeout: float, what: str) -> str:
        """Spin the listener until condition(screen) holds; return that screen."""
        end = time.monotonic() + timeout
        screen = ''
        while time.monotonic() < end:
            screen = self.tmux.screen()
            if condition(screen):
                return screen
            self.listener.spin_until(lambda: False, 0.2)
        self.fail(f'{what} not on the screen within {timeout} s:\n{screen}')

    def test_1_shows_the_tasks_and_the_drop_reasons(self):
        screen = self.wait_for_screen(
            lambda s: all(task_rows(s).get(task, {}).get('executed', 0) > 0
                          for task in ('detector',)) and len(task_rows(s)) == 3, 60.0,
            'the three tasks with a detector rate')
        self.assertIn('drops/s by reason', screen)
        self.assertEqual(set(task_rows(screen)), set(TASKS))
        self.assertIn('camera', screen)  # the input's row
        self.assertIn('last decisions', screen)

    def test_2_executed_rate_is_the_telemetry_rate(self):
        # The screen shows the rate of a pair of consecutive messages within one period of
        # the capture: the last pair the test had then, the one before (top draws at its own
        # pace) or the one that arrives meanwhile.
        count = len(self.telemetry)
        self.listener.spin_until(lambda: len(self.telemetry) >= count + 2, 10.0)
        captured = len(self.telemetry)
        screen = self.tmux.screen()
        self.listener.spin_until(lambda: len(self.telemetry) >= captured + 1, 10.0)
        rows = task_rows(screen)
        messages = self.telemetry[captured - 3:captured + 1]
        pairs = list(zip(messages, messages[1:]))
        self.assertEqual(len(pairs), 3)
        for task in TASKS:
            rates = [rate(before, after, task) for before, after in pairs]
            shown = rows[task]['executed']
            self.assertTrue(any(abs(shown - value) <= 0.051 for value in rates),
                            f'{task}: shown {shown}/s, telemetry {rates}\n{screen}')

    def test_3_pause_freezes_the_screen_across_two_periods(self):
        self.tmux.keys('p')
        paused = self.wait_for_screen(lambda s: 'PAUSED' in s, 5.0, 'PAUSED')
        count = len(self.telemetry)
        self.listener.spin_until(lambda: len(self.telemetry) >= count + 2, 10.0)
        self.listener.spin_until(lambda: False, 0.5)
        self.assertGreaterEqual(len(self.telemetry), count + 2)
        self.assertEqual(self.tmux.screen(), paused)
        self.tmux.keys('p')
        self.wait_for_screen(lambda s: 'PAUSED' not in s and s != paused, 5.0, 'resumed')

    def test_4_sort_key_and_resize(self):
        self.tmux.keys('s')
        self.wait_for_screen(lambda s: 'sort: name' in s, 5.0, 'the sort by name')
        screen = self.wait_for_screen(
            lambda s: list(task_rows(s)) == sorted(TASKS), 5.0, 'the tasks by name')
        self.tmux.run('resize-window', '-t', 'top', '-x', '150', '-y', '40')
        screen = self.wait_for_screen(lambda s: set(task_rows(s)) == set(TASKS) and all(
            len(line) <= 150 for line in s.splitlines()), 5.0, 'a redraw at 150 columns')
        self.assertEqual(self.tmux.pane('pane_dead'), '0', screen)

    def test_5_waits_for_a_stopped_node_and_recovers(self):
        stop_processes([self.node])
        self.wait_for_screen(lambda s: 'waiting' in s, 20.0, 'the waiting state')
        type(self).node = self.start('orchestrator')
        self.wait_for_screen(
            lambda s: 'waiting' not in s and task_rows(s).get('detector', {}).get(
                'executed', 0) > 0, 60.0, 'the restarted node with a detector rate')

    def test_6_q_quits_with_0(self):
        self.tmux.keys('q')
        screen = self.wait_for_screen(lambda s: 'TOP_EXIT=' in s, 10.0, "top's exit status")
        self.assertIn('TOP_EXIT=0', screen)

    def test_7_replays_a_bag_with_print(self):
        import tempfile
        messages = list(self.telemetry)[-3:]
        self.assertEqual(len(messages), 3)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, 'bag')
            write_bag(path, [(f'{NODE}/telemetry', message) for message in messages])
            done = subprocess.run([self.executable('top'), '--bag', path, '--print', '--rate',
                                   '0', '--width', str(WIDTH)], env=self.environment,
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        rows = task_rows(done.stdout)
        self.assertEqual(set(rows), set(TASKS), done.stdout)
        for task in TASKS:
            self.assertAlmostEqual(rows[task]['executed'],
                                   rate(messages[1], messages[2], task), delta=0.051)


def task_rows(screen: str) -> dict:
    """Return the task rows on a screen by name, in screen order."""
    rows = {}
    for line in screen.splitlines():
        match = ROW.match(line)
        if match and match['task'] in TASKS:
            rows[match['task']] = {'executed': float(match['executed']),
                                   'within': float(match['within'])}
    return rows


def rate(before, after, task: str) -> float:
    """Return a task's executed/s between two telemetry messages (over their uptimes)."""
    def executed(msg):
        return next(item.executed for item in msg.tasks if item.name == task)
    return (executed(after) - executed(before)) / (after.uptime_s - before.uptime_s)


def write_bag(path: str, messages) -> None:
    """Write (topic, message) pairs to a bag, one per 0.1 s of bag time."""
    import rosbag2_py
    from rclpy.serialization import serialize_message
    writer = rosbag2_py.SequentialWriter()
    writer.open(rosbag2_py.StorageOptions(uri=path, storage_id='mcap'),
                rosbag2_py.ConverterOptions('', ''))
    topics = set()
    for index, (topic, message) in enumerate(messages):
        if topic not in topics:
            topics.add(topic)
            writer.create_topic(rosbag2_py.TopicMetadata(
                id=len(topics), name=topic,
                type='inferedge_orchestrator_msgs/msg/OrchestratorTelemetry',
                serialization_format='cdr'))
        writer.write(topic, serialize_message(message), int(1e9 + index * 1e8))
    del writer
