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
The camera encodings: each converts to the pixels OpenCV gives for the same bytes (no rclpy).

Tolerances (docs/node.md): 0 for YUV 4:2:2, nv21 and the 8-bit Bayer patterns to colour
(cv_bridge and OpenCV run the same cvtColor); 1 for 8-bit Bayer to mono8 (the libopencv that
cv_bridge links and the cv2 module round it differently); 0 for 16-bit Bayer against OpenCV's
demosaicing scaled by 255 / 65535 and rounded (cv_bridge's 16 -> 8 bit step); 2 for nv24
(OpenCV has no nv24 conversion) against the BT.601 limited-range formula that OpenCV's nv21
conversion uses.

The frames are the synthetic camera's patterns made with OpenCV's inverse conversions
(camera_patterns.py). cv_bridge and OpenCV are imported inside the tests (module_rules).
"""

import sys

from inferedge_orchestrator import load_config, PatternSource, reasons
from inferedge_orchestrator_ros import conversion
from inferedge_orchestrator_ros.camera_patterns import camera_image, CameraPattern, ENCODINGS
from inferedge_orchestrator_ros.conversion import CAMERA_ENCODINGS, Converter
from inferedge_orchestrator_ros.images import image_to_array, ZERO_COPY
import numpy as np
import pytest

BIG = 10 ** 8
HEIGHT, WIDTH = 48, 64
TARGETS = ('rgb8', 'bgr8', 'mono8')
# OpenCV names a Bayer conversion after the second row's first two pixels (cv_bridge's table).
OPENCV_BAYER = {'rggb': 'BG', 'bggr': 'RG', 'gbrg': 'GR', 'grbg': 'GB'}
OPENCV_TARGET = {'rgb8': 'RGB', 'bgr8': 'BGR', 'mono8': 'GRAY'}


@pytest.fixture(scope='module')
def converter():
    pytest.importorskip('cv2', reason='OpenCV converts nv21 and nv24 and makes the frames')
    made = Converter()
    if made.missing[conversion.CV_BRIDGE]:
        pytest.skip(f'cv_bridge cannot be used: {made.missing[conversion.CV_BRIDGE]} (source '
                    'the ROS 2 setup)')
    return made


def _rgb(pattern='noise', width=WIDTH, height=HEIGHT):
    return PatternSource(width, height, 'rgb8', pattern).frame(3)


def _bt601(luma, u, v, target):
    """Return the BT.601 limited-range conversion that OpenCV's nv21 conversion uses."""
    scaled = np.maximum(luma.astype(np.float64) - 16.0, 0.0) * 1.164
    u, v = u.astype(np.float64) - 128.0, v.astype(np.float64) - 128.0
    rgb = np.stack([scaled + 1.596 * v, scaled - 0.391 * u - 0.813 * v, scaled + 2.018 * u],
                   axis=-1)
    rgb = np.clip(np.rint(rgb), 0, 255)
    if target == 'mono8':
        return luma[:, :, None].astype(np.float64)
    return rgb[:, :, ::-1] if target == 'bgr8' else rgb


def opencv_reference(encoding, rows, target, height=HEIGHT, width=WIDTH):
    """Return what OpenCV makes of a frame's rows (the expected pixels) and the tolerance."""
    import cv2
    spec = CAMERA_ENCODINGS[encoding]
    name = OPENCV_TARGET[target]
    if spec.layout == 'packed422':
        order = 'UYVY' if spec.bridge_name == 'yuv422' else 'YUY2'
        code = getattr(cv2, f'COLOR_YUV2{name}_{order}')
        expected = cv2.cvtColor(rows.reshape(height, width, 2), code)
    elif spec.layout == 'nv21':
        expected = cv2.cvtColor(rows, getattr(cv2, f'COLOR_YUV2{name}_NV21'))
    elif spec.layout == 'nv24':
        chroma = rows[height:].reshape(height, width, 2)
        return _bt601(rows[:height], chroma[:, :, 0], chroma[:, :, 1], target), 2
    else:
        pattern = OPENCV_BAYER[spec.name[len('bayer_'):len('bayer_') + 4]]
        expected = cv2.cvtColor(rows, getattr(cv2, f'COLOR_Bayer{pattern}2{name}'))
        if spec.itemsize == 2:
            expected = np.rint(expected * (255.0 / 65535.0))
        elif target == 'mono8':
            # cv_bridge runs the system's libopencv (4.6 on Jazzy's Ubuntu), the test the cv2
            # module (opencv-python, 4.14 here): their Bayer-to-gray rounding differs by 1.
            return expected[:, :, None].astype(np.float64), 1
    if expected.ndim == 2:
        expected = expected[:, :, None]
    return expected.astype(np.float64), 0


@pytest.mark.parametrize('target', TARGETS)
@pytest.mark.parametrize('encoding', sorted(CAMERA_ENCODINGS))
def test_each_encoding_converts_to_opencvs_pixels(converter, encoding, target):
    for pattern in ('noise', 'bars'):
        rows = camera_image(_rgb(pattern), encoding)
        image, engine_encoding, reason = converter.convert(
            encoding, HEIGHT, WIDTH, rows.strides[0], 0, rows.tobytes(), BIG, target)
        assert reason == '' and engine_encoding == target
        assert image.dtype == np.uint8
        assert image.shape == (HEIGHT, WIDTH, 1 if target == 'mono8' else 3)
        expected, tolerance = opencv_reference(encoding, rows, target)
        assert np.abs(image - expected).max() <= tolerance, (encoding, target, pattern)


@pytest.mark.parametrize('encoding', sorted(CAMERA_ENCODINGS))
def test_a_smooth_pattern_comes_back_close_to_its_source(converter, encoding):
    # Chroma subsampling and demosaicing blur edges; on a smooth ramp they stay small.
    ramp = np.linspace(0, 255, WIDTH)[None, :, None] * np.array([1.0, 0.6, 0.3])
    source = np.ascontiguousarray(np.broadcast_to(np.rint(ramp), (HEIGHT, WIDTH, 3)),
                                  dtype=np.uint8)
    rows = camera_image(source, encoding)
    image, _, reason = converter.convert(encoding, HEIGHT, WIDTH, rows.strides[0], 0,
                                         rows.tobytes(), BIG, 'rgb8')
    assert reason == ''
    error = np.abs(image.astype(int) - source)[:, 2:-2]  # demosaicing borders left out
    assert error.mean() <= 2.0 and error.max() <= 8, (encoding, error.mean(), error.max())


def _padded(rows, step):
    """Return rows copied into lines of step bytes, the padding filled with 0xAB."""
    data = rows.view(np.uint8).reshape(rows.shape[0], -1)
    out = np.full((data.shape[0], step), 0xAB, np.uint8)
    out[:, :data.shape[1]] = data
    return out.tobytes()


@pytest.mark.parametrize('encoding', sorted(CAMERA_ENCODINGS))
def test_padded_steps_give_the_same_pixels(converter, encoding):
    spec = CAMERA_ENCODINGS[encoding]
    rows = camera_image(_rgb(), encoding)
    tight, _, _ = converter.convert(encoding, HEIGHT, WIDTH, rows.strides[0], 0,
                                    rows.tobytes(), BIG, 'bgr8')
    pad = 2 * spec.itemsize + (1 if spec.itemsize == 1 else 0)  # odd for 8-bit samples
    if spec.layout == 'nv24':  # Y rows of step bytes, then U/V rows of 2 x step bytes
        step = WIDTH + pad
        luma = _padded(rows[:HEIGHT], step)
        chroma = _padded(rows[HEIGHT:].reshape(HEIGHT, 2 * WIDTH), 2 * step)
        data = luma + chroma
    else:
        step = rows.strides[0] + pad
        data = _padded(rows, step)
    padded, _, reason = converter.convert(encoding, HEIGHT, WIDTH, step, 0, data, BIG, 'bgr8')
    assert reason == ''
    assert np.array_equal(padded, tight)


@pytest.mark.parametrize('encoding', ['bayer_rggb8', 'bayer_gbrg16', 'nv24'])
def test_odd_widths_and_heights_convert_where_the_encoding_allows(converter, encoding):
    height, width = 7, 13
    rows = camera_image(_rgb(width=width, height=height), encoding)
    image, _, reason = converter.convert(encoding, height, width, rows.strides[0], 0,
                                         rows.tobytes(), BIG, 'rgb8')
    assert reason == '' and image.shape == (height, width, 3)
    expected, tolerance = opencv_reference(encoding, rows, 'rgb8', height, width)
    assert np.abs(image - expected).max() <= tolerance


@pytest.mark.parametrize('fields, reason', [
    (('yuv422_yuy2', 4, 5, 10, 0, bytes(40)), reasons.BAD_ARRAY),  # odd width: half a macropixel
    (('uyvy', 4, 6, 11, 0, bytes(44)), reasons.STEP_TOO_SMALL),
    (('yuyv', 4, 6, 12, 0, bytes(47)), reasons.DATA_TOO_SHORT),
    (('nv21', 4, 5, 5, 0, bytes(30)), reasons.BAD_ARRAY),  # 4:2:0: even sizes only
    (('nv21', 3, 6, 6, 0, bytes(27)), reasons.BAD_ARRAY),
    (('nv21', 4, 6, 6, 0, bytes(35)), reasons.DATA_TOO_SHORT),  # Y + VU: 6 x 4 x 3 / 2
    (('nv24', 4, 6, 6, 0, bytes(71)), reasons.DATA_TOO_SHORT),  # Y + UV: 6 x 4 x 3
    (('nv24', 4, 6, 5, 0, bytes(72)), reasons.STEP_TOO_SMALL),
    (('bayer_rggb16', 4, 6, 13, 0, bytes(52)), reasons.BAD_ARRAY),  # odd step, 16-bit samples
    (('bayer_bggr8', 4, 6, 5, 0, bytes(24)), reasons.STEP_TOO_SMALL),
    (('bayer_grbg8', 4, 6, 6, 0, bytes(23)), reasons.DATA_TOO_SHORT),
    (('bayer_rggb8', 0, 6, 6, 0, b''), reasons.ZERO_SIZE),
    (('uyvy', 100, 100, 200, 0, bytes(20000)), reasons.TOO_MANY_PIXELS),
    (('yuv420', 4, 6, 6, 0, bytes(36)), reasons.UNKNOWN_ENCODING),
])
def test_frames_that_do_not_fit_their_encoding_are_malformed(converter, fields, reason):
    image, encoding, why = converter.convert(*fields, 9999, 'bgr8')
    assert image is None and encoding == '' and why == reason


def test_big_endian_16_bit_bayer_is_swapped(converter):
    rows = camera_image(_rgb(), 'bayer_rggb16')
    little, _, _ = converter.convert('bayer_rggb16', HEIGHT, WIDTH, WIDTH * 2, 0,
                                     rows.astype('<u2').tobytes(), BIG, 'rgb8')
    big, _, reason = converter.convert('bayer_rggb16', HEIGHT, WIDTH, WIDTH * 2, 1,
                                       rows.astype('>u2').tobytes(), BIG, 'rgb8')
    assert reason == '' and np.array_equal(big, little)


def test_passthrough_keeps_the_bayer_mosaic_and_refuses_yuv(converter):
    rows = camera_image(_rgb(), 'bayer_rggb8')
    data = rows.tobytes()
    image, encoding, reason = converter.convert('bayer_rggb8', HEIGHT, WIDTH, WIDTH, 0, data,
                                                BIG, 'passthrough')
    assert reason == '' and encoding == 'mono8'
    assert np.shares_memory(image, np.frombuffer(data, np.uint8))  # a view, no conversion
    assert np.array_equal(image[:, :, 0], rows)
    image, encoding, _ = converter.convert('bayer_bggr16', HEIGHT, WIDTH, WIDTH * 2, 0,
                                           bytes(WIDTH * HEIGHT * 2), BIG, 'passthrough')
    assert encoding == 'mono16' and image.dtype == np.uint16
    rows = camera_image(_rgb(), 'yuyv')
    assert converter.convert('yuyv', HEIGHT, WIDTH, WIDTH * 2, 0, rows.tobytes(), BIG,
                             'passthrough') == (None, '', reasons.UNSUPPORTED_ENCODING)


def _hide(monkeypatch, module):
    """Make `import module` (and its submodules) raise ImportError, as if not installed."""
    for name in [n for n in sys.modules if n == module or n.startswith(module + '.')]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)


