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

The node hands the fields of a sensor_msgs/Image in one of the ZERO_COPY encodings to
image_to_array(), which returns a view on the message's buffer (np.frombuffer, step-aware) or
the malformed reason; the other camera encodings go through conversion.py. Message arrays are
filled from bytes or array.array, never element by element from numpy arrays.
"""

import array
import sys
from typing import Any, Optional, Tuple

from inferedge_orchestrator import formats, plane_fault, reasons, size_fault
import numpy as np

# The encodings taken as views, each with the engine encoding it becomes: the engine's own and
# cv_bridge's generic 8-bit types (8UC3 and 8UC4 hold OpenCV's BGR order: cv_bridge's
# cv2_to_imgmsg labels an OpenCV image so).
ZERO_COPY = dict({encoding: encoding for encoding in formats.CHANNELS},
                 **{'8UC1': 'mono8', '8UC3': 'bgr8', '8UC4': 'bgra8'})
# Tensor.msg DTYPE_* values by numpy kind and item size.
TENSOR_DTYPES = {'b1': 1, 'u1': 2, 'i1': 3, 'u2': 4, 'i2': 5, 'u4': 6, 'i4': 7, 'u8': 8,
                 'i8': 9, 'f2': 10, 'f4': 11, 'f8': 12}
DTYPE_UNKNOWN = 0
_LITTLE = sys.byteorder == 'little'


def image_to_array(encoding: str, height: int, width: int, step: int, is_bigendian: int,
                   data: Any, max_pixels: int) -> Tuple[Optional[np.ndarray], str]:
    """
    Return (HxWxC view on data, '') or (None, malformed reason).

    encoding is an engine encoding (ZERO_COPY's values); data is the message's buffer
    (array.array, bytes or memoryview). The array shares it (rows of step bytes, padding
    skipped), except for 16- and 32-bit samples in the non-native byte order, which are
    byte-swapped into a copy.
    """
    channels = formats.CHANNELS.get(encoding)
    if channels is None:
        return None, reasons.UNKNOWN_ENCODING
    fault = size_fault(height, width, max_pixels)
    if fault:
        return None, fault
    native = np.dtype(formats.dtype_of(encoding))
    itemsize = native.itemsize
    row = width * channels * itemsize
    reason = plane_fault(step, row, height, step % itemsize, data)
    if reason:
        return None, reason
    rows = samples(data, native, step, height, is_bigendian)
    if step != row:
        rows = rows[:, :width * channels]
    return rows.reshape(height, width, channels), ''


def samples(data: Any, native: np.dtype, step: int, height: int, is_bigendian: int
            ) -> np.ndarray:
    """
    Return the height rows of step bytes of data as an array of native's type (a view).

    Samples wider than a byte in the non-native byte order are byte-swapped into a copy.
    """
    if native.itemsize == 1:
        flat = np.frombuffer(data, dtype=native, count=step * height)
    else:
        stored = native.newbyteorder('>' if is_bigendian else '<')
        flat = np.frombuffer(data, dtype=stored, count=step * height // native.itemsize)
        if bool(is_bigendian) == _LITTLE:
            flat = flat.astype(native)  # the non-native byte order: one swapped copy
        else:
            flat = flat.view(native)
    return flat.reshape(height, step // native.itemsize)


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
