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
ros2 run inferedge_orchestrator_ros top [--node NAME ...] [--bag PATH] [--print]: a live view.

It reads ~/telemetry and ~/decisions of one or several orchestrator nodes (every node that
publishes telemetry when no --node is given), or replays them from a bag. Its subscriptions
are best effort, so the node's writers never wait for it: a slow or stopped terminal costs
the node nothing. Keys: q quits, s changes the task sort, p pauses (the screen freezes; the
messages are still taken, so resuming shows the present).
"""

import argparse
from collections import deque
import os
import select
import sys
import termios
import time
import tty
from typing import Dict, List

from inferedge_orchestrator_msgs.msg import OrchestratorTelemetry, SchedulerDecision
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.utilities import remove_ros_args
import rosbag2_py
from rosidl_runtime_py.utilities import get_message

try:  # rich: an exec_depend a bare workspace may lack; main() says how to install it
    from rich.console import Console
    from rich.live import Live
except ImportError:
    Console = Live = None
else:  # the view is drawn with rich
    from inferedge_orchestrator_ros.top_view import (decision_line, DECISION_LINES, NodeWatch,
                                                     render, SORTS)

TELEMETRY_TYPE = 'inferedge_orchestrator_msgs/msg/OrchestratorTelemetry'
DECISION_TYPE = 'inferedge_orchestrator_msgs/msg/SchedulerDecision'
REFRESH_S = 0.25
DISCOVERY_S = 1.0


class Screen:
    """The state behind the screen: the watched nodes, the decision log, sort and pause."""

    def __init__(self, source: str):
        self.source = source
        self.watches: Dict[str, NodeWatch] = {}
        self.decisions = deque(maxlen=4 * DECISION_LINES)
        self.sort = 0
        self.paused = False
        self.frozen = None  # the screen drawn when pause was pressed

    def watch(self, name: str) -> NodeWatch:
        if name not in self.watches:
            self.watches[name] = NodeWatch(name)
        return self.watches[name]

    def on_telemetry(self, node: str, msg) -> None:
        self.watch(node).on_telemetry(msg, time.monotonic())

    def on_decision(self, node: str, msg) -> None:
        self.watch(node).on_decision(msg)
        self.decisions.append(decision_line(node, msg))

    def key(self, key: str) -> bool:
        """Act on a key; return False to quit."""
        if key in ('q', 'Q', '\x03'):
            return False
        if key in ('s', 'S'):
            self.sort = (self.sort + 1) % len(SORTS)
        elif key in ('p', 'P', ' '):
            self.paused = not self.paused
            self.frozen = None
        return True

    def draw(self):
        if self.paused and self.frozen is not None:
            return self.frozen
        drawn = render(list(self.watches.values()), self.decisions, self.sort, self.paused,
                       time.monotonic(), self.source)
        if self.paused:
            self.frozen = drawn
        return drawn


def node_of(topic: str) -> str:
    """Return the node name of a ~/telemetry or ~/decisions topic."""
    return topic.rsplit('/', 1)[0] or '/'


class LiveSource:
    """The subscriptions of the live view (one rclpy node of its own)."""

    def __init__(self, screen: Screen, nodes: List[str]):
        rclpy.init()
        self.node = rclpy.create_node('inferedge_top', start_parameter_services=False)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._screen = screen
        self._subscriptions = {}
        self._discover = not nodes
        self._discovered_at = 0.0
        for name in nodes:
            self._subscribe(name if name.startswith('/') else '/' + name)

    def _subscribe(self, name: str) -> None:
        if name in self._subscriptions:
            return
        self._screen.watch(name)
        base = name.rstrip('/')
        self._subscriptions[name] = self.node.create_subscription(
            OrchestratorTelemetry, f'{base}/telemetry',
            lambda msg: self._screen.on_telemetry(name, msg), self._qos)
        self.node.create_subscription(
            SchedulerDecision, f'{base}/decisions',
            lambda msg: self._screen.on_decision(name, msg), self._qos)

    def spin(self, seconds: float) -> None:
        now = time.monotonic()
        if self._discover and now - self._discovered_at > DISCOVERY_S:
            self._discovered_at = now
            for topic, types in self.node.get_topic_names_and_types():
                if topic.endswith('/telemetry') and TELEMETRY_TYPE in types:
                    self._subscribe(node_of(topic))
        for name, subscription in self._subscriptions.items():
            self._screen.watches[name].publishers = subscription.get_publisher_count()
        self.executor.spin_once(timeout_sec=seconds)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


class BagSource:
    """A bag's telemetry and decisions, replayed at their recorded pace times rate."""

    def __init__(self, screen: Screen, path: str, rate: float):
        self._reader = rosbag2_py.SequentialReader()
        self._reader.open_uri(path)
        self._types = {}
        for topic in self._reader.get_all_topics_and_types():
            if topic.type in (TELEMETRY_TYPE, DECISION_TYPE):
                self._types[topic.name] = (topic.type, get_message(topic.type))
        if not any(kind == TELEMETRY_TYPE for kind, _ in self._types.values()):
            raise ValueError(f'{path}: no {TELEMETRY_TYPE} topic in this bag')
        self._screen = screen
        self._rate = rate
        self._start = None  # (bag time ns, monotonic time) of the first message
        self._pending = None
        self.finished = False

    def _next(self):
        while self._reader.has_next():
            topic, data, stamp = self._reader.read_next()
            if topic in self._types:
                return topic, data, stamp
        return None

    def spin(self, seconds: float) -> None:
        """Hand over the messages whose recorded time has come (all of them at rate 0)."""
        deadline = time.monotonic() + seconds
        while not self.finished:
            if self._pending is None:
                self._pending = self._next()
                if self._pending is None:
                    self.finished = True
                    break
            topic, data, stamp = self._pending
            now = time.monotonic()
            if self._start is None:
                self._start = (stamp, now)
            due = self._start[1] + (stamp - self._start[0]) * 1e-9 / self._rate \
                if self._rate > 0 else now
            if due > now:
                if due > deadline:
                    break
                time.sleep(due - now)
            kind, msg_type = self._types[topic]
            msg = deserialize_message(data, msg_type)
            if kind == TELEMETRY_TYPE:
                self._screen.on_telemetry(node_of(topic), msg)
            else:
                self._screen.on_decision(node_of(topic), msg)
            self._pending = None
        remaining = deadline - time.monotonic()
        if remaining > 0 and self.finished:
            time.sleep(remaining)

    def close(self) -> None:
        del self._reader


