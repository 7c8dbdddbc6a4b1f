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
Launch test: cameras in the encodings real drivers publish, each feeding one task.

A yuv422_yuy2 camera (usb_cam, UVC webcams), a bayer_rggb8 camera (industrial drivers) and a
16UC1 depth camera, 160x120 at 15 fps. The YUV and Bayer frames are converted once each (the
tasks' dummy workers see rgb8, 120x160x3) and their tasks report the convert series; the
depth frames pass through as one uint16 channel without a conversion. Nothing is malformed.
"""

import unittest

import launch_testing
import launch_testing.asserts
import numpy as np
import pytest

from . import ros_test_env
from .ros_test_env import by_name, camera_node, launch_test_description, NOT_BUILT
from .ros_test_env import orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 48
NODE = '/inferedge_orchestrator'
PREFIX = '/encodings_test'
CAMERAS = {'yuyv': 'yuv422_yuy2', 'bayer': 'bayer_rggb8', 'depth': '16UC1'}


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    parameters = {'telemetry_period_s': 0.5, 'publish_tensors': True,
                  'inputs': list(CAMERAS), 'tasks': [f'on_{name}' for name in CAMERAS]}
    cameras = []
    for name, encoding in CAMERAS.items():
        parameters.update({f'{name}.topic': f'{PREFIX}/{name}',
                           f'{name}.reliability': 'reliable',
                           f'on_{name}.inputs': [name],
                           f'on_{name}.latency_budget_ms': 2000.0,
                           f'on_{name}.worker_options.latency_ms': 2.0})
        cameras.append(camera_node(f'camera_{name}', topic=f'{PREFIX}/{name}',
                                   reliability='reliable', encoding=encoding,
                                   pattern='noise'))
    return launch_test_description(DOMAIN_ID, *cameras, orchestrator_node(parameters))


class TestEncodings(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'encodings_test'

    def test_1_every_camera_feeds_its_task(self):
        telemetry = self.listener.telemetry_after(
            f'{NODE}/telemetry', timeout=60.0,
            predicate=lambda m: all(t.executed >= 10 for t in m.tasks))
        inputs, tasks = by_name(telemetry.inputs), by_name(telemetry.tasks)
        for name in CAMERAS:
            self.assertEqual(inputs[name].malformed, 0, inputs[name].malformed_by_reason)
            self.assertGreater(inputs[name].accepted, 0)
            convert = _by_name_series(tasks[f'on_{name}'].latency)['convert']
            if name == 'depth':
                self.assertEqual(convert.count, 0)  # passes through: no conversion
            else:
                self.assertGreater(convert.count, 0)
                self.assertGreater(convert.p50_ms, 0.0)
        self.assertEqual(self.listener.invariant_violations(telemetry), [])

    def test_2_results_carry_the_converted_frames_shape_and_the_conversion_time(self):
        from inferedge_orchestrator_msgs.msg import InferenceResult
        results = {name: self.listener.subscribe(InferenceResult, f'{NODE}/on_{name}/result')
                   for name in CAMERAS}
        self.assertTrue(self.listener.spin_until(
            lambda: all(results.values()), 30.0), 'no result of every task within 30 s')
        for name, shape in (('yuyv', [120, 160, 3]), ('bayer', [120, 160, 3]),
                            ('depth', [120, 160, 1])):
            result = results[name][-1]
            self.assertEqual(result.status, InferenceResult.OK)
            self.assertEqual(np.frombuffer(result.tensors[0].data, '<i4').tolist(), shape)
            if name == 'depth':
                self.assertEqual(result.convert_ms, 0.0)
            else:
                self.assertGreater(result.convert_ms, 0.0)
                self.assertGreaterEqual(result.end_to_end_ms, result.convert_ms)


def _by_name_series(items):
    return {item.series: item for item in items}


@launch_testing.post_shutdown_test()
class TestEncodingsShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
