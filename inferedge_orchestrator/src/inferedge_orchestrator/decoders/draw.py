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

"""Detections drawn on their source image (the node's annotated topic, the docs' example)."""

import colorsys
from typing import List

from inferedge_orchestrator.contracts.inference import Detection
import numpy as np


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """Return an 8-bit HxWx3 RGB copy of an image in one of the frame encodings."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype.kind == 'f':  # 32FC1 depth: its finite range stretched to 0..255
        finite = np.isfinite(image)
        low, high = (image[finite].min(), image[finite].max()) if finite.any() else (0.0, 1.0)
        image = np.where(finite, (image - low) * (255.0 / max(high - low, 1e-12)), 0.0)
        image = np.clip(image, 0.0, 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:  # mono16, 16UC1
        image = (image >> 8).astype(np.uint8)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    rgb = image[:, :, :3]
    if encoding.startswith('bgr'):
        rgb = rgb[:, :, ::-1]
    return np.ascontiguousarray(rgb)


def class_colour(index: int) -> tuple:
    """Return a distinct RGB colour per class index (golden-ratio hues)."""
    red, green, blue = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_detections(image: np.ndarray, encoding: str, detections: List[Detection]
                    ) -> np.ndarray:
    """Return an RGB copy of image with each box, its label and score drawn (OpenCV)."""
    import cv2
    canvas = to_rgb(image, encoding)
    thickness = max(1, round(min(canvas.shape[:2]) / 240))
    for detection in detections:
        colour = class_colour(detection.class_index)
        top_left = (int(round(detection.x1)), int(round(detection.y1)))
        cv2.rectangle(canvas, top_left, (int(round(detection.x2)), int(round(detection.y2))),
                      colour, thickness)
        text = f'{detection.label} {detection.score:.2f}'
        scale = 0.45 * thickness
        (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        bottom = max(height + base, top_left[1])
        cv2.rectangle(canvas, (top_left[0], bottom - height - base),
                      (top_left[0] + width, bottom), colour, cv2.FILLED)
        cv2.putText(canvas, text, (top_left[0], bottom - base), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
