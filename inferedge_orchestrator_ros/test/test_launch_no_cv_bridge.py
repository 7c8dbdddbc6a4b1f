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
Launch test: an orchestrator whose cv_bridge cannot be imported.

The orchestrator's PYTHONPATH starts with a folder whose cv_bridge package raises ImportError
(as a cv_bridge built against another numpy does, ros-perception/vision_opencv#535). Its
yuv422_yuy2 camera's frames are all malformed with reason unsupported_encoding, one warning
names cv_bridge, and its rgb8 camera's task keeps running: the node stays active and exits 0.
"""

import os
import tempfile
import unittest

from inferedge_orchestrator import reasons
import launch_testing
import launch_testing.asserts
import pytest

from .ros_test_env import (camera_node, launch_test_description, NOT_BUILT, orchestrator_node,
                           package_available)

BUILT = package_available()
DOMAIN_ID = 49
NODE = '/inferedge_orchestrator'
PREFIX = '/no_cv_bridge_test'
WARNING = 'cv_bridge cannot be used'


def hidden_cv_bridge() -> str:
    """Return a folder whose cv_bridge package cannot be imported."""
    folder = tempfile.mkdtemp(prefix='no_cv_bridge_')
    os.makedirs(os.path.join(folder, 'cv_bridge'))
    with open(os.path.join(folder, 'cv_bridge', '__init__.py'), 'w', encoding='utf-8') as out:
        out.write("raise ImportError('cv_bridge is hidden by test_launch_no_cv_bridge')\n")
    return folder


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    path = os.pathsep.join(filter(None, [hidden_cv_bridge(), os.environ.get('PYTHONPATH')]))
    orchestrator = orchestrator_node({
        'telemetry_period_s': 0.5,
        'inputs': ['yuyv', 'rgb'],
        'yuyv.topic': f'{PREFIX}/yuyv',
        'yuyv.reliability': 'reliable',
        'rgb.topic': f'{PREFIX}/rgb',
        'rgb.reliability': 'reliable',
        'tasks': ['on_yuyv', 'on_rgb'],
        'on_yuyv.inputs': ['yuyv'],
        'on_rgb.inputs': ['rgb'],
        'on_rgb.latency_budget_ms': 2000.0,
        'on_rgb.worker_options.latency_ms': 2.0,
    }, additional_env={'PYTHONPATH': path})
    return launch_test_description(
        DOMAIN_ID,
        camera_node('camera_yuyv', topic=f'{PREFIX}/yuyv', reliability='reliable',
                    encoding='yuv422_yuy2'),
        camera_node('camera_rgb', topic=f'{PREFIX}/rgb', reliability='reliable'),
        orchestrator, orchestrator=orchestrator)


class TestNoCvBridge(unittest.TestCase):

    def test_yuv_is_unsupported_and_the_rest_keeps_working(self, proc_info, orchestrator):
        from .ros_launch_helpers import Listener
        listener = Listener(DOMAIN_ID, 'no_cv_bridge_test')
        try:
            telemetry = listener.telemetry_after(
                f'{NODE}/telemetry', timeout=60.0,
                predicate=lambda m: {i.name: i for i in m.inputs}['yuyv'].received >= 10 and
                {t.name: t for t in m.tasks}['on_rgb'].executed >= 10)
            inputs = {i.name: i for i in telemetry.inputs}
            tasks = {t.name: t for t in telemetry.tasks}
            yuyv = inputs['yuyv']
            self.assertEqual(yuyv.accepted, 0)
            self.assertEqual(yuyv.malformed, yuyv.received)
            self.assertEqual([(r.reason, r.count) for r in yuyv.malformed_by_reason],
                             [(reasons.UNSUPPORTED_ENCODING, yuyv.received)])
            self.assertEqual(tasks['on_yuyv'].routed, 0)
            self.assertEqual(inputs['rgb'].malformed, 0)
            self.assertEqual(listener.invariant_violations(telemetry), [])
            self.assertEqual(telemetry.node_state, 'active')
            from launch.events.process import ProcessExited
            self.assertNotIsInstance(proc_info[orchestrator], ProcessExited)
        finally:
            listener.close()


@launch_testing.post_shutdown_test()
class TestNoCvBridgeShutdown(unittest.TestCase):

    def test_one_warning_names_cv_bridge(self, proc_output, orchestrator):
        text = ''.join(io.text.decode(errors='replace') for io in proc_output[orchestrator])
        self.assertEqual(text.count(WARNING), 1, text[-2000:])
        self.assertIn('unsupported_encoding', text)

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
