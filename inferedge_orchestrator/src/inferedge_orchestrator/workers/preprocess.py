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
Image preprocessing shared by the onnxruntime and tensorrt workers.

From a frame's HxWxC image to one model input: resize (stretch | letterbox | center_crop; OpenCV
when installed, else a numpy fallback), channel order (rgb | bgr | gray), layout (NCHW | NHWC),
scale, mean and std, dtype, written into a preallocated buffer (one per thread, or one given
by the caller, e.g. a pinned host buffer). Dynamic height and width come from `input_size` or
from the image (rounded up to `size_multiple`). See docs/workers.md.
"""

import math
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from inferedge_orchestrator.config import checkers as opt
from inferedge_orchestrator.config.schema import setting, table
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.contracts.inference import (center_crop_box, Geometry,
                                                        letterbox_geometry)
from inferedge_orchestrator.frames.synthetic import synthetic_image
import numpy as np

RESIZE_MODES = ('stretch', 'letterbox', 'center_crop')
CHANNEL_ORDERS = ('rgb', 'bgr', 'gray')
LAYOUTS = ('auto', 'NCHW', 'NHWC')
INTERPOLATIONS = ('linear', 'nearest', 'area', 'cubic')
DTYPES = ('auto', 'float32', 'float16', 'float64', 'uint8', 'int8', 'int32', 'int64')
# Luma weights (ITU-R BT.601) in RGB order.
_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Which channel of the source holds red, green, blue for each encoding.
_RGB_INDEX = {'rgb8': (0, 1, 2), 'rgba8': (0, 1, 2), 'bgr8': (2, 1, 0), 'bgra8': (2, 1, 0)}


def int_list(length: int = 0, low: int = 1):
    """Check a list of integers >= low (of `length` items when non-zero); [] stays []."""
    def check(where: str, value: Any) -> Tuple[int, ...]:
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value)
        if not ok or (length and value and len(value) != length):
            size = f'{length} ' if length else ''
            raise ConfigError(f'{where}: {value!r} is not allowed; allowed: [] or a list of '
                              f'{size}integers >= {low}')
        return tuple(value)
    return check


def channel_values(where: str, value: Any) -> Tuple[float, ...]:
    """Check a number or a list of 1 or 3 numbers (per channel)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),)
    values = opt.number_list(where, value)
    if len(values) not in (1, 3):
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a number or a list of '
                          '1 or 3 numbers')
    return values


