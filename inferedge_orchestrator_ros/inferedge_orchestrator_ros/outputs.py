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
The node's outputs: the publishers of one configuration and what they publish.

Each task's results, its detections or classes and annotated image, the telemetry and the
decisions. A task over several inputs publishes those of each camera on topics of their own,
~/<task>/<input>/result and so on, so that a consumer of one camera needs no filter. The slot
thread that ran a job builds its messages and hands them to the publish queue (publishing.py),
whose thread publishes them: a slow publish never holds a slot, the engine's timer thread or
the executor. The node's latency series of each result (transport, convert, node_overhead,
publish) go to the engine's telemetry of the task.
"""

import time
from typing import List, Optional

from inferedge_orchestrator import DECODERS, Engine, OrchestratorConfig
from inferedge_orchestrator_msgs.msg import (InferenceResult, OrchestratorTelemetry,
                                             PublishStats, SchedulerDecision)
from inferedge_orchestrator_ros import messages
from inferedge_orchestrator_ros.annotation import Annotator
from inferedge_orchestrator_ros.publishing import PublishQueue, TopicCounts
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification, Detection2DArray

RESULTS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
TELEMETRY_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
DECISIONS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# Deactivate, cleanup and shutdown publish what is queued for at most this long (the second
# of shutdown_grace_s that is not the engine's).
FLUSH_TIMEOUT_S = 1.0


class Outputs:
    """
    The publishers of one configuration (lifecycle publishers: active with the node).

    node: what creates the publishers (create_lifecycle_publisher) and gives the clock, the
    logger and the context; any object with those serves, a ROS graph is not needed.
    engine: set by the node once its engine exists; it keeps the node's latency series.
    publish_queue_depth: the messages each topic's publish queue holds (0: publish on the
    caller's thread, no queue).
    """

    def __init__(self, node, config: OrchestratorConfig, publish_tensors: bool,
                 annotate_rate_hz: float, publish_queue_depth: int):
        self.engine: Optional[Engine] = None
        self.publish_tensors = publish_tensors
        self.closing = False  # the engine is closing or the context ended: publish nothing
        self._node = node
        self._queue = PublishQueue(node, publish_queue_depth)
        # By (task, input): a task over one input has one prefix, ~/<task>/.
        self._results = {}
        self._decoded = {}  # (task, input) -> (publisher, message builder)
        self._annotated = {}
        create = node.create_lifecycle_publisher
        for task in config.tasks:
            produces = DECODERS.cls(task.decoder).produces
            for camera in task.inputs:
                key = (task.name, camera)
                prefix = f'~/{task.name}/{camera}' if len(task.inputs) > 1 else f'~/{task.name}'
                self._results[key] = create(InferenceResult, f'{prefix}/result', RESULTS_QOS)
                if produces == 'detections':
                    self._decoded[key] = (create(Detection2DArray, f'{prefix}/detections',
                                                 RESULTS_QOS), messages.detections_message)
                    self._annotated[key] = create(Image, f'{prefix}/annotated', RESULTS_QOS)
                elif produces == 'classes':
                    self._decoded[key] = (create(Classification, f'{prefix}/classification',
                                                 RESULTS_QOS), messages.classification_message)
        self._annotator = Annotator(node, annotate_rate_hz) if self._annotated else None
        self._telemetry = create(OrchestratorTelemetry, '~/telemetry', TELEMETRY_QOS)
        self._decisions = create(SchedulerDecision, '~/decisions', DECISIONS_QOS)

    def set_annotate_rate(self, rate_hz: float) -> None:
        if self._annotator is not None:
            self._annotator.rate_hz = rate_hz

    def on_result(self, result) -> None:
        """Publish one result and what its decoder made; called on the job's slot thread."""
        key = (result.task, result.input)
        publisher = self._results.get(key)
        if publisher is None or self.closing:
            return
        meta = result.meta
        msg = messages.result_message(result, meta.header, meta.transport_s,
                                      self.publish_tensors, meta.convert_s)
        submitted = meta.submitted
        if submitted is None:  # the result overtook the callback: the engine's own record
            submitted = result.finished - result.service_s - result.queue_wait_s
        # The conversion is a series of its own, not node overhead.
        overhead = (submitted - meta.entry - (meta.convert_s or 0.0)) + \
            (time.monotonic() - result.finished)
        msg.node_overhead_ms = overhead * 1000.0
        publish_s = self._timed_publish(publisher, msg)
        decoded = result.decoded
        if decoded is not None and key in self._decoded:
            decoded_publisher, build = self._decoded[key]
            publish_s += self._timed_publish(decoded_publisher, build(decoded, meta.header))
        self.engine.record_latency(result.task, {'transport': meta.transport_s,
                                                 'convert': meta.convert_s,
                                                 'node_overhead': overhead,
                                                 'publish': publish_s})
        annotated, annotator = self._annotated.get(key), self._annotator
        if decoded is not None and annotated is not None and annotator is not None:
            annotator.offer(key, annotated, result, meta.header)

    def on_decision(self, decision) -> None:
        """Publish one decision; called on the engine's timer thread (or a transition)."""
        if self.closing:
            return
        msg = messages.decision_message(decision, self._node.get_clock().now().to_msg())
        self._publish(self._decisions, msg)

    def publish_telemetry(self, msg: OrchestratorTelemetry) -> None:
        """Publish a telemetry message with the publish queue's counts of every topic."""
        msg.publish = [messages.copy_fields(PublishStats(), counts)
                       for counts in self._queue.counts()]
        self._publish(self._telemetry, msg)

    def publish_counts(self) -> List[TopicCounts]:
        """Return what the publish queue did with each topic's messages (diagnostics)."""
        return self._queue.counts()

    def start(self) -> None:
        """Start the publisher thread (activate): from now on messages go through the queue."""
        self._queue.start()

    def stop(self) -> None:
        """Publish what is queued (within FLUSH_TIMEOUT_S), then stop the publisher thread."""
        left = self._queue.stop(FLUSH_TIMEOUT_S)
        if left:
            self._node.get_logger().warning(
                f'{left} queued messages were not published within {FLUSH_TIMEOUT_S:g} s '
                '(counted as dropped)')

    def close(self) -> None:
        """
        Stop (publish what is queued), stop the annotator, destroy the publishers.

        Called once the engine is closed: no result comes after.
        """
        self.closing = True
        self.stop()
        annotator, self._annotator = self._annotator, None
        if annotator is not None:
            annotator.close()
        publishers = list(self._results.values()) + list(self._annotated.values())
        publishers += [publisher for publisher, _ in self._decoded.values()]
        for publisher in publishers + [self._telemetry, self._decisions]:
            self._node.destroy_lifecycle_publisher(publisher)
        self._results.clear()
        self._decoded.clear()
        self._annotated.clear()

    def _publish(self, publisher, msg) -> None:
        self._queue.add(publisher, msg)

    def _timed_publish(self, publisher, msg) -> float:
        """Hand msg over as _publish does; return the seconds it took (the publish series)."""
        start = time.monotonic()
        self._queue.add(publisher, msg)
        return time.monotonic() - start
