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

Deterministic (a pattern, a frame index, a seed), in every encoding of frames/formats.py.
"""

from inferedge_orchestrator.frames.formats import CHANNELS
import numpy as np

ENCODING_OF_CHANNELS = {1: 'mono8', 3: 'rgb8', 4: 'rgba8'}


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


def synthetic_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Return a deterministic uint8 HxWxC test image (colour bars over noise) for warm-ups."""
    if channels not in ENCODING_OF_CHANNELS:
        raise ValueError(f'{channels} channels: a synthetic image has 1, 3 or 4')
    image = PatternSource(width, height, ENCODING_OF_CHANNELS[channels]).frame(seed)
    noise = np.random.default_rng(seed).integers(0, 32, image.shape, dtype=np.uint8)
    return np.minimum(image.astype(np.uint16) + noise, 255).astype(np.uint8)