def string_list(where: str, value: Any) -> Tuple[str, ...]:
    """Check a list of non-empty strings (a single string is a list of one)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v for v in value):
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a list of non-empty '
                          'strings')
    return tuple(value)


def constants(where: str, value: Any) -> Dict[str, Any]:
    """
    Check a mapping of input name -> constant (a number or a nested list of numbers).

    A JSON string of that mapping is accepted too (ROS parameters cannot hold mappings).
    """
    value = opt.mapping(where, value, 'a mapping of input names to numbers or nested lists of '
                        'numbers')
    checked = {}
    for name, constant in value.items():
        try:
            array = np.asarray(constant)
        except ValueError:
            array = np.asarray([], dtype=object)
        if not isinstance(name, str) or array.dtype.kind not in 'biuf' or array.size == 0:
            raise ConfigError(f'{where}.{name}: {constant!r} is not allowed; allowed: a number '
                              'or a (nested) list of numbers')
        checked[name] = constant
    return checked


# Options of every worker that feeds an image to a model (merged into the worker's OPTIONS).
PREPROCESS_OPTIONS = table(
    opt.custom('input', '', 'the model input the image goes to (empty: the only image input)',
               opt.optional_text, 'an input name, or empty'),
    setting('resize', 'stretch', 'how the image reaches the input size', choices=RESIZE_MODES),
    setting('interpolation', 'linear', 'resampling', choices=INTERPOLATIONS),
    setting('channel_order', 'rgb', 'channel order the model wants', choices=CHANNEL_ORDERS),
    setting('layout', 'auto', 'tensor layout (auto: from the model input)', choices=LAYOUTS),
    setting('scale', 1.0 / 255.0, 'pixel values are multiplied by this', low=-1e9, high=1e9),
    opt.custom('mean', (0.0,), 'subtracted after scaling (per channel)', channel_values,
               'a number or a list of 1 or 3 numbers'),
    opt.custom('std', (1.0,), 'divided by after the mean (per channel)', channel_values,
               'a number or a list of 1 or 3 numbers'),
    setting('dtype', 'auto', 'input dtype (auto: the model input)', choices=DTYPES),
    opt.custom('input_size', (), 'height and width for dynamic inputs (empty: the image)',
               int_list(2), '[] or a list of 2 integers >= 1'),
    setting('size_multiple', 1, 'dynamic sizes are rounded up to a multiple of this', low=1,
            high=4096),
    setting('pad_value', 0.0, 'letterbox padding value', low=0.0, high=65535.0),
    setting('resize_short', 0, 'center_crop: the short side is resized to this before the '
            'crop (0: to the input size, so the crop keeps the whole short side)', low=0,
            high=65536),
    # None: none (a ROS parameter cannot default to {})
    opt.custom('extra_inputs', None, 'constants for the other inputs of the model', constants,
               'a mapping of input names to numbers or nested lists, or its JSON text'),
    opt.custom('outputs', (), 'outputs to return (empty: all)', string_list,
               'a list of output names'),
)

_CV2: List[Any] = []


def opencv():
    """Return the cv2 module, or None when OpenCV is not installed (the numpy fallback)."""
    if not _CV2:
        try:
            import cv2
            _CV2.append(cv2)
        except ImportError:
            _CV2.append(None)
    return _CV2[0]


def resize(image: np.ndarray, width: int, height: int, interpolation: str = 'linear',
           use_opencv: Optional[bool] = None) -> np.ndarray:
    """
    Resize an HxWxC image to height x width.

    OpenCV does it when installed, else (or when use_opencv is False) numpy: bilinear with
    half-pixel centres, or nearest; area and cubic fall back to bilinear.
    """
    if image.shape[0] == height and image.shape[1] == width:
        return image
    cv2 = opencv() if use_opencv is not False else None
    if cv2 is not None:
        flags = {'linear': cv2.INTER_LINEAR, 'nearest': cv2.INTER_NEAREST,
                 'area': cv2.INTER_AREA, 'cubic': cv2.INTER_CUBIC}[interpolation]
        out = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=flags)
        return out.reshape(height, width, image.shape[2])
    return _resize_numpy(image, width, height, interpolation)


def _resize_numpy(image: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    src_h, src_w = image.shape[:2]
    if interpolation == 'nearest':
        ys = np.minimum(((np.arange(height) + 0.5) * src_h / height).astype(np.intp), src_h - 1)
        xs = np.minimum(((np.arange(width) + 0.5) * src_w / width).astype(np.intp), src_w - 1)
        return image[ys[:, None], xs[None, :]]
    y0, y1, wy = _linear_taps(src_h, height)
    x0, x1, wx = _linear_taps(src_w, width)
    source = image.astype(np.float32)
    rows = source[y0] * (1.0 - wy)[:, None, None] + source[y1] * wy[:, None, None]
    out = rows[:, x0] * (1.0 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    if np.issubdtype(image.dtype, np.integer):
        out = np.rint(out)
    return out.astype(image.dtype)


def _linear_taps(size: int, new_size: int):
    position = np.clip((np.arange(new_size) + 0.5) * size / new_size - 0.5, 0.0, size - 1)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, size - 1)
    return low, high, (position - low).astype(np.float32)


def _dim(value: Any) -> Optional[int]:
    """Return a static dimension as int, or None for a dynamic one (str, None, -1, 0)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    return None


def static_dims(shape) -> List[Optional[int]]:
    """Return a model tensor's shape with None for each dynamic dimension."""
    return [_dim(d) for d in shape]


