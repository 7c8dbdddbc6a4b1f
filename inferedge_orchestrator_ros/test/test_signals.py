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
Signals under load: the node and a camera as processes, signalled as Ctrl-C on launch does.

Two SIGINTs (the terminal's and the one launch forwards; the second while the shutdown waits
for a job in flight): one graceful shutdown, exit code 0, the report written with the queued
frames dropped as shutdown and both invariants. SIGTERM: the same. A third SIGINT while the
shutdown waits for a long job: exit at once, 130. The times to exit are printed (-s shows
them), not asserted.
"""

import json
import os
import signal
import subprocess
import time

from inferedge_orchestrator import check_invariants, reasons, Snapshot
from inferedge_orchestrator_ros.environment import executable
import pytest
import rclpy  # noqa: F401 - marks a ROS test module (skipped by name without ROS)

from .ros_test_env import NOT_BUILT, package_available, ros_environment

DOMAIN_ID = 50
TOPIC = '/signals_test/image'


def start(name, parameters, log):
    arguments = [executable(name), '--ros-args']
    for key, value in parameters.items():
        arguments += ['-p', f'{key}:={value}']
    return subprocess.Popen(arguments, env=dict(os.environ, **ros_environment(DOMAIN_ID)),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_line(path, text, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path, encoding='utf-8', errors='replace') as stream:
            if text in stream.read():
                return
        time.sleep(0.1)
    with open(path, encoding='utf-8', errors='replace') as stream:
        raise AssertionError(f'{text!r} not logged within {timeout} s:\n{stream.read()}')


@pytest.fixture
def node_under_load(tmp_path):
    """Return start(latency_ms): an overloaded node with a report path, and its camera."""
    if not package_available():
        pytest.skip(NOT_BUILT)
    processes = []

    def run(latency_ms=30.0, **extra):
        log = tmp_path / 'node.log'
        report = tmp_path / 'report.json'
        parameters = dict({
            'camera.topic': TOPIC, 'camera.reliability': 'reliable', 'camera.depth': 10,
            'tasks': '[a, b]', 'report_path': str(report), 'deactivate_timeout_s': 5.0,
            'a.priority': 10, 'a.queue_size': 5, 'a.latency_budget_ms': 10000.0,
            'a.worker_options.latency_ms': latency_ms,
            'b.queue_size': 5, 'b.latency_budget_ms': 10000.0,
            'b.worker_options.latency_ms': latency_ms}, **extra)
        with open(log, 'w', encoding='utf-8') as stream:
            node = start('orchestrator', parameters, stream)
            camera = start('synthetic_camera', {'topic': TOPIC, 'fps': 30.0, 'width': 160,
                                                'height': 120, 'reliability': 'reliable'},
                           subprocess.DEVNULL)
        processes.extend([node, camera])
        wait_for_line(log, 'active:', 60.0)
        time.sleep(2.0)  # overloaded by then: two tasks of 30 ms or more at 30 frames/s
        return node, log, report
    yield run
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10.0)


def exit_after(node, signals, gap_s=0.02):
    """Send the signals gap_s apart; return (exit code, seconds from the first to the exit)."""
    first = time.monotonic()
    for signum in signals:
        os.kill(node.pid, signum)
        time.sleep(gap_s)
    code = node.wait(60.0)
    return code, time.monotonic() - first


def read_report(path):
    with open(path, encoding='utf-8') as stream:
        report = json.load(stream)
    return report, Snapshot.from_dict(report['final'])


# Two SIGINTs in the same spin of the node's executor are one (Python runs a handler once per
# pending signal): the second comes 0.4 s later, while the shutdown waits for a job that does
# not end (deactivate_timeout_s 1, then it is abandoned as shutdown).
@pytest.mark.parametrize('signals, gap_s, latency_ms', [
    ((signal.SIGINT, signal.SIGINT), 0.4, 60000.0), ((signal.SIGTERM,), 0.0, 30.0)],
    ids=['sigint-twice', 'sigterm'])
def test_a_signal_under_load_shuts_down_once_and_exits_0(node_under_load, signals, gap_s,
                                                         latency_ms):
    node, log, report_path = node_under_load(latency_ms, deactivate_timeout_s=1.0)
    code, seconds = exit_after(node, signals, gap_s)
    print(f'exit after {"+".join(signal.Signals(s).name for s in signals)}: code {code} in '
          f'{seconds:.2f} s')
    text = log.read_text(encoding='utf-8', errors='replace')
    assert code == 0, text
    assert 'Traceback' not in text and 'KeyboardInterrupt' not in text, text
    report, final = read_report(report_path)
    assert report['invariant_violations'] == [] and check_invariants(final) == []
    dropped = {name: task.dropped_by_reason.get(reasons.SHUTDOWN, 0)
               for name, task in final.tasks.items()}
    assert sum(dropped.values()) > 0, final.tasks  # the queues were full when it came
    assert all(task.in_flight == 0 and task.queued == 0 for task in final.tasks.values())
    if len(signals) > 1:
        assert 'while shutting down' in text  # the second one was seen and ignored


def test_a_third_sigint_exits_at_once_with_130(node_under_load):
    # A 4 s job in flight: the graceful shutdown would wait for it; the third signal does not.
    node, log, report_path = node_under_load(latency_ms=4000.0)
    code, seconds = exit_after(node, (signal.SIGINT,) * 3, gap_s=0.2)
    print(f'exit after 3 x SIGINT with a 4 s job in flight: code {code} in {seconds:.2f} s')
    text = log.read_text(encoding='utf-8', errors='replace')
    assert code == 130, text
    assert seconds < 4.0, text
    assert 'exiting at once with code 130' in text, text
