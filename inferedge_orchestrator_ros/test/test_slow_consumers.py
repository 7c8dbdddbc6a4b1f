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
Slow consumers: readers of results, detections and decisions that stop (SIGSTOP) for 10 s.

The node and a 30 fps camera run as processes; a detector (a constant ONNX model, with
detections) and a dummy tracker (20 ms a frame) take every frame. Readers (slow_reader.py,
KEEP_ALL and reliable) subscribe to every result, detection and decision topic: first one,
stopped for 10 s and resumed, then ten at once, stopped for 10 s and resumed. The oracle, from
the node's telemetry: during each stop the tasks' executed rate stays at least 90 % of a control
window's (one live reader); the slot threads' time in publishing (the `publish` latency series)
stays under PUBLISH_P95_BOUND_MS at p95 in every window; the node's RSS grows less than
RSS_GROWTH_BOUND_MB; any message the publish queue dropped is counted per topic and turns
/diagnostics `publishing` WARN; the invariants hold, the readers still receive after SIGCONT,
and at deactivate the queue is flushed: every result was published, and the test's own live
reader received each one.

SLOW_CONSUMERS_PUBLISH_QUEUE_DEPTH=0 runs the node with publish_queue_depth 0 (publishing on
the slot threads, as before the queue): docs/reliability.md shows the test failing then.
"""

import json
import os
import signal
import subprocess
import sys

import rclpy  # noqa: F401 - marks a ROS test module (skipped by name without ROS)

from .ros_test_env import missing, NOT_BUILT, package_available, ros_environment

DOMAIN_ID = 35
PREFIX = '/slow_consumers_test'
NODE = f'{PREFIX}/inferedge_orchestrator'
TASKS = ('detector', 'tracker')
STOP_S = 10.0
# A slot hands a result and its detections to the queue with two appends under a lock: p95
# 0.13 ms measured here. Publishing them to DDS on the slot thread took p95 1.7 to 6 ms
# (docs/reliability.md, "Slow consumers"); 1 ms lies between, with room for GIL waits.
PUBLISH_P95_BOUND_MS = 1.0
# What a stopped reader could make the node keep: the queue, at most publish_queue_depth (100)
# messages of five topics of a few KiB (about 2 MiB), and DDS's keep-last 10 per writer. The
# RSS grew 4 MiB over the run here (eleven readers discovered, the allocator); 20 MiB is five
# times that, and catches a node that keeps something per message or per reader.
RSS_GROWTH_BOUND_MB = 20.0
READER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'slow_reader.py')


def cannot_run() -> str:
    if not package_available():
        return NOT_BUILT
    return missing('onnx', 'onnxruntime')


def start(name, parameters, log):
    from inferedge_orchestrator_ros.environment import executable
    arguments = [executable(name), '--ros-args', '-r', f'__ns:={PREFIX}']
    for key, value in parameters.items():
        arguments += ['-p', f'{key}:={value}']
    return subprocess.Popen(arguments, env=dict(os.environ, **ros_environment(DOMAIN_ID)),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def rss_mb(pid: int) -> float:
    with open(f'/proc/{pid}/status', encoding='ascii') as stream:
        for line in stream:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    raise AssertionError(f'no VmRSS for {pid}')


class Readers:
    """Reader processes (slow_reader.py) of the topics; stopped and resumed together."""

    def __init__(self, topics, count):
        env = dict(os.environ, **ros_environment(DOMAIN_ID))
        self.processes = [subprocess.Popen([sys.executable, READER, *topics], env=env,
                                           stdout=subprocess.PIPE, text=True,
                                           start_new_session=True) for _ in range(count)]

    def matched(self) -> bool:
        return all(process.stdout.readline().strip() == 'matched'
                   for process in self.processes)

    def signal(self, signum) -> None:
        for process in self.processes:
            os.kill(process.pid, signum)

    def counts(self) -> list:
        """Stop them (SIGTERM) and return what each received, by topic."""
        self.signal(signal.SIGTERM)
        return [json.loads(process.communicate(timeout=20)[0].splitlines()[-1])
                for process in self.processes]

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            process.wait(10)


def by_name(items) -> dict:
    return {item.name: item for item in items}


def window(first, last) -> dict:
    """Return a window's figures between two telemetry messages: rates, publish p95 and max."""
    seconds = last.uptime_s - first.uptime_s
    tasks, before = by_name(last.tasks), by_name(first.tasks)
    figures = {'seconds': seconds, 'received_hz': (last.inputs[0].received -
                                                   first.inputs[0].received) / seconds}
    for name in TASKS:
        publish = next(s for s in tasks[name].latency if s.series == 'publish')
        figures[name] = {'executed_hz': (tasks[name].executed - before[name].executed) / seconds,
                         'publish_p50_ms': publish.p50_ms, 'publish_p95_ms': publish.p95_ms,
                         'publish_max_ms': publish.max_ms, 'samples': publish.count}
    return figures


