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

"""Synthetic images: the camera's moving patterns and the warm-up image."""

from inferedge_orchestrator.frames.synthetic import PatternSource, synthetic_image
import numpy as np
import pytest


def test_pattern_moves_and_has_the_right_size():
    source = PatternSource(32, 24, 'rgb8', 'bars')
    assert len(source.frame_bytes(0)) == 32 * 24 * 3 == source.step * 24
    assert source.frame_bytes(0) != source.frame_bytes(1)
    mono16 = PatternSource(8, 4, 'mono16', 'checkerboard')
    assert mono16.frame(0).dtype == np.uint16 and mono16.step == 16
    static = PatternSource(8, 4, 'mono8', 'static')
    assert static.frame_bytes(0) == static.frame_bytes(3)
    with pytest.raises(ValueError, match='allowed'):
        PatternSource(8, 4, 'yuv', 'bars')


def test_depth_patterns_are_millimetres_and_metres():
    millimetres = PatternSource(8, 4, '16UC1', 'checkerboard').frame(0)
    metres = PatternSource(8, 4, '32FC1', 'checkerboard').frame(0)
    assert millimetres.dtype == np.uint16 and metres.dtype == np.float32
    assert np.allclose(metres * 1000.0, millimetres, atol=0.01)


def test_the_warm_up_image_is_deterministic_in_every_channel_count():
    for channels in (1, 3, 4):
        image = synthetic_image(24, 32, channels, seed=2)
        assert image.shape == (24, 32, channels) and image.dtype == np.uint8
        assert np.array_equal(image, synthetic_image(24, 32, channels, seed=2))
        assert image.std() > 0  # a pattern, not a constant
    with pytest.raises(ValueError, match='1, 3 or 4'):
        synthetic_image(8, 8, 2)
