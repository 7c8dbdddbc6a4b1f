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
Launch test: the node's Prometheus endpoint (metrics_port) against its ~/telemetry messages.

The test publishes the frames of two inputs itself (every 10th rear frame in an unknown
encoding: malformed); tracker runs over both (its counters per camera too) with a queue of
one, so that frames are also dropped. While they flow, each counter of a scrape lies between
the telemetry messages just before and just after it (counters only grow). Once the input
stops and the node is idle, the frame counters equal the last message. A second node asked
for the same port fails its configure transition with the reason, and lives on. After
shutdown the port is free again.
"""

import socket
import threading
import time
import unittest
import urllib.request

import launch_testing
import launch_testing.asserts
import pytest

from . import ros_test_env
from .ros_test_env import launch_test_description, missing, NOT_BUILT, orchestrator_node
from .ros_test_env import package_available

BUILT = package_available()
DOMAIN_ID = 57
NODE = '/inferedge_orchestrator'
INPUTS = ('front', 'rear')
FPS = 40.0
WIDTH, HEIGHT = 160, 120


def free_port() -> int:
    """Return a TCP port free on loopback now (the node binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


PORT = free_port()
URL = f'http://127.0.0.1:{PORT}/metrics'
# Counters the telemetry message does not carry: the core test checks them against the snapshot.
NOT_IN_MESSAGE = {'inferedge_task_busy_seconds_total'}
REASON_FAMILIES = {'inferedge_input_frames_malformed_total', 'inferedge_task_frames_failed_total',
                   'inferedge_task_frames_dropped_total', 'inferedge_camera_frames_dropped_total'}
# What may still change once the input stopped: shedding ticks on, and may recover (decisions).
IDLE_CHANGES = {'inferedge_shedding_ticks_total', 'inferedge_decisions_total'}


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    parameters = {'telemetry_period_s': 0.2, 'metrics_port': PORT, 'inputs': list(INPUTS),
                  'tasks': ['detector', 'tracker'],
                  'detector.inputs': ['front'], 'detector.priority': 10,
                  'detector.worker_options.latency_ms': 4.0,
                  'tracker.inputs': list(INPUTS), 'tracker.priority': 5,
                  'tracker.queue_size': 1, 'tracker.worker_options.latency_ms': 12.0}
    for name in INPUTS:
        parameters[f'{name}.reliability'] = 'reliable'
    from launch_ros.actions import Node
    second = Node(package='inferedge_orchestrator_ros', executable='orchestrator',
                  name='second', output='screen',
                  parameters=[{'autostart': False, 'tasks': ['detector'],
                               'metrics_port': PORT}])
    return launch_test_description(DOMAIN_ID, orchestrator_node(parameters), second,
                                   second=second)


def key(name: str, **labels) -> tuple:
    return name, tuple(sorted(labels.items()))


def message_counters(msg) -> dict:
    """Return the counter samples a telemetry message implies: (name, labels) -> value."""
    out = {}

    def put(name, value, **labels):
        out[key(name, **labels)] = float(value)

    def reasons(name, counts, **labels):
        for item in counts:
            put(name, item.count, reason=item.reason, **labels)
    for item in msg.inputs:
        put('inferedge_input_frames_received_total', item.received, input=item.name)
        put('inferedge_input_frames_accepted_total', item.accepted, input=item.name)
        reasons('inferedge_input_frames_malformed_total', item.malformed_by_reason,
                input=item.name)
        put('inferedge_input_frames_stamp_fallback_total', item.stamp_fallback, input=item.name)
        put('inferedge_input_decode_errors_total', item.decode_errors, input=item.name)
    put('inferedge_unknown_input_frames_total', msg.unknown_input)
    for task in msg.tasks:
        put('inferedge_task_frames_routed_total', task.routed, task=task.name)
        put('inferedge_task_frames_executed_total', task.executed, task=task.name)
        put('inferedge_task_frames_within_budget_total', task.completed_within_budget,
            task=task.name)
        reasons('inferedge_task_frames_failed_total', task.failed_by_reason, task=task.name)
        reasons('inferedge_task_frames_dropped_total', task.dropped_by_reason, task=task.name)
        put('inferedge_task_frames_held_for_priority_total', task.held_for_priority,
            task=task.name)
        for size, jobs in enumerate(task.batch_jobs, start=1):
            put('inferedge_task_batch_jobs_total', jobs, task=task.name, batch_size=str(size))
        for camera in task.cameras:
            labels = {'task': task.name, 'camera': camera.input}
            put('inferedge_camera_frames_routed_total', camera.routed, **labels)
            put('inferedge_camera_frames_executed_total', camera.executed, **labels)
            put('inferedge_camera_frames_within_budget_total', camera.completed_within_budget,
                **labels)
            put('inferedge_camera_frames_failed_total', camera.failed, **labels)
            reasons('inferedge_camera_frames_dropped_total', camera.dropped_by_reason, **labels)
    for pool in msg.pools:
        put('inferedge_pool_slots_retired_total', pool.retired, pool=pool.name)
        put('inferedge_pool_worker_crashes_total', pool.crashes, pool=pool.name)
        put('inferedge_pool_worker_respawns_total', pool.respawns, pool=pool.name)
        put('inferedge_pool_server_outages_total', pool.outages, pool=pool.name)
        put('inferedge_pool_server_probes_total', pool.probes, pool=pool.name)
    put('inferedge_shedding_ticks_total', msg.shedding_ticks)
    return out


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class TestMetrics(ros_test_env.ListenerTestCase):

    domain_id = DOMAIN_ID
    listener_name = 'metrics_test_listener'

    def setUp(self):
        reason = missing('prometheus_client')
        if reason:
            self.skipTest(f'the node serves no metrics without it: {reason}')

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        node = cls.listener.node
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        cls.publishers = {name: node.create_publisher(Image, f'/{name}/image_raw', qos)
                          for name in INPUTS}
        cls.sent = 0
        cls.timer = None

    def publish(self) -> None:
        """Publish one frame on each input (the timer's callback)."""
        import array
        from sensor_msgs.msg import Image
        stamp = self.listener.node.get_clock().now().to_msg()
        for name, publisher in self.publishers.items():
            bad = name == 'rear' and self.sent % 10 == 9
            msg = Image(height=HEIGHT, width=WIDTH, encoding='bogus' if bad else 'rgb8',
                        step=3 * WIDTH)
            msg.header.stamp, msg.header.frame_id = stamp, name
            msg.data = array.array('B', bytes(3 * WIDTH * HEIGHT))
            publisher.publish(msg)
        type(self).sent += 1

    def scrape(self) -> tuple:
        """Scrape on a thread while spinning; return (families by name, when it ended)."""
        from prometheus_client.parser import text_string_to_metric_families
        box = {}

        def get():
            with urllib.request.urlopen(URL, timeout=10.0) as response:
                box['text'] = response.read().decode()
        thread = threading.Thread(target=get)
        thread.start()
        self.listener.spin_until(lambda: not thread.is_alive(), 15.0)
        thread.join()
        self.assertIn('text', box, f'no answer from {URL}')
        families = {f.name: f for f in text_string_to_metric_families(box['text'])}
        return families, time.time()

    def message_after(self, when: float):
        """Return the first telemetry message taken after when (its stamp 50 ms later)."""
        messages = self.listener.telemetry(f'{NODE}/telemetry')
        self.assertTrue(self.listener.spin_until(
            lambda: messages and stamp_s(messages[-1]) > when + 0.05, 10.0))
        return messages[-1]

    def check_between(self, families, low, high, equal=()):
        """Check every counter of the scrape against two messages (equal: names that stay)."""
        scraped = {key(s.name, **s.labels): s.value for f in families.values()
                   if f.type == 'counter' and f.name.startswith('inferedge_')
                   for s in f.samples if s.name.endswith('_total')}
        below, above = message_counters(low), message_counters(high)
        self.assertLessEqual(set(below), set(scraped), set(below) - set(scraped))
        for sample, value in scraped.items():
            name = sample[0]
            if name in NOT_IN_MESSAGE:
                continue
            if name == 'inferedge_decisions_total':
                continue  # the message has the sum: checked below
            if sample not in above:
                self.assertIn(name, REASON_FAMILIES, sample)
                self.assertEqual(value, 0.0, sample)
                continue
            self.assertTrue(below.get(sample, 0.0) <= value <= above[sample],
                            (sample, below.get(sample), value, above[sample]))
            if name in equal:
                self.assertEqual(below.get(sample, 0.0), above[sample], sample)
        decisions = sum(s.value for s in families['inferedge_decisions'].samples)
        self.assertTrue(low.decisions_total <= decisions <= high.decisions_total,
                        (low.decisions_total, decisions, high.decisions_total))
        uptime = families['inferedge_engine_uptime_seconds'].samples[0].value
        self.assertTrue(low.uptime_s <= uptime <= high.uptime_s, (low.uptime_s, uptime))

    def test_1_while_frames_flow_each_counter_lies_between_the_messages_around_a_scrape(self):
        listener = self.listener
        messages = listener.telemetry(f'{NODE}/telemetry')
        listener.telemetry_after(f'{NODE}/telemetry', timeout=60.0)  # configured and active
        for publisher in self.publishers.values():
            listener.wait_for_subscribers(publisher)
        type(self).timer = listener.node.create_timer(1.0 / FPS, self.publish)
        first = listener.telemetry_after(f'{NODE}/telemetry', predicate=lambda m: any(
            t.executed > 0 for t in m.tasks) and any(t.dropped > 0 for t in m.tasks))
        flowed = 0
        for _ in range(3):
            before = messages[-1]
            families, ended = self.scrape()
            after = self.message_after(ended)
            self.check_between(families, before, after)
            executed = {x.labels['task']: x.value
                        for x in families['inferedge_task_frames_executed'].samples}
            counts = {x.labels['task']: x.value
                      for x in families['inferedge_task_end_to_end_seconds'].samples
                      if x.name.endswith('_count')}
            self.assertEqual(counts, executed)  # read at one moment: every executed frame
            flowed += message_counters(after)[key('inferedge_task_frames_routed_total',
                                                  task='detector')] > \
                message_counters(before)[key('inferedge_task_frames_routed_total',
                                             task='detector')]
            listener.spin_until(lambda: False, 0.3)
        self.assertTrue(flowed, 'no frame arrived between the messages around any scrape')
        self.assertGreater(self.sent, 0)
        self.assertEqual(listener.invariant_violations(first), [])

    def test_2_once_input_stops_the_counters_equal_the_last_message(self):
        listener = self.listener
        self.assertIsNotNone(self.timer, 'test_1 started no input')
        listener.node.destroy_timer(self.timer)
        messages = listener.telemetry(f'{NODE}/telemetry')

        def idle(msg):
            return all(t.queued == 0 and t.in_flight == 0 for t in msg.tasks)
        settled = listener.telemetry_after(f'{NODE}/telemetry', predicate=idle)
        last = listener.telemetry_after(f'{NODE}/telemetry', settled.uptime_s + 0.5,
                                        predicate=idle)
        self.assertEqual(message_counters(settled).get(key(
            'inferedge_input_frames_received_total', input='front')),
            message_counters(last).get(key('inferedge_input_frames_received_total',
                                           input='front')), 'frames still arrive')
        before = messages[-1]
        families, ended = self.scrape()
        after = self.message_after(ended)
        frames = {name for name, _ in message_counters(after)} - IDLE_CHANGES
        self.check_between(families, before, after, equal=frames)
        malformed = message_counters(after)[key('inferedge_input_frames_malformed_total',
                                                input='rear', reason='unknown_encoding')]
        self.assertGreater(malformed, 0)
        for task in after.tasks:
            samples = {s.name: s.value for s in
                       families['inferedge_task_end_to_end_seconds'].samples
                       if s.labels['task'] == task.name and 'le' not in s.labels}
            self.assertEqual(samples['inferedge_task_end_to_end_seconds_count'], task.executed)
            gauges = {s.name: s.value for f in families.values() if f.type == 'gauge'
                      for s in f.samples if s.labels.get('task') == task.name}
            self.assertEqual(gauges['inferedge_task_queued_frames'], 0.0)
            self.assertEqual(gauges['inferedge_task_in_flight_frames'], 0.0)

    def test_3_a_port_in_use_fails_configure_with_the_reason(self, proc_output, second):
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_CONFIGURE
        response = self.listener.call(ChangeState, '/second/change_state', request)
        self.assertFalse(response.success)
        proc_output.assertWaitFor(f'configure failed: metrics_port {PORT} on 127.0.0.1: cannot '
                                  'listen: Address already in use', process=second,
                                  timeout=10.0)
        self.assertEqual(self.listener.lifecycle_state('/second'), 'unconfigured')


@launch_testing.post_shutdown_test()
class TestMetricsShutdown(unittest.TestCase):

    def test_exit_codes_and_the_port_is_free(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
        with socket.socket() as probe:
            # as a server binds (closed connections may linger in TIME_WAIT): only a socket
            # still listening on the port makes this fail
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(('127.0.0.1', PORT))
            probe.listen()
