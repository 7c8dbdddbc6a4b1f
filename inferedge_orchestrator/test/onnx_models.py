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
Small ONNX models for the tests, built with the onnx helper API (nothing is downloaded).

onnx and onnxruntime are optional: they are imported inside the functions, so a test module
can import this one whether or not they are installed, and each test that needs them skips
by name (require_onnx) with the reason.
"""

import pytest

OPSET = 13


def require_onnx():
    """Skip the calling test when onnx or onnxruntime is missing; return onnxruntime."""
    pytest.importorskip('onnx', reason='onnx is not installed (pip install onnx)')
    return pytest.importorskip('onnxruntime',
                               reason='onnxruntime is not installed (pip install onnxruntime)')


def save_model(path, nodes, inputs, outputs, initializers=(), metadata=None):
    import onnx
    from onnx import helper
    graph = helper.make_graph(nodes, 'test', inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)])
    model.ir_version = 8  # readable by every onnxruntime this package supports
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def tensor(name, shape, elem=None):
    from onnx import helper, TensorProto
    return helper.make_tensor_value_info(name, TensorProto.FLOAT if elem is None else elem,
                                         shape)


def identity_model(tmp_path, shape, name='identity.onnx'):
    """Build y = x, for any input shape (static or symbolic)."""
    from onnx import helper
    return save_model(tmp_path / name, [helper.make_node('Identity', ['x'], ['y'])],
                      [tensor('x', shape)], [tensor('y', shape)])


def channel_sum_model(tmp_path, batch=1):
    """Build y = sum of x over channels (NCHW, dynamic H and W; batch: 1 or a dynamic name)."""
    from onnx import helper, TensorProto
    node = helper.make_node('ReduceSum', ['x', 'axes'], ['y'], keepdims=1)
    axes = helper.make_tensor('axes', TensorProto.INT64, [1], [1])
    name = 'sum.onnx' if batch == 1 else f'sum_{batch}.onnx'
    return save_model(tmp_path / name, [node], [tensor('x', [batch, 3, 'h', 'w'])],
                      [tensor('y', [batch, 1, 'h', 'w'])], [axes])


def two_input_model(tmp_path):
    """Build y = x * gain + bias: gain (per channel) and bias are constant inputs."""
    from onnx import helper, TensorProto
    nodes = [helper.make_node('Mul', ['x', 'gain'], ['scaled']),
             helper.make_node('Add', ['scaled', 'bias'], ['y']),
             helper.make_node('Shape', ['x'], ['size'])]
    return save_model(tmp_path / 'two.onnx', nodes,
                      [tensor('x', [1, 3, 4, 4]), tensor('gain', [1, 3, 1, 1]),
                       tensor('bias', [1])],
                      [tensor('y', [1, 3, 4, 4]), tensor('size', [4], TensorProto.INT64)])


def raising_model(tmp_path):
    """Build y = x + a 5x5 constant: it fails at run time for other image sizes."""
    from onnx import helper, TensorProto
    const = helper.make_tensor('c', TensorProto.FLOAT, [1, 3, 5, 5], [0.0] * 75)
    return save_model(tmp_path / 'raises.onnx', [helper.make_node('Add', ['x', 'c'], ['y'])],
                      [tensor('x', [1, 3, 'h', 'w'])], [tensor('y', [1, 3, 'h', 'w'])], [const])


def constant_outputs_model(tmp_path, input_shape, outputs, metadata=None, name='const.onnx'):
    """Build a model whose outputs are the given constant arrays, whatever the image."""
    import numpy as np
    from onnx import helper, numpy_helper
    nodes, infos = [], []
    for index, (output, value) in enumerate(outputs.items()):
        value = np.asarray(value, dtype=np.float32)
        nodes.append(helper.make_node('Constant', [], [output],
                                      value=numpy_helper.from_array(value, f'value{index}')))
        infos.append(tensor(output, list(value.shape)))
    return save_model(tmp_path / name, nodes, [tensor('x', input_shape)], infos,
                      metadata=metadata)
