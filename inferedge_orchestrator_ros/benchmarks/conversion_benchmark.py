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
Conversion benchmark (a script, not a test): the image callback's cost per encoding.

    source install/setup.bash   # cv_bridge and this package (built with colcon)
    python3 benchmarks/conversion_benchmark.py [--width 640] [--height 480] [--frames 300]
        [--json OUT] [--markdown OUT]

Times what the orchestrator's image callback runs to turn one message into the engine's
array, for every encoding it takes: image_to_array() for the zero-copy encodings and
Converter.convert() (cv_bridge's cvtColor2 or OpenCV) for the camera encodings, to each
target. The frames are the synthetic camera's noise pattern in array.array('B'), as rclpy
hands msg.data over; each case runs --warmup frames first, then --frames timed ones, cases
interleaved round by round so that a slow moment of the machine spreads over all of them.
Prints a markdown table: per encoding and target, median / p99 in milliseconds per frame.
"""

import argparse
import array
import json
import os
import platform
import sys
import time

from inferedge_orchestrator_ros.camera_patterns import CameraPattern
from inferedge_orchestrator_ros.conversion import CAMERA_ENCODINGS, Converter
from inferedge_orchestrator_ros.conversion import CV_BRIDGE, TARGETS
from inferedge_orchestrator_ros.images import image_to_array, ZERO_COPY
import numpy as np

BIG = 1 << 40
ZERO_COPY_CASES = ('rgb8', 'bgr8', 'mono8', 'mono16', '8UC3', '16UC1', '32FC1')


def cases(converter: Converter, width: int, height: int):
    """Yield (encoding, target, function) per case; function() converts one frame."""
    for encoding in ZERO_COPY_CASES:
        pattern = CameraPattern(width, height, encoding, 'noise')
        data = array.array('B', pattern.frame_bytes(0))
        step = pattern.step

        def view(encoding=ZERO_COPY[encoding], data=data, step=step):
            image, reason = image_to_array(encoding, height, width, step, 0, data, BIG)
            assert not reason, reason
        yield encoding, 'zero-copy view', view
    for encoding in CAMERA_ENCODINGS:
        pattern = CameraPattern(width, height, encoding, 'noise')
        data = array.array('B', pattern.frame_bytes(0))
        for target in TARGETS + ('passthrough',):
            if target == 'passthrough' and not CAMERA_ENCODINGS[encoding].raw:
                continue

            def convert(encoding=encoding, data=data, step=pattern.step, target=target):
                image, _, reason = converter.convert(encoding, height, width, step, 0, data,
                                                     BIG, target)
                assert not reason, (encoding, target, reason)
            yield encoding, target, convert


def markdown(rows, caption: str) -> str:
    """Return the table: one row per encoding, median / p99 ms per target."""
    columns = ('zero-copy view',) + TARGETS + ('passthrough',)
    cells = {}
    for row in rows:
        cells.setdefault(row['encoding'], {})[row['target']] = (
            f'{row["median_ms"]:.3f} / {row["p99_ms"]:.3f}')
    lines = [caption, '', '| encoding | ' + ' | '.join(columns) + ' |',
             '| --- |' + ' --- |' * len(columns)]
    for encoding, by_target in cells.items():
        values = [by_target.get(column, '-') for column in columns]
        lines.append(f'| `{encoding}` | ' + ' | '.join(values) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--frames', type=int, default=300, help='timed frames per case')
    parser.add_argument('--warmup', type=int, default=20, help='untimed frames per case')
    parser.add_argument('--json', help='write the numbers of every case there')
    parser.add_argument('--markdown', help='write the table there')
    args = parser.parse_args(argv)

    converter = Converter(lambda text: print(f'warning: {text}', file=sys.stderr))
    if converter.missing[CV_BRIDGE]:
        print(f'cv_bridge cannot be used: {converter.missing[CV_BRIDGE]}; source the ROS 2 '
              'setup first', file=sys.stderr)
        return 1
    table = list(cases(converter, args.width, args.height))
    for _, _, function in table:
        for _ in range(args.warmup):
            function()
    samples = [[] for _ in table]
    clock = time.perf_counter
    for _ in range(args.frames):
        for index, (_, _, function) in enumerate(table):
            start = clock()
            function()
            samples[index].append((clock() - start) * 1000.0)
    import cv2
    machine = (f'{os.cpu_count()} CPUs ({platform.machine()}), {platform.system()} '
               f'{platform.release()}, Python {platform.python_version()}, numpy '
               f'{np.__version__}, cv2 {cv2.__version__}')
    rows = []
    for (encoding, target, _), times in zip(table, samples):
        values = np.asarray(times)
        rows.append({'encoding': encoding, 'target': target, 'frames': len(values),
                     'median_ms': float(np.median(values)),
                     'p99_ms': float(np.percentile(values, 99))})
    text = markdown(rows, f'{args.width}x{args.height}, {args.frames} frames per case after '
                    f'{args.warmup} of warm-up, cases interleaved; {machine}; load average '
                    f'at the end {" ".join(f"{x:.2f}" for x in os.getloadavg())}.')
    print(text)
    if args.markdown:
        with open(args.markdown, 'w', encoding='utf-8') as stream:
            stream.write(text)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump({'width': args.width, 'height': args.height, 'machine': machine,
                       'cases': rows}, stream, indent=2)
            stream.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