class Preprocessor:
    """
    Turn images into one model input of a given (possibly dynamic) shape and dtype.

    shape: the model input's shape (4-D with a batch dimension, or 3-D without); ints for
    static dimensions, anything else (None, -1, a symbolic name) for a dynamic one.
    """

    def __init__(self, name: str, shape: Sequence[Any], dtype: Any, options: Dict[str, Any],
                 use_opencv: Optional[bool] = None):
        self.name = name
        self.options = options
        self.use_opencv = use_opencv
        dims = static_dims(shape)
        if len(dims) not in (3, 4):
            raise ValueError(f'input {name!r}: shape {list(shape)} is not an image input; '
                             'allowed: 4-D (N, C, H, W | N, H, W, C) or 3-D without the batch')
        self.batched = len(dims) == 4
        # Its batch dimension: None when dynamic, 1 without one (3-D) or a fixed size.
        self.batch_dim = dims[0] if self.batched else 1
        body = dims[1:] if self.batched else dims
        layout = options['layout']
        if layout == 'auto':
            layout = 'NHWC' if body[0] not in (1, 3) and body[2] in (1, 3) else 'NCHW'
        self.layout = layout
        channel_dim, height, width = (body[0], body[1], body[2]) if layout == 'NCHW' else (
            body[2], body[0], body[1])
        self.channels = 1 if options['channel_order'] == 'gray' else 3
        if channel_dim is not None and channel_dim != self.channels:
            raise ValueError(f'input {name!r}: the model wants {channel_dim} channel(s) '
                             f'({layout}) but channel_order {options["channel_order"]!r} gives '
                             f'{self.channels}; set channel_order (gray: 1) or layout')
        size = options['input_size']
        if size and ((height is not None and height != size[0]) or
                     (width is not None and width != size[1])):
            raise ValueError(f'input {name!r}: input_size {list(size)} differs from the '
                             f"model's static size {height}x{width}")
        self.static_hw = (height, width)
        self.dtype = np.dtype(dtype if options['dtype'] == 'auto' else options['dtype'])
        count = self.channels
        mean = np.resize(np.asarray(options['mean'], dtype=np.float32), count)
        std = np.resize(np.asarray(options['std'], dtype=np.float32), count)
        if np.any(std == 0):
            raise ValueError(f'input {name!r}: std must not be 0')
        self._gain = (options['scale'] / std).astype(np.float32)
        self._offset = (-mean / std).astype(np.float32)
        self._identity = bool(np.all(self._gain == 1.0) and np.all(self._offset == 0.0))
        self._local = threading.local()

    # -- geometry ---------------------------------------------------------------------------

    def target_size(self, height: int, width: int) -> Tuple[int, int]:
        """Return the (height, width) the model input gets for an image of height x width."""
        fixed_h, fixed_w = self.static_hw
        size = self.options['input_size']
        multiple = self.options['size_multiple']
        if fixed_h is None:
            fixed_h = size[0] if size else int(math.ceil(height / multiple) * multiple)
        if fixed_w is None:
            fixed_w = size[1] if size else int(math.ceil(width / multiple) * multiple)
        return fixed_h, fixed_w

    def input_shape(self, height: int, width: int) -> Tuple[int, ...]:
        """Return the model input's shape for one image of height x width."""
        target_h, target_w = self.target_size(height, width)
        body = (self.channels, target_h, target_w) if self.layout == 'NCHW' else (
            target_h, target_w, self.channels)
        return ((1,) + body) if self.batched else body

    def warmup_size(self, default: Tuple[int, int] = (480, 640)) -> Tuple[int, int]:
        """Return an image size that gives the input shape of real frames, when it is known."""
        fixed_h, fixed_w = self.static_hw
        size = self.options['input_size']
        return (fixed_h or (size[0] if size else default[0]),
                fixed_w or (size[1] if size else default[1]))

    def warmup_image(self) -> Tuple[np.ndarray, str]:
        """Return (a synthetic image of warmup_size() in the model's channels, its encoding)."""
        height, width = self.warmup_size()
        image = synthetic_image(height, width, self.channels)
        return image, ('mono8' if self.channels == 1 else 'rgb8')

    def geometry(self, height: int, width: int) -> Geometry:
        """Return how an image of height x width reaches the model input."""
        target_h, target_w = self.target_size(height, width)
        return Geometry.of(self.options['resize'], height, width, target_h, target_w,
                           self.options['resize_short'])

    # -- conversion -------------------------------------------------------------------------

    def __call__(self, image: np.ndarray, encoding: str,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        """
        Return the model input for image (HxWxC, or HxW) in encoding.

        The result is written into `out` when given (its shape must be input_shape()), else
        into a buffer owned by the calling thread and reused by its next call.
        """
        if image.ndim == 2:
            image = image[:, :, None]
        shape = self.input_shape(image.shape[0], image.shape[1])
        if out is None:
            out = self._buffer(shape)
        elif tuple(out.shape) != shape:
            raise ValueError(f'input {self.name!r}: buffer shape {out.shape} != {shape}')
        target_h, target_w = shape[-3:-1] if self.layout == 'NHWC' else shape[-2:]
        pixels = self._geometry(self._drop_alpha(image, encoding), target_h, target_w)
        self._normalize(pixels, encoding, out[0] if self.batched else out)
        return out

    def batch(self, images: Sequence[Tuple[np.ndarray, str]], rows: int,
              out: Optional[np.ndarray] = None) -> np.ndarray:
        """
        Return the model input of a batch: each (image, encoding) in its row, of rows rows.

        rows >= len(images): a model with a fixed batch dimension gets its rows, the ones
        beyond the images left as they are (their outputs are not read). It is written into
        out when given (a pinned buffer), else into a buffer of the calling thread, reused by
        its next batch. The images must give one input shape.
        """
        if not self.batched:
            raise ValueError(f'input {self.name!r} has no batch dimension')
        shapes = {self.input_shape(image.shape[0], image.shape[1]) for image, _ in images}
        if len(shapes) > 1:
            raise ValueError(f'input {self.name!r}: the frames of a batch give the input shapes '
                             f'{sorted(shapes)}; a batch needs one: set input_size')
        shape = (rows,) + shapes.pop()[1:]
        if out is None:
            out = self._buffer(shape)
        elif tuple(out.shape) != shape:
            raise ValueError(f'input {self.name!r}: buffer shape {out.shape} != {shape}')
        for row, (image, encoding) in enumerate(images):
            self(image, encoding, out[row:row + 1])
        return out

    def _buffer(self, shape: Tuple[int, ...]) -> np.ndarray:
        buffers = getattr(self._local, 'buffers', None)
        if buffers is None:
            buffers = self._local.buffers = {}
        buffer = buffers.get(shape)
        if buffer is None:
            buffers.clear()  # one live shape per thread: dynamic sizes do not pile up
            buffer = buffers[shape] = np.empty(shape, dtype=self.dtype)
        return buffer

    @staticmethod
    def _drop_alpha(image: np.ndarray, encoding: str) -> np.ndarray:
        if image.shape[2] == 4:
            return np.ascontiguousarray(image[:, :, :3])
        return image

    def _geometry(self, image: np.ndarray, target_h: int, target_w: int) -> np.ndarray:
        height, width = image.shape[:2]
        mode = self.options['resize']
        interpolation = self.options['interpolation']
        if mode == 'stretch' or (height, width) == (target_h, target_w):
            return resize(image, target_w, target_h, interpolation, self.use_opencv)
        if mode == 'center_crop':
            top, left, crop_h, crop_w = center_crop_box(height, width, target_h, target_w,
                                                        self.options['resize_short'])
            return resize(image[top:top + crop_h, left:left + crop_w], target_w, target_h,
                          interpolation, self.use_opencv)
        _, new_h, new_w, top, left = letterbox_geometry(height, width, target_h, target_w)
        canvas = np.full((target_h, target_w, image.shape[2]), self.options['pad_value'],
                         dtype=image.dtype)
        canvas[top:top + new_h, left:left + new_w] = resize(image, new_w, new_h, interpolation,
                                                            self.use_opencv)
        return canvas

    def _channels(self, pixels: np.ndarray, encoding: str) -> np.ndarray:
        """Return pixels (HxWxC) in the model's channel order, as a view when possible."""
        order = self.options['channel_order']
        source = pixels.shape[2]
        if source == 1:
            return pixels if order == 'gray' else np.broadcast_to(
                pixels, pixels.shape[:2] + (3,))
        index = _RGB_INDEX.get(encoding, (0, 1, 2))
        if order == 'gray':
            weights = np.zeros(3, dtype=np.float32)
            weights[list(index)] = _GRAY_WEIGHTS
            return (pixels.astype(np.float32) @ weights)[:, :, None]
        if order == 'bgr':
            index = index[::-1]
        if index == (0, 1, 2):
            return pixels
        if index == (2, 1, 0):
            return pixels[:, :, ::-1]
        return pixels[:, :, list(index)]

    def _normalize(self, pixels: np.ndarray, encoding: str, out: np.ndarray) -> None:
        pixels = self._channels(pixels, encoding)
        if self.layout == 'NCHW':
            pixels = pixels.transpose(2, 0, 1)
            gain, offset = self._gain[:, None, None], self._offset[:, None, None]
        else:
            gain, offset = self._gain, self._offset
        if self._identity:
            if np.issubdtype(out.dtype, np.integer) and pixels.dtype.kind == 'f':
                pixels = np.rint(pixels)
            np.copyto(out, pixels, casting='unsafe')
        elif out.dtype.kind == 'f':
            np.multiply(pixels, gain, out=out, casting='unsafe')
            np.add(out, offset, out=out, casting='unsafe')
        else:
            info = np.iinfo(out.dtype)
            values = np.rint(pixels * gain + offset)
            np.copyto(out, np.clip(values, info.min, info.max), casting='unsafe')


def constant_input(name: str, value: Any, shape: Sequence[Any], dtype: Any) -> np.ndarray:
    """
    Return a config constant as an array of the model input's dtype and shape.

    A scalar or a flat list fills a static shape of the same size; otherwise the constant's own
    shape must match the static dimensions.
    """
    array = np.asarray(value, dtype=dtype)
    dims = static_dims(shape)
    if all(d is not None for d in dims) and array.shape != tuple(dims):
        if array.size == int(np.prod(dims)):
            return array.reshape(dims)
        if array.size == 1:
            return np.full(dims, array.reshape(()), dtype=dtype)
    if array.ndim != len(dims) or any(d is not None and d != s
                                      for d, s in zip(dims, array.shape)):
        raise ValueError(f'extra input {name!r}: constant of shape {list(array.shape)} does not '
                         f'fit the model input shape {list(shape)}')
    return array
