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
The node's /diagnostics statuses: one per task, per input and the publishing, from the counts.

A status compares the counts with those of its previous update, so that it reports what
happened in the last period (a failure an hour ago is no error now).
"""

from dataclasses import dataclass
import json
import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticStatus
import diagnostic_updater
from inferedge_orchestrator import Engine, InputSnapshot, reasons, Snapshot
from rclpy.clock import Clock, ClockType

TASK_VALUES = ('priority', 'routed', 'executed', 'completed_within_budget', 'failed', 'dropped',
               'queued', 'in_flight', 'shed_limit_hz', 'executed_rate_hz')
CAMERA_VALUES = ('routed', 'executed', 'completed_within_budget', 'failed', 'dropped', 'queued',
                 'in_flight')
INPUT_VALUES = ('received', 'accepted', 'malformed', 'decode_errors', 'stamp_fallback',
                'rate_hz')


@dataclass
class InputState:
    """What the node knows of an input beyond the snapshot: its subscription's side."""

    topic: str
    deadline_missed: int
    incompatible_qos: int
    silent_s: float  # since its last message (or the activation)
    stale_after_s: float
    expected_rate_hz: float
    qos_conflict: str = ''  # incompatible publishers seen (why a stale input may get nothing)


class Diagnostics:
    """
    The node's diagnostic updater and its statuses, with the counts of their previous update.

    configure() adds a status per task, per camera of a task over several inputs and per
    input of a configuration, and one of its publishing; release() removes them; the updater
    calls task_status, camera_status, input_status and publishing_status at its period.
    """

    def __init__(self, node, state_label: Callable[[], str]):
        # diagnostic_updater declares its own parameter: one updater per node, never recreated.
        self._updater = diagnostic_updater.Updater(node)
        self._updater.setHardwareID('inferedge_orchestrator')
        # Its period on the steady clock, as the telemetry's: the updater's own timer runs on
        # the node clock, and a wall clock stepped back (NTP) would stall it for as long.
        node.destroy_timer(self._updater.timer)
        self._updater.timer = node.create_timer(
            self._updater.period, self._updater.update,
            clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._state_label = state_label
        self._previous: Dict[str, Dict[str, Any]] = {}
        self._labels: List[str] = []
        self._engine: Optional[Engine] = None
        self._inputs: Dict[str, Any] = {}  # name -> ingress.Input
        self._get: Callable[[str], Any] = None  # a node parameter's value
        self._publish_counts: Callable[[], List[Any]] = list  # the publish queue's TopicCounts
        self._snapshot: Optional[Snapshot] = None
        self._snapshot_time = -math.inf
        self.activated_at = time.monotonic()  # a silent input counts from here

    def configure(self, engine: Engine, inputs: Dict[str, Any], get: Callable[[str], Any],
                  publish_counts: Callable[[], List[Any]]) -> None:
        self._engine, self._inputs, self._get = engine, inputs, get
        self._publish_counts = publish_counts
        self._previous.clear()
        for task, state in engine.tasks.items():
            self._add(f'task {task}', self.task_status, task)
            cameras = state.config.inputs
            for camera in cameras if len(cameras) > 1 else ():
                self._add(f'task {task} camera {camera}', self.camera_status, (task, camera))
        for name in inputs:
            self._add(f'input {name}', self.input_status, name)
        self._add('publishing', self.publishing_status, None)

    def release(self) -> None:
        for label in self._labels:
            self._updater.removeByName(label)
        self._labels.clear()
        self._engine, self._inputs, self._publish_counts = None, {}, list

    def _add(self, label: str, function, name) -> None:
        self._updater.add(label, lambda stat: function(stat, name))
        self._labels.append(label)

    def _current(self) -> Optional[Snapshot]:
        """Return the engine's snapshot, taken at most every 0.1 s (one per updater round)."""
        engine = self._engine
        if engine is None:
            return None
        now = time.monotonic()
        if now - self._snapshot_time > 0.1:
            self._snapshot = engine.snapshot()
            self._snapshot_time = now
        return self._snapshot

    def task_status(self, stat, task: str):
        """Fill the status of a task (the updater's callback)."""
        snapshot = self._current()
        if snapshot is None or task not in snapshot.tasks:
            stat.summary(DiagnosticStatus.OK, 'not configured')
            return stat
        state_label = self._state_label()
        data = snapshot.tasks[task]
        pool = snapshot.pools[data.pool]
        failed = data.failed_by_reason
        now = {
            'worker_error': failed.get(reasons.WORKER_ERROR, 0),
            'timeout': failed.get(reasons.TIMEOUT, 0),
            'crashed': failed.get(reasons.WORKER_CRASHED, 0),
            'unreachable': failed.get(reasons.SERVER_UNAVAILABLE, 0),
            'decode_error': failed.get(reasons.DECODE_ERROR, 0),
            'retired': pool.retired,
            'late': data.executed - data.completed_within_budget +
            data.dropped_by_reason.get(reasons.EXPIRED, 0) +
            data.dropped_by_reason.get(reasons.PREDICTED_LATE, 0),
            'shed': data.dropped_by_reason.get(reasons.RATE_LIMITED, 0)
            if data.shed_limit_hz else 0,
        }
        before = self._previous.get(f'task {task}', dict.fromkeys(now, 0))
        self._previous[f'task {task}'] = now
        delta = {key: now[key] - before.get(key, 0) for key in now}
        problems = []
        level = DiagnosticStatus.OK
        if delta['worker_error'] or delta['timeout'] or delta['retired'] or \
                delta['crashed'] or delta['unreachable']:
            level = DiagnosticStatus.ERROR
            problems.append(f'worker failed {delta["worker_error"]}, timed out '
                            f'{delta["timeout"]}, crashed {delta["crashed"]}, server '
                            f'unreachable {delta["unreachable"]}, slots retired '
                            f'{delta["retired"]} in the last period')
        if data.slots_down:  # until the respawn or a health probe succeeds
            level = DiagnosticStatus.ERROR
            problems.append(f'{data.slots_down} worker slot(s) down: ' +
                            ('the server is unreachable' if pool.server_down else
                             'being started again'))
        if data.shed_limit_hz or delta['shed']:
            problems.append(f'shed to {data.shed_limit_hz:g} Hz')
        if delta['late']:
            problems.append(f'{delta["late"]} frames missed the deadline in the last period')
        if delta['decode_error']:
            problems.append(f'{delta["decode_error"]} images failed to decode')
        if problems and level == DiagnosticStatus.OK:
            level = DiagnosticStatus.WARN
        stat.summary(level, '; '.join(problems) if problems else
                     ('OK' if state_label == 'active' else state_label))
        for key in TASK_VALUES:
            stat.add(key, str(getattr(data, key)))
        stat.add('dropped_by_reason', json.dumps(data.dropped_by_reason))
        stat.add('failed_by_reason', json.dumps(failed))
        stat.add('end_to_end_p95_ms', str(data.latency['end_to_end'].p95_ms))
        return stat

    def camera_status(self, stat, key: Tuple[str, str]):
        """
        Fill the status of one camera of a task over several inputs (the updater's callback).

        ERROR while the camera's input is silent past its stale_after_s (its frames stopped
        while the task's other cameras run on); WARN when frames of it missed their deadline
        in the last period.
        """
        task, camera = key
        snapshot = self._current()
        item = self._inputs.get(camera)
        if snapshot is None or task not in snapshot.tasks or item is None:
            stat.summary(DiagnosticStatus.OK, 'not configured')
            return stat
        data = snapshot.tasks[task].cameras[camera]
        for value in CAMERA_VALUES:
            stat.add(value, str(getattr(data, value)))
        stat.add('dropped_by_reason', json.dumps(data.dropped_by_reason))
        label = f'task {task} camera {camera}'
        counts = {'executed': data.executed, 'late': data.executed -
                  data.completed_within_budget +
                  data.dropped_by_reason.get(reasons.EXPIRED, 0) +
                  data.dropped_by_reason.get(reasons.PREDICTED_LATE, 0)}
        before = self._previous.get(label, dict.fromkeys(counts, 0))
        self._previous[label] = counts
        state_label = self._state_label()
        last = item.last_message if item.last_message is not None else self.activated_at
        silent_s, stale_after_s = time.monotonic() - last, self._get(f'{camera}.stale_after_s')
        if state_label != 'active':
            stat.summary(DiagnosticStatus.OK, state_label)
        elif silent_s >= stale_after_s:
            stat.summary(DiagnosticStatus.ERROR, f'no frame of {camera} for {silent_s:.1f} s '
                         f'(stale_after_s {stale_after_s:g}): the task runs its other cameras')
        elif counts['late'] > before['late']:
            stat.summary(DiagnosticStatus.WARN, f'{counts["late"] - before["late"]} frames '
                         'missed the deadline in the last period')
        else:
            stat.summary(DiagnosticStatus.OK, f'{counts["executed"] - before["executed"]} '
                         'frames executed in the last period')
        return stat

    def publishing_status(self, stat, _=None):
        """
        Fill the status of the publish queue (the updater's callback).

        WARN when a topic dropped messages in the last period (its queue was full: the
        publisher thread fell behind), naming the topics.
        """
        counts = self._publish_counts()
        before = self._previous.get('publishing', {})
        now = {topic.topic: (topic.published, topic.dropped) for topic in counts}
        self._previous['publishing'] = now
        published = sum(p - before.get(t, (0, 0))[0] for t, (p, _) in now.items())
        dropped = {t: d - before.get(t, (0, 0))[1] for t, (_, d) in now.items()
                   if d > before.get(t, (0, 0))[1]}
        for topic in counts:
            stat.add(topic.topic, f'offered {topic.offered}, published {topic.published}, '
                     f'dropped {topic.dropped}, queued {topic.queued}, max_queued '
                     f'{topic.max_queued}')
        if dropped:
            stat.summary(DiagnosticStatus.WARN, 'publish queue full: ' + ', '.join(
                f'{count} dropped on {topic}' for topic, count in dropped.items()) +
                ' in the last period')
        else:
            stat.summary(DiagnosticStatus.OK, f'{published} messages published in the last '
                         'period')
        return stat

    def input_status(self, stat, name: str):
        """Fill the status of an input (the updater's callback)."""
        snapshot = self._current()
        item = self._inputs.get(name)
        if snapshot is None or item is None:
            stat.summary(DiagnosticStatus.OK, 'not configured')
            return stat
        last = item.last_message if item.last_message is not None else self.activated_at
        state = InputState(item.resolved_topic, item.deadline_missed, item.incompatible_qos,
                           time.monotonic() - last, self._get(f'{name}.stale_after_s'),
                           self._get(f'{name}.expected_rate_hz'), item.qos_conflict())
        return self._input_status(stat, name, snapshot.inputs[name], self._state_label(), state)

    def _input_status(self, stat, name: str, data: InputSnapshot, state_label: str,
                      state: InputState):
        stat.add('topic', state.topic)
        for key in INPUT_VALUES:
            stat.add(key, str(getattr(data, key)))
        stat.add('malformed_by_reason', json.dumps(data.malformed_by_reason))
        stat.add('deadline_missed', str(state.deadline_missed))
        stat.add('incompatible_qos', str(state.incompatible_qos))
        if state_label != 'active':
            stat.summary(DiagnosticStatus.OK, state_label)
            return stat
        before = self._previous.get(f'input {name}', {})
        counts = {'deadline_missed': state.deadline_missed,
                  'incompatible_qos': state.incompatible_qos}
        self._previous[f'input {name}'] = counts
        if state.silent_s >= state.stale_after_s:
            stat.summary(DiagnosticStatus.ERROR, f'no image for {state.silent_s:.1f} s '
                         f'(stale_after_s {state.stale_after_s:g}) on {state.topic}' +
                         (f'; {state.qos_conflict}' if state.qos_conflict else ''))
        elif state.expected_rate_hz and data.rate_hz < state.expected_rate_hz:
            stat.summary(DiagnosticStatus.WARN, f'rate {data.rate_hz:.1f} Hz below '
                         f'expected_rate_hz {state.expected_rate_hz:g}')
        elif any(counts[k] > before.get(k, 0) for k in counts):
            stat.summary(DiagnosticStatus.WARN, 'QoS events in the last period: deadline '
                         f'missed {state.deadline_missed}, incompatible '
                         f'{state.incompatible_qos}')
        else:
            stat.summary(DiagnosticStatus.OK, f'{data.rate_hz:.1f} Hz')
        return stat
