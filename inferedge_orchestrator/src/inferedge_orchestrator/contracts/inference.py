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


"""What crosses from a worker to a decoder to a result: outputs, geometry, detections."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class InferenceOutput:
    """What infer() returns: named output arrays and the time spent in each phase (s)."""

    outputs: Dict[str, np.ndarray]
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    geometry: Any = None  # how the image reached the model input (Geometry)
    decoded: Any = None  # the decoder's Decoded, set after infer() when the task has one
    postprocess_s: float = 0.0
    # time.monotonic() when the model call (infer and decode) began and ended; set by the
    # engine's slot, or by the child process that ran it: the hand-off costs are measured to it
    span: Optional[Tuple[float, float]] = None


def letterbox_geometry(height: int, width: int, target_h: int, target_w: int
                       ) -> Tuple[float, int, int, int, int]:
    """
    Return (scale, new_h, new_w, top, left) of a letterbox: the image scaled to fit, centred.

    A point (x, y) of the model input maps back to the image as ((x - left) / scale,
    (y - top) / scale).
    """
    scale = min(target_h / height, target_w / width)
    new_h = min(target_h, max(1, int(round(height * scale))))
    new_w = min(target_w, max(1, int(round(width * scale))))
    return scale, new_h, new_w, (target_h - new_h) // 2, (target_w - new_w) // 2


def center_crop_box(height: int, width: int, target_h: int, target_w: int, short: int = 0
                    ) -> Tuple[int, int, int, int]:
    """
    Return (top, left, crop_h, crop_w) of the region a center_crop keeps.

    It is the centred source region that, once the image is scaled so that its short side is
    `short` pixels (0: just enough to cover the target), is target_h x target_w; it is resized
    afterwards to target_h x target_w.
    """
    scale = max(target_h / height, target_w / width)
    if short:
        scale = max(scale, short / min(height, width))
    crop_h = min(height, max(1, int(round(target_h / scale))))
    crop_w = min(width, max(1, int(round(target_w / scale))))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


@dataclass(frozen=True)
class Geometry:
    """
    How a source image became the model input, to map model coordinates back to its pixels.

    A source point (x, y) lands at ((x - crop_left) * scale_x + pad_left,
    (y - crop_top) * scale_y + pad_top) of the input (stretch: scales only; letterbox: one
    scale and the padding; center_crop: the crop offset and the crop's scales).
    """

    source_h: int
    source_w: int
    input_h: int
    input_w: int
    scale_x: float = 1.0
    scale_y: float = 1.0
    pad_left: float = 0.0
    pad_top: float = 0.0
    crop_left: float = 0.0
    crop_top: float = 0.0

    @classmethod
    def of(cls, mode: str, height: int, width: int, target_h: int, target_w: int,
           short: int = 0) -> 'Geometry':
        """Return the geometry of resize mode `mode` (Preprocessor's) for these sizes."""
        size = (height, width, target_h, target_w)
        if mode == 'stretch' or (height, width) == (target_h, target_w):
            return cls(*size, target_w / width, target_h / height)
        if mode == 'center_crop':
            top, left, crop_h, crop_w = center_crop_box(height, width, target_h, target_w,
                                                        short)
            return cls(*size, target_w / crop_w, target_h / crop_h, crop_left=left,
                       crop_top=top)
        _, new_h, new_w, top, left = letterbox_geometry(height, width, target_h, target_w)
        return cls(*size, new_w / width, new_h / height, pad_left=left, pad_top=top)

    def to_source(self, xs: np.ndarray, ys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Map model-input coordinates to source pixels (not clipped)."""
        return ((xs - self.pad_left) / self.scale_x + self.crop_left,
                (ys - self.pad_top) / self.scale_y + self.crop_top)


@dataclass
class ModelInfo:
    """What a loaded worker tells a decoder: output shapes (None: dynamic) and metadata."""

    outputs: Dict[str, Sequence[Optional[int]]] = field(default_factory=dict)
    metadata: Dict[str, str] = field(default_factory=dict)


@dataclass
class Detection:
    """A box in source-image pixels (x1, y1) top-left, (x2, y2) bottom-right, clipped."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_index: int
    label: str  # the class's label, or its index as text when there are no labels


@dataclass
class ClassScore:
    class_index: int
    label: str
    score: float


@dataclass
class Decoded:
    """A frame's decoded outputs: detections or classes, and the boxes filtered out."""

    detections: List[Detection] = field(default_factory=list)
    classes: List[ClassScore] = field(default_factory=list)
    filtered: int = 0  # boxes of zero area or outside the image, dropped
