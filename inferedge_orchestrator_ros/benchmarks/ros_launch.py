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

"""What the ROS 2 benchmark scripts share: a launch in the background and percentiles."""

import os
import signal
import subprocess
import tempfile
import time

from inferedge_orchestrator_ros.environment import executable, loopback_environment, share
import numpy as np


def ros_environment(domain_id: int) -> dict:
    """Set (in this process) and return the loopback-only DDS environment of a benchmark."""
    os.environ.update(loopback_environment(domain_id))
    return dict(os.environ)


class Background:
    """A command in the background, in its own process group, stopped with SIGINT."""

    # SIGINT to the whole process group: `ros2 run` does not forward it to the node it runs.
    signal_group = True

    def __init__(self, command, env: dict):
        self.log = tempfile.NamedTemporaryFile('w+', prefix='inferedge_bench_', suffix='.log',
                                               delete=False)
        # Popen (not a shell's &) keeps SIGINT's default handler, so launch can forward it.
        self.process = subprocess.Popen(list(command), env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.exit_code = None

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """Send SIGINT, SIGKILL after timeout; return the exit code."""
        if self.process.poll() is None:
            if self.signal_group:
                os.killpg(self.process.pid, signal.SIGINT)
            else:
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.exit_code = self.process.returncode
        return self.exit_code

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def died(self) -> bool:
        """Whether a launched process exited with a non-zero code."""
        return 'process has died' in self.output()

    def discard_log(self) -> None:
        self.log.close()
        os.unlink(self.log.name)


class Launch(Background):
    """`ros2 launch <package> <file> args...` in the background."""

    signal_group = False  # launch forwards SIGINT to its nodes itself

    def __init__(self, env: dict, launch_file: str, *arguments: str,
                 package: str = 'inferedge_orchestrator_ros'):
        super().__init__(['ros2', 'launch', package, launch_file, *arguments], env)


# The demo's three tasks take 95 ms of slot time per frame: at 20 frames/s, 1.9 x the slot.
OVERLOAD_FPS = 20.0


def start_demo(env: dict, fps: float = OVERLOAD_FPS, **node_parameters):
    """
    Start the demo's camera (at fps) and node as processes; return (camera, node).

    config/demo.yaml holds both; node_parameters override the node's (name: value).
    """
    params = share('config', 'demo.yaml')
    camera = Background([executable('synthetic_camera'), '--ros-args', '-r',
                         '__node:=synthetic_camera', '--params-file', params, '-p',
                         f'fps:={fps}'], env)
    overrides = []
    for name, value in node_parameters.items():
        overrides += ['-p', f'{name}:={value}']
    node = Background([executable('orchestrator'), '--ros-args', '-r',
                       '__node:=inferedge_orchestrator', '--params-file', params] + overrides,
                      env)
    return camera, node


class ScriptNode:
    """A node of the script itself, in a context of its own: subscriptions, service calls."""

    def __init__(self, domain_id: int, name: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.1, max(0.0, end - time.monotonic())))

    def spin_until(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def call(self, client, request, timeout: float = 20.0):
        """Call a service through client; return the response, or None when none came."""
        if not self.spin_until(client.service_is_ready, timeout):
            return None
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            return None
        return future.result()

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()


def summary(values) -> dict:
    """Count, mean, p50, p95, p99 and max of values in milliseconds."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {'count': 0, 'mean_ms': None, 'p50_ms': None, 'p95_ms': None, 'p99_ms': None,
                'max_ms': None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {'count': int(values.size), 'mean_ms': float(values.mean()), 'p50_ms': float(p50),
            'p95_ms': float(p95), 'p99_ms': float(p99), 'max_ms': float(values.max())}


def stamp_ns(header) -> int:
    return header.stamp.sec * 1000000000 + header.stamp.nanosec


def spin_until_interrupted(node, executor=None) -> int:
    """Spin node (on executor, or rclpy's default) until Ctrl-C or a shutdown; return 0."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    try:
        if executor is None:
            rclpy.spin(node)
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
