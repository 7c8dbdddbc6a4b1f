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
The test pattern in every encoding the node takes: the synthetic camera's frames (no rclpy).

The zero-copy encodings come from the core's PatternSource as they are; the camera encodings
of conversion.py are made from its rgb8 frame with OpenCV's inverse conversions: RGB to YUYV
and UYVY, to I420 (rearranged into nv21), to YCrCb (scaled to BT.601 limited range for nv24).
OpenCV has no inverse of demosaicing: a Bayer frame keeps, at each pixel, the channel its
2x2 pattern names (16-bit: the 8-bit value x 257).
"""

from typing import Optional

from inferedge_orchestrator import PatternSource
from inferedge_orchestrator_ros.conversion import CAMERA_ENCODINGS
from inferedge_orchestrator_ros.images import ZERO_COPY
import numpy as np

ENCODINGS = tuple(ZERO_COPY) + tuple(CAMERA_ENCODINGS)
_RGB = {'r': 0, 'g': 1, 'b': 2}


def _limited_range_tables():
    """Return the BT.601 full-to-limited-range lookup tables of luma and chroma (uint8)."""
    codes = np.arange(256, dtype=np.float64)
    luma = np.rint(codes * 219.0 / 255.0 + 16.0).astype(np.uint8)
    chroma = np.rint((codes - 128.0) * 224.0 / 255.0 + 128.0).astype(np.uint8)
    return luma, chroma


# uint8 in, uint8 out: 256 results each, looked up instead of computed per pixel.
_LUMA_LIMITED, _CHROMA_LIMITED = _limited_range_tables()


def camera_image(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """
    Return an HxWx3 rgb8 image in a camera encoding, as the rows of its message's data.

    The rows are contiguous (step = the row's bytes: width x 2 for YUV 4:2:2, width for nv21
    and nv24, whose planes follow each other). ValueError for sizes the encoding cannot hold.
    """
    import cv2
    spec = CAMERA_ENCODINGS[encoding]
    height, width = rgb.shape[:2]
    if spec.layout == 'packed422':
        if width % 2:
            raise ValueError(f'{encoding}: the width must be even (two pixels a macropixel)')
        code = cv2.COLOR_RGB2YUV_UYVY if spec.bridge_name == 'yuv422' else \
            cv2.COLOR_RGB2YUV_YUY2
        return cv2.cvtColor(rgb, code).reshape(height, width * 2)
    if spec.layout == 'nv21':
        if width % 2 or height % 2:
            raise ValueError(f'{encoding}: the width and the height must be even (4:2:0)')
        planar = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # Y, then U and V at 1/4 size
        quarter = height // 2 * (width // 2)
        chroma = planar[height:].reshape(-1)
        interleaved = np.empty((height // 2, width), np.uint8)
        interleaved[:, 0::2] = chroma[quarter:].reshape(height // 2, width // 2)  # V
        interleaved[:, 1::2] = chroma[:quarter].reshape(height // 2, width // 2)  # U
        return np.concatenate([planar[:height], interleaved])
    if spec.layout == 'nv24':
        full = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        luma = _LUMA_LIMITED[full[:, :, 0]]
        chroma = _CHROMA_LIMITED[full[:, :, [2, 1]]]  # U, V
        return np.concatenate([luma, chroma.reshape(height, width * 2).reshape(
            height * 2, width)])
    pattern = spec.name[len('bayer_'):len('bayer_') + 4]
    mosaic = np.empty((height, width), rgb.dtype)
    for index, letter in enumerate(pattern):
        row, column = divmod(index, 2)
        mosaic[row::2, column::2] = rgb[row::2, column::2, _RGB[letter]]
    return mosaic.astype(np.uint16) * 257 if spec.itemsize == 2 else mosaic


class CameraPattern:
    """
    The synthetic camera's moving pattern in any encoding of ENCODINGS, as message bytes.

    Same patterns, period and rotation as PatternSource; step is the row's bytes.
    """

    def __init__(self, width: int, height: int, encoding: str, pattern: str = 'bars',
                 rotation: int = 0):
        if encoding not in ENCODINGS:
            raise ValueError(f'encoding {encoding!r} is not allowed; allowed: '
                             f'{", ".join(ENCODINGS)}')
        self.encoding = encoding
        self._camera: Optional[str] = encoding if encoding in CAMERA_ENCODINGS else None
        base = 'rgb8' if self._camera else ZERO_COPY[encoding]
        self.source = PatternSource(width, height, base, pattern, rotation=rotation)
        self.period = self.source.period
        if self._camera:
            self.step = camera_image(self.source.frame(0), encoding).strides[0]
        else:
            self.step = self.source.step

    def frame(self, index: int) -> np.ndarray:
        """Return frame index as its message rows (contiguous)."""
        image = self.source.frame(index)
        return camera_image(image, self._camera) if self._camera else image

    def frame_bytes(self, index: int) -> bytes:
        """Return frame index as the bytes of an Image message (native byte order)."""
        return self.frame(index).tobytes()
