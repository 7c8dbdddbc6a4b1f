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
Generated ONNX models for the ROS tests: constant outputs whatever the image (no download).

onnx is imported inside the functions (a test module may import this one without it; each test
that needs it skips by name).
"""

import numpy as np

# One car at (32, 32) 16x16 of a 64x64 input, in a YOLOv8-shaped [1, 4 + 2, 32] output.
ONE_CAR = np.zeros((32, 4 + 2), dtype=np.float32)
ONE_CAR[0] = [32.0, 32.0, 16.0, 16.0, 0.0, 0.9]
DETECTOR_INPUT = [1, 3, 64, 64]


def constant_model(path, input_shape, outputs) -> str:
    """Write a model with one image input whose outputs (name -> array) are constants."""
    from onnx import helper, numpy_helper, save, TensorProto
    nodes, infos = [], []
    for name, value in outputs.items():
        value = np.ascontiguousarray(value, dtype=np.float32)
        nodes.append(helper.make_node('Constant', [], [name],
                                      value=numpy_helper.from_array(value, f'{name}_value')))
        infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes, 'constant', [helper.make_tensor_value_info('x', TensorProto.FLOAT, input_shape)],
        infos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8  # readable by every onnxruntime this package supports
    save(model, str(path))
    return str(path)


def detector_model(path) -> str:
    """Write the one-car detector (YOLOv8 layout, 64x64 input)."""
    return constant_model(path, DETECTOR_INPUT, {'output0': ONE_CAR.T[None]})
