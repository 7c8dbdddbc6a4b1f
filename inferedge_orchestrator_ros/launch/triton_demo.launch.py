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
The rapidocr demo with the detector on a Triton Inference Server, the others local.

ros2 launch inferedge_orchestrator_ros triton_demo.launch.py triton_url:=gpu-server:8001 \
    [detector_model_name:=detector] [classifier_model:=...] [recognizer_model:=...]

The detector's pool is a server pool (config/triton_demo.yaml); the classifier and the
recognizer run with onnxruntime on the local CPU slot, their models taken from the
rapidocr-onnxruntime pip package unless given. With start_server:=true a tritonserver from
the nvidia-pytriton wheel (INFEREDGE_TRITON_VENV, docs/workers.md) serves the detector model
(detector_model:=..., else rapidocr's) on 127.0.0.1 of this machine, for trying it out.
params_file defaults to config/triton_demo.yaml; the other arguments are
orchestrator.launch.py's.
"""

import os
import tempfile

from inferedge_orchestrator_ros.demo_launch import demo_actions
from inferedge_orchestrator_ros.demo_models import model_paths, RAPIDOCR_MODELS
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration

LOCAL_TASKS = ('classifier', 'recognizer')


def local_server(detector_model: str):
    """Return a LocalTriton (not started) that serves detector_model as model detector."""
    from inferedge_orchestrator import local_triton
    folder = tempfile.mkdtemp(prefix='triton_demo_')
    repository = os.path.join(folder, 'models')
    local_triton.write_onnx_model(repository, 'detector', detector_model, intra_op_threads=2)
    return local_triton.LocalTriton(repository, folder)


def launch_nodes(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in (
        'triton_url', 'detector_model_name', 'start_server')}
    tasks = list(LOCAL_TASKS)
    if value['start_server'] == 'true':
        tasks.append('detector')
    paths = model_paths({task: LaunchConfiguration(f'{task}_model').perform(context)
                         for task in tasks})
    overrides = {f'{task}.worker_options.model_path': paths[task] for task in LOCAL_TASKS}
    overrides['detector.worker_options.model_name'] = value['detector_model_name']
    actions = []
    if value['start_server'] == 'true':
        server = local_server(paths['detector'])
        actions.append(ExecuteProcess(cmd=server.command(), env=server.environment(),
                                      name='tritonserver', output='log'))
        overrides['detector.worker_options.url'] = server.grpc_url
        overrides['detector.worker_options.model_name'] = 'detector'
    elif value['triton_url']:
        overrides['detector.worker_options.url'] = value['triton_url']
    return actions + demo_actions('triton_demo.yaml', overrides)


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument('triton_url', default_value='',
                              description="the Triton server's gRPC host:port (empty: the "
                                          "params file's)"),
        DeclareLaunchArgument('detector_model_name', default_value='detector',
                              description="the detector's model on the server"),
        DeclareLaunchArgument('start_server', default_value='false',
                              description='true: serve the detector from a local tritonserver '
                                          '(nvidia-pytriton wheel) on 127.0.0.1'),
    ]
    for task in RAPIDOCR_MODELS:
        where = 'for start_server' if task == 'detector' else 'of the local task'
        arguments.append(DeclareLaunchArgument(
            f'{task}_model', default_value='',
            description=f'ONNX model of the {task} {where} (empty: the one in the '
                        'rapidocr-onnxruntime package, when installed)'))
    return LaunchDescription(arguments + [OpaqueFunction(function=launch_nodes)])
