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
The node's /diagnostics statuses: one per task and one per input, from the typed snapshot.

A status compares the counts with those of its previous update, so that it reports what
happened in the last period (a failure an hour ago is no error now).
"""

from dataclasses import dataclass
import json
from typing import Any, Dict

from diagnostic_msgs.msg import DiagnosticStatus
from inferedge_orchestrator import InputSnapshot, reasons, Snapshot

TASK_VALUES = ('priority', 'routed', 'executed', 'completed_within_budget', 'failed', 'dropped',
               'queued', 'in_flight', 'shed_limit_hz', 'executed_rate_hz')
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


class Diagnostics:
    """Statuses with the counts of their previous update."""

    def __init__(self):
        self._previous: Dict[str, Dict[str, Any]] = {}

    def reset(self) -> None:
        self._previous.clear()

    def task_status(self, stat, task: str, snapshot: Snapshot, state_label: str):
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

    def input_status(self, stat, name: str, data: InputSnapshot, state_label: str,
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
                         f'(stale_after_s {state.stale_after_s:g}) on {state.topic}')
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
