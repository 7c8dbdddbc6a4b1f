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
What every demo launch file launches: the orchestrator.launch.py include and a synthetic camera.

A demo names its params file (config/<name>.yaml, or params_file:=... given at launch) and the
parameter overrides it finds at launch (model paths); the node's own launch arguments
(namespace, use_sim_time, log_level, autostart, report_path) are those orchestrator.launch.py
declares, and the camera follows the namespace, the clock and the log level too.
"""

import os
from typing import Any, Dict, List, Optional

from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
import yaml

PACKAGE = 'inferedge_orchestrator_ros'


def params_file(config_name: str) -> LaunchConfiguration:
    """Return the params_file launch argument, by default the package's config/<name>."""
    return LaunchConfiguration('params_file', default=os.path.join(
        get_package_share_directory(PACKAGE), 'config', config_name))


def demo_actions(config_name: str, overrides: Optional[Dict[str, Any]] = None,
                 camera: Optional[Dict[str, Any]] = None) -> List:
    """
    Return the orchestrator (orchestrator.launch.py) and the synthetic camera of a demo.

    overrides: orchestrator parameters over the params file; camera: the camera's.
    """
    params = params_file(config_name)
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(
            get_package_share_directory(PACKAGE), 'launch', 'orchestrator.launch.py')),
        launch_arguments={'params_file': params, 'param_overrides': yaml.safe_dump(
            overrides or {}, default_flow_style=True).strip()}.items())
    # After the include: it declares the launch arguments the camera reads too.
    camera_node = Node(
        package=PACKAGE, executable='synthetic_camera', name='synthetic_camera',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[params, camera or {},
                    {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                    value_type=bool)}],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')])
    return [include, camera_node]
