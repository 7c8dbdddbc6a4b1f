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
Environment shared by the ROS tests: loopback-only DDS, a domain per test file, no daemon.

Every ROS process a test starts (and the test's own rclpy contexts) runs with Cyclone DDS on
the loopback interface only, without multicast, on the test file's own ROS_DOMAIN_ID.
"""

import os
import signal
import subprocess
import time
import unittest

from inferedge_orchestrator_ros.environment import LOOPBACK_ENV, loopback_environment

# The settings every test file shares go in at import, before rclpy loads a middleware.
os.environ.update(LOOPBACK_ENV)
os.environ.pop('ROS_LOCALHOST_ONLY', None)  # deprecated in Jazzy; the range above replaces it


def ros_environment(domain_id: int) -> dict:
    """Set and return the environment of a test file's ROS processes (a domain of its own)."""
    env = loopback_environment(domain_id)
    os.environ.update(env)
    return env


def start_executable(name: str, parameters: dict, domain_id: int, log, env: dict = None):
    """
    Start one of the package's executables as a process in a session of its own.

    parameters go as `-p key:=value`; its environment is this process's with the domain's
    loopback variables and env over it; its output goes to log (a file, or DEVNULL).
    """
    from inferedge_orchestrator_ros.environment import executable
    arguments = [executable(name), '--ros-args']
    for key, value in parameters.items():
        value = str(value).lower() if isinstance(value, bool) else value
        arguments += ['-p', f'{key}:={value}']
    environment = dict(os.environ, **ros_environment(domain_id))
    environment.update(env or {})
    return subprocess.Popen(arguments, env=environment, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_processes(processes, grace_s: float = 20.0) -> None:
    """Stop processes as Ctrl-C does (SIGINT); kill those still there after grace_s."""
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
    for process in processes:
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10.0)


def package_available(name: str = 'inferedge_orchestrator_ros') -> bool:
    """Whether the package is built and sourced (its share directory is indexed)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        get_package_share_directory(name)
        import inferedge_orchestrator_msgs.msg  # noqa: F401
    except (ImportError, LookupError, KeyError, ValueError):
        return False
    return True


NOT_BUILT = ('inferedge_orchestrator_ros or inferedge_orchestrator_msgs is not built and '
             'sourced: run colcon build and source install/setup.bash')


def missing(*modules: str) -> str:
    """Return why a test cannot run when one of modules is not installed ('' when all are)."""
    import importlib.util
    absent = [name for name in modules if importlib.util.find_spec(name) is None]
    if not absent:
        return ''
    return (f'{" and ".join(absent)} not installed: pip install '
            "'inferedge_orchestrator[test]' (or pip install " + ' '.join(absent) + ')')


def launch_test_description(domain_id: int, *actions, **handles):
    """
    Return what a launch test's generate_test_description returns.

    The description starts every process with the test file's ROS environment, then runs
    actions and ReadyToTest; handles (processes by name) go to the test methods.
    """
    from launch import LaunchDescription
    from launch.actions import SetEnvironmentVariable
    import launch_testing.actions
    environment = [SetEnvironmentVariable(name, value)
                   for name, value in ros_environment(domain_id).items()]
    return LaunchDescription(
        environment + list(actions) + [launch_testing.actions.ReadyToTest()]), handles


def orchestrator_node(parameters: dict, **options):
    """
    Return the orchestrator node action with these parameters (the node name users see).

    options go to launch_ros's Node (e.g. namespace, additional_env).
    """
    from launch_ros.actions import Node
    return Node(package='inferedge_orchestrator_ros', executable='orchestrator',
                name='inferedge_orchestrator', output='screen', parameters=[parameters],
                **options)


def camera_node(name: str = 'camera', **parameters):
    """Return a synthetic camera action: 160x120 at 15 fps unless parameters say otherwise."""
    from launch_ros.actions import Node
    return Node(package='inferedge_orchestrator_ros', executable='synthetic_camera',
                name=name, output='screen',
                parameters=[dict({'fps': 15.0, 'width': 160, 'height': 120}, **parameters)])


def by_name(items) -> dict:
    """Return telemetry entries (inputs, tasks, pools) by their name."""
    return {item.name: item for item in items}


def processes_with(*words: bytes, environment: bytes = b'', live: bool = False) -> list:
    """
    Return the ids of the processes whose command line holds every word (by /proc).

    environment: an entry (NAME=value) their environment must hold; live: not zombies.
    """
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as stream:
                command = stream.read()
            if not all(word in command for word in words):
                continue
            if environment:
                with open(f'/proc/{entry}/environ', 'rb') as stream:
                    if environment not in stream.read().split(b'\0'):
                        continue
            if live:
                with open(f'/proc/{entry}/stat', encoding='ascii') as stream:
                    if stream.read().rsplit(')', 1)[1].split()[0] == 'Z':
                        continue
        except OSError:
            continue  # it ended meanwhile, or is not ours to read
        found.append(int(entry))
    return found


def left_after(find, timeout_s: float) -> list:
    """Return what find() still finds once it finds nothing, or after timeout_s (processes)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and find():
        time.sleep(0.1)
    return find()


class ListenerTestCase(unittest.TestCase):
    """
    A launch test's active tests, with a Listener (ros_launch_helpers) on its domain.

    Subclasses set domain_id and listener_name. rclpy is imported only when the tests run:
    launch_testing imports every test module at collection, with or without ROS.
    """

    domain_id = None
    listener_name = None

    @classmethod
    def setUpClass(cls):
        from .ros_launch_helpers import Listener
        cls.listener = Listener(cls.domain_id, cls.listener_name)

    @classmethod
    def tearDownClass(cls):
        cls.listener.close()
