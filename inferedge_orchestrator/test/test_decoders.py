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
Decoders without a model.

Geometry back to source pixels, YOLO layouts, NMS, boxes exported with NMS, classification,
labels and the bad outputs that fail a frame.
"""

import math
import os

from inferedge_orchestrator.contracts.errors import ConfigError, PostprocessError
from inferedge_orchestrator.contracts.inference import Geometry, ModelInfo
from inferedge_orchestrator.contracts.kinds import DECODERS
from inferedge_orchestrator.decoders.base import create_decoder
from inferedge_orchestrator.decoders.nms import nms
import numpy as np
import pytest

IDENTITY = Geometry(100, 200, 100, 200)  # a 100x200 image fed as is


def decoder(kind, info=None, **options):
    made = create_decoder(kind, 'task', DECODERS.validate(kind, options, 'test'))
    made.bind(info or ModelInfo())
    return made


def boxes_of(decoded):
    return [(round(d.x1, 3), round(d.y1, 3), round(d.x2, 3), round(d.y2, 3), d.label)
            for d in decoded.detections]


# -- geometry ------------------------------------------------------------------------------

def test_letterbox_geometry_maps_back_through_scale_and_padding():
    # 480x640 into 320x320: scale 0.5, 320x240 image, 40 rows of padding above.
    geometry = Geometry.of('letterbox', 480, 640, 320, 320)
    assert (geometry.scale_x, geometry.scale_y, geometry.pad_top) == (0.5, 0.5, 40)
    xs, ys = geometry.to_source(np.array([0.0, 160.0, 320.0]), np.array([40.0, 160.0, 280.0]))
    assert xs.tolist() == [0.0, 320.0, 640.0] and ys.tolist() == [0.0, 240.0, 480.0]


def test_stretch_and_center_crop_geometry():
    stretch = Geometry.of('stretch', 480, 640, 240, 160)
    assert stretch.to_source(np.array([160.0]), np.array([240.0])) == (640.0, 480.0)
    # Center crop to 224x224 from 480x640: the 480x480 middle (left 80), scale 224/480.
    crop = Geometry.of('center_crop', 480, 640, 224, 224)
    xs, ys = crop.to_source(np.array([0.0, 224.0]), np.array([0.0, 224.0]))
    assert xs.tolist() == [80.0, 560.0] and ys.tolist() == [0.0, 480.0]
    # Short side to 256, then the 224 centre: the middle 420x420 of the 480 rows.
    short = Geometry.of('center_crop', 480, 640, 224, 224, short=256)
    xs, ys = short.to_source(np.array([0.0, 224.0]), np.array([0.0, 224.0]))
    assert ys.tolist() == [30.0, 450.0] and xs.tolist() == [110.0, 530.0]


# -- yolo ----------------------------------------------------------------------------------

def yolov8(boxes_and_scores, candidates=32):
    """Return a [1, 4 + C, N] output from rows (cx, cy, w, h, score of each class)."""
    rows = np.zeros((candidates, len(boxes_and_scores[0])), dtype=np.float32)
    rows[:len(boxes_and_scores)] = boxes_and_scores  # the others score 0
    return {'out': rows.T[None]}


def test_yolov8_boxes_come_back_in_source_pixels_through_letterbox():
    geometry = Geometry.of('letterbox', 480, 640, 320, 320)
    rows = [[160.0, 160.0, 80.0, 40.0, 0.9, 0.1],  # class 0 in the middle
            [40.0, 80.0, 40.0, 40.0, 0.05, 0.7],   # class 1 near the top-left
            [100.0, 100.0, 10.0, 10.0, 0.1, 0.1]]  # below the score threshold
    made = decoder('yolo', labels=['cat', 'dog'])
    decoded = made.decode(yolov8(rows), geometry)
    assert boxes_of(decoded) == [(240.0, 200.0, 400.0, 280.0, 'cat'),
                                 (40.0, 40.0, 120.0, 120.0, 'dog')]
    assert [round(d.score, 3) for d in decoded.detections] == [0.9, 0.7]


def test_yolov5_rows_multiply_objectness_and_need_the_class_count_when_transposed():
    rows = np.array([[50.0, 50.0, 20.0, 20.0, 0.5, 0.9, 0.1]], dtype=np.float32)  # 5 + 2
    made = decoder('yolo', labels=['a', 'b'])
    decoded = made.decode({'out': rows[None]}, IDENTITY)
    assert boxes_of(decoded) == [(40.0, 40.0, 60.0, 60.0, 'a')]
    assert math.isclose(decoded.detections[0].score, 0.45, rel_tol=1e-6)
    # Without labels a [1, N, 7] output is YOLOv5 (5 + 2) or transposed YOLOv8 (4 + 3).
    with pytest.raises(ValueError, match='set decoder_options.layout'):
        decoder('yolo', ModelInfo({'out': [1, 8400, 7]}))
    transposed = decoder('yolo', layout='yolov8', labels=['a', 'b', 'c'])
    decoded = transposed.decode({'out': rows[None]}, IDENTITY)
    assert [d.label for d in decoded.detections] == ['b']  # 0.9 of class b (4 + 3 values)


def test_normalized_boxes_scale_to_the_input():
    made = decoder('yolo', normalized=True)
    geometry = Geometry.of('stretch', 100, 200, 50, 100)
    decoded = made.decode(yolov8([[0.5, 0.5, 0.2, 0.2, 0.9]]), geometry)
    assert boxes_of(decoded) == [(80.0, 40.0, 120.0, 60.0, '0')]


# -- nms -----------------------------------------------------------------------------------

def test_nms_within_and_across_classes_max_detections_and_the_threshold_boundary():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10], [20, 20, 30, 30]],
                     dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5, 10).tolist() == [0, 2, 3]  # 1 overlaps 0 (0.9)
    assert nms(boxes, scores, classes, 0.5, 10, class_aware=False).tolist() == [0, 3]
    assert nms(boxes, scores, classes, 0.5, 2).tolist() == [0, 2]
    # IoU of boxes 0 and 1 is exactly 0.9: kept at threshold 0.9 (only above suppresses).
    assert nms(boxes, scores, classes, 0.9, 10).tolist() == [0, 1, 2, 3]


def test_the_score_threshold_keeps_a_score_equal_to_it():
    made = decoder('yolo', score_threshold=0.5)
    decoded = made.decode(yolov8([[50, 50, 10, 10, 0.5], [20, 20, 10, 10, 0.4999]]), IDENTITY)
    assert len(decoded.detections) == 1


def test_zero_area_and_outside_boxes_are_filtered_and_counted():
    rows = [[50, 50, 0, 10, 0.9],     # zero width
            [500, 50, 10, 10, 0.9],   # right of the 200-pixel image
            [195, 50, 20, 10, 0.9]]   # half inside: clipped
    decoded = decoder('yolo').decode(yolov8(rows), IDENTITY)
    assert decoded.filtered == 2
    assert boxes_of(decoded) == [(185.0, 45.0, 200.0, 55.0, '0')]


# -- boxes (exported with NMS) ---------------------------------------------------------------

def test_boxes_with_count_and_formats():
    outputs = {'det_boxes': [[[10, 10, 20, 30], [0, 0, 5, 5], [1, 1, 2, 2]]],
               'det_scores': [[0.9, 0.8, 0.99]], 'det_classes': [[1, 0, 0]], 'num': [2]}
    outputs = {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}
    made = decoder('boxes', boxes='det_boxes', scores='det_scores', classes='det_classes',
                   count='num', box_format='xywh', labels=['a', 'b'])
    decoded = made.decode(outputs, IDENTITY)
    assert boxes_of(decoded) == [(10.0, 10.0, 30.0, 40.0, 'b'), (0.0, 0.0, 5.0, 5.0, 'a')]
    centre = decoder('boxes', box_format='cxcywh')
    decoded = centre.decode({'b': outputs['det_boxes'][:, :1], 's': outputs['det_scores'][:, :1],
                             'c': outputs['det_classes'][:, :1]}, IDENTITY)
    assert boxes_of(decoded) == [(0.0, 0.0, 20.0, 25.0, '1')]


# -- classification ------------------------------------------------------------------------

def test_classification_softmax_top_k_and_labels():
    made = decoder('classification', labels=['0', '90', '180', '270'], top_k=2)
    decoded = made.decode({'y': np.array([[0.0, 3.0, 1.0, 0.0]])}, IDENTITY)
    assert [c.label for c in decoded.classes] == ['90', '180']
    expected = math.exp(3.0) / (2 + math.exp(3.0) + math.e)
    assert math.isclose(decoded.classes[0].score, expected, rel_tol=1e-5)
    probabilities = decoder('classification').decode(
        {'y': np.array([0.2, 0.7, 0.1])}, IDENTITY)
    assert [(c.class_index, round(c.score, 3)) for c in probabilities.classes][:1] == [(1, 0.7)]


def test_labels_from_metadata_file_and_mapping(tmp_path):
    info = ModelInfo({'y': [1, 4]}, {'character': '0\n90\n180\n270', 'names': "{0: 'a', 1: 'b'}"})
    assert decoder('classification', info, labels='metadata:character').labels == \
        ['0', '90', '180', '270']
    assert decoder('yolo', info, labels='metadata:names').labels == ['a', 'b']
    with pytest.raises(ValueError, match="no metadata 'missing'"):
        decoder('yolo', info, labels='metadata:missing')
    path = tmp_path / 'labels.txt'
    path.write_text('person\n\ncar\n')
    assert decoder('yolo', labels=str(path)).labels == ['person', 'car']
    mapping = tmp_path / 'labels.yaml'
    mapping.write_text('names: {0: person, 1: car}\n')
    assert decoder('yolo', labels=str(mapping)).labels == ['person', 'car']
    with pytest.raises(ConfigError, match='does not exist'):
        DECODERS.validate('yolo', {'labels': str(tmp_path / 'none.txt')}, 'test')
    with pytest.raises(ValueError, match='3 labels for a model of 4 classes'):
        decoder('classification', info, labels=['a', 'b', 'c'])


# -- bad outputs ---------------------------------------------------------------------------

@pytest.mark.parametrize('kind, options, outputs, message', [
    ('yolo', {}, {'out': np.zeros((1, 2, 3, 4))}, 'shape'),
    ('yolo', {'output': 'scores'}, {'out': np.zeros((1, 6, 8))}, "'scores' is missing"),
    ('yolo', {}, {'out': np.full((1, 6, 8), np.nan)}, 'NaN or infinite'),
    ('yolo', {'labels': ['a']}, yolov8([[5, 5, 2, 2, 0.1, 0.9]]), 'beyond the 1 labels'),
    ('boxes', {}, {'b': np.zeros((1, 3, 4))}, 'output 2'),
    ('boxes', {}, {'b': np.zeros((1, 3, 4)), 's': np.zeros((1, 2)), 'c': np.zeros((1, 3))},
     'do not match'),
    ('classification', {}, {'y': np.zeros((2, 3))}, 'C scores'),
    ('classification', {}, {'y': np.array([np.inf, 0.0])}, 'NaN or infinite'),
])
def test_bad_outputs_fail_the_frame(kind, options, outputs, message):
    with pytest.raises(PostprocessError, match=message):
        decoder(kind, **options).decode(outputs, IDENTITY)


def test_unknown_options_and_kinds_are_configure_errors():
    with pytest.raises(ConfigError, match="unknown key 'iou' for decoder 'yolo'"):
        DECODERS.validate('yolo', {'iou': 0.5}, 'tasks.t.decoder_options')
    with pytest.raises(ConfigError, match="'ssd' is not allowed"):
        DECODERS.validate('ssd', {}, 'tasks.t.decoder_options')


def test_the_option_tables_of_the_docs_are_made_from_the_schema():
    # After a change to an option: docs_with_tables() writes docs/decoders.md again.
    from inferedge_orchestrator.decoders.base import docs_with_tables
    path = os.path.join(os.path.dirname(__file__), '..', '..', 'docs', 'decoders.md')
    with open(path, encoding='utf-8') as stream:
        text = stream.read()
    assert docs_with_tables(text) == text


@pytest.mark.parametrize('image, encoding, expected', [
    (np.array([[[10, 20, 30]]], np.uint8), 'bgr8', [30, 20, 10]),
    (np.array([[[10, 20, 30, 40]]], np.uint8), 'rgba8', [10, 20, 30]),
    (np.array([[513]], np.uint16), 'mono16', [2, 2, 2]),
    (np.array([[1000]], np.uint16), '16UC1', [3, 3, 3]),
])
def test_images_to_draw_on_are_rgb8(image, encoding, expected):
    from inferedge_orchestrator.decoders.draw import to_rgb
    rgb = to_rgb(image, encoding)
    assert rgb.dtype == np.uint8 and rgb[0, 0].tolist() == expected


def test_a_float_depth_image_is_stretched_to_its_finite_range():
    from inferedge_orchestrator.decoders.draw import to_rgb
    depth = np.array([[0.5, 1.5, np.nan, 2.5]], np.float32)
    assert to_rgb(depth, '32FC1')[0, :, 0].tolist() == [0, 127, 0, 255]
