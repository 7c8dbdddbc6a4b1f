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
Node tests: the orchestrator node in this process, with a session rclpy context.

Lifecycle transitions are triggered directly; images are handed to the subscription's callback
(or published by a second node); results are read by a subscriber in the same context.
"""

import array
import json
import threading
import time

from diagnostic_msgs.msg import DiagnosticStatus
from inferedge_orchestrator import check_invariants, LATENCY_SERIES, reasons
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from .generated_models import constant_model, detector_model
from .ros_test_env import NOT_BUILT, package_available, ros_environment

BUILT = package_available()
if BUILT:
    from diagnostic_updater import DiagnosticStatusWrapper
    from inferedge_orchestrator_msgs.msg import InferenceResult, SchedulerDecision
    from inferedge_orchestrator_ros.node import OrchestratorNode

pytestmark = pytest.mark.skipif(not BUILT, reason=NOT_BUILT)

DOMAIN_ID = 42
SUCCESS = 'SUCCESS'


@pytest.fixture(scope='session')
def ros_context():
    ros_environment(DOMAIN_ID)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    yield context
    for feeder, _ in _publishers.values():
        feeder.destroy_node()
    _publishers.clear()
    rclpy.try_shutdown(context=context)


def demo_parameters(**overrides):
    """Two dummy tasks on one camera; overrides as parameter name -> value."""
    values = {
        'autostart': False,
        'tasks': ['detector', 'ocr'],
        'detector.priority': 100,
        'detector.latency_budget_ms': 200,
        'detector.worker_options.latency_ms': 2.0,
        'ocr.priority': 10,
        'ocr.latency_budget_ms': 500.0,
        'ocr.worker_options.latency_ms': 4.0,
        'camera.topic': '/node_test/image',
        'camera.reliability': 'reliable',
        'camera.depth': 10,
    }
    values.update(overrides)
    return [Parameter(name, value=value) for name, value in values.items()]


@pytest.fixture
def make_node(ros_context):
    nodes = []

    def make(**overrides):
        node = OrchestratorNode(node_name=f'orchestrator_{len(nodes)}', context=ros_context,
                                parameter_overrides=demo_parameters(**overrides))
        nodes.append(node)
        return node
    yield make
    for node in nodes:
        node.destroy_node()


def camera_msg(encoding, width=64, height=48, stamp_now=None):
    """Return the synthetic camera's pattern in a camera encoding (yuyv, bayer_rggb8, ...)."""
    from inferedge_orchestrator_ros.camera_patterns import CameraPattern
    pattern = CameraPattern(width, height, encoding, 'noise')
    msg = Image(width=width, height=height, encoding=encoding, step=pattern.step)
    msg.data = array.array('B', pattern.frame_bytes(0))
    if stamp_now is not None:
        msg.header.stamp = stamp_now.get_clock().now().to_msg()
    return msg


def image_msg(width=64, height=48, encoding='rgb8', step=None, data=None, stamp_now=None):
    msg = Image()
    msg.width, msg.height, msg.encoding = width, height, encoding
    channels = {'rgb8': 3, 'bgr8': 3, 'mono8': 1, 'rgba8': 4}.get(encoding, 3)
    msg.step = width * channels if step is None else step
    size = msg.step * height if data is None else data
    msg.data = array.array('B', bytes(size))
    if stamp_now is not None:
        msg.header.stamp = stamp_now.get_clock().now().to_msg()
    msg.header.frame_id = 'test_camera'
    return msg


FEED_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
_publishers = {}