def test_slow_and_stopped_readers_slow_no_slot(tmp_path):
    reason = cannot_run()
    if reason:
        import pytest
        pytest.skip(reason)
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from lifecycle_msgs.msg import Transition

    from inferedge_orchestrator_msgs.msg import InferenceResult
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from .generated_models import detector_model
    from .ros_launch_helpers import Listener
    depth = os.environ.get('SLOW_CONSUMERS_PUBLISH_QUEUE_DEPTH')
    parameters = {
        'autostart': 'false', 'telemetry_period_s': 1.0, 'deactivate_timeout_s': 5.0,
        'camera.topic': f'{PREFIX}/image', 'camera.reliability': 'reliable', 'camera.depth': 5,
        'cpu.slots': 2, 'tasks': '[detector, tracker]',
        'detector.latency_budget_ms': 2000.0, 'detector.queue_size': 10,
        'detector.worker': 'onnxruntime', 'detector.decoder': 'yolo',
        'detector.decoder_options.labels': '[person, car]',
        'detector.worker_options.model_path': detector_model(tmp_path / 'detector.onnx'),
        'tracker.latency_budget_ms': 2000.0, 'tracker.queue_size': 10,
        'tracker.worker_options.latency_ms': 20.0}
    if depth is not None:
        parameters['publish_queue_depth'] = int(depth)
    topics = [f'{NODE}/detector/result', f'{NODE}/detector/detections',
              f'{NODE}/tracker/result', f'{NODE}/decisions']
    log_path = tmp_path / 'node.log'
    processes, readers = [], []
    listener = Listener(DOMAIN_ID, 'slow_consumers_test')
    try:
        with open(log_path, 'w', encoding='utf-8') as log:
            node = start('orchestrator', parameters, log)
            processes.append(node)
        telemetry = listener.telemetry(f'{NODE}/telemetry')
        diagnostics = listener.subscribe(DiagnosticArray, '/diagnostics')
        keep_all = QoSProfile(history=HistoryPolicy.KEEP_ALL,
                              reliability=ReliabilityPolicy.RELIABLE)
        received = {task: listener.subscribe(InferenceResult, f'{NODE}/{task}/result', keep_all)
                    for task in TASKS}
        listener.transition(NODE, Transition.TRANSITION_CONFIGURE)
        assert listener.spin_until(lambda: all(
            listener.node.count_publishers(f'{NODE}/{task}/result') for task in TASKS), 30.0)
        listener.transition(NODE, Transition.TRANSITION_ACTIVATE)
        processes.append(start('synthetic_camera', {
            'topic': f'{PREFIX}/image', 'fps': 30.0, 'width': 160, 'height': 120,
            'reliability': 'reliable'}, subprocess.DEVNULL))
        one = Readers(topics, 1)
        readers.append(one)
        assert one.matched(), 'the reader did not match every topic'
        first = listener.telemetry_after(f'{NODE}/telemetry', predicate=lambda t: all(
            task.executed > 30 for task in t.tasks), timeout=60.0)
        rss = {'start': rss_mb(node.pid)}

        def after(message, seconds):
            return listener.telemetry_after(f'{NODE}/telemetry', message.uptime_s + seconds,
                                            timeout=seconds + 30.0)
        control_end = after(first, STOP_S)
        windows = {'control (one reader)': window(first, control_end)}
        one.signal(signal.SIGSTOP)
        stop_end = after(control_end, STOP_S)
        rss['one stopped'] = rss_mb(node.pid)
        one.signal(signal.SIGCONT)
        windows['one reader stopped'] = window(control_end, stop_end)
        ten = Readers(topics, 10)
        readers.append(ten)
        assert ten.matched(), 'the ten readers did not match every topic'
        ten_live = after(telemetry[-1], 0.0)
        ten_start = after(ten_live, STOP_S / 2)
        windows['ten readers'] = window(ten_live, ten_start)
        ten.signal(signal.SIGSTOP)
        ten_end = after(ten_start, STOP_S)
        rss['ten stopped'] = rss_mb(node.pid)
        ten.signal(signal.SIGCONT)
        windows['ten readers stopped'] = window(ten_start, ten_end)
        resumed = after(ten_end, 3.0)
        rss['resumed'] = rss_mb(node.pid)
        publish = {c.topic: c for c in resumed.publish}

        listener.transition(NODE, Transition.TRANSITION_DEACTIVATE)
        final = listener.telemetry_after(f'{NODE}/telemetry',
                                         predicate=lambda t: t.node_state == 'inactive')
        counts = [one.counts()[0]] + ten.counts()
        print(f'\npublish_queue_depth {depth or "default"}; RSS MiB {rss}')
        for name, figures in windows.items():
            print(f'{name}: {figures}')
        print('publish queue:', {c.topic: (c.offered, c.published, c.dropped, c.max_queued)
                                 for c in final.publish})
        print('readers received:', counts[0], counts[1])

        from inferedge_orchestrator_ros.messages import telemetry_invariant_violations
        assert telemetry_invariant_violations(final) == []
        control = windows['control (one reader)']
        for name, figures in windows.items():
            for task in TASKS:
                assert figures[task]['executed_hz'] >= 0.9 * control[task]['executed_hz'], \
                    (name, task, figures, control)
                assert figures[task]['publish_p95_ms'] <= PUBLISH_P95_BOUND_MS, \
                    (name, task, figures)
        assert max(rss.values()) - rss['start'] < RSS_GROWTH_BOUND_MB, rss
        # A topic whose queue dropped messages turned the publishing status WARN; none: OK.
        dropped = {topic: c.dropped for topic, c in publish.items() if c.dropped}
        levels = {status.level for array in diagnostics for status in array.status
                  if status.name.endswith(': publishing')}
        print('dropped', dropped, 'publishing levels', sorted(ord(level) for level in levels))
        if dropped:
            assert DiagnosticStatus.WARN in levels, levels
        else:
            assert levels == {DiagnosticStatus.OK}, levels
        final_tasks = by_name(final.tasks)
        for task in TASKS:
            topic = publish_topic = f'{NODE}/{task}/result'
            counts_final = next(c for c in final.publish if c.topic == publish_topic)
            assert counts_final.queued == 0, counts_final  # flushed at deactivate
            assert counts_final.offered == final_tasks[task].executed + final_tasks[task].failed
            assert counts_final.published == counts_final.offered - counts_final.dropped
            # The test's own reader, never stopped, received every result published.
            assert listener.spin_until(
                lambda: len(received[task]) >= counts_final.published, 10.0), topic
            assert len(received[task]) == counts_final.published
        # The stopped readers took messages again after SIGCONT (what they missed while
        # stopped is the writers' keep-last history: DDS, not the node, decides it).
        for reader_counts in counts:
            assert all(reader_counts[topic] > 0 for topic in topics[:3]), reader_counts
    finally:
        for group in readers:
            group.kill()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        listener.close()
