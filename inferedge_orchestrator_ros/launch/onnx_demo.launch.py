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
Three real ONNX models (by path) behind a synthetic camera: the real-model demo.

ros2 launch inferedge_orchestrator_ros onnx_demo.launch.py \
    detector_model:=/path/det.onnx classifier_model:=/path/cls.onnx \
    recognizer_model:=/path/rec.onnx [mode:=fifo]

A model path left empty is taken from the rapidocr-onnxruntime pip package when it is
installed (pip install --no-deps rapidocr-onnxruntime ships three PP-OCR models).
"""

from inferedge_orchestrator_ros.demo_models import model_paths as demo_model_paths
from inferedge_orchestrator_ros.demo_models import RAPIDOCR_MODELS
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def model_paths(context):
    return demo_model_paths({task: LaunchConfiguration(f'{task}_model').perform(context)
                             for task in RAPIDOCR_MODELS})


def launch_nodes(context):
    params_file = LaunchConfiguration('params_file')
    log_level = LaunchConfiguration('log_level')
    overrides = {f'{task}.worker_options.model_path': path
                 for task, path in model_paths(context).items()}
    overrides['mode'] = LaunchConfiguration('mode').perform(context)
    overrides['report_path'] = LaunchConfiguration('report_path').perform(context)
    return [
        Node(package='inferedge_orchestrator_ros', executable='synthetic_camera',
             name='synthetic_camera', output='screen', parameters=[params_file],
             arguments=['--ros-args', '--log-level', log_level]),
        Node(package='inferedge_orchestrator_ros', executable='orchestrator',
             name='inferedge_orchestrator', output='screen',
             parameters=[params_file, overrides],
             arguments=['--ros-args', '--log-level', log_level]),
    ]


def generate_launch_description():
    package = FindPackageShare('inferedge_orchestrator_ros')
    arguments = [
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution([package, 'config', 'onnx_demo.yaml']),
            description='parameters of synthetic_camera and inferedge_orchestrator'),
        DeclareLaunchArgument('mode', default_value='priority',
                              description='priority (the scheduler) or fifo (the baseline)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='log level of both nodes'),
        DeclareLaunchArgument('report_path', default_value='',
                              description='write the final JSON report there on exit'),
    ]
    for task in RAPIDOCR_MODELS:
        arguments.append(DeclareLaunchArgument(
            f'{task}_model', default_value='',
            description=f'ONNX model of the {task} task (empty: the one in the '
                        'rapidocr-onnxruntime package, when installed)'))
    return LaunchDescription(arguments + [OpaqueFunction(function=launch_nodes)])
