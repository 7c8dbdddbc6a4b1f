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
Admission: a frame checked, routed to its input's tasks and queued, or dropped with a reason.

Admission owns the inputs' counters and routes; the engine calls admit() under its lock.
"""

import math
from typing import Any, Dict, List, Optional, Tuple

from inferedge_orchestrator.config.model import OrchestratorConfig
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.engine.expiry import ExpiryIndex
from inferedge_orchestrator.engine.ledger import Ledger
from inferedge_orchestrator.engine.records import Submission
from inferedge_orchestrator.frames.checks import check_data
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.scheduling.queues import Entry
from inferedge_orchestrator.scheduling.task import TaskState
from inferedge_orchestrator.telemetry.counters import InputTelemetry

# Entry(...) through the NamedTuple's generated __new__ costs twice this on the per-frame path.
_new_entry = tuple.__new__


class Admission:
    """Checks, routes and queues submitted frames; counts what each input received."""

    def __init__(self, config: OrchestratorConfig, expiry: ExpiryIndex, ledger: Ledger):
        self.config = config
        self._expiry = expiry
        self._ledger = ledger
        self._fifo = config.mode == 'fifo'
        self.inputs: Dict[str, InputTelemetry] = {name: InputTelemetry()
                                                  for name in config.inputs}
        self.routes: Dict[str, List[TaskState]] = {name: [] for name in config.inputs}
        self.unknown_input = 0
        self._seq = 0

    def route(self, task: TaskState) -> None:
        """Feed task the frames of its inputs."""
        for name in task.config.inputs:
            self.routes[name].append(task)

    def count_decode_error(self, frame: Frame) -> None:
        """Count an accepted frame whose bytes failed to decode (whichever task saw it first)."""
        if not frame.decode_error_counted:
            self.inputs[frame.input].decode_errors += 1
            frame.decode_error_counted = True

    def admit(self, now: float, input_name: str, data: Any, age_s: Optional[float],
              encoding: Optional[str], meta: Any, malformed: str, admitting: Optional[str]
              ) -> Tuple[Submission, Optional[Frame], float]:
        """
        Count, check, route and queue one frame.

        admitting: None while the engine admits frames, else the reason its tasks drop them
        (deactivated, shutdown). Return (the Submission, the frame or None when refused, when
        the earliest frame it queued may become late).
        """
        inp = self.inputs.get(input_name)
        if inp is None:
            self.unknown_input += 1
            return Submission(False, reasons.UNKNOWN_INPUT), None, math.inf
        inp.received += 1
        image, encoded = None, None
        if not malformed:
            inp.rate.add(now)
            image, encoded, encoding, malformed = check_data(data, encoding,
                                                             self.config.max_image_pixels)
        if malformed:
            inp.malformed[malformed] = inp.malformed.get(malformed, 0) + 1
            return Submission(False, malformed), None, math.inf
        inp.accepted += 1
        config = self.config
        if age_s is None or age_s * 1000.0 < -config.max_stamp_lead_ms or \
                age_s * 1000.0 > config.max_stamp_age_ms:
            inp.stamp_fallback += 1  # out of range: age 0
            age_s = 0.0
        elif age_s < 0.0:  # a little ahead: within the clocks' offset, as stamped
            age_s = 0.0
        self._seq += 1
        frame = Frame(input_name, self._seq, now, age_s, image, encoded, encoding, meta)
        dropped, late_at = [], math.inf
        fifo = self._fifo
        for task in self.routes[input_name]:
            task.count_routed(now, age_s, input_name)
            if admitting:
                reason = admitting
            elif not task.enabled:
                reason = reasons.DISABLED
            elif not fifo and not task.admit(now):
                reason = reasons.RATE_LIMITED
            else:
                reason, queued_late_at = self._queue(task, frame, now)
                if queued_late_at < late_at:
                    late_at = queued_late_at
            if reason:
                self._ledger.drop_frame(task, frame, reason, now)
                dropped.append((task.name, reason))
        return Submission(True, '', frame.seq, tuple(dropped)), frame, late_at

    def _queue(self, task: TaskState, frame: Frame, now: float) -> Tuple[str, float]:
        """
        Queue frame for task; return (why it was refused or '', when it may become late).

        A full queue drops its oldest frame (counted here) or refuses the new one
        (queue_overflow). When it may become late: for a frame queued in a free place, the
        timer must look at it by then (inf otherwise).
        """
        pool = task.pool
        pool.advance(now)
        budgets = task.camera_budgets_s
        deadline = now + (task.budget_s if budgets is None else budgets[frame.input]) - frame.age
        queue_ = task.queue
        if len(queue_) >= queue_.capacity and not queue_.drop_oldest and task.drops_late and \
                not self._fifo:
            self._expiry.make_room(pool, task, now)  # its likely late frames make room
        out = queue_.push(_new_entry(Entry, (deadline, frame, task.lower_busy)))
        task.count_queued()
        late_at = self._expiry.queued(task, deadline)
        if out is None:
            return '', late_at
        if not self._fifo:
            task.risk.loss(reasons.QUEUE_OVERFLOW, pool.lower_running(task.priority) and
                           self._overflow_blocked(task, out))
        if out.frame is not frame:  # drop_oldest: an older frame made room
            self._ledger.drop_entries(task, [out], reasons.QUEUE_OVERFLOW, now)
            return '', math.inf
        return reasons.QUEUE_OVERFLOW, math.inf

    @staticmethod
    def _overflow_blocked(task: TaskState, out: Entry) -> bool:
        """
        Whether blocking explains an overflow of task's queue (a lower-priority job runs now).

        It does when the slot time lower-priority jobs held while the oldest queued frame waited
        would have run one of the task's own jobs (its median), which would have made room. A
        burst that overflows the queue while a short lower-priority job happens to run is the
        task's own loss: no limit on the other task would have prevented it. pool.advance(now)
        comes first.
        """
        entries = task.queue.entries
        since = min(out.lower_busy, entries[0].lower_busy) if entries else out.lower_busy
        blocking = task.lower_busy - since
        return blocking > 0.0 and blocking >= task.median_s
