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

from inferedge_orchestrator_ros.environment import LOOPBACK_ENV, loopback_environment

# The settings every test file shares go in at import, before rclpy loads a middleware.
os.environ.update(LOOPBACK_ENV)
os.environ.pop('ROS_LOCALHOST_ONLY', None)  # deprecated in Jazzy; the range above replaces it


def ros_environment(domain_id: int) -> dict:
    """Set and return the environment of a test file's ROS processes (domain_id: 40..60)."""
    env = loopback_environment(domain_id)
    os.environ.update(env)
    return env


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
