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
The ROS node's rclpy-free helpers: image conversion, tensors, parameter mapping.

These run without ROS 2.
"""

import array
import os

from inferedge_orchestrator import ConfigError, load_config, PatternSource, reasons
from inferedge_orchestrator_ros import parameter_schema as params
from inferedge_orchestrator_ros.images import array_to_tensor, image_to_array, tensor_fields
import numpy as np
import pytest

BIG = 10 ** 8


def test_image_view_shares_the_message_buffer():
    data = array.array('B', PatternSource(64, 48, 'rgb8').frame_bytes(5))
    image, reason = image_to_array('rgb8', 48, 64, 64 * 3, 0, data, BIG)
    assert reason == ''
    assert image.shape == (48, 64, 3)
    assert np.shares_memory(image, np.frombuffer(data, dtype=np.uint8))


def test_padded_rows_are_skipped_without_copy():
    rows = np.zeros((4, 20), dtype=np.uint8)
    rows[:, :15] = np.arange(60, dtype=np.uint8).reshape(4, 15)
    rows[:, 15:] = 255  # padding
    image, reason = image_to_array('bgr8', 4, 5, 20, 0, rows.tobytes(), BIG)
    assert reason == ''
    assert image.shape == (4, 5, 3)
    assert image.max() < 60
    assert np.array_equal(image.reshape(4, 15), rows[:, :15])


@pytest.mark.parametrize('encoding,channels', [('rgb8', 3), ('bgr8', 3), ('rgba8', 4),
                                               ('bgra8', 4), ('mono8', 1)])
def test_eight_bit_encodings(encoding, channels):
    data = bytes(range(6 * channels)) * 2
    image, reason = image_to_array(encoding, 2, 6, 6 * channels, 0, data, BIG)
    assert reason == '' and image.shape == (2, 6, channels) and image.dtype == np.uint8


@pytest.mark.parametrize('bigendian', [0, 1])
def test_mono16_in_either_byte_order(bigendian):
    values = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    data = values.astype('>u2' if bigendian else '<u2').tobytes()
    image, reason = image_to_array('mono16', 3, 4, 8, bigendian, data, BIG)
    assert reason == ''
    assert image.dtype == np.uint16
    assert np.array_equal(image[:, :, 0], values)


@pytest.mark.parametrize('encoding,dtype', [('16UC1', '<u2'), ('16UC1', '>u2'),
                                            ('32FC1', '<f4'), ('32FC1', '>f4')])
def test_depth_images_pass_through_in_either_byte_order(encoding, dtype):
    values = (np.arange(12).reshape(3, 4) * 250).astype(dtype)
    padded = np.zeros((3, 5), dtype)  # one sample of padding per row
    padded[:, :4] = values
    image, reason = image_to_array(encoding, 3, 4, padded.strides[0], dtype[0] == '>',
                                   padded.tobytes(), BIG)
    assert reason == '' and image.shape == (3, 4, 1)
    assert image.dtype == np.dtype(dtype).newbyteorder('=')
    assert np.array_equal(image[:, :, 0], values)
    odd_step = 4 * 4 + 1  # not a whole number of samples
    assert image_to_array(encoding, 3, 4, odd_step, 0, bytes(100), BIG)[1] == reasons.BAD_ARRAY


def test_generic_eight_bit_types_are_views_in_opencvs_order():
    from inferedge_orchestrator_ros.images import ZERO_COPY
    assert (ZERO_COPY['8UC1'], ZERO_COPY['8UC3'], ZERO_COPY['8UC4']) == ('mono8', 'bgr8',
                                                                         'bgra8')
    data = array.array('B', bytes(range(24)))
    image, reason = image_to_array(ZERO_COPY['8UC4'], 2, 3, 12, 0, data, BIG)
    assert reason == '' and image.shape == (2, 3, 4)
    assert np.shares_memory(image, np.frombuffer(data, dtype=np.uint8))


@pytest.mark.parametrize('fields,reason', [
    (('yuv422', 4, 5, 10, 0, bytes(40)), reasons.UNKNOWN_ENCODING),  # conversion.py's
    (('rgb8', 0, 5, 15, 0, b''), reasons.ZERO_SIZE),
    (('rgb8', 4, 0, 0, 0, b''), reasons.ZERO_SIZE),
    (('rgb8', 4, 5, 14, 0, bytes(56)), reasons.STEP_TOO_SMALL),
    (('rgb8', 4, 5, 15, 0, bytes(59)), reasons.DATA_TOO_SHORT),
    (('mono16', 2, 2, 5, 0, bytes(10)), reasons.BAD_ARRAY),
    (('rgb8', 100, 100, 300, 0, bytes(30000)), reasons.TOO_MANY_PIXELS),
])
def test_malformed_images_have_a_reason(fields, reason):
    image, why = image_to_array(*fields, 9999)
    assert image is None and why == reason


@pytest.mark.parametrize('dtype', ['float32', 'float16', 'float64', 'int64', 'uint8', 'bool',
                                   '>f4', 'int32'])
def test_tensor_round_trip(dtype):
    values = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    shape, code, data = tensor_fields(values)
    assert isinstance(data, array.array) and data.typecode == 'B'
    assert code != 0
    assert np.array_equal(array_to_tensor(shape, code, data), values)


def _values(**overrides):
    """Parameter values as the node would read them (defaults plus overrides)."""
    values = {p.name: p.default for p in params.GLOBAL_PARAMS}
    values.update({f'cpu.{p.name}': p.default for p in params.POOL_PARAMS})
    for task in ('detector', 'ocr'):
        for p in params.TASK_PARAMS:
            values[f'{task}.{p.name}'] = p.default
        for p in params.option_params(params.WORKER_OPTIONS, 'dummy'):
            values[f'{task}.{p.name}'] = None
    values.update(overrides)
    return values


def test_parameters_map_to_a_valid_core_config():
    values = _values(**{'detector.priority': 100, 'detector.latency_budget_ms': 80,
                        'detector.worker_options.latency_ms': 20, 'ocr.inputs': ['front'],
                        'telemetry_period_s': 0.5, 'shedding.tick_s': 0.25})
    data = params.config_from_parameters(values.get, ['camera', 'front'], ['detector', 'ocr'],
                                         ['cpu'])
    config = load_config(data)
    detector = config.task('detector')
    assert detector.priority == 100 and detector.latency_budget_ms == 80.0
    assert detector.worker_options['latency_ms'] == 20.0
    assert config.task('ocr').inputs == ['front']
    assert config.telemetry.period_s == 0.5 and config.shedding.tick_s == 0.25
    assert list(config.inputs) == ['camera', 'front']


def test_core_validation_names_the_parameter():
    values = _values(**{'ocr.queue_size': 0})
    data = params.config_from_parameters(values.get, ['camera'], ['detector', 'ocr'], ['cpu'])
    with pytest.raises(ConfigError, match=r'tasks\.ocr\.queue_size'):
        load_config(data)


def test_parameter_checks():
    budget = params.TASK['latency_budget_ms']
    assert budget.check('d.latency_budget_ms', 80) is None
    assert budget.check('d.latency_budget_ms', 80.0) is None
    assert 'out of range' in budget.check('d.latency_budget_ms', -1.0)
    assert 'not a number' in budget.check('d.latency_budget_ms', 'fast')
    priority = params.TASK['priority']
    assert 'out of range' in priority.check('d.priority', 5000)
    assert 'not an integer' in priority.check('d.priority', 5.5)
    assert 'allowed: drop_oldest' in params.TASK['drop_policy'].check('d.drop_policy', 'x')
    assert params.GLOBAL['tasks'].check('tasks', ['a', 'b']) is None
    live = {p.name for p in params.TASK_PARAMS if p.live}
    assert live == {'priority', 'latency_budget_ms', 'camera_priority', 'camera_budget_ms',
                    'enabled', 'max_rate_hz', 'min_rate_hz',
                    'queue_size', 'drop_policy', 'order', 'on_deadline',
                    'expected_latency_ms', 'timeout_ms', 'max_batch_delay_ms'}


def test_block_names_are_checked():
    taken = {}
    params.check_names('tasks', ['detector'], taken)
    with pytest.raises(ConfigError, match='already the name'):
        params.check_names('pools', ['detector'], taken)
    with pytest.raises(ConfigError, match='reserved'):
        params.check_names('tasks', ['shedding'], {})
    with pytest.raises(ConfigError, match='not a valid name'):
        params.check_names('inputs', ['front camera'], {})


def test_worker_option_parameters_follow_the_worker():
    names = {p.name for p in params.option_params(params.WORKER_OPTIONS, 'dummy')}
    assert 'worker_options.latency_ms' in names and 'worker_options.fail_every' in names
    onnx = {p.name: p.default for p in params.option_params(params.WORKER_OPTIONS, 'onnxruntime')}
    assert onnx['worker_options.model_path'] is None  # required: no default


def test_every_parameter_is_documented():
    import os
    path = os.path.join(os.path.dirname(__file__), '..', '..', 'docs', 'node.md')
    if not os.path.exists(path):
        pytest.skip('docs/node.md is not beside the package (installed copy)')
    with open(path, encoding='utf-8') as stream:
        text = stream.read()
    for spec in params.GLOBAL_PARAMS + params.INPUT_PARAMS + params.TASK_PARAMS + \
            params.POOL_PARAMS:
        assert f'`{spec.name}`' in text, spec.name


def test_the_parameter_tables_of_the_docs_are_made_from_the_schema():
    # After a change to a Field:
    # python3 inferedge_orchestrator_ros/parameter_schema.py docs/node.md
    path = os.path.join(os.path.dirname(__file__), '..', '..', 'docs', 'node.md')
    with open(path, encoding='utf-8') as stream:
        text = stream.read()
    assert params.docs_with_tables(text) == text


def test_every_malformed_reason_of_the_node_is_documented():
    # A new reason goes into contracts/reasons.py, docs/node.md and InputStats.msg in one change.
    here = os.path.dirname(__file__)
    with open(os.path.join(here, '..', '..', 'docs', 'node.md'), encoding='utf-8') as stream:
        docs = stream.read()
    with open(os.path.join(here, '..', '..', 'inferedge_orchestrator_msgs', 'msg',
                           'InputStats.msg'), encoding='utf-8') as stream:
        comment = next(line for line in stream if line.startswith('ReasonCount[] malformed'))
    # unknown_input never reaches an input; decode errors are counted apart (decode_errors).
    node_reasons = set(reasons.MALFORMED_REASONS) - {reasons.UNKNOWN_INPUT,
                                                     reasons.DECODE_ERROR}
    listed = {word.strip(' ,\n') for word in comment.split('#', 1)[1].split(',')}
    assert listed == node_reasons
    for reason in node_reasons:
        assert f'| `{reason}` |' in docs, reason


def _flatten(tree, prefix=''):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f'{prefix}{key}.')
        else:
            yield f'{prefix}{key}', value


def _params_files():
    folder = os.path.join(os.path.dirname(__file__), '..', 'config')
    if not os.path.isdir(folder):  # an installed copy: the package's share folder
        from inferedge_orchestrator_ros.environment import share
        folder = share('config')
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith('.yaml'))


@pytest.mark.parametrize('path', _params_files(), ids=os.path.basename)
def test_every_shipped_params_file_makes_a_valid_config(path):
    import yaml
    with open(path, encoding='utf-8') as stream:
        files = yaml.safe_load(stream)
    given = dict(_flatten(next(block['ros__parameters'] for node, block in files.items()
                               if node.endswith('inferedge_orchestrator'))))
    pools, tasks = given.get('pools', ['cpu']), given['tasks']
    values = {p.name: p.default for p in params.GLOBAL_PARAMS}
    values.update({f'{pool}.{p.name}': p.default for pool in pools for p in params.POOL_PARAMS})
    values.update({f'{task}.{p.name}': p.default for task in tasks for p in params.TASK_PARAMS})
    values.update(given)
    for task in tasks:  # model paths are given at launch (the demo's launch arguments)
        if values[f'{task}.worker'] == 'onnxruntime':
            values.setdefault(f'{task}.worker_options.model_path', f'/models/{task}.onnx')
    config = load_config(params.config_from_parameters(values.get, given['inputs'], tasks,
                                                       pools))
    assert [t.name for t in config.tasks] == tasks and list(config.pools) == pools