def test_without_cv_bridge_its_encodings_are_unsupported_and_one_warning_names_it(
        converter, monkeypatch):
    _hide(monkeypatch, 'cv_bridge')
    warnings = []
    hidden = Converter(warnings.append)
    assert 'cv_bridge' in hidden.missing[conversion.CV_BRIDGE]
    for encoding in ('yuyv', 'uyvy', 'bayer_rggb8', 'bayer_grbg16', 'yuyv'):
        rows = camera_image(_rgb(), encoding)
        assert hidden.convert(encoding, HEIGHT, WIDTH, rows.strides[0], 0, rows.tobytes(), BIG,
                              'rgb8') == (None, '', reasons.UNSUPPORTED_ENCODING)
    assert len(warnings) == 1
    assert warnings[0].startswith('cv_bridge cannot be used (ModuleNotFoundError')
    assert 'unsupported_encoding' in warnings[0] and 'vision_opencv#535' in warnings[0]
    # OpenCV's own encodings and passthrough still convert.
    rows = camera_image(_rgb(), 'nv21')
    image, _, reason = hidden.convert('nv21', HEIGHT, WIDTH, WIDTH, 0, rows.tobytes(), BIG,
                                      'rgb8')
    assert reason == '' and image.shape == (HEIGHT, WIDTH, 3)
    rows = camera_image(_rgb(), 'bayer_rggb8')
    assert hidden.convert('bayer_rggb8', HEIGHT, WIDTH, WIDTH, 0, rows.tobytes(), BIG,
                          'passthrough')[2] == ''
    assert hidden.available('nv24') and not hidden.available('yuyv')


