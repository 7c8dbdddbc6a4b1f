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

"""Preprocessing: resize modes, channel order, layout, normalisation, dtype, buffers, options."""

import subprocess
import sys
import threading

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.contracts.inference import center_crop_box, letterbox_geometry
from inferedge_orchestrator.workers import preprocess
from inferedge_orchestrator.workers.onnx import OnnxWorker
from inferedge_orchestrator.workers.preprocess import constant_input, Preprocessor, resize
from inferedge_orchestrator.workers.tensorrt import TensorRTWorker
import numpy as np
import pytest


def options(**changes):
    values = {key: field.default for key, field in preprocess.PREPROCESS_OPTIONS.items()}
    values.update(changes)
    return values


def ramp(height, width, channels=3):
    values = np.arange(height * width * channels, dtype=np.int64) % 251
    return values.reshape(height, width, channels).astype(np.uint8)


def test_numpy_resize_matches_opencv():
    pytest.importorskip('cv2')
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for width, height in ((20, 15), (90, 70)):
        ours = resize(image, width, height, 'linear', use_opencv=False)
        theirs = resize(image, width, height, 'linear', use_opencv=True)
        assert ours.shape == theirs.shape == (height, width, 3)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 2
    nearest = resize(image, 106, 74, 'nearest', use_opencv=False)
    assert np.array_equal(nearest[::2, ::2], image)


def test_resize_keeps_a_single_channel_and_uint16():
    image = np.arange(64, dtype=np.uint16).reshape(8, 8, 1) * 1000
    for use_opencv in (False, None):
        out = resize(image, 4, 4, 'linear', use_opencv=use_opencv)
        assert out.shape == (4, 4, 1) and out.dtype == np.uint16


def test_letterbox_and_center_crop_geometry():
    assert letterbox_geometry(480, 640, 640, 640) == (1.0, 480, 640, 80, 0)
    scale, new_h, new_w, top, left = letterbox_geometry(100, 50, 64, 64)
    assert (scale, new_h, new_w, top, left) == (0.64, 64, 32, 0, 16)
    assert center_crop_box(480, 640, 224, 224) == (0, 80, 480, 480)
    assert center_crop_box(100, 100, 50, 100) == (25, 0, 50, 100)


