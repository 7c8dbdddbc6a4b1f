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
Detection decoders: YOLO outputs (with NMS here) and models exported with NMS (boxes).

Both end the same way: boxes mapped to source-image pixels through the preprocessing's
Geometry, clipped to the image; boxes of zero area (or wholly outside) are filtered and
counted; then the score threshold and, for yolo, class-aware NMS and max_detections.
"""

from typing import Dict, Optional, Tuple

from inferedge_orchestrator.config import checkers as opt
from inferedge_orchestrator.config.schema import setting, table
from inferedge_orchestrator.contracts.errors import PostprocessError
from inferedge_orchestrator.contracts.inference import Decoded, Detection, ModelInfo
from inferedge_orchestrator.decoders.base import Decoder, finite, output
from inferedge_orchestrator.decoders.labels import check_labels, resolve_labels
from inferedge_orchestrator.decoders.nms import nms
import numpy as np

YOLO_LAYOUTS = ('auto', 'yolov5', 'yolov8')
BOX_FORMATS = ('xyxy', 'xywh', 'cxcywh')

COMMON = (
    opt.custom('labels', (), 'class labels: a list, a file (one per line, or YAML/JSON) or '
               'metadata:KEY of the model', check_labels,
               'a list of labels, a file path or metadata:KEY'),
    setting('score_threshold', 0.25, 'boxes scoring below this are dropped', low=0.0,
            high=1.0),
    setting('max_detections', 100, 'at most this many boxes per frame', low=1, high=100000),
    setting('normalized', False, 'box coordinates are fractions of the model input size'),
)


class DetectionDecoder(Decoder):
    """What the two detection decoders share: the labels and the last steps."""

    produces = 'detections'

    def bind(self, info: ModelInfo) -> None:
        self.labels = resolve_labels(self.options['labels'], info.metadata)

    def finish(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, geometry,
               suppress: bool) -> Decoded:
        """Map, clip, filter, threshold and (suppress) NMS boxes given in model-input units."""
        options = self.options
        if options['normalized']:
            boxes = boxes * np.array([geometry.input_w, geometry.input_h] * 2, np.float32)
        keep = scores >= options['score_threshold']
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        x1, y1 = geometry.to_source(boxes[:, 0], boxes[:, 1])
        x2, y2 = geometry.to_source(boxes[:, 2], boxes[:, 3])
        width, height = geometry.source_w, geometry.source_h
        mapped = np.stack([np.clip(x1, 0, width), np.clip(y1, 0, height),
                           np.clip(x2, 0, width), np.clip(y2, 0, height)], axis=1)
        visible = (mapped[:, 2] > mapped[:, 0]) & (mapped[:, 3] > mapped[:, 1])
        filtered = int(np.count_nonzero(~visible))
        mapped, scores, classes = mapped[visible], scores[visible], classes[visible]
        if suppress:
            kept = nms(mapped, scores, classes, options['iou_threshold'],
                       options['max_detections'], not options['class_agnostic'])
        else:
            kept = np.argsort(-scores, kind='stable')[:options['max_detections']]
        detections = [Detection(float(b[0]), float(b[1]), float(b[2]), float(b[3]),
                                float(scores[i]), int(classes[i]), self.label(int(classes[i])))
                      for i, b in zip(kept, mapped[kept])]
        return Decoded(detections=detections, filtered=filtered)


class YoloDecoder(DetectionDecoder):
    """
    YOLO outputs: v5 [1, N, 5 + C], v8/11 [1, 4 + C, N] or its transpose.

    YOLOv5 rows hold the box, the objectness and the class scores; YOLOv8/11 the box and the
    class scores. Boxes are centre x, centre y, width, height in model-input pixels
    (normalized: fractions). layout auto tells them apart by the shape: [1, a, b] with a < b
    is YOLOv8's; with a > b it is YOLOv5's when b = 5 + C or a transposed YOLOv8 when
    b = 4 + C, which needs C: the labels or the layout option.
    """

    kind = 'yolo'
    OPTIONS = table(
        opt.custom('output', '', 'the output to decode (empty: the first)', opt.optional_text,
                   'an output name, or empty'),
        setting('layout', 'auto', 'the output layout (auto: from the shape)',
                choices=YOLO_LAYOUTS),
        *COMMON,
        setting('iou_threshold', 0.45, 'NMS: a box overlapping a kept one by more is dropped',
                low=0.0, high=1.0),
        setting('class_agnostic', False, 'NMS across classes (default: within each class)'),
    )

    def bind(self, info: ModelInfo) -> None:
        super().bind(info)
        name = self.options['output'] or next(iter(info.outputs), '')
        if self.options['output'] and info.outputs and name not in info.outputs:
            raise ValueError(f'decoder_options.output: {name!r} is not an output of the model; '
                             f'outputs: {", ".join(info.outputs)}')
        shape = info.outputs.get(name)
        if shape is not None and len(shape) == 3 and all(isinstance(d, int) for d in shape[1:]):
            try:
                self._layout(shape[1], shape[2])
            except PostprocessError as error:
                raise ValueError(str(error)) from None

    def _layout(self, a: int, b: int) -> Tuple[str, bool]:
        """Return (yolov5 | yolov8, whether the features are the first axis) of [1, a, b]."""
        layout = self.options['layout']
        classes = len(self.labels) or None
        if layout != 'auto':
            features = (5 if layout == 'yolov5' else 4) + (classes or 0)
            if classes and a == features != b:
                return layout, True
            if classes and b == features:
                return layout, False
            return layout, a < b  # candidates outnumber the features
        if classes is not None and a == 4 + classes != b:
            return 'yolov8', True
        if classes is not None and b == 5 + classes:
            return 'yolov5', False
        if classes is not None and b == 4 + classes:
            return 'yolov8', False
        if a < b:
            return 'yolov8', True  # YOLOv5 exports always have more candidates than values
        raise PostprocessError(
            f'the output [1, {a}, {b}] could be YOLOv5 ([1, N, 5 + C]) or a transposed YOLOv8 '
            f'([1, N, 4 + C]); set decoder_options.layout (yolov5 or yolov8) or labels')

    def decode(self, outputs: Dict[str, np.ndarray], geometry) -> Decoded:
        raw = output(outputs, self.options['output'])
        if raw.ndim == 3 and raw.shape[0] == 1:
            raw = raw[0]
        if raw.ndim != 2:
            raise PostprocessError(f'a yolo output has shape [1, a, b]; got {list(raw.shape)}')
        layout, features_first = self._layout(*raw.shape)
        rows = finite('yolo output', raw.T if features_first else raw)
        first = 5 if layout == 'yolov5' else 4
        if rows.shape[1] <= first:
            raise PostprocessError(f'a {layout} output needs more than {first} values per box; '
                                   f'got {rows.shape[1]}')
        scores = rows[:, first:]
        if layout == 'yolov5':
            scores = scores * rows[:, 4:5]
        classes = np.argmax(scores, axis=1)
        best = scores[np.arange(len(rows)), classes]
        centre, size = rows[:, :2], rows[:, 2:4]
        boxes = np.concatenate([centre - size / 2.0, centre + size / 2.0], axis=1)
        return self.finish(boxes, best, classes, geometry, suppress=True)


class BoxesDecoder(DetectionDecoder):
    """
    Models exported with NMS: boxes, scores, classes and an optional count.

    boxes [1, N, 4], scores [1, N], classes [1, N], count (the valid boxes come first), by
    name or, left empty, by position.
    """

    kind = 'boxes'
    OPTIONS = table(
        opt.custom('boxes', '', 'the boxes output (empty: the first)', opt.optional_text,
                   'an output name, or empty'),
        opt.custom('scores', '', 'the scores output (empty: the second)', opt.optional_text,
                   'an output name, or empty'),
        opt.custom('classes', '', 'the classes output (empty: the third)', opt.optional_text,
                   'an output name, or empty'),
        opt.custom('count', '', 'the output with the number of valid boxes (empty: none)',
                   opt.optional_text, 'an output name, or empty'),
        setting('box_format', 'xyxy', 'xyxy (corners), xywh (top-left, size) or cxcywh '
                '(centre, size)', choices=BOX_FORMATS),
        *COMMON,
    )

    def decode(self, outputs: Dict[str, np.ndarray], geometry) -> Decoded:
        options = self.options
        boxes = finite('boxes', _squeeze(output(outputs, options['boxes'], 0), 2, 'boxes'))
        scores = finite('scores', _squeeze(output(outputs, options['scores'], 1), 1, 'scores'))
        classes = _squeeze(output(outputs, options['classes'], 2), 1, 'classes')
        if boxes.shape[1:] != (4,) or len(scores) != len(boxes) or len(classes) != len(boxes):
            raise PostprocessError(f'boxes {list(boxes.shape)}, scores {list(scores.shape)} '
                                   f'and classes {list(classes.shape)} do not match ([N, 4], '
                                   '[N], [N])')
        count: Optional[int] = None
        if options['count']:
            count = int(np.asarray(output(outputs, options['count'])).reshape(-1)[0])
            boxes, scores, classes = boxes[:count], scores[:count], classes[:count]
        if options['box_format'] == 'xywh':
            boxes = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        elif options['box_format'] == 'cxcywh':
            boxes = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2.0,
                                    boxes[:, :2] + boxes[:, 2:] / 2.0], axis=1)
        classes = np.asarray(classes)
        if classes.dtype.kind == 'f':
            classes = finite('classes', classes)
        return self.finish(boxes, scores, classes.astype(np.int64), geometry, suppress=False)


def _squeeze(values: np.ndarray, rank: int, name: str) -> np.ndarray:
    """Return values without a leading batch of 1, checking the rank."""
    if values.ndim == rank + 1 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != rank:
        raise PostprocessError(f'output {name!r} has shape {list(values.shape)}; allowed: '
                               f'rank {rank} (or {rank + 1} with a batch of 1)')
    return values
