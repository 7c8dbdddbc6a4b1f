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
The checks a frame passes before it is routed: its size, its rows, its array or bytes.

Each returns the malformed reason (contracts/reasons.py) or ''; the engine's submit() and the
ROS node's image conversion use the same ones.
"""

from typing import Any, Optional, Tuple

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.formats import CHANNELS, dtype_of
from inferedge_orchestrator.frames.compressed import encoded_image_size
import numpy as np

# The encoding of a single-channel array submitted without one, by its dtype.
_SINGLE_CHANNEL = {'uint8': 'mono8', 'uint16': 'mono16', 'float32': '32FC1'}
# The element types an array may have, by dtype: a dict lookup per frame, where dtype.name is
# a Python-level property of numpy's and comparing dtypes with types converts them each time.
_DTYPE_NAMES = {np.dtype(name): name for name in _SINGLE_CHANNEL}
_MULTI_CHANNEL = {3: 'rgb8', 4: 'rgba8'}  # an 8-bit array without an encoding, by channels


def size_fault(height: int, width: int, max_pixels: int) -> str:
    """Return why an image of height x width is refused ('' when it is not)."""
    if height <= 0 or width <= 0:
        return reasons.ZERO_SIZE
    if height * width > max_pixels:
        return reasons.TOO_MANY_PIXELS
    return ''


def plane_fault(step: int, row: int, rows: int, misfit: int, data: Any) -> str:
    """
    Return why rows of step bytes do not fit a frame's data ('' when they do).

    row: the bytes of a row's pixels; misfit: nonzero when step or the size cannot hold whole
    samples or macropixels.
    """
    if step < row:
        return reasons.STEP_TOO_SMALL
    if misfit:
        return reasons.BAD_ARRAY
    if len(data) * memoryview(data).itemsize < step * rows:
        return reasons.DATA_TOO_SHORT
    return ''


def check_data(data: Any, encoding: Optional[str], max_pixels: int
               ) -> Tuple[Optional[np.ndarray], Optional[bytes], Optional[str], str]:
    """
    Check what submit() was given; return (image, encoded bytes, encoding, malformed reason).

    data is an HxWxC (or HxW) array (uint8; uint16 for mono16 and 16UC1, float32 for 32FC1)
    or encoded JPEG/PNG bytes; an array without an encoding is taken by its channels.
    """
    if isinstance(data, np.ndarray):
        if data.ndim == 2:
            data = data[:, :, None]
        dtype = _DTYPE_NAMES.get(data.dtype)
        if data.ndim != 3 or dtype is None:
            return None, None, None, reasons.BAD_ARRAY
        height, width, channels = data.shape
        fault = size_fault(height, width, max_pixels)
        if fault:
            return None, None, None, fault
        if encoding is None:
            encoding = _SINGLE_CHANNEL[dtype] if channels == 1 else \
                _MULTI_CHANNEL.get(channels)
        if CHANNELS.get(encoding) != channels:
            return None, None, None, reasons.UNKNOWN_ENCODING
        if dtype != dtype_of(encoding):
            return None, None, None, reasons.BAD_ARRAY
        return data, None, encoding, ''
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        if not data:
            return None, None, None, reasons.ZERO_SIZE
        size = encoded_image_size(data)
        fault = size_fault(*size, max_pixels) if size is not None else ''
        if fault:
            return None, None, None, fault
        return None, data, encoding or 'encoded', ''
    return None, None, None, reasons.BAD_ARRAY
