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
Launch the orchestrator node with a parameters file.

ros2 launch inferedge_orchestrator_ros orchestrator.launch.py params_file:=my.yaml
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = LaunchConfiguration('params_file')
    namespace = LaunchConfiguration('namespace')
    log_level = LaunchConfiguration('log_level')
    use_sim_time = LaunchConfiguration('use_sim_time')
    autostart = LaunchConfiguration('autostart')
    report_path = LaunchConfiguration('report_path')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('inferedge_orchestrator_ros'), 'config', 'demo.yaml']),
            description='parameters file with an inferedge_orchestrator block'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='log level: debug, info, warn, error or fatal'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (frame ages from the simulated clock)'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate without a lifecycle manager'),
        DeclareLaunchArgument('report_path', default_value='',
                              description='write the final JSON report there on exit'),
        Node(
            package='inferedge_orchestrator_ros',
            executable='orchestrator',
            name='inferedge_orchestrator',
            namespace=namespace,
            output='screen',
            parameters=[
                params_file,
                {'use_sim_time': ParameterValue(use_sim_time, value_type=bool),
                 'autostart': ParameterValue(autostart, value_type=bool),
                 'report_path': report_path},
            ],
            arguments=['--ros-args', '--log-level', log_level],
        ),
    ])
