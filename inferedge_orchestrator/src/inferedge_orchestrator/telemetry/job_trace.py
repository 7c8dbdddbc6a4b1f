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
Job traces: one JSON line per routed frame and task, with its timing and outcome; the decisions.

A job line: {"task", "input", "seq", "arrival", "age", "budget", "start", "end", "service",
"outcome", "reason"}; times in seconds since the engine started (arrival, start and end on the
engine clock; age is the frame's stamp age at arrival; budget is the latency budget of the
frame's camera when it left); start, end and service are null for a frame that never ran.
outcome: OK, FAILED, TIMED_OUT or DROPPED (reason: the drop or failure reason). A decision
line: {"decision": Decision.to_dict()}, its time on the same scale. `simulate --trace` replays
the job lines under the virtual clock (simulation.py); `plot` draws both (tools/timeline.py).
"""

from dataclasses import dataclass, fields, MISSING
import json
import threading
import time
from typing import IO, List, Optional

from inferedge_orchestrator.telemetry.decisions import Decision

DROPPED = 'DROPPED'
FIELDS = ('task', 'input', 'seq', 'arrival', 'age', 'budget', 'start', 'end', 'service',
          'outcome', 'reason')
DECISION = 'decision'  # the key of a decision line
# What a decision line must hold: the fields of Decision without a default.
DECISION_FIELDS = tuple(f.name for f in fields(Decision)
                        if f.default is MISSING and f.default_factory is MISSING)


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 9)  # ns: replays see the same times


class TraceRecorder:
    """
    Collects job records cheaply under the engine's lock; flush() writes them as JSON lines.

    The engine calls ran() and dropped() (under its lock), decided() as it delivers decisions,
    flush() from its timer (outside its lock) and close() when it stops.
    """

    def __init__(self, path: str):
        self.path = path
        self.origin = 0.0  # the engine clock at start: times are written relative to it
        self.records = 0
        self._pending: List[tuple] = []
        self._decisions: List[Decision] = []
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()
        self._stream: Optional[IO[str]] = open(path, 'w', encoding='utf-8')

    def ran(self, task: str, frame, budget: float, start: float, end: float, outcome: str,
            reason: str) -> None:
        self._pending.append((task, frame.input, frame.seq, frame.arrival, frame.age, budget,
                              start, end, outcome, reason))

    def dropped(self, task: str, frame, budget: float, reason: str) -> None:
        self._pending.append((task, frame.input, frame.seq, frame.arrival, frame.age, budget,
                              None, None, DROPPED, reason))

    def decided(self, decision: Decision) -> None:
        self._decisions.append(decision)

    def due(self, period_s: float = 0.5) -> bool:
        """Whether records are waiting and the last flush is period_s old."""
        return bool(self._pending or self._decisions) and \
            time.monotonic() - self._flushed_at >= period_s

    def flush(self) -> None:
        with self._lock:
            self._flushed_at = time.monotonic()
            pending, self._pending = self._pending, []
            decisions, self._decisions = self._decisions, []
            if self._stream is None or not (pending or decisions):
                return
            origin = self.origin
            lines = []
            for task, input_name, seq, arrival, age, budget, start, end, outcome, reason \
                    in pending:
                ran = start is not None
                lines.append(json.dumps(dict(zip(FIELDS, (
                    task, input_name, seq, _round(arrival - origin), _round(age),
                    _round(budget), _round(start - origin) if ran else None,
                    _round(end - origin) if ran else None,
                    _round(end - start) if ran else None, outcome, reason)))))
            self.records += len(lines)
            for decision in decisions:
                lines.append(json.dumps({DECISION: dict(
                    decision.to_dict(), time=_round(decision.time - origin))}))
            self._stream.write('\n'.join(lines) + '\n')
            self._stream.flush()

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None


@dataclass
class TraceContents:
    """A trace file's job lines and decision lines (dicts, as written), in file order."""

    jobs: List[dict]
    decisions: List[dict]


def read_trace_contents(path: str) -> TraceContents:
    """Return the job and decision lines of a trace file; ValueError names a malformed line."""
    contents = TraceContents([], [])
    with open(path, encoding='utf-8') as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise ValueError(f'{path}:{number}: not a JSON line: {error}') from None
            if not isinstance(record, dict):
                raise ValueError(f'{path}:{number}: not a JSON object')
            if DECISION in record:
                record, keys, into = record[DECISION], DECISION_FIELDS, contents.decisions
                if not isinstance(record, dict):
                    raise ValueError(f'{path}:{number}: {DECISION} is not a JSON object')
            else:
                keys, into = FIELDS, contents.jobs
            missing = [key for key in keys if key not in record]
            if missing:
                raise ValueError(f'{path}:{number}: missing {", ".join(missing)}')
            into.append(record)
    return contents


def read_trace(path: str) -> List[dict]:
    """Return the job records of a trace file; ValueError names the line of a malformed one."""
    return read_trace_contents(path).jobs
