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
The node's messages, built from the engine's typed records (rclpy-free: message classes only).

copy_fields() sets every primitive field of a message from the record attribute of the same
name, so a field added to both the .msg and the snapshot dataclass needs no code here; the
builders add what has no twin (nested lists, node-side QoS counts).
"""

import array
from typing import Any, Callable, Dict, List, Optional

from inferedge_orchestrator import (LATENCY_SERIES, LatencySummary as LatencySummaryData, reasons,
                                    Snapshot)
from inferedge_orchestrator_msgs.msg import (CameraStats, InferenceResult, InputStats,
                                             LatencySummary, OrchestratorTelemetry, PoolStats,
                                             ReasonCount, SchedulerDecision, TaskStats, Tensor)
from inferedge_orchestrator_ros.images import tensor_fields
from vision_msgs.msg import (BoundingBox2D, Classification, Detection2D, Detection2DArray,
                             ObjectHypothesis, ObjectHypothesisWithPose)

STATUS_CODES = {reasons.OK: InferenceResult.OK, reasons.FAILED: InferenceResult.FAILED,
                reasons.TIMED_OUT: InferenceResult.TIMED_OUT}
# The node's own latency series, kept by the engine's telemetry (Engine(latency_series=...)).
NODE_SERIES = ('transport', 'convert', 'node_overhead', 'publish')
NAN = float('nan')
_INTEGER_TYPES = {'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64',
                  'octet', 'byte'}


def copy_fields(msg, record, skip=()) -> Any:
    """Set msg's number, bool and string fields from record's attributes of the same name."""
    for name, kind in msg.get_fields_and_field_types().items():
        if name in skip or not hasattr(record, name):
            continue
        value = getattr(record, name)
        if kind in ('double', 'float'):
            setattr(msg, name, NAN if value is None else float(value))
        elif kind in _INTEGER_TYPES:
            setattr(msg, name, int(value))
        elif kind == 'boolean':
            setattr(msg, name, bool(value))
        elif kind == 'string':
            setattr(msg, name, str(value))
    return msg


def reason_counts(counts: Dict[str, int]) -> List[ReasonCount]:
    return [ReasonCount(reason=reason, count=count) for reason, count in counts.items()]


def latency_summary(series: str, data: LatencySummaryData) -> LatencySummary:
    return copy_fields(LatencySummary(series=series), data)


def result_message(result, header, transport_s: Optional[float], tensors: bool,
                   convert_s: Optional[float] = None) -> InferenceResult:
    """
    Return a job's result (node_overhead_ms is the caller's: it is measured at publish).

    convert_s is the image callback's conversion of the frame (None: the zero-copy path).
    """
    msg = InferenceResult(header=header, task=result.task, input=result.input,
                          frame_seq=result.seq, status=STATUS_CODES[result.status],
                          reason=result.reason, detail=result.detail[:2000],
                          deadline_met=result.deadline_met, batch_size=result.batch_size)
    msg.transport_ms = NAN if transport_s is None else transport_s * 1000.0
    msg.queue_wait_ms = result.queue_wait_s * 1000.0
    msg.decode_ms = max(0.0, result.decode_s) * 1000.0
    msg.convert_ms = 0.0 if convert_s is None else convert_s * 1000.0
    msg.preprocess_ms = result.preprocess_s * 1000.0
    msg.inference_ms = result.inference_s * 1000.0
    msg.postprocess_ms = result.postprocess_s * 1000.0
    msg.end_to_end_ms = result.end_to_end_s * 1000.0
    if tensors and result.outputs:
        msg.tensors = [tensor_message(name, value) for name, value in result.outputs.items()]
    return msg


def tensor_message(name: str, value) -> Tensor:
    shape, code, data = tensor_fields(value)
    return Tensor(name=name, shape=shape, dtype=code, data=data)


def detections_message(decoded, header) -> Detection2DArray:
    """Return a frame's detections: boxes in source-image pixels, the label as class_id."""
    msg = Detection2DArray(header=header)
    for detection in decoded.detections:
        box = BoundingBox2D(size_x=detection.x2 - detection.x1,
                            size_y=detection.y2 - detection.y1)
        box.center.position.x = (detection.x1 + detection.x2) / 2.0
        box.center.position.y = (detection.y1 + detection.y2) / 2.0
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = detection.label
        hypothesis.hypothesis.score = detection.score
        msg.detections.append(Detection2D(header=header, results=[hypothesis], bbox=box))
    return msg


