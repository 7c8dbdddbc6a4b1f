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
synthetic_camera: publishes a moving test pattern at a fixed rate, stamped by the node clock.

Its rate is kept on the steady clock (a wall clock stepped back does not stall it), or on the
node clock under use_sim_time (it follows /clock).

Raw images (sensor_msgs/Image) by default, in any encoding the orchestrator takes (the camera
encodings such as yuv422_yuy2, uyvy, bayer_rggb8 or 16UC1 made from the same pattern:
camera_patterns.py); with format jpeg or png it publishes sensor_msgs/CompressedImage instead.
Messages are built from bytes (array.array), never element by element. count > 0 stops
publishing after that many frames.
"""

import array
import time

from inferedge_orchestrator import formats, PatternSource
from inferedge_orchestrator_ros.camera_patterns import CameraPattern, ENCODINGS
from inferedge_orchestrator_ros.publishing import (publish_unless_shut_down,
                                                   spin_once_unless_shut_down)
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

FORMATS = ('raw', 'jpeg', 'png')


class SyntheticCamera(Node):
    """A camera without hardware: a moving pattern at `fps`."""

    def __init__(self, **kwargs):
        super().__init__('synthetic_camera', **kwargs)
        self.topic = self._declare('topic', 'camera/image_raw', 'the image topic')
        self.fps = float(self._declare('fps', 30.0, 'frames per second', low=0.1, high=1000.0,
                                       dynamic=True))
        self.width = self._declare('width', 640, 'image width', low=1, high=16384)
        self.height = self._declare('height', 480, 'image height', low=1, high=16384)
        self.encoding = self._declare('encoding', 'rgb8', 'raw image encoding',
                                      choices=ENCODINGS)
        self.pattern = self._declare('pattern', 'bars', 'moving test pattern (text: a page of '
                                     'text, for the orientation demo)',
                                     choices=PatternSource.PATTERNS)
        self.rotation = self._declare('rotation', 0, 'text pattern: turned clockwise by this '
                                      'many degrees (0, 90, 180, 270)', low=0, high=270)
        self.frame_id = self._declare('frame_id', 'camera', 'header.frame_id')
        self.reliability = self._declare('reliability', 'best_effort', 'publisher reliability',
                                         choices=('best_effort', 'reliable'))
        self.depth = self._declare('depth', 1, 'publisher queue depth', low=1, high=10000)
        self.format = self._declare('format', 'raw', 'raw: sensor_msgs/Image; jpeg or png: '
                                    'sensor_msgs/CompressedImage', choices=FORMATS)
        self.count = self._declare('count', 0, 'stop after this many frames (0: never)',
                                   low=0, high=2 ** 31)
        self.deadline_ms = float(self._declare(
            'deadline_ms', 0.0, 'offered QoS deadline (0: none); a subscription that requests '
            'a deadline needs a publisher that offers one at least as strict', low=0.0,
            high=1e9, dynamic=True))
        if self.format != 'raw' and self.encoding not in formats.CHANNELS:
            raise ValueError(f'encoding: {self.encoding!r} cannot be sent as {self.format}; '
                             f'allowed: {", ".join(formats.CHANNELS)}')
        self.source = CameraPattern(self.width, self.height, self.encoding, self.pattern,
                                    rotation=self.rotation)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.depth,
                         reliability=(ReliabilityPolicy.RELIABLE if self.reliability ==
                                      'reliable' else ReliabilityPolicy.BEST_EFFORT))
        if self.deadline_ms > 0:
            qos.deadline = Duration(nanoseconds=int(self.deadline_ms * 1e6))
        self._encoded = []
        if self.format == 'raw':
            self.publisher = self.create_publisher(Image, self.topic, qos)
        else:
            self._encoded = self._encode_cycle()
            self.publisher = self.create_publisher(CompressedImage, self.topic, qos)
        self.sent = 0
        self.started = time.monotonic()
        # Paced by the steady clock: on the wall clock a step back (NTP) would stall it for as
        # long. Under use_sim_time by the node clock, so that it follows /clock (rcl moves a
        # timer's next call when /clock jumps).
        pace = None if self.get_parameter('use_sim_time').value else \
            Clock(clock_type=ClockType.STEADY_TIME)
        self.timer = self.create_timer(1.0 / self.fps, self._publish, clock=pace)
        self.get_logger().info(
            f'publishing {self.width}x{self.height} {self.encoding} {self.pattern} '
            f'({self.format}) at {self.fps:g} fps on {self.publisher.topic_name} '
            f'({self.reliability})')

    def _declare(self, name, default, description, low=None, high=None, choices=(),
                 dynamic=False):
        descriptor = ParameterDescriptor(description=description, dynamic_typing=dynamic)
        if choices:
            descriptor.additional_constraints = 'one of: ' + ', '.join(choices)
        if low is not None and isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
        elif low is not None:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(low), to_value=float(high), step=0.0)]
        value = self.declare_parameter(name, default, descriptor).value
        if choices and value not in choices:
            raise ValueError(f'{name}: {value!r} is not allowed; allowed: {", ".join(choices)}')
        if low is not None and not low <= value <= high:
            raise ValueError(f'{name}: {value!r} is out of range; allowed: {low}..{high}')
        return value

    def _encode_cycle(self):
        import cv2
        frames = []
        for index in range(self.source.period):
            image = self.source.frame(index)
            if self.encoding.startswith('rgb'):
                image = image[:, :, [2, 1, 0, 3][:image.shape[2]]]  # OpenCV writes BGR
            ok, data = cv2.imencode('.jpg' if self.format == 'jpeg' else '.png', image)
            if not ok:
                raise ValueError(f'cannot encode {self.encoding} as {self.format}')
            frames.append(array.array('B', data.tobytes()))
        return frames

    def _publish(self) -> None:
        if self.count and self.sent >= self.count:
            self.timer.cancel()
            return
        index = self.sent
        if self.format == 'raw':
            msg = Image()
            msg.height = self.height
            msg.width = self.width
            msg.encoding = self.encoding
            msg.is_bigendian = 0
            msg.step = self.source.step
            msg.data = array.array('B', self.source.frame_bytes(index))
        else:
            msg = CompressedImage()
            msg.format = self.format
            msg.data = self._encoded[index % len(self._encoded)]
        msg.header.frame_id = self.frame_id
        msg.header.stamp = self.get_clock().now().to_msg()
        if publish_unless_shut_down(self, self.publisher, msg):
            self.sent += 1


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = SyntheticCamera()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while spin_once_unless_shut_down(node, executor, 0.25):
            pass
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as error:
        get_logger('synthetic_camera').error(f'bad parameter: {error}')
        code = 2
    finally:
        if node is not None:
            # The rate it kept: a benchmark leaves out the points where a camera fell behind.
            elapsed = time.monotonic() - node.started
            get_logger('synthetic_camera').info(
                f'sent {node.sent} frames in {elapsed:.1f} s: {node.sent / elapsed:.2f} fps')
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    main()
