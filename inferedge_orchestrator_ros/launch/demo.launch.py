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
The demo: a synthetic camera and the orchestrator with three dummy workers, overloaded.

ros2 launch inferedge_orchestrator_ros demo.launch.py
ros2 topic echo /inferedge_orchestrator/telemetry
ros2 topic echo /inferedge_orchestrator/decisions
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    package = FindPackageShare('inferedge_orchestrator_ros')
    params_file = LaunchConfiguration('params_file')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file', default_value=PathJoinSubstitution([package, 'config', 'demo.yaml']),
            description='parameters of synthetic_camera and inferedge_orchestrator'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='log level of both nodes'),
        DeclareLaunchArgument('report_path', default_value='',
                              description='write the final JSON report there on exit'),
        Node(
            package='inferedge_orchestrator_ros',
            executable='synthetic_camera',
            name='synthetic_camera',
            output='screen',
            parameters=[params_file],
            arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
        ),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([package, 'launch', 'orchestrator.launch.py'])),
            launch_arguments={
                'params_file': params_file,
                'log_level': LaunchConfiguration('log_level'),
                'report_path': LaunchConfiguration('report_path'),
            }.items(),
        ),
    ])
