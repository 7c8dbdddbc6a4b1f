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

"""Encoded images: JPEG and PNG decoding (OpenCV) and their size read from the header."""

import struct
from typing import Optional, Tuple

from inferedge_orchestrator.contracts.errors import DecodeError
import numpy as np


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
