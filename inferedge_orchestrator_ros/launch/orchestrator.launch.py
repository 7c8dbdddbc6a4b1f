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

ros2 launch inferedge_orchestrator_ros orchestrator.launch.py params_file:=my.yaml \
    [namespace:=robot1] [use_sim_time:=true] [param_overrides:="{mode: fifo}"]

Every launch argument of the node is declared here once; the demo launch files include this
file with their params file and overrides (param_overrides: a YAML mapping of parameter names
to values, applied over the params file, e.g. a model path found at launch).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
import yaml


def parameter_overrides(context) -> dict:
    text = LaunchConfiguration('param_overrides').perform(context)
    overrides = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(overrides, dict):
        raise RuntimeError(f'param_overrides: {text!r} is not a YAML mapping; allowed: '
                           'parameter names to values, e.g. "{mode: fifo, cpu.slots: 2}"')
    return overrides


def orchestrator_node(context):
    return [Node(
        package='inferedge_orchestrator_ros',
        executable='orchestrator',
        name='inferedge_orchestrator',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        parameters=[
            LaunchConfiguration('params_file'),
            parameter_overrides(context),
            {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                            value_type=bool),
             'autostart': ParameterValue(LaunchConfiguration('autostart'), value_type=bool),
             'report_path': LaunchConfiguration('report_path')},
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('inferedge_orchestrator_ros'), 'config', 'demo.yaml']),
            description='parameters file with an inferedge_orchestrator block'),
        DeclareLaunchArgument('param_overrides', default_value='',
                              description='a YAML mapping of parameters applied over the '
                                          'params file, e.g. "{mode: fifo}"'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node (and of the demo cameras)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='log level: debug, info, warn, error or fatal'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (frame ages from the simulated clock)'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate without a lifecycle manager'),
        DeclareLaunchArgument('report_path', default_value='',
                              description='write the final JSON report there on exit'),
        OpaqueFunction(function=orchestrator_node),
    ])
