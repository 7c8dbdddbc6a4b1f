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
what each topic got; the engine between them is the core's, with dummy workers.
"""

import array

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

    def __init__(self, topic, sink):
        self.topic = topic
        self._sink = sink

    def publish(self, msg):
        self._sink.setdefault(self.topic, []).append(msg)


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

    def __init__(self):
        from rclpy.clock import Clock
        self.published = {}
        self.destroyed = []
        self.context = Context()
        self.logger = Logger()
        self._clock = Clock()

    def create_lifecycle_publisher(self, msg_type, topic, qos):
        return Publisher(topic, self.published)

    def destroy_lifecycle_publisher(self, publisher):
        self.destroyed.append(publisher.topic)

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
    outputs = Outputs(node, config, publish_tensors=False, annotate_rate_hz=0.0)
    engine = Engine(config, on_result=outputs.on_result, on_decision=outputs.on_decision,
                    latency_series=NODE_SERIES)
    outputs.engine = engine
    inputs = {'camera': Input('camera', dict(SETTINGS),
                              resolve_target('auto', config, 'camera'))}
    ingress = Ingress(engine, inputs, Converter(node.logger.warning), node.get_clock(),
                      node.logger)
    engine.start()
    yield node, engine, ingress, outputs
    engine.close(timeout=2.0)
    outputs.close()


def test_a_frame_goes_from_the_callback_to_each_tasks_result(wired):
    node, engine, ingress, _ = wired
    on_image = ingress.image_callback('camera')
    msg = image(stamp_clock=node.get_clock())
    on_image(msg)
    assert engine.drain(5.0)
    assert ingress.inputs['camera'].last_message is not None
    for task in ('detector', 'ocr'):
        [result] = node.published[f'~/{task}/result']
        assert result.header == msg.header and result.input == 'camera'
        assert result.task == task and result.transport_ms >= 0.0
        assert result.node_overhead_ms >= 0.0
    latency = engine.snapshot().tasks['detector'].latency
    assert latency['node_overhead'].count == 1 and latency['transport'].count == 1
    assert latency['convert'].count == 0  # rgb8 is taken as a view, not converted


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
    outputs = Outputs(node, config, publish_tensors=False, annotate_rate_hz=0.0)
    engine = Engine(config, on_result=outputs.on_result, latency_series=NODE_SERIES)
    outputs.engine = engine
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
