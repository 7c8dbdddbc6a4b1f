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
Launch test: cameras that restart, as a crashed camera driver comes back.

The node (launched) has two inputs: `camera`, a best-effort subscription, and `strict`, a
reliable one, each with a task; the cameras are processes of the test, stopped (SIGINT) for
longer than stale_after_s and started again. `camera` comes back once with the same settings
and once at another size, encoding and reliability (320x240 mono8, reliable: a best-effort
subscription takes it). `strict` comes back best effort, which a reliable subscription cannot
take: the incompatible QoS is counted (InputStats.incompatible_qos), named in the node's log
and in the input's diagnostic, and nothing flows until the camera comes back reliable.

Oracle: each input's /diagnostics status goes ERROR while it is stale and OK again after its
camera is back; frames after each restart run (executed grows); the invariants hold in every
telemetry message. The times from a camera's start to its first result and to its input's
diagnostic OK are printed (-s shows them), with the camera process's own start-up.
"""

import os
import signal
import subprocess
import time
import unittest

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import by_name, launch_test_description, NOT_BUILT
from .ros_test_env import orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 37
NODE = '/inferedge_orchestrator'
PREFIX = '/camera_restart_test'
STALE_AFTER_S = 1.0
FIRST = {'width': 160, 'height': 120, 'encoding': 'rgb8', 'fps': 15.0}


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    orchestrator = orchestrator_node({
        'telemetry_period_s': 0.5,
        'inputs': ['camera', 'strict'],
        'camera.topic': f'{PREFIX}/camera',
        'camera.reliability': 'best_effort',
        'camera.stale_after_s': STALE_AFTER_S,
        'strict.topic': f'{PREFIX}/strict',
        'strict.reliability': 'reliable',
        'strict.depth': 5,
        'strict.stale_after_s': STALE_AFTER_S,
        'tasks': ['detector', 'checker'],
        'detector.inputs': ['camera'],
        'detector.latency_budget_ms': 5000.0,
        'detector.worker_options.latency_ms': 5.0,
        'checker.inputs': ['strict'],
        'checker.latency_budget_ms': 5000.0,
        'checker.worker_options.latency_ms': 5.0,
    })
    return launch_test_description(DOMAIN_ID, orchestrator, orchestrator=orchestrator)


class Camera:
    """A synthetic_camera process of the test: started, stopped and started again."""

    def __init__(self, name: str, log_folder: str):
        self.name = name
        self.log = os.path.join(log_folder, f'{name}.log')
        self.process = None
        self.started = None  # time.monotonic() at its start

    def start(self, **parameters) -> None:
        from inferedge_orchestrator_ros.environment import executable
        arguments = [executable('synthetic_camera'), '--ros-args', '-r',
                     f'__node:={self.name}']
        for key, value in dict(parameters, topic=f'{PREFIX}/{self.name}').items():
            arguments += ['-p', f'{key}:={value}']
        self.started = time.monotonic()
        with open(self.log, 'w', encoding='utf-8') as stream:
            self.process = subprocess.Popen(
                arguments, env=dict(os.environ, **ros_test_env.ros_environment(DOMAIN_ID)),
                stdout=stream, stderr=subprocess.STDOUT)

    def publishing_after_s(self, timeout: float = 30.0) -> float:
        """Return how long after its start it said it publishes (its own start-up)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.log, encoding='utf-8', errors='replace') as stream:
                if 'publishing' in stream.read():
                    return time.monotonic() - self.started
            time.sleep(0.02)
        raise AssertionError(f'{self.name} did not start publishing: {self.text()}')

    def stop(self) -> None:
        """Stop it as Ctrl-C does; it is gone when this returns."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)

    def text(self) -> str:
        with open(self.log, encoding='utf-8', errors='replace') as stream:
            return stream.read()


class TestCameraRestart(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'camera_restart_test'

    def setUp(self):
        import tempfile
        from diagnostic_msgs.msg import DiagnosticArray
        from inferedge_orchestrator_msgs.msg import InferenceResult
        self.folder = tempfile.mkdtemp(prefix='inferedge_camera_restart_')
        self.cameras = {name: Camera(name, self.folder) for name in ('camera', 'strict')}
        self.diagnostics = self.listener.subscribe(DiagnosticArray, '/diagnostics')
        self.telemetry = self.listener.telemetry(f'{NODE}/telemetry')
        self.results = {task: self.listener.subscribe(InferenceResult, f'{NODE}/{task}/result')
                        for task in ('detector', 'checker')}

    def tearDown(self):
        import shutil
        for camera in self.cameras.values():
            camera.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def status(self, name: str, level: int, after: float, timeout: float = 30.0):
        """
        Spin until /diagnostics shows input `name` at level in an array received after `after`.

        Return (the status, the time.monotonic() it was received).
        """
        seen = []  # (arrival, status): the arrays' order is their arrival order
        read = [0]

        def reached():
            for message in self.diagnostics[read[0]:]:
                arrival = time.monotonic()
                for status in message.status:
                    if status.name.split(': ', 1)[-1] == f'input {name}':
                        seen.append((arrival, status))
            read[0] = len(self.diagnostics)
            return any(at >= after and s.level == level for at, s in seen)
        self.diagnostics.clear()  # arrays published before `after` say nothing of it
        self.assertTrue(self.listener.spin_until(reached, timeout),
                        f'input {name} never at level {level}: '
                        f'{[(s.level, s.message) for _, s in seen[-3:]]}')
        return next((s, at) for at, s in seen if at >= after and s.level == level)

    def executed(self, task: str) -> int:
        return by_name(self.telemetry[-1].tasks)[task].executed if self.telemetry else 0

    def input_stats(self, name: str):
        return by_name(self.telemetry[-1].inputs)[name]

    def restart(self, name: str, task: str, **settings) -> dict:
        """Stop camera name until its input is stale, start it with settings; return times."""
        from diagnostic_msgs.msg import DiagnosticStatus
        camera = self.cameras[name]
        camera.stop()
        stopped = time.monotonic()
        stale, _ = self.status(name, DiagnosticStatus.ERROR, stopped)
        self.assertIn('no image for', stale.message)
        before = self.executed(task)
        self.results[task].clear()
        camera.start(**settings)
        publishing_s = camera.publishing_after_s()
        self.assertTrue(self.listener.spin_until(lambda: bool(self.results[task]), 30.0),
                        f'no result of {task} after {name} came back: {camera.text()}')
        result_s = time.monotonic() - camera.started
        _, ok_at = self.status(name, DiagnosticStatus.OK, camera.started)
        self.listener.telemetry_after(f'{NODE}/telemetry', timeout=30.0,
                                      predicate=lambda m: self.executed(task) >= before + 5)
        return {'publishing': publishing_s, 'first result': result_s,
                'diagnostics OK': ok_at - camera.started}

    def test_cameras_that_restart(self, proc_output, orchestrator):
        from diagnostic_msgs.msg import DiagnosticStatus
        start = time.monotonic()
        self.cameras['camera'].start(reliability='best_effort', **FIRST)
        self.cameras['strict'].start(reliability='reliable', depth=5, **FIRST)
        self.listener.telemetry_after(
            f'{NODE}/telemetry', timeout=60.0,
            predicate=lambda m: min(t.executed for t in m.tasks) >= 10)
        for name in ('camera', 'strict'):
            self.status(name, DiagnosticStatus.OK, start)

        # (a) The same camera again.
        same = self.restart('camera', 'detector', reliability='best_effort', **FIRST)
        print(f'camera back with the same settings: {same_text(same)}')

        # (b) Another size, encoding and reliability: reliable offered, best effort requested.
        other = self.restart('camera', 'detector', reliability='reliable', width=320,
                             height=240, encoding='mono8', fps=15.0)
        print(f'camera back at 320x240 mono8 reliable: {same_text(other)}')
        self.assertEqual(self.input_stats('camera').incompatible_qos, 0)
        self.assertEqual(self.input_stats('camera').malformed, 0)

        # (b') strict comes back best effort: its reliable subscription cannot take it.
        strict = self.cameras['strict']
        strict.stop()
        self.status('strict', DiagnosticStatus.ERROR, time.monotonic())  # nothing comes now
        received = self.input_stats('strict').received
        strict.start(reliability='best_effort', **FIRST)
        strict.publishing_after_s()
        telemetry = self.listener.telemetry_after(
            f'{NODE}/telemetry', timeout=30.0,
            predicate=lambda m: by_name(m.inputs)['strict'].incompatible_qos >= 1)
        self.assertEqual(by_name(telemetry.inputs)['strict'].received, received)
        named, _ = self.status('strict', DiagnosticStatus.ERROR, time.monotonic())
        conflict = (f'1 publisher(s) on {PREFIX}/strict offered QoS incompatible with '
                    'this subscription (reliable, volatile), the last one on policy RELIABILITY')
        self.assertIn(conflict, named.message)
        values = {value.key: value.value for value in named.values}
        self.assertGreaterEqual(int(values['incompatible_qos']), 1)
        proc_output.assertWaitFor(f'input strict: {conflict}', process=orchestrator, timeout=10)

        # (c) ...until it comes back reliable.
        fixed = self.restart('strict', 'checker', reliability='reliable', depth=5, **FIRST)
        print(f'strict back reliable after the incompatible one: {same_text(fixed)}')

        violations = [(m.uptime_s, v) for m in list(self.telemetry)
                      for v in self.listener.invariant_violations(m)]
        self.assertEqual(violations, [])
        self.assertGreater(len(self.telemetry), 10)


def same_text(times: dict) -> str:
    return ', '.join(f'{what} {seconds:.2f} s' for what, seconds in times.items()) + \
        ' after its start'


@launch_testing.post_shutdown_test()
class TestCameraRestartShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