def feed(node, msg, name='camera', executor=None, timeout=10.0):
    """Publish msg on the input's topic; spin until the node has taken it (its public path)."""
    topic = node.get_parameter(f'{name}.topic').value
    key = (id(node.context), type(msg), topic)
    if key not in _publishers:
        feeder = rclpy.create_node(f'feeder_{len(_publishers)}', context=node.context)
        _publishers[key] = (feeder, feeder.create_publisher(type(msg), topic, FEED_QOS))
    publisher = _publishers[key][1]
    own = executor is None
    if own:
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
    try:
        assert spin_until(executor, lambda: publisher.get_subscription_count() > 0, timeout)
        before = node.engine.snapshot().inputs[name].received
        publisher.publish(msg)
        assert spin_until(
            executor, lambda: node.engine.snapshot().inputs[name].received > before, timeout)
    finally:
        if own:
            executor.remove_node(node)
            executor.shutdown()


def state(result):
    return result.name if hasattr(result, 'name') else str(result)


def spin_until(executor, predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def test_lifecycle_round_trip_leaves_no_thread(make_node):
    node = make_node()
    before = threading.active_count()
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert threading.active_count() == before  # configure loads workers, starts nothing
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert threading.active_count() > before  # one slot thread and the timer
    for _ in range(5):
        feed(node, image_msg(stamp_now=node))
    assert node.engine.drain(5.0)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert threading.active_count() == before
    # configure can run again, with a changed structural parameter
    node.set_parameters([Parameter('tasks', value=['detector'])])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert list(node.engine.tasks) == ['detector']
    assert not node.has_parameter('ocr.priority')  # the removed task's block is gone
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    assert node.finished
    assert threading.active_count() == before


def test_autostart_reaches_active(make_node, ros_context):
    node = make_node(autostart=True)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        assert spin_until(executor, lambda: node.state_label == 'active', 10.0)
    finally:
        executor.remove_node(node)


def test_config_file_and_tasks_together_are_refused(make_node, tmp_path):
    path = tmp_path / 'core.yaml'
    path.write_text('tasks: [{name: detector}]\n')
    node = make_node(config_file=str(path))
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.engine is None and node.state_label == 'unconfigured'


def test_config_file_mode_declares_task_blocks(make_node, tmp_path):
    path = tmp_path / 'core.yaml'
    path.write_text('tasks:\n'
                    '  - {name: det, inputs: [front], priority: 7, latency_budget_ms: 90,\n'
                    '     worker_options: {latency_ms: 1}}\n')
    node = make_node(config_file=str(path), tasks=[], **{'front.topic': '/node_test/front'})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.get_parameter('det.priority').value == 7
    assert node.get_parameter('det.latency_budget_ms').value == 90.0
    assert not node.has_parameter('detector.priority')
    result = node.set_parameters([Parameter('det.priority', value=20)])[0]
    assert result.successful, result.reason
    assert node.engine.tasks['det'].priority == 20


def test_live_retuning_and_refusals(make_node):
    node = make_node()
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    engine = node.engine
    # a budget given as an integer is accepted
    result = node.set_parameters([Parameter('detector.latency_budget_ms', value=80)])[0]
    assert result.successful, result.reason
    assert engine.tasks['detector'].config.latency_budget_ms == 80.0
    # a priority swap is applied atomically and announced
    result = node.set_parameters_atomically([Parameter('detector.priority', value=10),
                                             Parameter('ocr.priority', value=100)])
    assert result.successful, result.reason
    assert engine.tasks['ocr'].priority == 100 and engine.tasks['detector'].priority == 10
    changes = [d for d in engine.decisions_since(0) if d.event == 'PARAM_CHANGE']
    assert {d.task for d in changes} >= {'detector', 'ocr'}
    # bad values are refused with a reason and change nothing
    for name, value, why in [('detector.priority', 5000, 'out of range'),
                             ('detector.latency_budget_ms', -5.0, 'out of range'),
                             ('detector.drop_policy', 'random', 'allowed'),
                             ('detector.queue_size', 0, ''),
                             ('detector.worker', 'tensorrt', 'cannot change while'),
                             ('tasks', ['detector'], 'cannot change while'),
                             ('camera.depth', 5, 'cannot change while')]:
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful, name
        assert why in result.reason, result.reason
    assert engine.tasks['detector'].priority == 10
    assert node.get_parameter('detector.priority').value == 10
    # an inconsistent pair is refused as a whole
    result = node.set_parameters_atomically([Parameter('ocr.max_rate_hz', value=2.0),
                                             Parameter('ocr.min_rate_hz', value=5.0)])
    assert not result.successful and 'min_rate_hz' in result.reason
    assert engine.tasks['ocr'].config.max_rate_hz == 0.0
    # a smaller queue drops with reason queue_resized
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    result = node.set_parameters([Parameter('ocr.enabled', value=False)])[0]
    assert result.successful
    assert not engine.tasks['ocr'].config.enabled
    # after cleanup the structural parameters may change again
    node.trigger_deactivate()
    node.trigger_cleanup()
    result = node.set_parameters([Parameter('camera.depth', value=5)])[0]
    assert result.successful, result.reason


def test_malformed_images_are_counted_with_reasons(make_node):
    node = make_node(max_image_pixels=100000)
    node.trigger_configure()
    node.trigger_activate()
    good = image_msg(stamp_now=node)
    bad = [
        (image_msg(encoding='rgb16'), reasons.UNKNOWN_ENCODING),
        (image_msg(width=0, data=0), reasons.ZERO_SIZE),
        (image_msg(step=10), reasons.STEP_TOO_SMALL),
        (image_msg(data=100), reasons.DATA_TOO_SHORT),
        (image_msg(width=1000, height=1000, data=10), reasons.TOO_MANY_PIXELS),
    ]
    feed(node, good)
    for msg, _ in bad:
        feed(node, msg)
    feed(node, good)
    assert node.engine.drain(5.0)
    snapshot = node.engine.snapshot()
    camera = snapshot.inputs['camera']
    assert camera.received == 7 and camera.accepted == 2 and camera.malformed == 5
    assert camera.malformed_by_reason == {reason: 1 for _, reason in bad}
    assert check_invariants(snapshot) == []
    assert node.state_label == 'active'


def test_results_keep_the_header_and_carry_tensors(make_node, ros_context):
    node = make_node(publish_tensors=True)
    node.trigger_configure()
    node.trigger_activate()
    listener = rclpy.create_node('result_listener', context=ros_context)
    results, decisions = [], []
    listener.create_subscription(InferenceResult, f'/{node.get_name()}/detector/result',
                                 results.append, 10)
    listener.create_subscription(SchedulerDecision, f'/{node.get_name()}/decisions',
                                 decisions.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        assert spin_until(executor, lambda: listener.count_publishers(
            f'/{node.get_name()}/detector/result') > 0, 5.0)
        time.sleep(0.5)  # let discovery match the subscription
        executor.spin_once(timeout_sec=0.1)
        msg = image_msg(stamp_now=node)
        feed(node, msg, executor=executor)
        assert spin_until(executor, lambda: results, 10.0)
        result = results[0]
        assert result.header == msg.header
        assert result.status == InferenceResult.OK and result.task == 'detector'
        assert result.node_overhead_ms >= 0.0 and result.inference_ms > 0.0
        assert result.transport_ms >= 0.0
        assert [t.name for t in result.tensors] == ['shape']
        assert np.frombuffer(result.tensors[0].data, dtype='<i4').tolist() == [48, 64, 3]
        node.set_parameters([Parameter('detector.priority', value=99)])
        assert spin_until(executor, lambda: any(d.event == 'PARAM_CHANGE' for d in decisions))
    finally:
        executor.shutdown()
        listener.destroy_node()


def first_decoded(node, ros_context, msg_type, suffix, msg):
    """Feed msg to an active node; return the first message on ~/<suffix> that follows."""
    listener = rclpy.create_node('decoded_listener', context=ros_context)
    received = []
    topic = f'/{node.get_name()}/{suffix}'
    listener.create_subscription(msg_type, topic, received.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        assert spin_until(executor, lambda: listener.count_publishers(topic) > 0, 5.0)
        feed(node, msg, executor=executor)
        assert spin_until(executor, lambda: received, 10.0)
        return received[0]
    finally:
        executor.shutdown()
        listener.destroy_node()


def test_classes_arrive_as_vision_msgs_with_the_source_header(make_node, ros_context, tmp_path):
    pytest.importorskip('onnx', reason='onnx builds the generated model')
    pytest.importorskip('onnxruntime', reason='onnxruntime runs the generated model')
    from vision_msgs.msg import Classification
    model = constant_model(tmp_path / 'classifier.onnx', [1, 3, 16, 16],
                           {'scores': np.array([[0.1, 0.7, 0.2]])})
    node = make_node(**{'tasks': ['detector'], 'detector.worker': 'onnxruntime',
                        'detector.worker_options.model_path': model,
                        'detector.decoder': 'classification',
                        'detector.decoder_options.labels': ['cat', 'dog', 'bird'],
                        'detector.decoder_options.top_k': 2})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    msg = image_msg(stamp_now=node)
    classes = first_decoded(node, ros_context, Classification, 'detector/classification', msg)
    assert classes.header == msg.header
    assert [(r.class_id, round(r.score, 3)) for r in classes.results] == [
        ('dog', 0.7), ('bird', 0.2)]


def test_detections_arrive_as_vision_msgs_in_source_pixels(make_node, ros_context, tmp_path):
    pytest.importorskip('onnx', reason='onnx builds the generated model')
    pytest.importorskip('onnxruntime', reason='onnxruntime runs the generated model')
    from vision_msgs.msg import Detection2DArray
    node = make_node(**{'tasks': ['detector'], 'detector.worker': 'onnxruntime',
                        'detector.worker_options.model_path': detector_model(
                            tmp_path / 'detector.onnx'),
                        'detector.worker_options.resize': 'letterbox',
                        'detector.decoder': 'yolo',
                        'detector.decoder_options.labels': ['person', 'car']})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    msg = image_msg(width=160, height=120, stamp_now=node)
    array = first_decoded(node, ros_context, Detection2DArray, 'detector/detections', msg)
    assert array.header == msg.header and len(array.detections) == 1
    box = array.detections[0]
    # 160x120 letterboxed into 64x64: scale 0.4, 8 rows of padding above.
    assert (box.bbox.center.position.x, box.bbox.center.position.y) == \
        pytest.approx((80.0, 60.0))
    assert (box.bbox.size_x, box.bbox.size_y) == pytest.approx((40.0, 40.0))
    assert box.results[0].hypothesis.class_id == 'car'


def test_compressed_input_and_decode_errors(make_node):
    cv2 = pytest.importorskip('cv2', reason='OpenCV is needed to decode compressed images')
    node = make_node(**{'camera.message_type': 'compressed_image',
                        'camera.topic': '/node_test/compressed'})
    node.trigger_configure()
    node.trigger_activate()
    ok, jpeg = cv2.imencode('.jpg', np.zeros((48, 64, 3), dtype=np.uint8))
    good = CompressedImage(format='jpeg', data=array.array('B', jpeg.tobytes()))
    corrupt = CompressedImage(format='jpeg', data=array.array('B', jpeg.tobytes()[:40]))
    feed(node, good)
    feed(node, corrupt)
    assert node.engine.drain(5.0)
    snapshot = node.engine.snapshot()
    camera = snapshot.inputs['camera']
    assert camera.received == 2 and camera.accepted == 2 and camera.decode_errors == 1
    for task in ('detector', 'ocr'):
        assert snapshot.tasks[task].failed_by_reason == {reasons.DECODE_ERROR: 1}
        assert snapshot.tasks[task].executed == 1
    assert check_invariants(snapshot) == []


def test_telemetry_message_and_diagnostics(make_node):
    node = make_node(**{'ocr.worker_options.fail_every': 1})
    node.trigger_configure()
    node.trigger_activate()
    for _ in range(3):
        feed(node, image_msg(stamp_now=node))
        assert node.engine.drain(5.0)
    msg = node.telemetry_message(node.engine.snapshot())
    tasks = {t.name: t for t in msg.tasks}
    assert tasks['ocr'].failed == 3
    assert [(r.reason, r.count) for r in tasks['ocr'].failed_by_reason] == [('worker_error', 3)]
    assert tasks['detector'].executed == 3
    series = [s.series for s in tasks['detector'].latency]
    assert series == list(LATENCY_SERIES) + ['transport', 'convert', 'node_overhead', 'publish']
    assert msg.inputs[0].received == msg.inputs[0].accepted == 3
    assert msg.node_state == 'active'
    time.sleep(0.15)  # past the diagnostics' snapshot cache
    ocr = node.diagnose_task(DiagnosticStatusWrapper(), 'ocr')
    detector = node.diagnose_task(DiagnosticStatusWrapper(), 'detector')
    assert ocr.level == DiagnosticStatus.ERROR, ocr.message
    assert detector.level == DiagnosticStatus.OK, detector.message
    camera = node.diagnose_input(DiagnosticStatusWrapper(), 'camera')
    assert camera.level == DiagnosticStatus.OK, camera.message


def test_the_publishing_status_warns_while_a_topic_drops_messages(ros_context):
    from inferedge_orchestrator import Engine, load_config
    from inferedge_orchestrator_ros.diagnostics import Diagnostics
    from inferedge_orchestrator_ros.publishing import TopicCounts
    node = rclpy.create_node('publishing_status_test', context=ros_context)
    counts = [TopicCounts('/a/result', offered=10, published=10)]
    diagnostics = Diagnostics(node, lambda: 'active')
    try:
        engine = Engine(load_config({'tasks': [{'name': 'a'}]}))
        diagnostics.configure(engine, {}, lambda name: None, lambda: list(counts))
        ok = diagnostics.publishing_status(DiagnosticStatusWrapper())
        assert ok.level == DiagnosticStatus.OK, ok.message
        assert ok.message == '10 messages published in the last period'
        counts[0] = TopicCounts('/a/result', offered=20, published=14, dropped=4, queued=2)
        warn = diagnostics.publishing_status(DiagnosticStatusWrapper())
        assert warn.level == DiagnosticStatus.WARN, warn.message
        assert warn.message == 'publish queue full: 4 dropped on /a/result in the last period'
        assert {v.key: v.value for v in warn.values}['/a/result'] == \
            'offered 20, published 14, dropped 4, queued 2, max_queued 0'
        again = diagnostics.publishing_status(DiagnosticStatusWrapper())  # no new drops
        assert again.level == DiagnosticStatus.OK, again.message
    finally:
        diagnostics.release()
        node.destroy_node()


def test_report_is_written_at_shutdown(make_node, tmp_path):
    path = tmp_path / 'report.json'
    node = make_node(report_path=str(path))
    node.trigger_configure()
    node.trigger_activate()
    feed(node, image_msg(stamp_now=node))
    assert node.engine.drain(5.0)
    assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    report = json.loads(path.read_text())
    assert report['invariant_violations'] == []
    assert report['final']['tasks']['detector']['executed'] == 1
    assert report['node']['tasks']['detector']['node_overhead']['count'] == 1


@pytest.mark.parametrize('steps', [[], ['configure'], ['configure', 'activate']])
def test_shutdown_from_any_state(make_node, steps):
    node = make_node()
    before = threading.active_count()
    for step in steps:
        assert getattr(node, f'trigger_{step}')() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    assert node.finished and node.engine is None
    assert threading.active_count() == before


def test_trace_path_writes_one_line_per_job_until_cleanup(make_node, tmp_path):
    from inferedge_orchestrator import read_trace
    path = tmp_path / 'trace.jsonl'
    node = make_node(trace_path=str(path))
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    for _ in range(3):  # within the queues of 4: every frame runs
        feed(node, image_msg(stamp_now=node))
    assert node.engine.drain(5.0)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    records = read_trace(str(path))
    assert len(records) == 6  # 3 frames x 2 tasks
    assert {r['task'] for r in records} == {'detector', 'ocr'}
    assert {(r['outcome'], r['reason']) for r in records} == {('OK', '')}, records
    assert all(r['age'] >= 0.0 for r in records)


def test_an_unwritable_trace_path_fails_configure(make_node, tmp_path):
    node = make_node(trace_path=str(tmp_path / 'missing' / 'trace.jsonl'))
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    node.set_parameters([Parameter('trace_path', value='')])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS


def collect_results(node, ros_context, tasks, messages, count):
    """Feed messages (stamped now) to an active node; return tasks' results once count came."""
    listener = rclpy.create_node('conversion_listener', context=ros_context)
    results = []
    for task in tasks:
        listener.create_subscription(InferenceResult, f'/{node.get_name()}/{task}/result',
                                     results.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        assert spin_until(executor, lambda: all(listener.count_publishers(
            f'/{node.get_name()}/{task}/result') for task in tasks), 5.0)
        time.sleep(0.5)  # let discovery match the subscriptions
        executor.spin_once(timeout_sec=0.1)
        for msg in messages:
            msg.header.stamp = node.get_clock().now().to_msg()  # within the budget
            feed(node, msg, executor=executor)
        assert spin_until(executor, lambda: len(results) >= count, 10.0), results
        return results
    finally:
        executor.shutdown()
        listener.destroy_node()


def test_camera_encodings_are_converted_once_for_every_task(make_node, ros_context):
    pytest.importorskip('cv2', reason='OpenCV makes the camera frames')
    node = make_node(publish_tensors=True)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    if node.converter.missing['cv_bridge']:
        pytest.skip(f'cv_bridge cannot be used: {node.converter.missing["cv_bridge"]}')
    messages = [camera_msg(encoding) for encoding in ('yuv422_yuy2', 'bayer_rggb8')]
    results = collect_results(node, ros_context, ('detector', 'ocr'), messages, 4)
    assert node.engine.drain(5.0)
    by_frame = {}
    for result in results:
        assert result.status == InferenceResult.OK
        # The dummy workers' default channel order: rgb8, 48x64x3.
        assert np.frombuffer(result.tensors[0].data, dtype='<i4').tolist() == [48, 64, 3]
        assert result.convert_ms > 0.0 and result.node_overhead_ms >= 0.0
        assert result.end_to_end_ms >= result.transport_ms + result.convert_ms
        by_frame.setdefault(result.frame_seq, set()).add((result.task, result.convert_ms))
    # One conversion per frame: both tasks report the same conversion of each frame.
    assert sorted(len(entries) for entries in by_frame.values()) == [2, 2]
    assert all(len({ms for _, ms in entries}) == 1 for entries in by_frame.values())
    snapshot = node.engine.snapshot()
    assert snapshot.inputs['camera'].accepted == 2 and check_invariants(snapshot) == []
    telemetry = node.telemetry_message(snapshot)
    for task in telemetry.tasks:
        convert = next(s for s in task.latency if s.series == 'convert')
        assert convert.count == 2 and convert.p50_ms > 0.0


def test_convert_to_mono8_and_passthrough(make_node, ros_context):
    pytest.importorskip('cv2', reason='OpenCV makes the camera frames')
    node = make_node(**{'publish_tensors': True, 'tasks': ['detector'],
                        'camera.convert_to': 'mono8'})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    if node.converter.missing['cv_bridge']:
        pytest.skip(f'cv_bridge cannot be used: {node.converter.missing["cv_bridge"]}')
    results = collect_results(node, ros_context, ('detector',),
                              [camera_msg('uyvy')], 1)
    assert np.frombuffer(results[0].tensors[0].data, dtype='<i4').tolist() == [48, 64, 1]
    node.trigger_deactivate()
    node.trigger_cleanup()
    node.set_parameters([Parameter('camera.convert_to', value='passthrough')])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    feed(node, camera_msg('bayer_gbrg16'))  # its raw mosaic, as mono16
    feed(node, camera_msg('yuyv'))  # YUV cannot pass through as it is
    assert node.engine.drain(5.0)
    camera = node.engine.snapshot().inputs['camera']
    assert camera.accepted == 1
    assert camera.malformed_by_reason == {reasons.UNSUPPORTED_ENCODING: 1}


@pytest.mark.parametrize('overrides', [
    {'camera.message_type': 'compressed_image', 'camera.convert_to': 'bgr8'},
    {'camera.convert_to': 'hsv8'},
])
def test_convert_to_is_validated_at_configure(make_node, overrides):
    node = make_node(**overrides)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.state_label == 'unconfigured'


def test_without_cv_bridge_yuv_is_unsupported_and_the_rest_works(make_node, monkeypatch):
    pytest.importorskip('cv2', reason='OpenCV makes the camera frames')
    import sys
    for name in [n for n in sys.modules if n == 'cv_bridge' or n.startswith('cv_bridge.')]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, 'cv_bridge', None)  # import cv_bridge: ImportError
    node = make_node()
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    assert 'cv_bridge' in node.converter.missing['cv_bridge']
    for msg in (camera_msg('yuv422_yuy2'), image_msg(stamp_now=node),
                camera_msg('bayer_rggb8'), camera_msg('bayer_rggb8'), camera_msg('nv21'),
                camera_msg('16UC1')):
        feed(node, msg)
    assert node.engine.drain(5.0)
    snapshot = node.engine.snapshot()
    camera = snapshot.inputs['camera']
    assert camera.received == 6 and camera.accepted == 3  # rgb8, nv21 (OpenCV), 16UC1
    assert camera.malformed_by_reason == {reasons.UNSUPPORTED_ENCODING: 3}
    assert snapshot.tasks['detector'].executed == 3
    assert check_invariants(snapshot) == [] and node.state_label == 'active'


def test_the_annotated_image_is_drawn_on_the_converted_frame(make_node, ros_context,
                                                             tmp_path):
    cv2 = pytest.importorskip('cv2', reason='OpenCV draws and makes the camera frames')
    pytest.importorskip('onnx', reason='onnx builds the generated model')
    pytest.importorskip('onnxruntime', reason='onnxruntime runs the generated model')
    node = make_node(**{'tasks': ['detector'], 'detector.worker': 'onnxruntime',
                        'detector.worker_options.model_path': detector_model(
                            tmp_path / 'detector.onnx'),
                        'detector.worker_options.resize': 'letterbox',
                        'detector.worker_options.channel_order': 'bgr',
                        'detector.decoder': 'yolo', 'annotate_rate_hz': 50.0})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    if node.converter.missing['cv_bridge']:
        pytest.skip(f'cv_bridge cannot be used: {node.converter.missing["cv_bridge"]}')
    msg = camera_msg('yuv422_yuy2', stamp_now=node)
    annotated = first_decoded(node, ros_context, Image, 'detector/annotated', msg)
    assert (annotated.encoding, annotated.height, annotated.width) == ('rgb8', 48, 64)
    canvas = np.frombuffer(annotated.data, np.uint8).reshape(48, 64, 3)
    yuyv = np.frombuffer(msg.data, np.uint8).reshape(48, 64, 2)
    expected = cv2.cvtColor(yuyv, cv2.COLOR_YUV2RGB_YUY2)
    # The box (16x16 around the centre of the 64x48 frame) and its label are drawn above
    # row 34; below it the canvas is the converted frame (bgr8, the task's order) in rgb8.
    assert np.array_equal(canvas[34:], expected[34:])
    assert not np.array_equal(canvas, expected)
