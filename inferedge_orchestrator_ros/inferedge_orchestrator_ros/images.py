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
Image message fields <-> numpy arrays, tensor encoding and test patterns (no rclpy here).

The node hands the fields of a sensor_msgs/Image to image_to_array(), which returns a view on
the message's buffer (np.frombuffer, step-aware) or the malformed reason. Message arrays are
filled from bytes or array.array, never element by element from numpy arrays.
"""

import array
import sys
from typing import Any, Optional, Tuple

from inferedge_orchestrator.frames.formats import CHANNELS
from inferedge_orchestrator.telemetry import reasons
import numpy as np

# Tensor.msg DTYPE_* values by numpy kind and item size.
TENSOR_DTYPES = {'b1': 1, 'u1': 2, 'i1': 3, 'u2': 4, 'i2': 5, 'u4': 6, 'i4': 7, 'u8': 8,
                 'i8': 9, 'f2': 10, 'f4': 11, 'f8': 12}
DTYPE_UNKNOWN = 0
_LITTLE = sys.byteorder == 'little'


def image_to_array(encoding: str, height: int, width: int, step: int, is_bigendian: int,
                   data: Any, max_pixels: int) -> Tuple[Optional[np.ndarray], str]:
    """
    Return (HxWxC view on data, '') or (None, malformed reason).

    data is the message's buffer (array.array, bytes or memoryview); the array shares it
    (rows of step bytes, padding skipped), except for mono16 in the non-native byte order,
    which is byte-swapped into a copy.
    """
    channels = CHANNELS.get(encoding)
    if channels is None:
        return None, reasons.UNKNOWN_ENCODING
    if height <= 0 or width <= 0:
        return None, reasons.ZERO_SIZE
    if height * width > max_pixels:
        return None, reasons.TOO_MANY_PIXELS
    itemsize = 2 if encoding == 'mono16' else 1
    row = width * channels * itemsize
    if step < row:
        return None, reasons.STEP_TOO_SMALL
    if step % itemsize:
        return None, reasons.BAD_ARRAY
    if len(data) * memoryview(data).itemsize < step * height:
        return None, reasons.DATA_TOO_SHORT
    if itemsize == 1:
        flat = np.frombuffer(data, dtype=np.uint8, count=step * height)
    else:
        dtype = np.dtype('>u2' if is_bigendian else '<u2')
        flat = np.frombuffer(data, dtype=dtype, count=step * height // 2)
        if (dtype.byteorder == '>') == _LITTLE:
            flat = flat.astype(np.uint16)  # the non-native byte order: one swapped copy
        else:
            flat = flat.view(np.uint16)
    rows = flat.reshape(height, step // itemsize)
    if step != row:
        rows = rows[:, :width * channels]
    return rows.reshape(height, width, channels), ''


def tensor_fields(values: np.ndarray) -> Tuple[array.array, int, array.array]:
    """
    Return (shape, dtype code, data) of an output array for a Tensor message.

    data is little-endian and C-ordered, as array.array('B') built from bytes in one copy.
    """
    values = np.asarray(values)
    dtype = values.dtype
    code = TENSOR_DTYPES.get(f'{dtype.kind}{dtype.itemsize}', DTYPE_UNKNOWN)
    if dtype.byteorder == '>' or (dtype.byteorder == '=' and not _LITTLE):
        values = values.astype(dtype.newbyteorder('<'))
    data = array.array('B', np.ascontiguousarray(values).tobytes())
    return array.array('I', values.shape), code, data


def array_to_tensor(shape, dtype_code: int, data: Any) -> np.ndarray:
    """Rebuild an array from Tensor message fields (for subscribers and tests)."""
    kind = {code: key for key, code in TENSOR_DTYPES.items()}.get(dtype_code, 'u1')
    dtype = np.dtype('?' if kind == 'b1' else '<' + kind)
    return np.frombuffer(data, dtype=dtype).reshape(tuple(shape))


class PatternSource:
    """
    Moving test images for the synthetic camera, as bytes ready for a message.

    pattern: bars (vertical colour bars sliding right), checkerboard (sliding diagonally),
    noise (a fixed noise image sliding right) or static (bars that do not move).
    The frames cycle with a period of `period` frames; rows are contiguous (step = row).
    """

    PATTERNS = ('bars', 'checkerboard', 'noise', 'static')

    def __init__(self, width: int, height: int, encoding: str, pattern: str = 'bars',
                 period: int = 64, seed: int = 0):
        if encoding not in CHANNELS:
            raise ValueError(f'encoding {encoding!r} is not allowed; allowed: '
                             f'{", ".join(CHANNELS)}')
        if pattern not in self.PATTERNS:
            raise ValueError(f'pattern {pattern!r} is not allowed; allowed: '
                             f'{", ".join(self.PATTERNS)}')
        self.width, self.height, self.encoding = width, height, encoding
        self.channels = CHANNELS[encoding]
        self.period = max(1, period)
        self.pattern = pattern
        wide = width + self.period * 8
        x = np.arange(wide)[None, :]
        y = np.arange(height)[:, None]
        if pattern == 'checkerboard':
            base = (((x // 32) + (y // 32)) % 2) * 200 + 30
            base = np.broadcast_to(base, (height, wide))
        elif pattern == 'noise':
            base = np.random.default_rng(seed).integers(0, 256, (height, wide))
        else:
            base = np.broadcast_to((x * 255 // max(1, width)) % 256, (height, wide))
        planes = [base, np.roll(base, 40, axis=1), 255 - base, np.full_like(base, 255)]
        image = np.stack(planes[:self.channels], axis=2)
        if encoding == 'mono16':
            self._base = (image * 257).astype(np.uint16)
        else:
            self._base = image.astype(np.uint8)
        self.itemsize = self._base.itemsize
        self.step = width * self.channels * self.itemsize

    def frame(self, index: int) -> np.ndarray:
        """Return frame index (an HxWxC contiguous array)."""
        shift = 0 if self.pattern == 'static' else (index % self.period) * 8
        return np.ascontiguousarray(self._base[:, shift:shift + self.width])

    def frame_bytes(self, index: int) -> bytes:
        """Return frame index as the bytes of an Image message (native byte order)."""
        return self.frame(index).tobytes()
