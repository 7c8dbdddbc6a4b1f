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
Job traces: one JSON line per routed frame and task, with its timing and outcome.

A line: {"task", "input", "seq", "arrival", "age", "start", "end", "service", "outcome",
"reason"}; times in seconds since the engine started (arrival, start and end on the engine
clock; age is the frame's stamp age at arrival); start, end and service are null for a frame
that never ran. outcome: OK, FAILED, TIMED_OUT or DROPPED (reason: the drop or failure
reason). `simulate --trace` replays a trace under the virtual clock (simulation.py).
"""

import json
import threading
import time
from typing import IO, List, Optional

DROPPED = 'DROPPED'
FIELDS = ('task', 'input', 'seq', 'arrival', 'age', 'start', 'end', 'service', 'outcome',
          'reason')


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 9)  # ns: replays see the same times


class TraceRecorder:
    """
    Collects job records cheaply under the engine's lock; flush() writes them as JSON lines.

    The engine calls ran() and dropped() (under its lock), flush() from its timer (outside
    it) and close() when it stops.
    """

    def __init__(self, path: str):
        self.path = path
        self.origin = 0.0  # the engine clock at start: times are written relative to it
        self.records = 0
        self._pending: List[tuple] = []
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()
        self._stream: Optional[IO[str]] = open(path, 'w', encoding='utf-8')

    def ran(self, task: str, frame, start: float, end: float, outcome: str,
            reason: str) -> None:
        self._pending.append((task, frame.input, frame.seq, frame.arrival, frame.age, start,
                              end, outcome, reason))

    def dropped(self, task: str, frame, reason: str, now: float) -> None:
        self._pending.append((task, frame.input, frame.seq, frame.arrival, frame.age, None,
                              None, DROPPED, reason))

    def due(self, period_s: float = 0.5) -> bool:
        """Whether records are waiting and the last flush is period_s old."""
        return bool(self._pending) and time.monotonic() - self._flushed_at >= period_s

    def flush(self) -> None:
        with self._lock:
            self._flushed_at = time.monotonic()
            pending, self._pending = self._pending, []
            if self._stream is None or not pending:
                return
            origin = self.origin
            lines = []
            for task, input_name, seq, arrival, age, start, end, outcome, reason in pending:
                ran = start is not None
                lines.append(json.dumps(dict(zip(FIELDS, (
                    task, input_name, seq, _round(arrival - origin), _round(age),
                    _round(start - origin) if ran else None,
                    _round(end - origin) if ran else None,
                    _round(end - start) if ran else None, outcome, reason)))))
            self._stream.write('\n'.join(lines) + '\n')
            self._stream.flush()
            self.records += len(lines)

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None


def read_trace(path: str) -> List[dict]:
    """Return the records of a trace file; ValueError names the line of a malformed one."""
    records = []
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
            missing = [key for key in FIELDS if key not in record]
            if missing:
                raise ValueError(f'{path}:{number}: missing {", ".join(missing)}')
            records.append(record)
    return records