def classification_message(decoded, header) -> Classification:
    """Return a frame's classes, best first, the label as class_id."""
    return Classification(header=header, results=[
        ObjectHypothesis(class_id=item.label, score=item.score) for item in decoded.classes])


def decision_message(decision, stamp) -> SchedulerDecision:
    msg = copy_fields(SchedulerDecision(), decision)
    msg.header.stamp = stamp
    msg.queue_tasks = list(decision.queue_depths)
    msg.queue_depths = array.array('I', decision.queue_depths.values())
    return msg


def telemetry_message(snapshot: Snapshot, stamp, node_state: str,
                      input_stats: Callable[[str], InputStats]) -> OrchestratorTelemetry:
    """
    Return the telemetry message of a snapshot (its tasks' latency holds the node's series).

    input_stats(name) gives an input's message with the node's own fields (topic, type, QoS
    event counts) set.
    """
    msg = copy_fields(OrchestratorTelemetry(node_state=node_state), snapshot,
                      skip=('node_state',))
    msg.header.stamp = stamp
    msg.engine_state = snapshot.state
    for name, data in snapshot.inputs.items():
        stats = copy_fields(input_stats(name), data, skip=('name', 'topic', 'type'))
        stats.name = name
        stats.malformed_by_reason = reason_counts(data.malformed_by_reason)
        msg.inputs.append(stats)
    for name, data in snapshot.tasks.items():
        stats = copy_fields(TaskStats(name=name, inputs=list(data.inputs)), data,
                            skip=('name',))
        stats.failed_by_reason = reason_counts(data.failed_by_reason)
        stats.dropped_by_reason = reason_counts(data.dropped_by_reason)
        latency = data.latency
        stats.latency = [latency_summary(series, latency[series])
                         for series in LATENCY_SERIES + NODE_SERIES if series in latency]
        for camera, counts in data.cameras.items():
            camera_stats = copy_fields(CameraStats(input=camera), counts, skip=('input',))
            camera_stats.dropped_by_reason = reason_counts(counts.dropped_by_reason)
            stats.cameras.append(camera_stats)
        stats.batch_jobs = list(data.batch_jobs)
        stats.batch_cost_ms = [float(cost) for cost in data.batch_cost_ms]
        msg.tasks.append(stats)
    for name, data in snapshot.pools.items():
        stats = copy_fields(PoolStats(name=name), data, skip=('name', 'utilisation'))
        stats.utilisation = float(data.period_utilisation)
        msg.pools.append(stats)
    shedding = snapshot.shedding
    msg.shedding_active = shedding.active
    msg.shedding_ticks = shedding.ticks
    if shedding.last_risk:
        msg.last_risk_task, msg.last_risk_reason = shedding.last_risk
    msg.decisions_total = snapshot.decisions.total
    copy_fields(msg, snapshot.resources)  # cpu_percent, rss_mb (NaN when not sampled)
    return msg


def telemetry_invariant_violations(telemetry: OrchestratorTelemetry) -> List[str]:
    """Return the invariants' violations in a telemetry message (the core's, the queues')."""
    problems = []
    for item in telemetry.inputs:
        if item.received != item.malformed + item.accepted:
            problems.append(f'input {item.name}: received {item.received} != malformed '
                            f'{item.malformed} + accepted {item.accepted}')
        if item.malformed != sum(r.count for r in item.malformed_by_reason):
            problems.append(f'input {item.name}: malformed_by_reason does not add up')
    for task in telemetry.tasks:
        total = task.executed + task.failed + task.dropped + task.queued + task.in_flight
        if task.routed != total:
            problems.append(f'task {task.name}: routed {task.routed} != {total}')
        if task.dropped != sum(r.count for r in task.dropped_by_reason):
            problems.append(f'task {task.name}: dropped_by_reason does not add up')
        for camera in task.cameras:
            total = camera.executed + camera.failed + camera.dropped + camera.queued + \
                camera.in_flight
            if camera.routed != total:
                problems.append(f'task {task.name} camera {camera.input}: routed '
                                f'{camera.routed} != {total}')
    for topic in telemetry.publish:
        total = topic.published + topic.dropped + topic.queued
        if topic.offered != total:
            problems.append(f'publish {topic.topic}: offered {topic.offered} != {total}')
    return problems
