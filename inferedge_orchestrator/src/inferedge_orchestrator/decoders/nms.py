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

"""Non-maximum suppression: greedy, class-aware by default, in numpy (or OpenCV's NMSBoxes)."""

import numpy as np


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Return the IoU of box (x1, y1, x2, y2) with each of boxes (N x 4)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0.0, None) * np.clip(y2 - y1, 0.0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0.0, inter / np.where(union > 0.0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float,
        max_detections: int, class_aware: bool = True) -> np.ndarray:
    """
    Return the indices kept, best score first.

    A box is suppressed by a kept box of the same class (any class when not class_aware)
    whose IoU with it is above iou_threshold. Class-aware NMS shifts each class's boxes by
    its own offset, so that boxes of different classes never overlap, and runs once.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    if class_aware:
        span = float(np.max(boxes[:, 2:]) - min(0.0, float(np.min(boxes[:, :2])))) + 1.0
        boxes = boxes + (classes.astype(np.float64) * span)[:, None]
    order = np.argsort(-scores, kind='stable')
    keep = []
    while order.size and len(keep) < max_detections:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def nms_opencv(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
               iou_threshold: float, max_detections: int) -> np.ndarray:
    """Return nms() of OpenCV's cv2.dnn.NMSBoxesBatched (class-aware): for the benchmark."""
    import cv2
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(),
                                              0.0, iou_threshold), dtype=np.intp).reshape(-1)
    return kept[np.argsort(-scores[kept], kind='stable')][:max_detections]
