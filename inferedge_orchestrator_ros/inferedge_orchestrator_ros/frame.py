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

"""Frames: one image shared by every task that consumes it, decoded at most once."""

import struct
import threading
import time
from typing import Any, Optional, Tuple

from inferedge_orchestrator_ros import reasons
import numpy as np

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, 'mono16': 1}


class DecodeError(RuntimeError):
    """Encoded bytes could not be decoded into an image."""

    reason = reasons.DECODE_ERROR


class Frame:
    """
    An accepted input frame: a decoded HxWxC array or encoded bytes decoded lazily, once.

    arrival is the engine clock's time at submit(); age is the caller's stamp age at arrival
    (0 for a fallback); meta is opaque caller data (the ROS node keeps the image header there).
    """

    __slots__ = ('input', 'seq', 'arrival', 'age', 'submitted', 'encoding', 'meta', 'decode_s',
                 'decode_error_counted', '_image', '_encoded', '_decode_lock', '_decode_error')

    def __init__(self, input_name: str, seq: int, arrival: float, age: float,
                 image: Optional[np.ndarray] = None, encoded: Optional[bytes] = None,
                 encoding: str = 'rgb8', meta: Any = None):
        self.input = input_name
        self.seq = seq
        self.arrival = arrival
        self.age = age
        self.submitted = arrival  # set again when submit() returns
        self.encoding = encoding
        self.meta = meta
        self.decode_s = 0.0
        self.decode_error_counted = False  # the engine counts a decode error once per frame
        self._image = image
        self._encoded = encoded
        self._decode_lock = threading.Lock() if encoded is not None else None
        self._decode_error: Optional[str] = None

    @property
    def image(self) -> np.ndarray:
        """Return the HxWxC image, decoding encoded bytes on first use (thread-safe)."""
        image = self._image
        if image is not None:
            return image
        with self._decode_lock:
            if self._image is None:
                if self._decode_error is not None:
                    raise DecodeError(self._decode_error)
                start = time.perf_counter()
                try:
                    self._image, self.encoding = decode_image(self._encoded)
                except DecodeError as error:
                    self._decode_error = str(error)
                    raise
                finally:
                    self.decode_s = time.perf_counter() - start
                self._encoded = None  # the bytes are no longer needed
        return self._image


def decode_image(data: bytes) -> Tuple[np.ndarray, str]:
    """Decode JPEG or PNG bytes into (HxWxC array, encoding) with OpenCV."""
    try:
        import cv2
    except ImportError:
        raise DecodeError('decoding compressed images needs OpenCV: '
                          'pip install opencv-python-headless') from None
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if image is None:
        raise DecodeError('the bytes are not a decodable JPEG or PNG image')
    if image.ndim == 2:
        return image[:, :, None], ('mono16' if image.dtype == np.uint16 else 'mono8')
    if image.dtype != np.uint8:
        image = (image >> 8).astype(np.uint8)
    return image, ('bgra8' if image.shape[2] == 4 else 'bgr8')


def encoded_image_size(data: bytes) -> Optional[Tuple[int, int]]:
    """Return (width, height) from a PNG or JPEG header without decoding, or None."""
    if data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) >= 24:
        width, height = struct.unpack('>II', data[16:24])
        return width, height
    if data[:2] != b'\xff\xd8':
        return None
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            index += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack('>H', data[index + 2:index + 4])[0]
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack('>HH', data[index + 5:index + 9])
            return width, height
        index += 2 + length
    return None
