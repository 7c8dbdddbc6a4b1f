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
Decoder benchmark (a script, not a test): the yolo decoder's time per frame.

    python3 benchmarks/decoder_benchmark.py [--frames 200] [--boxes 20] [--json OUT]
                                            [--annotated PNG]

A YOLOv8-shaped output [1, 84, 8400] (80 classes, 8400 candidates) with --boxes objects, each
seen by a cluster of overlapping candidates (as a real detector gives), the rest background
scoring below the threshold; letterbox geometry of a 640x480 image into 640x640. Times the
whole decode (layout, scores, threshold, mapping, NMS) with the numpy NMS, and the NMS step
alone with numpy and with OpenCV's cv2.dnn.NMSBoxesBatched when OpenCV is installed.
--annotated draws a three-object example (person, car, dog) decoded the same way on a
synthetic 640x480 image and writes it as PNG (docs/decoders/annotated.png).
"""

import argparse
import json
import statistics
import time

from inferedge_orchestrator.contracts.inference import Geometry, ModelInfo
from inferedge_orchestrator.contracts.kinds import DECODERS
from inferedge_orchestrator.decoders.base import create_decoder
from inferedge_orchestrator.decoders.nms import nms, nms_opencv
import numpy as np


def yolov8_output(objects: int, seed: int = 0, candidates: int = 8400, classes: int = 80):
    rng = np.random.default_rng(seed)
    rows = np.zeros((candidates, 4 + classes), dtype=np.float32)
    rows[:, :2] = rng.uniform(0, 640, (candidates, 2))
    rows[:, 2:4] = rng.uniform(4, 64, (candidates, 2))
    rows[:, 4:] = rng.uniform(0.0, 0.2, (candidates, classes))  # background
    per_object = 30
    for index in range(objects):
        centre = rng.uniform(100, 540, 2)
        size = rng.uniform(40, 200, 2)
        start = index * per_object
        cluster = slice(start, start + per_object)
        rows[cluster, :2] = centre + rng.normal(0, 3, (per_object, 2))
        rows[cluster, 2:4] = size * rng.uniform(0.9, 1.1, (per_object, 2))
        rows[cluster, 4 + index % classes] = rng.uniform(0.5, 0.95, per_object)
    return {'output0': rows.T[None]}


def annotated_example(path: str) -> None:
    """Decode a YOLOv8-shaped output of three objects and draw them on a synthetic image."""
    import cv2
    from inferedge_orchestrator.decoders.draw import draw_detections
    from inferedge_orchestrator.frames.synthetic import synthetic_image
    rows = np.zeros((8400, 4 + 3), dtype=np.float32)
    objects = [(200, 300, 180, 120, 0), (420, 260, 140, 200, 1), (520, 420, 90, 60, 2)]
    for index, (cx, cy, w, h, label) in enumerate(objects):  # in 640x640 input pixels
        cluster = slice(index * 5, index * 5 + 5)
        rows[cluster, :4] = np.array([cx, cy, w, h]) + \
            np.random.default_rng(index).normal(0, 2, (5, 4))
        rows[cluster, 4 + label] = np.linspace(0.9, 0.6, 5)
    options = DECODERS.validate('yolo', {'labels': ['person', 'car', 'dog']}, 'example')
    decoder = create_decoder('yolo', 'example', options)
    decoder.bind(ModelInfo())
    decoded = decoder.decode({'output0': rows.T[None]}, Geometry.of('letterbox', 480, 640,
                                                                    640, 640))
    image = (synthetic_image(480, 640, 3) // 3 + 100).astype(np.uint8)
    canvas = draw_detections(image, 'rgb8', decoded.detections)
    cv2.imwrite(path, canvas[:, :, ::-1])


def timings(function, frames: int):
    values = []
    for _ in range(frames):
        start = time.perf_counter()
        function()
        values.append((time.perf_counter() - start) * 1000.0)
    values.sort()
    return {'median_ms': statistics.median(values),
            'p99_ms': values[min(len(values) - 1, int(0.99 * len(values)))]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--frames', type=int, default=200)
    parser.add_argument('--boxes', type=int, default=20)
    parser.add_argument('--json', help='write the figures there')
    parser.add_argument('--annotated', help='write the annotated example there (PNG)')
    args = parser.parse_args(argv)
    if args.annotated:
        annotated_example(args.annotated)
    outputs = yolov8_output(args.boxes)
    geometry = Geometry.of('letterbox', 480, 640, 640, 640)
    decoder = create_decoder('yolo', 'bench', DECODERS.validate('yolo', {}, 'bench'))
    decoder.bind(ModelInfo())
    decoded = decoder.decode(outputs, geometry)
    figures = {'candidates': 8400, 'classes': 80, 'objects': args.boxes,
               'detections': len(decoded.detections),
               'decode_numpy': timings(lambda: decoder.decode(outputs, geometry), args.frames)}
    rows = outputs['output0'][0].T
    scores = rows[:, 4:].max(axis=1)
    keep = scores >= 0.25
    boxes = np.concatenate([rows[keep, :2] - rows[keep, 2:4] / 2,
                            rows[keep, :2] + rows[keep, 2:4] / 2], axis=1)
    classes = rows[keep, 4:].argmax(axis=1)
    figures['nms_candidates'] = int(keep.sum())
    figures['nms_numpy'] = timings(lambda: nms(boxes, scores[keep], classes, 0.45, 100),
                                   args.frames)
    try:
        import cv2  # noqa: F401
    except ImportError:
        figures['nms_opencv'] = 'OpenCV not installed'
    else:
        figures['nms_opencv'] = timings(
            lambda: nms_opencv(boxes, scores[keep], classes, 0.45, 100), args.frames)
        figures['same_boxes'] = sorted(nms(boxes, scores[keep], classes, 0.45, 100).tolist()) \
            == sorted(nms_opencv(boxes, scores[keep], classes, 0.45, 100).tolist())
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(figures, stream, indent=2)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
