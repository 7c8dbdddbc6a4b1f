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
The loopback-only DDS environment the tests and benchmarks give every ROS process they start.

Also where they find the package's executables and share files. Run as a script it prints the
variables as shell exports (.ci/run evaluates them).
"""

import os
import shlex

PACKAGE = 'inferedge_orchestrator_ros'

CYCLONEDDS_URI = (
    '<CycloneDDS><Domain><General><Interfaces><NetworkInterface name="lo"/></Interfaces>'
    '<AllowMulticast>false</AllowMulticast></General><Discovery><ParticipantIndex>auto'
    '</ParticipantIndex><MaxAutoParticipantIndex>64</MaxAutoParticipantIndex><Peers>'
    '<Peer Address="127.0.0.1"/></Peers></Discovery></Domain></CycloneDDS>')

LOOPBACK_ENV = {
    'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
    'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp',
    'CYCLONEDDS_URI': CYCLONEDDS_URI,
}


def loopback_environment(domain_id: int) -> dict:
    """Return the variables of a loopback-only Cyclone DDS setup on domain_id."""
    return dict(LOOPBACK_ENV, ROS_DOMAIN_ID=str(domain_id))


def executable(name: str) -> str:
    """Return the path of one of the package's executables (the process is then the node)."""
    from ament_index_python.packages import get_package_prefix
    return os.path.join(get_package_prefix(PACKAGE), 'lib', PACKAGE, name)


def share(*parts: str) -> str:
    """Return a path in the package's share folder (config/demo.yaml, say)."""
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


if __name__ == '__main__':
    for name, value in LOOPBACK_ENV.items():
        print(f'export {name}={shlex.quote(value)}')
