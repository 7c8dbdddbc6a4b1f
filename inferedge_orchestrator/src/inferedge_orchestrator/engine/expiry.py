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
The expiry index: queued frames that can no longer make their deadline leave their queue.

It alone reads and writes the late-frame cache: when the next queued frame may become late, so
that the scan runs only when one is due. The rule itself (the drop predictor) is described in
docs/scheduling.md and below.
"""

import math
from typing import Dict, List, Optional

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.engine.ledger import Ledger
from inferedge_orchestrator.engine.pool import Pool
from inferedge_orchestrator.scheduling.queues import Entry
from inferedge_orchestrator.scheduling.task import TaskState


class ExpiryIndex:
    """Drops queued frames that cannot make their deadline; knows when the next one may."""

    def __init__(self, pools: Dict[str, Pool], ledger: Ledger, fifo: bool):
        self._pools = pools
        self._ledger = ledger
        self._fifo = fifo  # FIFO never expires frames
        self._next_late = -math.inf  # when the next queued frame becomes late; -inf: rescan

    def queued(self, task: TaskState, deadline: float) -> float:
        """Note a frame of task queued with deadline; return when it may become late."""
        late_at = deadline - task.fast_s
        if late_at < self._next_late:
            self._next_late = late_at
        return late_at

    def sooner(self, seconds: float) -> None:
        """Note that queued frames may become late sooner by seconds (a prediction grew)."""
        self._next_late -= seconds

    def rescan(self) -> None:
        """Forget the cache: the next expire() scans every queue (a task's settings changed)."""
        self._next_late = -math.inf

    def expire(self, now: float) -> float:
        """
        Drop queued frames that cannot make their deadline; return when the next one may.

        expired: the deadline has passed; predicted_late: the drop predictor says the frame
        would end after it.
        """
        if self._fifo:
            return math.inf
        if now < self._next_late:
            return self._next_late  # nothing can be late before then: skip the scan
        wake = math.inf
        for pool in self._pools.values():
            pool_wake = self._expire_pool(pool, now)
            if pool_wake < wake:
                wake = pool_wake
        self._next_late = wake
        return wake

    def make_room(self, pool: Pool, task: TaskState, now: float) -> None:
        """Let the likely late frames of task's full drop_newest queue make room for a new one."""
        self._next_late = min(self._next_late, self._expire_pool(pool, now, making_room=task))

    def _expire_pool(self, pool: Pool, now: float,
                     making_room: Optional[TaskState] = None) -> float:
        """
        Expire the frames of one pool's tasks; return when its next queued frame becomes late.

        The drop predictor: a frame of task T can start once a slot is free (the jobs running
        end after their fast service time) and the queued work of higher-priority tasks is
        done (their frames times their fast service time, per slot), and it ends T's fast
        service time later. A frame predicted to end after its deadline is likely late: it no
        longer counts in the wait of lower-priority tasks, and it goes when a new frame of T
        needs its place in a full drop_newest queue (making_room). Otherwise it stays queued
        while it could still make it, were the work ahead to end at once (the times ahead are
        estimates and some jobs end faster), and is dropped predicted_late once its fast
        service from now would end after its deadline; frames past their deadline go
        (expired). A task that has had PROBE_AFTER predicted_late drops of frames late from
        their arrival by its own fast service time since its last job started keeps its
        freshest late frame when all are late (a probe, spaced out while probes end late), so
        that a stale prediction is measured again.
        """
        wake = math.inf
        free_at = None  # computed for the first task that drops late frames
        capacity = len(pool.slots) or 1
        ahead = 0.0  # queued work of the tasks of higher priority, per slot (s)
        level_priority, level_work = None, 0.0
        for task in pool.tasks:  # priority-sorted
            entries = task.queue.entries
            if not entries:
                continue
            if task.priority != level_priority:
                ahead += level_work
                level_priority, level_work = task.priority, 0.0
            # A held task lets lower ones overtake.
            waits = task.held_seq < 0 or all(entry.frame.seq != task.held_seq
                                             for entry in entries)
            if not task.drops_late:
                if waits:
                    level_work += len(entries) * task.fast_s / capacity
                continue
            if free_at is None:
                free_at = pool.free_at(now)
            in_time, late_at = self._expire_task(pool, task, now, free_at + ahead,
                                                 task is making_room)
            wake = min(wake, late_at)
            if waits:
                level_work += in_time * task.fast_s / capacity
        return wake

    def _expire_task(self, pool: Pool, task: TaskState, now: float, start: float,
                     making_room: bool):
        """
        Expire the late frames of one task whose next frame would start at start.

        Return (its frames that can still make it from start, when its next one becomes late).
        """
        queue_ = task.queue
        fast = task.fast_s
        if queue_.earliest_deadline >= start + fast:  # the common case: none likely late
            return len(queue_.entries), queue_.earliest_deadline - fast
        drop_before = start + fast if making_room else now + fast
        if queue_.earliest_deadline < drop_before:
            pool.advance(now)  # the blocking of the frames dropped
            expired, late = queue_.take_late(now, drop_before, task.may_probe(now))
            self._drop_late(task, expired, reasons.EXPIRED, now)
            self._drop_late(task, late, reasons.PREDICTED_LATE, now)
            # Late on arrival by its own prediction: only a probe would measure it again.
            task.late_streak += sum(1 for entry in late
                                    if entry.frame.arrival + fast > entry.deadline)
        in_time, wake = 0, math.inf
        for entry in queue_.entries:
            in_time += entry.deadline >= start + fast
            # A probe that stayed is looked at again when it expires.
            late_at = entry.deadline if entry.deadline < now + fast else entry.deadline - fast
            wake = min(wake, late_at)
        return in_time, wake

    def _drop_late(self, task: TaskState, entries: List[Entry], reason: str,
                   now: float) -> None:
        """Drop late entries; each is a loss, blocked if lower-priority work explains it."""
        if not entries:
            return
        self._ledger.drop_entries(task, entries, reason, now)
        finish = now + task.fast_s
        risk = task.risk
        for entry in entries:
            blocking = task.lower_busy - entry.lower_busy
            blocked = blocking > 0.0 and finish - blocking <= entry.deadline
            risk.loss(reason, blocked)
            if blocked:
                risk.blocking.append(blocking)
