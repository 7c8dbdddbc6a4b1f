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
installed (pip install --no-deps rapidocr-onnxruntime ships three PP-OCR models). params_file
defaults to config/onnx_demo.yaml; the other arguments are orchestrator.launch.py's.
"""

from inferedge_orchestrator_ros.demo_launch import demo_actions
from inferedge_orchestrator_ros.demo_models import model_paths, RAPIDOCR_MODELS
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration


def launch_nodes(context):
    paths = model_paths({task: LaunchConfiguration(f'{task}_model').perform(context)
                         for task in RAPIDOCR_MODELS})
    overrides = {f'{task}.worker_options.model_path': path for task, path in paths.items()}
    overrides['mode'] = LaunchConfiguration('mode').perform(context)
    return demo_actions('onnx_demo.yaml', overrides)


def generate_launch_description():
    arguments = [DeclareLaunchArgument('mode', default_value='priority',
                                       description='priority (the scheduler) or fifo (the '
                                                   'baseline)')]
    for task in RAPIDOCR_MODELS:
        arguments.append(DeclareLaunchArgument(
            f'{task}_model', default_value='',
            description=f'ONNX model of the {task} task (empty: the one in the '
                        'rapidocr-onnxruntime package, when installed)'))
    return LaunchDescription(arguments + [OpaqueFunction(function=launch_nodes)])
