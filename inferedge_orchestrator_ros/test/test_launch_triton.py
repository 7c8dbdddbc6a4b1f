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
Launch test: a task on a Triton Inference Server beside a local task, over ROS.

A tritonserver of the nvidia-pytriton wheel (tools/local_triton.py, on 127.0.0.1 only) serves
the generated one-car detector; the node runs `detector` on it (worker triton, pool `server`,
decoder yolo) and `steady` (dummy) on the local pool `cpu`, both on one camera. Its telemetry
shows the server pool (backend server, its slots, no outage) beside the local one, both tasks
run the camera's frames, and the detections arrive. Skipped, with the reason, only where the
wheel cannot install; a machine that could run it but lacks the server's environment fails.
"""

import os
import tempfile
import unittest

from inferedge_orchestrator import local_triton
import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .generated_models import detector_model
from .ros_test_env import (camera_node, launch_test_description, NOT_BUILT, orchestrator_node,
                           package_available)

DOMAIN_ID = 55
NODE = '/inferedge_orchestrator'
TOPIC = '/triton_test/image'
SKIP = NOT_BUILT if not package_available() else ros_test_env.missing('onnx') or \
    local_triton.skip_reason()
SERVER_FILES = []  # the folder of the server's model repository and backends, once made


def server_processes():
    """Return the processes of this test's server (tritonserver and its stubs), by /proc."""
    return ros_test_env.processes_with(SERVER_FILES[0].encode(), b'triton')


@pytest.mark.launch_test
@pytest.mark.skipif(bool(SKIP), reason=SKIP or 'runs')
def generate_test_description():
    from launch.actions import ExecuteProcess
    folder = tempfile.mkdtemp(prefix='triton_launch_test_')
    SERVER_FILES.append(folder)
    models = os.path.join(folder, 'models')
    local_triton.write_onnx_model(models, 'detector',
                                  detector_model(os.path.join(folder, 'detector.onnx')))
    # ServerMissing where INFEREDGE_TRITON_VENV names no environment: a failure.
    server = local_triton.LocalTriton(models, folder)
    tritonserver = ExecuteProcess(cmd=server.command(), env=server.environment(),
                                  name='tritonserver', output='log')
    orchestrator = orchestrator_node({
        'telemetry_period_s': 0.5,
        'camera.topic': TOPIC,
        'camera.reliability': 'reliable',
        'camera.depth': 10,
        'pools': ['cpu', 'server'],
        'server.slots': 2,
        'tasks': ['detector', 'steady'],
        'detector.pool': 'server',
        'detector.priority': 100,
        'detector.latency_budget_ms': 5000.0,
        'detector.queue_size': 10,
        'detector.worker': 'triton',
        'detector.worker_options.url': server.grpc_url,
        'detector.worker_options.model_name': 'detector',
        'detector.worker_options.wait_ready_s': 60.0,  # the server starts beside the node
        'detector.worker_options.resize': 'letterbox',
        'detector.worker_options.warmup': 1,
        'detector.decoder': 'yolo',
        'detector.decoder_options.labels': ['person', 'car'],
        'steady.pool': 'cpu',
        'steady.latency_budget_ms': 5000.0,
        'steady.queue_size': 10,
        'steady.worker_options.latency_ms': 5.0,
    })
    camera = camera_node(topic=TOPIC, fps=10.0, reliability='reliable')
    return launch_test_description(DOMAIN_ID, tritonserver, camera, orchestrator,
                                   orchestrator=orchestrator, tritonserver=tritonserver)


class TestTriton(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'triton_test'

    def test_1_the_telemetry_shows_the_server_pool_beside_the_local_one(self):
        from vision_msgs.msg import Detection2DArray
        listener = self.listener
        detections = listener.subscribe(Detection2DArray, f'{NODE}/detector/detections')
        first = listener.telemetry_after(
            f'{NODE}/telemetry', timeout=120.0, predicate=lambda m: next(
                t.executed for t in m.tasks if t.name == 'detector') >= 3)
        last = listener.telemetry_after(
            f'{NODE}/telemetry', timeout=60.0,
            predicate=lambda m: m.uptime_s >= first.uptime_s + 3.0)
        pools = {p.name: p for p in last.pools}
        server, cpu = pools['server'], pools['cpu']
        self.assertEqual((server.backend, server.slots, server.server_down, server.outages),
                         ('server', 2, False, 0))
        self.assertEqual(cpu.backend, 'thread')
        tasks = {t.name: t for t in last.tasks}
        detector, steady = tasks['detector'], tasks['steady']
        self.assertEqual(detector.pool, 'server')
        self.assertEqual(detector.failed + detector.dropped, 0)
        self.assertEqual(steady.failed + steady.dropped, 0)
        before = {t.name: t for t in first.tasks}
        received = [next(i.received for i in m.inputs if i.name == 'camera')
                    for m in (first, last)]
        for name in ('detector', 'steady'):  # both kept up with the camera meanwhile
            self.assertGreaterEqual(tasks[name].executed - before[name].executed,
                                    received[1] - received[0] - 2)
        self.assertEqual(listener.invariant_violations(last), [])
        self.assertTrue(listener.spin_until(lambda: detections, 30.0), 'no detections')
        box = detections[-1].detections[0]
        self.assertEqual(box.results[0].hypothesis.class_id, 'car')

    def test_2_the_server_listens_on_loopback_only(self):
        sockets = local_triton.listening_sockets(server_processes())
        self.assertEqual(len(sockets), 3, sockets)  # HTTP, gRPC, metrics
        self.assertTrue(all(local_triton.is_loopback(address) for address, _ in sockets), sockets)


@launch_testing.post_shutdown_test()
class TestTritonShutdown(unittest.TestCase):

    def test_exit_codes_and_nothing_of_the_server_left(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
        self.assertEqual(ros_test_env.left_after(server_processes, 10.0), [])
