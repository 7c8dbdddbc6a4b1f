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
Launch test: fuzzed sensor_msgs/Image and CompressedImage at the node (hypothesis).

FUZZ_EXAMPLES (default 100) generated messages of each type, plus one explicit example of each
malformed reason the node can reach: height, width and step from 0 to 2^32 - 1, known and
unknown encodings, is_bigendian, data shorter, longer and empty, stamps zero, in the future and
far past, long and non-ASCII frame_ids; random bytes labelled jpeg or png, truncated real JPEGs
and PNGs, headers that claim no size or a huge one. Every message is at most 8 MB. The inputs
are reliable with a depth above the message count and the tasks never drop (large queues,
on_deadline run, long budgets), so every message is judged. Oracle: received == published per
input; malformed + accepted == received, each malformed with a reason from the closed list,
every reachable reason seen; both invariants; no accepted frame failed in a worker except with
decode_error for compressed data that does not decode; the node answers a parameter get.
"""

import array
import os
import time
import unittest

from inferedge_orchestrator import reasons
import launch_testing
import launch_testing.asserts
import pytest

from .ros_test_env import launch_test_description, NOT_BUILT, orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 51
NODE = '/inferedge_orchestrator'
EXAMPLES = int(os.environ.get('FUZZ_EXAMPLES', '100'))
DEPTH = 2 * EXAMPLES + 100  # above every message the test publishes on one topic
MAX_PIXELS = 1000000
MAX_BYTES = 8 * 1024 * 1024
RAW_REASONS = {reasons.UNKNOWN_ENCODING, reasons.ZERO_SIZE, reasons.TOO_MANY_PIXELS,
               reasons.STEP_TOO_SMALL, reasons.DATA_TOO_SHORT, reasons.BAD_ARRAY}
COMPRESSED_REASONS = {reasons.ZERO_SIZE, reasons.TOO_MANY_PIXELS}
ENCODINGS = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', '8UC1', '8UC3', '16UC1',
             '32FC1', 'yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv', 'nv21', 'nv24', 'bayer_rggb8',
             'bayer_gbrg16', 'rgb16', '', 'jpeg', '\u00e9ncoding', 'x' * 300]
U32 = 2 ** 32 - 1


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    task = {'latency_budget_ms': 600000.0, 'queue_size': 1000, 'on_deadline': 'run',
            'worker_options.latency_ms': 0.0}
    parameters = {'max_image_pixels': MAX_PIXELS, 'telemetry_period_s': 0.3,
                  'max_stamp_age_ms': 1000.0, 'inputs': ['raw', 'compressed'],
                  'raw.topic': '/fuzz_test/raw', 'compressed.topic': '/fuzz_test/compressed',
                  'compressed.message_type': 'compressed_image',
                  'tasks': ['on_raw', 'on_compressed'],
                  'on_raw.inputs': ['raw'], 'on_compressed.inputs': ['compressed']}
    for name in ('raw', 'compressed'):
        parameters.update({f'{name}.reliability': 'reliable', f'{name}.depth': DEPTH})
    for name in ('on_raw', 'on_compressed'):
        parameters.update({f'{name}.{key}': value for key, value in task.items()})
    return launch_test_description(DOMAIN_ID, orchestrator_node(parameters))


def headers():
    from hypothesis import strategies as st
    from std_msgs.msg import Header
    stamps = st.sampled_from([(0, 0), (1, 0), (4000000000, 0), (2 ** 31 - 1, 999999999),
                              None])  # None: now (the node's clock is the system's)
    frame_ids = st.one_of(st.text(max_size=20), st.text(min_size=1000, max_size=3000),
                          st.just('\u30ab\u30e1\u30e9/\u00e9t\u00e9 \U0001f4f7'))

    def make(stamp, frame_id):
        header = Header(frame_id=frame_id)
        if stamp is None:
            now = time.time()
            stamp = (int(now), int(now % 1 * 1e9))
        header.stamp.sec, header.stamp.nanosec = stamp
        return header
    return st.builds(make, stamps, frame_ids)


def raw_images():
    """Return the strategy of sensor_msgs/Image messages (data at most MAX_BYTES)."""
    from hypothesis import strategies as st
    from sensor_msgs.msg import Image
    sizes = st.one_of(st.integers(0, 70), st.sampled_from([0, 1, 999, 1001, 65535, U32]))

    @st.composite
    def image(draw):
        width, height = draw(sizes), draw(sizes)
        encoding = draw(st.sampled_from(ENCODINGS))
        pixel = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono16': 2, '16UC1': 2,
                 '32FC1': 4, '8UC3': 3, 'bayer_gbrg16': 2, 'yuv422': 2, 'uyvy': 2,
                 'yuv422_yuy2': 2, 'yuyv': 2, 'nv24': 1}.get(encoding, 1)
        natural = width * pixel + draw(st.sampled_from([0, 0, 1, 3, 64]))
        step = draw(st.one_of(st.just(natural), st.integers(0, U32)))
        step = min(step, U32)
        exact = step * height * (2 if encoding in ('nv21', 'nv24') else 1)
        length = draw(st.sampled_from(['exact', 'shorter', 'longer', 'empty']))
        size = {'exact': exact, 'shorter': max(0, exact - draw(st.integers(1, 64))),
                'longer': exact + draw(st.integers(1, 64)), 'empty': 0}[length]
        if size > MAX_BYTES:
            size = draw(st.integers(0, 4096))  # an 8 MB cap: the fields still claim more
        msg = Image(header=draw(headers()), height=height, width=width, encoding=encoding,
                    is_bigendian=draw(st.sampled_from([0, 1])), step=step)
        head = bytes(draw(st.integers(0, 255)) for _ in range(min(size, 16)))
        msg.data = array.array('B', head + bytes(max(0, size - 16)))
        return msg
    return image()


def compressed_images():
    """Return the strategy of sensor_msgs/CompressedImage messages."""
    import cv2
    from hypothesis import strategies as st
    import numpy as np
    from sensor_msgs.msg import CompressedImage
    pattern = (np.indices((48, 64)).sum(axis=0)[..., None] * [3, 5, 7] % 256).astype(np.uint8)
    jpeg = cv2.imencode('.jpg', pattern)[1].tobytes()
    png = cv2.imencode('.png', pattern)[1].tobytes()

    def truncated(data):
        return st.integers(0, len(data) - 1).map(lambda n: data[:n])
    data = st.one_of(st.binary(max_size=2048), truncated(jpeg), truncated(png), st.just(jpeg),
                     st.just(png), st.just(b''), st.just(png_claiming(0, 0)),
                     st.just(png_claiming(100000, 100000)), st.just(jpeg_claiming(0, 480)),
                     st.just(jpeg_claiming(60000, 60000))).map(lambda b: array.array('B', b))
    formats = st.sampled_from(['jpeg', 'png', 'rgb8; jpeg compressed bgr8', '', 'tiff', 'x' * 99])
    return st.builds(lambda header, fmt, payload: CompressedImage(header=header, format=fmt,
                                                                  data=payload),
                     headers(), formats, data)


def png_claiming(width, height):
    """Return a PNG signature and an IHDR that claim width x height (and nothing else)."""
    import struct
    return b'\x89PNG\r\n\x1a\n' + struct.pack('>I4sII', 13, b'IHDR', width, height) + bytes(9)


def jpeg_claiming(width, height):
    """Return a JPEG start and an SOF0 segment that claim width x height."""
    import struct
    return b'\xff\xd8' + b'\xff\xc0' + struct.pack('>HBHHB', 11, 8, height, width, 1) + bytes(6)


class TestFuzz(unittest.TestCase):

    def test_fuzzed_images_are_each_judged_and_the_node_lives(self):
        try:
            import cv2  # noqa: F401 - for the real JPEGs and PNGs
            from hypothesis import example, given, HealthCheck, settings
        except ImportError as error:
            self.skipTest(f'the fuzz test needs hypothesis and OpenCV: {error}')
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from .ros_launch_helpers import Listener
        listener = Listener(DOMAIN_ID, 'fuzz_test')
        try:
            qos = QoSProfile(depth=DEPTH, reliability=ReliabilityPolicy.RELIABLE)
            raw = listener.node.create_publisher(Image, '/fuzz_test/raw', qos)
            compressed = listener.node.create_publisher(CompressedImage,
                                                        '/fuzz_test/compressed', qos)
            listener.telemetry_after(f'{NODE}/telemetry', timeout=60.0)  # the node is active
            listener.wait_for_subscribers(raw)
            listener.wait_for_subscribers(compressed)
            clock = listener.node.get_clock()
            sent = {'raw': 0, 'compressed': 0}
            fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                            derandomize=True, suppress_health_check=list(HealthCheck))

            def publish(publisher, name, msg):
                if msg.header.stamp.sec == 0 and msg.header.frame_id == 'now':
                    msg.header.stamp = clock.now().to_msg()
                self.assertLessEqual(len(msg.data), MAX_BYTES)
                publisher.publish(msg)
                sent[name] += 1
                listener.spin_until(lambda: False, 0.002)  # let reliable traffic flow

            @fuzz
            @given(raw_images())
            @example(image(encoding='rgb16'))
            @example(image(width=0))
            @example(image(width=1001, height=1000, size=16))
            @example(image(step=10))
            @example(image(size=100))
            @example(image(encoding='mono16', step=129))
            @example(image())
            def fuzz_raw(msg):
                publish(raw, 'raw', msg)

            @fuzz
            @given(compressed_images())
            @example(CompressedImage(format='jpeg'))
            @example(CompressedImage(format='png',
                                     data=array.array('B', png_claiming(100000, 100000))))
            def fuzz_compressed(msg):
                publish(compressed, 'compressed', msg)

            fuzz_raw()
            fuzz_compressed()
            self.assertGreaterEqual(min(sent.values()), EXAMPLES)

            def judged(message):
                inputs = {i.name: i for i in message.inputs}
                return all(inputs[name].received == count for name, count in sent.items()) and \
                    all(t.queued + t.in_flight == 0 for t in message.tasks)
            final = listener.telemetry_after(f'{NODE}/telemetry', timeout=120.0,
                                             predicate=judged)
            inputs = {i.name: i for i in final.inputs}
            tasks = {t.name: t for t in final.tasks}
            for name, reachable in (('raw', RAW_REASONS), ('compressed', COMPRESSED_REASONS)):
                item = inputs[name]
                seen = {r.reason: r.count for r in item.malformed_by_reason}
                self.assertEqual(item.malformed + item.accepted, item.received)
                self.assertLessEqual(set(seen), set(reasons.MALFORMED_REASONS))
                self.assertLessEqual(reachable, set(seen), f'{name}: reasons seen {seen}')
                self.assertGreater(item.accepted, 0)
            self.assertEqual(listener.invariant_violations(final), [])
            self.assertEqual(tasks['on_raw'].failed, 0)
            self.assertEqual(tasks['on_raw'].dropped + tasks['on_compressed'].dropped, 0)
            failed = {r.reason: r.count for r in tasks['on_compressed'].failed_by_reason}
            self.assertLessEqual(set(failed), {reasons.DECODE_ERROR})
            self.assertEqual(failed.get(reasons.DECODE_ERROR, 0),
                             inputs['compressed'].decode_errors)
            self.assertEqual(listener.get_parameters(NODE, ['max_image_pixels']), [MAX_PIXELS])
            print(f'fuzz: published {sent}; raw malformed {inputs["raw"].malformed}, '
                  f'compressed malformed {inputs["compressed"].malformed}, decode errors '
                  f'{inputs["compressed"].decode_errors}')
        finally:
            listener.close()


def image(width=64, height=48, encoding='rgb8', step=None, size=None):
    """Return one explicit raw example (a valid rgb8 image unless told otherwise)."""
    from sensor_msgs.msg import Image
    msg = Image(width=width, height=height, encoding=encoding)
    msg.step = width * 3 if step is None else step
    msg.data = array.array('B', bytes(msg.step * height if size is None else size))
    msg.header.frame_id = 'now'  # stamped when published
    return msg


@launch_testing.post_shutdown_test()
class TestFuzzShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
