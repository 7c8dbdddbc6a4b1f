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
A starved CPU: another process keeps every core busy while the node runs (issue 30, item 5).

The node (tasks a and b on one camera and one slot, comfortably within capacity; their
workers spin, as CPU inference does, so the starvation stretches their jobs) and a synthetic
camera run as processes. A control window of WINDOW_S, then os.cpu_count() processes of
`while True: pass` (at the default nice value, pinned to nothing) for WINDOW_S, each stopped by
its pid with SIGKILL, then AFTER_S. All along the test calls the node's lifecycle get_state and
get_parameters, one a second.

The oracle (docs/reliability.md): the burners had at least half of every core (their CPU
time, from /proc); no SHED_START in the control window (the config sheds 0 times) nor during
or after the starvation; every interval between two telemetry messages during the starvation
within 20% of telemetry_period_s (by their uptime_s, the node's steady clock); every service
answer within 1 s; within RECOVERY_S of the burners' end each task executes at >= 80% of its
control rate (per telemetry interval) with no shedding limit, and stays so. The figures are
printed (-s).
"""

import os
import signal
import statistics
import subprocess
import sys
import time

import pytest
import rclpy  # noqa: F401 - marks a ROS test module (skipped by name without ROS)

from .ros_test_env import NOT_BUILT, package_available, start_executable, stop_processes

DOMAIN_ID = 34
NODE = '/inferedge_orchestrator'
TOPIC = '/starved_cpu_test/image'
PERIOD_S = 1.0  # telemetry_period_s
WINDOW_S = 30.0  # the control window and the starvation
AFTER_S = 10.0
RECOVERY_S = 5.0
FPS = 15.0
PARAMETERS = {
    'camera.topic': TOPIC, 'camera.reliability': 'reliable', 'camera.depth': 10,
    'tasks': '[a, b]', 'telemetry_period_s': PERIOD_S,
    'a.priority': 10, 'a.latency_budget_ms': 500.0, 'a.worker_options.latency_ms': 5.0,
    'a.worker_options.busy_wait': True,
    'b.priority': 1, 'b.latency_budget_ms': 500.0, 'b.worker_options.latency_ms': 5.0,
    'b.worker_options.busy_wait': True,
}


@pytest.fixture
def node_and_camera(tmp_path):
    if not package_available():
        pytest.skip(NOT_BUILT)
    log = tmp_path / 'processes.log'
    with open(log, 'w', encoding='utf-8') as stream:
        started = [start_executable('orchestrator', dict(
                       PARAMETERS, report_path=str(tmp_path / 'report.json')),
                       DOMAIN_ID, stream),
                   start_executable('synthetic_camera', {
                       'topic': TOPIC, 'fps': FPS, 'width': 160, 'height': 120,
                       'reliability': 'reliable'}, DOMAIN_ID, stream)]
    yield started, log
    stop_processes(started)


@pytest.fixture
def burners():
    """Return start(): os.cpu_count() busy processes; each is killed by its pid at the end."""
    started = []

    def start():
        for _ in range(os.cpu_count() or 1):
            started.append(subprocess.Popen([sys.executable, '-c', 'while True: pass']))
        return started
    yield start
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(10.0)


class Probe:
    """The test's listener: telemetry and decisions as they arrive, and timed service calls."""

    def __init__(self, listener):
        from inferedge_orchestrator_msgs.msg import OrchestratorTelemetry, SchedulerDecision
        from .ros_launch_helpers import TELEMETRY_QOS
        self.listener = listener
        self.telemetry, self.decisions, self.answers = [], [], []  # (test time, ...)
        listener.node.create_subscription(
            OrchestratorTelemetry, f'{NODE}/telemetry',
            lambda m: self.telemetry.append((time.monotonic(), m)), TELEMETRY_QOS)
        listener.node.create_subscription(
            SchedulerDecision, f'{NODE}/decisions',
            lambda m: self.decisions.append((time.monotonic(), m)), 100)

    def run_for(self, seconds: float) -> None:
        """Spin for seconds, calling get_state and get_parameters in turn, one a second."""
        from lifecycle_msgs.srv import GetState
        from rcl_interfaces.srv import GetParameters
        end = time.monotonic() + seconds
        calls = 0
        while time.monotonic() < end:
            if calls % 2 == 0:
                response, answer_s = self.listener.timed_call(
                    GetState, f'{NODE}/get_state', GetState.Request())
                assert response.current_state.label == 'active', response
                self.answers.append((time.monotonic(), 'get_state', answer_s))
            else:
                response, answer_s = self.listener.timed_call(
                    GetParameters, f'{NODE}/get_parameters',
                    GetParameters.Request(names=['a.priority']))
                assert response.values[0].integer_value == 10, response
                self.answers.append((time.monotonic(), 'get_parameters', answer_s))
            calls += 1
            due = min(end, time.monotonic() + 1.0)
            self.listener.spin_until(lambda: time.monotonic() >= due, 2.0)

    def wait_until_running(self) -> None:
        def running():
            return bool(self.telemetry) and self.telemetry[-1][1].node_state == 'active' and \
                all(t.executed > 0 for t in self.telemetry[-1][1].tasks)
        assert self.listener.spin_until(running, 60.0), \
            f'the node did not run frames within 60 s: {self.telemetry[-1:]}'

    def between(self, start: float, end: float) -> list:
        return [m for t, m in self.telemetry if start <= t < end]


def cpu_seconds(pid: int) -> float:
    """Return the CPU time a process has used (user + system, from /proc)."""
    with open(f'/proc/{pid}/stat', encoding='ascii') as stream:
        fields = stream.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def rates(first, second) -> dict:
    """Return each task's executed frames per second between two telemetry messages."""
    seconds = second.uptime_s - first.uptime_s
    before = {t.name: t.executed for t in first.tasks}
    return {t.name: (t.executed - before[t.name]) / seconds for t in second.tasks}


def window_rates(messages) -> dict:
    return rates(messages[0], messages[-1])


def series_p95(message, task: str, series=('inference', 'end_to_end')) -> list:
    found = {s.series: s.p95_ms for t in message.tasks if t.name == task for s in t.latency}
    return [round(found[name], 2) for name in series]


def intervals(messages) -> list:
    return [b.uptime_s - a.uptime_s for a, b in zip(messages, messages[1:])]


def summary(values) -> str:
    ordered = sorted(values)
    return (f'n {len(values)}, min {ordered[0]:.3f}, median {statistics.median(values):.3f}, '
            f'p95 {ordered[int(0.95 * (len(values) - 1))]:.3f}, max {ordered[-1]:.3f}')


def test_a_starved_cpu_keeps_the_period_answers_and_sheds_nothing(node_and_camera, burners):
    from .ros_launch_helpers import Listener
    (node, camera), log = node_and_camera
    listener = Listener(DOMAIN_ID, 'starved_cpu_test')
    try:
        probe = Probe(listener)
        probe.wait_until_running()
        control_start = time.monotonic()
        probe.run_for(WINDOW_S)
        burn_start = time.monotonic()
        processes = burners()
        probe.run_for(WINDOW_S)
        burned_s = sum(cpu_seconds(process.pid) for process in processes)
        for process in processes:
            os.kill(process.pid, signal.SIGKILL)
        burn_end = time.monotonic()
        probe.run_for(AFTER_S)
        end = time.monotonic()
    finally:
        listener.close()

    control = probe.between(control_start, burn_start)
    starved = probe.between(burn_start, burn_end)
    after = probe.between(burn_end, end)
    control_rates = window_rates(control)
    cores = os.cpu_count() or 1
    figures = {
        'burners CPU (share of the cores over the starvation)':
        burned_s / (cores * (burn_end - burn_start)),
        'control telemetry intervals (s)': summary(intervals(control)),
        'starved telemetry intervals (s)': summary(intervals(starved)),
        'control executed (Hz)': control_rates,
        'starved executed (Hz)': window_rates(starved),
        'answers (s) control': summary([s for t, _, s in probe.answers if t < burn_start]),
        'answers (s) starved': summary([s for t, _, s in probe.answers
                                        if burn_start <= t < burn_end]),
        'starved cpu_percent of the node': summary([m.cpu_percent for m in starved]),
        # The live window (10 s) at each window's end: the starvation's toll on the jobs.
        'inference / end_to_end p95 ms of a, control': series_p95(control[-1], 'a'),
        'inference / end_to_end p95 ms of a, starved': series_p95(starved[-1], 'a'),
        'blocking p95 ms of a, starved': series_p95(starved[-1], 'a', ('blocking',)),
    }
    # Recovery: the end of the first interval after the burners' end from which on every
    # task runs at >= 80% of its control rate, without a shedding limit.
    recovered_at = None
    for index in range(len(after) - 1):
        if all(min(rates(a, b)[name] / control_rates[name] for name in control_rates) >= 0.8
               and not any(t.shed_limit_hz for t in b.tasks)
               for a, b in zip(after[index:], after[index + 1:])):
            arrival = next(t for t, m in probe.telemetry if m is after[index + 1])
            recovered_at = arrival - burn_end
            break
    figures['recovery (s)'] = recovered_at
    for name, value in figures.items():
        print(f'starved cpu: {name}: {value}')

    from inferedge_orchestrator_msgs.msg import SchedulerDecision
    starts = [(round(t - control_start, 1), d.reason, d.protected_task, d.blocking_ms,
               d.own_service_ms) for t, d in probe.decisions
              if d.event == SchedulerDecision.SHED_START]
    # The other process did starve the node: it had most of every core.
    assert figures['burners CPU (share of the cores over the starvation)'] >= 0.5, figures
    assert starts == [], f'SHED_START at (s, reason, protected, blocking ms, own ms): {starts}'
    assert all(0.8 * PERIOD_S <= s <= 1.2 * PERIOD_S for s in intervals(starved)), figures
    assert max(s for _, _, s in probe.answers) < 1.0, figures
    assert recovered_at is not None and recovered_at <= RECOVERY_S, figures
    for _, message in probe.telemetry:
        assert listener.invariant_violations(message) == [], message
    assert node.poll() is None and camera.poll() is None, log.read_text()