class Keys:
    """Single key presses from the terminal (cbreak mode, restored on close)."""

    def __init__(self):
        self._fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self._saved = None
        if self._fd is not None:
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)

    def read(self) -> str:
        if self._fd is None or not select.select([self._fd], [], [], 0)[0]:
            return ''
        return os.read(self._fd, 32).decode(errors='replace')

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog='top', description='A live terminal view of orchestrator nodes: their inputs, '
        'tasks, pools and decisions (from ~/telemetry and ~/decisions).')
    parser.add_argument('--node', action='append', default=[], metavar='NAME',
                        help='a node to watch, with its namespace (e.g. /robot1/'
                        'inferedge_orchestrator); repeat for several; default: every node '
                        'that publishes orchestrator telemetry')
    parser.add_argument('--bag', metavar='PATH',
                        help='replay ~/telemetry and ~/decisions from this bag instead')
    parser.add_argument('--rate', type=float, default=1.0,
                        help='bag replay speed (1: as recorded; 0: as fast as it reads)')
    parser.add_argument('--print', action='store_true', dest='print_once',
                        help='print one screen and exit: after two telemetry messages of every '
                        'watched node (live, within --timeout) or at the end of the bag')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='--print: seconds to wait for telemetry (live)')
    parser.add_argument('--width', type=int, default=0,
                        help='--print: the width of the printed screen (default: the '
                        "terminal's)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    if Console is None:
        print('top needs rich: apt install python3-rich (rosdep key python3-rich) or pip '
              'install rich', file=sys.stderr)
        return 2
    if argv is None:
        argv = remove_ros_args(sys.argv)[1:]
    arguments = parse_arguments(argv)
    if arguments.bag and arguments.node:
        print('top: --bag replays the nodes recorded in the bag; drop --node', file=sys.stderr)
        return 2
    screen = Screen(f'bag {arguments.bag}' if arguments.bag else 'live')
    try:
        source = BagSource(screen, arguments.bag, arguments.rate) if arguments.bag \
            else LiveSource(screen, arguments.node)
    except (RuntimeError, ValueError) as error:
        print(f'top: {error}', file=sys.stderr)
        return 2
    try:
        if arguments.print_once:
            return print_once(screen, source, arguments)
        return run_live(screen, source)
    except KeyboardInterrupt:
        return 0
    finally:
        source.close()


def print_once(screen: Screen, source, arguments) -> int:
    end = time.monotonic() + arguments.timeout

    def ready():
        if isinstance(source, BagSource):
            return source.finished
        watches = screen.watches.values()
        # Two messages each: the rates are deltas between them.
        return bool(watches) and all(watch.previous is not None for watch in watches)
    while not ready() and (isinstance(source, BagSource) or time.monotonic() < end):
        source.spin(REFRESH_S)
    console = Console(width=arguments.width or None, force_terminal=False)
    console.print(screen.draw())
    return 0 if ready() else 1


def run_live(screen: Screen, source) -> int:
    keys = Keys()
    try:
        # The alternate screen: a resize redraws from the top, and quitting restores the
        # shell's screen. The console measures the terminal at each draw.
        with Live(screen.draw(), console=Console(), screen=True, auto_refresh=False) as live:
            drawn_at = 0.0
            while True:
                for key in keys.read():
                    if not screen.key(key):
                        return 0
                    drawn_at = 0.0
                source.spin(0.05)
                now = time.monotonic()
                if now - drawn_at >= REFRESH_S:
                    live.update(screen.draw(), refresh=True)
                    drawn_at = now
    finally:
        keys.close()


if __name__ == '__main__':
    sys.exit(main())
