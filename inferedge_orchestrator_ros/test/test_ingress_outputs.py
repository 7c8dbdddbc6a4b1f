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
The node's ingress and outputs without a ROS graph: callbacks in, publishers out.

Ingress callbacks are called with messages directly; Outputs publishes to a stub that records
what each topic got; the engine between them is the core's, with dummy workers. The publish
queue is tested with a stub publisher that blocks, as a writer might.
"""

import array
import threading
import time

from inferedge_orchestrator import Engine, load_config
import pytest

from .ros_test_env import NOT_BUILT, package_available

BUILT = package_available()
pytestmark = pytest.mark.skipif(not BUILT, reason=NOT_BUILT)

CONFIG = {'tasks': [{'name': 'detector', 'worker_options': {'latency_ms': 1.0}},
                    {'name': 'ocr', 'priority': 10, 'worker_options': {'latency_ms': 1.0}}]}
SETTINGS = {'topic': 'camera/image_raw', 'message_type': 'image', 'convert_to': 'auto',
            'reliability': 'best_effort', 'durability': 'volatile', 'depth': 1,
            'deadline_ms': 0.0, 'expected_rate_hz': 0.0, 'stale_after_s': 2.0}


class Publisher:

    def __init__(self, topic, sink, gate=None):
        self.topic = self.topic_name = topic
        self._sink = sink
        self._gate = gate  # set: publish() waits for it (a writer that blocks)
        self.threads = set()  # the threads that called publish()
        self.destroyed = False

    def publish(self, msg):
        self.threads.add(threading.current_thread().name)
        if self._gate is not None:
            self._gate.wait()
        # A message published after its publisher was destroyed would be lost.
        self._sink.setdefault('after destroy' if self.destroyed else self.topic, []).append(msg)


class Context:

    def ok(self):
        return True


class Logger:

    def __init__(self):
        self.warnings = []

    def warning(self, text, **_):
        self.warnings.append(text)


class StubNode:
    """What Outputs needs of a node: lifecycle publishers, a clock, a logger, a context."""

    def __init__(self, gate=None):
        from rclpy.clock import Clock
        self.published = {}
        self.destroyed = []
        self.publishers = {}
        self.context = Context()
        self.logger = Logger()
        self._clock = Clock()
        self._gate = gate

    def create_lifecycle_publisher(self, msg_type, topic, qos):
        self.publishers[topic] = Publisher(topic, self.published, self._gate)
        return self.publishers[topic]

    def destroy_lifecycle_publisher(self, publisher):
        self.destroyed.append(publisher.topic)
        publisher.destroyed = True

    def get_clock(self):
        return self._clock

    def get_logger(self):
        return self.logger


def image(width=64, height=48, step=None, stamp_clock=None):
    from sensor_msgs.msg import Image
    msg = Image(width=width, height=height, encoding='rgb8',
                step=width * 3 if step is None else step)
    msg.data = array.array('B', bytes(msg.step * height))
    msg.header.frame_id = 'front_camera'
    if stamp_clock is not None:
        msg.header.stamp = stamp_clock.now().to_msg()
    return msg


@pytest.fixture
def wired():
    """Yield an engine between an Ingress (one raw-image input) and Outputs on a stub node."""
    from inferedge_orchestrator_ros.conversion import Converter, resolve_target
    from inferedge_orchestrator_ros.ingress import Ingress, Input
    from inferedge_orchestrator_ros.messages import NODE_SERIES
    from inferedge_orchestrator_ros.outputs import Outputs
    config = load_config(CONFIG)
    node = StubNode()
    outputs = Outputs(node, config, publish_tensors=False, annotate_rate_hz=0.0,
                      publish_queue_depth=100)
    engine = Engine(config, on_result=outputs.on_result, on_decision=outputs.on_decision,
                    latency_series=NODE_SERIES)
    outputs.engine = engine
    outputs.start()
    inputs = {'camera': Input('camera', dict(SETTINGS),
                              resolve_target('auto', config, 'camera'))}
    ingress = Ingress(engine, inputs, Converter(node.logger.warning), node.get_clock(),
                      node.logger)
    engine.start()
    yield node, engine, ingress, outputs
    engine.close(timeout=2.0)
    outputs.close()


def test_a_frame_goes_from_the_callback_to_each_tasks_result(wired):
    node, engine, ingress, outputs = wired
    on_image = ingress.image_callback('camera')
    msg = image(stamp_clock=node.get_clock())
    on_image(msg)
    assert engine.drain(5.0)
    outputs.stop()  # publishes what is queued
    assert ingress.inputs['camera'].last_message is not None
    for task in ('detector', 'ocr'):
        [result] = node.published[f'~/{task}/result']
        assert result.header == msg.header and result.input == 'camera'
        assert result.task == task and result.transport_ms >= 0.0
        assert result.node_overhead_ms >= 0.0
    latency = engine.snapshot().tasks['detector'].latency
    assert latency['node_overhead'].count == 1 and latency['transport'].count == 1
    assert latency['convert'].count == 0  # rgb8 is taken as a view, not converted
    assert latency['publish'].count == 1  # the slot thread's hand-over to the queue
    # Published by the queue's thread, not by the slot that ran the job.
    assert node.publishers['~/detector/result'].threads == {'publisher'}


def test_a_malformed_image_is_counted_and_logged_with_its_reason(wired):
    node, engine, ingress, _ = wired
    ingress.image_callback('camera')(image(step=10))
    camera = engine.snapshot().inputs['camera']
    assert camera.received == camera.malformed == 1
    assert camera.malformed_by_reason == {'step_too_small': 1}
    assert 'step_too_small' in node.logger.warnings[-1]
    assert '~/detector/result' not in node.published


def test_outputs_publish_nothing_once_closing_and_destroy_every_publisher(wired):
    node, engine, ingress, outputs = wired
    outputs.closing = True
    ingress.image_callback('camera')(image())
    assert engine.drain(5.0)
    assert engine.snapshot().tasks['detector'].executed == 1
    assert '~/detector/result' not in node.published
    outputs.close()
    assert sorted(node.destroyed) == ['~/decisions', '~/detector/result', '~/ocr/result',
                                      '~/telemetry']


def test_a_task_over_several_cameras_publishes_each_cameras_results_on_its_own_topics():
    from inferedge_orchestrator_ros.conversion import Converter, resolve_target
    from inferedge_orchestrator_ros.ingress import Ingress, Input
    from inferedge_orchestrator_ros.messages import NODE_SERIES, telemetry_message
    from inferedge_orchestrator_ros.outputs import Outputs
    config = load_config({'tasks': [
        {'name': 'detector', 'inputs': ['front', 'rear'], 'worker_options': {'latency_ms': 1.0}},
        {'name': 'ocr', 'inputs': ['front'], 'worker_options': {'latency_ms': 1.0}}]})
    node = StubNode()
    outputs = Outputs(node, config, publish_tensors=False, annotate_rate_hz=0.0,
                      publish_queue_depth=100)
    engine = Engine(config, on_result=outputs.on_result, latency_series=NODE_SERIES)
    outputs.engine = engine
    outputs.start()
    inputs = {name: Input(name, dict(SETTINGS, topic=f'{name}/image_raw'),
                          resolve_target('auto', config, name)) for name in ('front', 'rear')}
    ingress = Ingress(engine, inputs, Converter(node.logger.warning), node.get_clock(),
                      node.logger)
    engine.start()
    try:
        for name, count in (('front', 2), ('rear', 1)):
            for _ in range(count):
                ingress.image_callback(name)(image(stamp_clock=node.get_clock()))
                assert engine.drain(5.0)
        outputs.stop()  # publishes what is queued
        snapshot = engine.snapshot()
    finally:
        engine.close(timeout=2.0)
    assert len(node.published['~/detector/front/result']) == 2
    assert [r.input for r in node.published['~/detector/rear/result']] == ['rear']
    assert len(node.published['~/ocr/result']) == 2  # one input: the task's own prefix
    assert '~/detector/result' not in node.published
    from inferedge_orchestrator_msgs.msg import InputStats
    msg = telemetry_message(snapshot, node.get_clock().now().to_msg(), 'active',
                            lambda _: InputStats())
    detector = next(task for task in msg.tasks if task.name == 'detector')
    assert list(detector.inputs) == ['front', 'rear']
    assert {(c.input, c.routed, c.executed) for c in detector.cameras} == {
        ('front', 2, 2), ('rear', 1, 1)}
    ocr = next(task for task in msg.tasks if task.name == 'ocr')
    assert list(ocr.inputs) == ['front'] and len(ocr.cameras) == 0
    outputs.close()


def blocked_outputs(depth, tasks=('detector',)):
    """Return (node, engine, ingress, outputs, gate): publishers that block until gate is set."""
    from inferedge_orchestrator_ros.conversion import Converter, resolve_target
    from inferedge_orchestrator_ros.ingress import Ingress, Input
    from inferedge_orchestrator_ros.messages import NODE_SERIES
    from inferedge_orchestrator_ros.outputs import Outputs
    config = load_config({'tasks': [{'name': name, 'queue_size': 100,
                                     'worker_options': {'latency_ms': 0.0}}
                                    for name in tasks]})
    gate = threading.Event()
    node = StubNode(gate)
    outputs = Outputs(node, config, publish_tensors=False, annotate_rate_hz=0.0,
                      publish_queue_depth=depth)
    engine = Engine(config, on_result=outputs.on_result, on_decision=outputs.on_decision,
                    latency_series=NODE_SERIES)
    outputs.engine = engine
    outputs.start()
    inputs = {'camera': Input('camera', dict(SETTINGS), resolve_target('auto', config, 'camera'))}
    ingress = Ingress(engine, inputs, Converter(node.logger.warning), node.get_clock(),
                      node.logger)
    engine.start()
    return node, engine, ingress, outputs, gate


def test_a_publish_that_blocks_holds_no_slot_and_a_full_queue_drops_its_oldest():
    node, engine, ingress, outputs, gate = blocked_outputs(depth=3)
    try:
        on_image = ingress.image_callback('camera')
        start = time.monotonic()
        for seq in range(10):
            msg = image()
            msg.header.frame_id = str(seq)
            on_image(msg)
            assert engine.drain(5.0)  # every job ended although no publish returned
            if seq == 0:  # the publisher thread holds the first result before the next come
                deadline = time.monotonic() + 5.0
                while not node.publishers['~/detector/result'].threads and \
                        time.monotonic() < deadline:
                    time.sleep(0.001)
        assert time.monotonic() - start < 5.0
        assert engine.snapshot().tasks['detector'].executed == 10
        [counts] = [c for c in outputs.publish_counts() if c.topic == '~/detector/result']
        # The thread holds the first result in its blocked publish(); three wait; six dropped.
        assert (counts.offered, counts.published, counts.dropped, counts.queued) == (10, 0, 6, 4)
        assert counts.max_queued == 4
        gate.set()
        outputs.stop()  # publishes what is queued
        [counts] = [c for c in outputs.publish_counts() if c.topic == '~/detector/result']
        assert (counts.offered, counts.published, counts.dropped, counts.queued) == (10, 4, 6, 0)
        # The oldest were dropped: the first (already taken) and the newest three are published.
        assert [r.header.frame_id for r in node.published['~/detector/result']] == \
            ['0', '7', '8', '9']
    finally:
        gate.set()
        engine.close(timeout=2.0)
        outputs.close()


def test_depth_0_publishes_on_the_slot_thread_which_then_waits_for_the_publish():
    node, engine, ingress, outputs, gate = blocked_outputs(depth=0)
    try:
        ingress.image_callback('camera')(image())
        ingress.image_callback('camera')(image())
        time.sleep(0.5)
        # The one slot is held by the first result's publish(): the second frame waits.
        assert engine.snapshot().tasks['detector'].executed == 1
        gate.set()
        assert engine.drain(5.0)
        assert engine.snapshot().tasks['detector'].executed == 2
        [counts] = [c for c in outputs.publish_counts() if c.topic == '~/detector/result']
        assert (counts.offered, counts.published, counts.dropped, counts.queued) == (2, 2, 0, 0)
        assert node.publishers['~/detector/result'].threads != {'publisher'}
    finally:
        gate.set()
        engine.close(timeout=2.0)
        outputs.close()


def test_close_publishes_what_is_queued_before_destroying_the_publishers():
    node, engine, ingress, outputs, gate = blocked_outputs(depth=100, tasks=('a', 'b'))
    on_image = ingress.image_callback('camera')
    for _ in range(5):
        on_image(image())
    assert engine.drain(5.0)
    engine.close(timeout=2.0)
    outputs.publish_telemetry(telemetry_now(engine, node))
    threading.Timer(0.2, gate.set).start()  # the writer takes its time
    outputs.close()
    assert len(node.published['~/a/result']) == len(node.published['~/b/result']) == 5
    assert len(node.published['~/telemetry']) == 1
    assert 'after destroy' not in node.published
    [telemetry] = node.published['~/telemetry']
    counts = {c.topic: c for c in telemetry.publish}
    assert counts['~/a/result'].offered == 5  # the telemetry counts the queue of every topic
    from inferedge_orchestrator_ros.messages import telemetry_invariant_violations
    assert telemetry_invariant_violations(telemetry) == []


def test_a_closed_queue_that_could_not_publish_counts_what_it_left_as_dropped():
    node, engine, ingress, outputs, gate = blocked_outputs(depth=100)
    from inferedge_orchestrator_ros import outputs as outputs_module
    ingress.image_callback('camera')(image())
    ingress.image_callback('camera')(image())
    assert engine.drain(5.0)
    engine.close(timeout=2.0)
    begin = time.monotonic()
    outputs.close()  # the first publish never returns within the flush's time
    assert time.monotonic() - begin < outputs_module.FLUSH_TIMEOUT_S + 1.0
    [counts] = [c for c in outputs.publish_counts() if c.topic == '~/detector/result']
    # One left waiting (dropped), one still in its publish(): it ends when the writer does.
    assert (counts.offered, counts.published, counts.dropped, counts.queued) == (2, 0, 1, 1)
    assert '1 queued messages were not published' in node.logger.warnings[-1]
    gate.set()


def telemetry_now(engine, node):
    from inferedge_orchestrator_msgs.msg import InputStats
    from inferedge_orchestrator_ros.messages import telemetry_message
    return telemetry_message(engine.snapshot(), node.get_clock().now().to_msg(), 'inactive',
                             lambda _: InputStats())