def test_without_opencv_nv21_and_nv24_are_unsupported(converter, monkeypatch):
    rows = {encoding: camera_image(_rgb(), encoding) for encoding in ('nv21', 'nv24', 'uyvy')}
    _hide(monkeypatch, 'cv2')
    warnings = []
    hidden = Converter(warnings.append)
    for encoding in ('nv21', 'nv24'):
        assert hidden.convert(encoding, HEIGHT, WIDTH, WIDTH, 0, rows[encoding].tobytes(),
                              BIG, 'rgb8')[2] == reasons.UNSUPPORTED_ENCODING
    assert len(warnings) == 1 and warnings[0].startswith('OpenCV cannot be used')
    # cv_bridge's conversions run in its C++ library: they do not need the cv2 module.
    assert hidden.convert('uyvy', HEIGHT, WIDTH, WIDTH * 2, 0, rows['uyvy'].tobytes(), BIG,
                          'rgb8')[2] == ''


def _config(*tasks):
    return load_config({'inputs': {'cam': {}, 'other': {}}, 'tasks': list(tasks)})


def test_the_default_target_is_what_the_first_consuming_task_wants():
    config = _config(
        {'name': 'a', 'inputs': ['cam'], 'worker': 'onnxruntime',
         'worker_options': {'model_path': 'a.onnx', 'channel_order': 'bgr'}},
        {'name': 'b', 'inputs': ['cam'], 'worker': 'onnxruntime',
         'worker_options': {'model_path': 'b.onnx', 'channel_order': 'gray'}},
        {'name': 'c', 'inputs': ['other'], 'worker': 'onnxruntime',
         'worker_options': {'model_path': 'c.onnx', 'channel_order': 'gray'}})
    assert conversion.default_target(config, 'cam') == 'bgr8'
    assert conversion.default_target(config, 'other') == 'mono8'
    assert conversion.resolve_target('rgb8', config, 'other') == 'rgb8'
    assert conversion.resolve_target('auto', config, 'other') == 'mono8'
    # A worker without preprocessing (dummy) and an input without tasks: the default order.
    dummy = _config({'name': 'a', 'inputs': ['cam']})
    assert conversion.default_target(dummy, 'cam') == 'rgb8'
    assert conversion.default_target(dummy, 'other') == 'rgb8'


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_the_camera_pattern_exists_in_every_encoding(encoding):
    if encoding in CAMERA_ENCODINGS:
        pytest.importorskip('cv2', reason='OpenCV makes the camera encodings')
    pattern = CameraPattern(WIDTH, HEIGHT, encoding, 'bars')
    first, second = pattern.frame_bytes(0), pattern.frame_bytes(1)
    planes = {'nv21': 1.5, 'nv24': 3.0}.get(encoding, 1.0)
    assert len(first) == int(pattern.step * HEIGHT * planes)
    assert first != second  # it moves
    if encoding in ZERO_COPY:
        image, reason = image_to_array(ZERO_COPY[encoding], HEIGHT, WIDTH, pattern.step, 0,
                                       first, BIG)
        assert reason == ''
        assert np.array_equal(image, PatternSource(WIDTH, HEIGHT, ZERO_COPY[encoding],
                                                   'bars').frame(0).reshape(image.shape))
    with pytest.raises(ValueError, match='allowed'):
        CameraPattern(WIDTH, HEIGHT, 'yuv420')


def test_a_yuv_camera_needs_an_even_width():
    pytest.importorskip('cv2', reason='OpenCV makes the camera encodings')
    with pytest.raises(ValueError, match='even'):
        CameraPattern(WIDTH + 1, HEIGHT, 'yuyv')
    with pytest.raises(ValueError, match='even'):
        CameraPattern(WIDTH, HEIGHT + 1, 'nv21')
