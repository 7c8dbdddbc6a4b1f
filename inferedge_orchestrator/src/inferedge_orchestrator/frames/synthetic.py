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
Synthetic images, made one way: the synthetic camera's moving patterns and warm-up images.

Deterministic (a pattern, a frame index, a seed), in every encoding of contracts/formats.py.
"""

from inferedge_orchestrator.contracts.formats import CHANNELS
import numpy as np

ENCODING_OF_CHANNELS = {1: 'mono8', 3: 'rgb8', 4: 'rgba8'}


class PatternSource:
    """
    Moving test images for the synthetic camera, as bytes ready for a message.

    pattern: bars (vertical colour bars sliding right), checkerboard (sliding diagonally),
    noise (a fixed noise image sliding right), static (bars that do not move) or text (a still
    page of black text on white, turned clockwise by `rotation` degrees: 0, 90, 180 or 270;
    drawn with OpenCV). The frames cycle with a period of `period` frames; rows are contiguous
    (step = row).
    """

    PATTERNS = ('bars', 'checkerboard', 'noise', 'static', 'text')
    ROTATIONS = (0, 90, 180, 270)

    def __init__(self, width: int, height: int, encoding: str, pattern: str = 'bars',
                 period: int = 64, seed: int = 0, rotation: int = 0):
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
        if rotation not in self.ROTATIONS:
            raise ValueError(f'rotation {rotation!r} is not allowed; allowed: 0, 90, 180, 270')
        if pattern == 'text':
            upright = (width, height) if rotation in (90, 270) else (height, width)
            page = np.rot90(text_page(*upright), -(rotation // 90))
            base = np.pad(page, ((0, 0), (0, wide - width)), constant_values=255)
        elif pattern == 'checkerboard':
            base = (((x // 32) + (y // 32)) % 2) * 200 + 30
            base = np.broadcast_to(base, (height, wide))
        elif pattern == 'noise':
            base = np.random.default_rng(seed).integers(0, 256, (height, wide))
        else:
            base = np.broadcast_to((x * 255 // max(1, width)) % 256, (height, wide))
        planes = [base, np.roll(base, 40, axis=1), 255 - base, np.full_like(base, 255)]
        if pattern == 'text':
            planes = [base, base, base, np.full_like(base, 255)]
        image = np.stack(planes[:self.channels], axis=2)
        if encoding in ('mono16', '16UC1'):
            self._base = (image * 257).astype(np.uint16)
        elif encoding == '32FC1':  # a depth image in metres: the 16-bit pattern in millimetres
            self._base = (image * 257 / 1000.0).astype(np.float32)
        else:
            self._base = image.astype(np.uint8)
        self.itemsize = self._base.itemsize
        self.step = width * self.channels * self.itemsize

    def frame(self, index: int) -> np.ndarray:
        """Return frame index (an HxWxC contiguous array)."""
        shift = 0 if self.pattern in ('static', 'text') else (index % self.period) * 8
        return np.ascontiguousarray(self._base[:, shift:shift + self.width])

    def frame_bytes(self, index: int) -> bytes:
        """Return frame index as the bytes of an Image message (native byte order)."""
        return self.frame(index).tobytes()


TEXT_LINES = ('The quick brown fox jumps over', 'the lazy dog. Orientation test',
              'of a document page with text,', 'several lines long, printed black',
              'on white paper: 0123456789.')


def text_page(height: int, width: int) -> np.ndarray:
    """Return an upright grey page (uint8, HxW) of black text lines on white (OpenCV)."""
    import cv2
    page = np.full((height, width), 255, np.uint8)
    scale = width / 580.0  # the longest line fills most of the width
    step = max(1, height // (len(TEXT_LINES) + 1))
    for row, line in enumerate(TEXT_LINES):
        cv2.putText(page, line, (int(width * 0.03), step * (row + 1)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, 0, max(1, round(2 * scale)), cv2.LINE_AA)
    return page


def synthetic_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Return a deterministic uint8 HxWxC test image (colour bars over noise) for warm-ups."""
    if channels not in ENCODING_OF_CHANNELS:
        raise ValueError(f'{channels} channels: a synthetic image has 1, 3 or 4')
    image = PatternSource(width, height, ENCODING_OF_CHANNELS[channels]).frame(seed)
    noise = np.random.default_rng(seed).integers(0, 32, image.shape, dtype=np.uint8)
    return np.minimum(image.astype(np.uint16) + noise, 255).astype(np.uint8)