def test_stretch_nchw_float_with_mean_std():
    prep = Preprocessor('x', [1, 3, 4, 6], np.float32,
                        options(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert prep.layout == 'NCHW'
    image = np.zeros((8, 12, 3), dtype=np.uint8)
    image[..., 0] = 255
    out = prep(image, 'rgb8')
    assert out.shape == (1, 3, 4, 6) and out.dtype == np.float32
    assert np.allclose(out[0, 0], 1.0) and np.allclose(out[0, 1:], -1.0)


def test_channel_order_follows_the_encoding():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[..., 2] = 200  # blue in rgb8, red in bgr8
    rgb = Preprocessor('x', [1, 3, 2, 2], np.uint8, options(scale=1.0))
    assert rgb(image, 'rgb8')[0, :, 0, 0].tolist() == [0, 0, 200]
    assert rgb(image, 'bgr8')[0, :, 0, 0].tolist() == [200, 0, 0]
    bgr = Preprocessor('x', [1, 3, 2, 2], np.uint8, options(scale=1.0, channel_order='bgr'))
    assert bgr(image, 'rgb8')[0, :, 0, 0].tolist() == [200, 0, 0]
    rgba = np.concatenate([image, np.full((2, 2, 1), 7, np.uint8)], axis=2)
    assert rgb(rgba, 'bgra8')[0, :, 0, 0].tolist() == [200, 0, 0]
    gray = Preprocessor('x', [1, 1, 2, 2], np.float32, options(scale=1.0,
                                                               channel_order='gray'))
    assert gray(image, 'bgr8')[0, 0, 0, 0] == pytest.approx(0.299 * 200, rel=1e-5)
    mono = np.full((2, 2), 9, dtype=np.uint8)
    assert rgb(mono, 'mono8')[0, :, 1, 1].tolist() == [9, 9, 9]


def test_nhwc_is_detected_and_filled():
    prep = Preprocessor('x', ['n', 5, 7, 3], np.float32, options(scale=1.0))
    assert prep.layout == 'NHWC'
    image = ramp(5, 7)
    assert np.array_equal(prep(image, 'rgb8')[0], image.astype(np.float32))
    explicit = Preprocessor('x', [1, 3, 3, 3], np.float32, options(layout='NHWC'))
    assert explicit.layout == 'NHWC'


def test_dynamic_dimensions_from_the_image_or_from_input_size():
    prep = Preprocessor('x', [1, 3, 'h', 'w'], np.float32, options(size_multiple=32))
    assert prep(ramp(100, 200), 'rgb8').shape == (1, 3, 128, 224)
    assert prep.warmup_size() == (480, 640)
    fixed = Preprocessor('x', [None, 3, -1, -1], np.float32, options(input_size=(48, 320)))
    assert fixed(ramp(480, 640), 'rgb8').shape == (1, 3, 48, 320)
    assert fixed.warmup_size() == (48, 320)
    unbatched = Preprocessor('x', [3, 'h', 'w'], np.float32, options())
    assert unbatched(ramp(6, 4), 'rgb8').shape == (3, 6, 4)


def test_letterbox_pads_and_center_crop_crops():
    prep = Preprocessor('x', [1, 8, 8, 3], np.uint8,
                        options(resize='letterbox', scale=1.0, pad_value=114.0))
    image = np.full((4, 8, 3), 10, dtype=np.uint8)
    out = prep(image, 'rgb8')[0]
    assert (out[:2] == 114).all() and (out[6:] == 114).all() and (out[2:6] == 10).all()
    crop = Preprocessor('x', [1, 4, 4, 1], np.uint8,
                        options(resize='center_crop', scale=1.0, channel_order='gray',
                                interpolation='nearest'))
    image = np.zeros((4, 8), dtype=np.uint8)
    image[:, 2:6] = 200
    assert (crop(image, 'mono8') == 200).all()


def test_float16_and_int_outputs_are_rounded_and_clipped():
    half = Preprocessor('x', [1, 3, 2, 2], np.float16, options())
    assert half(np.full((2, 2, 3), 255, np.uint8), 'rgb8').dtype == np.float16
    clipped = Preprocessor('x', [1, 3, 1, 1], np.int8, options(scale=1.0, mean=(100.0,)))
    assert clipped(np.full((1, 1, 3), 255, np.uint8), 'rgb8').ravel().tolist() == [127] * 3
    forced = Preprocessor('x', [1, 3, 1, 1], np.float32, options(dtype='float16'))
    assert forced.dtype == np.float16


def test_buffers_are_reused_per_thread_and_out_is_honoured():
    prep = Preprocessor('x', [1, 3, 4, 4], np.float32, options())
    image = ramp(4, 4)
    first = prep(image, 'rgb8')
    assert prep(image, 'rgb8') is first
    other = []
    thread = threading.Thread(target=lambda: other.append(prep(image, 'rgb8')))
    thread.start()
    thread.join()
    assert other[0] is not first and np.array_equal(other[0], first)
    out = np.empty((1, 3, 4, 4), dtype=np.float32)
    assert prep(image, 'rgb8', out=out) is out
    with pytest.raises(ValueError, match='buffer shape'):
        prep(image, 'rgb8', out=np.empty((1, 3, 2, 2), dtype=np.float32))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match='not an image input'):
        Preprocessor('x', [1, 10], np.float32, options())
    with pytest.raises(ValueError, match='wants 1 channel'):
        Preprocessor('x', [1, 1, 8, 8], np.float32, options())
    with pytest.raises(ValueError, match='differs from the model'):
        Preprocessor('x', [1, 3, 8, 8], np.float32, options(input_size=(4, 4)))
    with pytest.raises(ValueError, match='std must not be 0'):
        Preprocessor('x', [1, 3, 8, 8], np.float32, options(std=(0.0,)))


def test_constant_inputs_take_the_model_shape_and_dtype():
    assert constant_input('k', 2, [1, 2], np.float32).tolist() == [[2.0, 2.0]]
    assert constant_input('k', [1, 2, 3, 4], [2, 2], np.int64).dtype == np.int64
    assert constant_input('k', [[480, 640]], ['n', 2], np.float32).shape == (1, 2)
    with pytest.raises(ValueError, match="extra input 'k'"):
        constant_input('k', [1, 2, 3], [2, 2], np.float32)


@pytest.mark.parametrize('worker', [OnnxWorker, TensorRTWorker])
def test_option_errors_name_the_field(worker):
    path = {OnnxWorker: 'model_path', TensorRTWorker: 'engine_path'}[worker]
    ok = worker.validate_options({path: 'm'}, 'w')
    assert ok['warmup'] == 3 and ok['resize'] == 'stretch' and ok['extra_inputs'] is None
    cases = [
        ({}, f"w: missing required key '{path}'"),
        ({path: 'm', 'resize': 'fit'}, 'w.resize: .fit. is not allowed; allowed: stretch'),
        ({path: 'm', 'mean': [1, 2]}, 'w.mean: .* a list of 1 or 3 numbers'),
        ({path: 'm', 'input_size': [480]}, 'w.input_size: .* 2 integers'),
        ({path: 'm', 'warmup': -1}, 'w.warmup: -1 is out of range; allowed: 0..10000'),
        ({path: 'm', 'extra_inputs': {'k': 'x'}}, 'w.extra_inputs.k'),
        ({path: 'm', 'extra_inputs': '{oops'}, 'w.extra_inputs: .* JSON'),
        ({path: 'm', 'outputs': [1]}, 'w.outputs'),
        ({path: 'm', 'typo': 1}, "w: unknown key 'typo' for worker"),
    ]
    for given, message in cases:
        with pytest.raises(ConfigError, match=message):
            worker.validate_options(given, 'w')


def test_onnx_providers_and_json_constants():
    ok = OnnxWorker.validate_options({'model_path': 'm', 'providers': ['cuda', 'cpu'],
                                      'extra_inputs': '{"scale": [2.0]}'}, 'w')
    assert ok['providers'] == ('CUDAExecutionProvider', 'CPUExecutionProvider')
    assert ok['extra_inputs'] == {'scale': [2.0]}
    assert OnnxWorker.validate_options({'model_path': 'm', 'providers': 'OpenVINOExecution'
                                        'Provider'}, 'w')['providers'] == (
        'OpenVINOExecutionProvider',)
    with pytest.raises(ConfigError, match="w.providers: 'gpu' is not allowed"):
        OnnxWorker.validate_options({'model_path': 'm', 'providers': ['gpu']}, 'w')


def test_config_validation_imports_no_runtime():
    code = ('import sys\n'
            'from inferedge_orchestrator.config.loader import load_config\n'
            "load_config({'tasks': [\n"
            "    {'name': 'a', 'worker': 'onnxruntime', 'worker_options': {'model_path': 'm'}},\n"
            "    {'name': 'b', 'worker': 'tensorrt', 'worker_options': {'engine_path': 'e'}}]})\n"
            "print(sorted(m for m in ('onnxruntime', 'tensorrt', 'pycuda', 'cv2')\n"
            '             if m in sys.modules))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


def test_worker_options_survive_a_config_round_trip():
    config = load_config({'tasks': [{'name': 'a', 'worker': 'onnxruntime', 'worker_options': {
        'model_path': 'm', 'mean': [0.5, 0.5, 0.5], 'input_size': [48, 320],
        'extra_inputs': {'k': [1, 2]}}}]})
    again = load_config(config.to_dict())
    assert again.tasks[0].worker_options == config.tasks[0].worker_options
