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
Dispatch: expiring late frames (the drop predictor) and starting jobs on free slots.

A mixin of Engine (engine.py); the rules themselves are in scheduling/ (policy.py).
"""

import math
import time
from typing import Optional

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.engine.pool import Job, Pool
from inferedge_orchestrator.engine.records import PAUSED, RUNNING
from inferedge_orchestrator.scheduling.policy import (PROBE_AFTER, select_fifo, select_priority,
                                                      TaskState)


class Dispatch:
    """Expiry of late frames (the drop predictor) and the start of jobs on free slots."""

    def _expire(self, now: float) -> float:
        """
        Drop queued frames that cannot make their deadline; return when the next one may.

        expired: the deadline has passed; predicted_late: the drop predictor (docs/scheduling.md)
        says the frame would end after it.
        """
        if self._fifo:
            return math.inf  # FIFO never expires frames
        if now < self._next_late:
            return self._next_late  # nothing can be late before then: skip the scan
        wake = math.inf
        for pool in self._pools.values():
            wake = min(wake, self._expire_pool(pool, now))
        self._next_late = wake
        return wake

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
            queue_ = task.queue
            entries = queue_.entries
            if not entries:
                continue
            if task.priority != level_priority:
                ahead += level_work
                level_priority, level_work = task.priority, 0.0
            fast = task.fast_s
            # A held task lets lower ones overtake.
            waits = task.held_seq < 0 or all(entry[1].seq != task.held_seq for entry in entries)
            if not task.drops_late:
                if waits:
                    level_work += len(entries) * fast / capacity
                continue
            if free_at is None:
                free_at = pool.free_at(now)
            start = free_at + ahead  # the predicted start of its next frame
            if queue_.earliest_deadline >= start + fast:  # the common case: none likely late
                if waits:
                    level_work += len(entries) * fast / capacity
                if queue_.earliest_deadline - fast < wake:
                    wake = queue_.earliest_deadline - fast
                continue
            drop_before = start + fast if task is making_room else now + fast
            if queue_.earliest_deadline < drop_before:
                pool.advance(now)  # the blocking of the frames dropped
                expired, late = queue_.take_late(now, drop_before, task.may_probe(now))
                self._drop_late(task, expired, reasons.EXPIRED, now)
                self._drop_late(task, late, reasons.PREDICTED_LATE, now)
                # Late on arrival by its own prediction: only a probe would measure it again.
                task.late_streak += sum(1 for entry in late if entry[1].arrival + fast > entry[0])
            in_time = 0
            for entry in queue_.entries:
                in_time += entry[0] >= start + fast
                # A probe that stayed is looked at again when it expires.
                late_at = entry[0] if entry[0] < now + fast else entry[0] - fast
                if late_at < wake:
                    wake = late_at
            if waits:
                level_work += in_time * fast / capacity
        return wake

    def _drop_late(self, task: TaskState, entries: list, reason: str, now: float) -> None:
        """Drop late entries; each is a loss, blocked if lower-priority work explains it."""
        if not entries:
            return
        self._drop_entries(task, entries, reason, now)
        finish = now + task.fast_s
        risk = task.risk
        for deadline, _, lower_at in entries:
            blocking = task.lower_busy - lower_at
            blocked = blocking > 0.0 and finish - blocking <= deadline
            risk.loss(reason, blocked)
            if blocked:
                risk.blocking.append(blocking)

    def _dispatch(self, now: float) -> float:
        """Start jobs on free slots; return when a held slot should be looked at again."""
        wake = self._expire(now)
        if self._state not in (RUNNING, PAUSED):
            return wake
        hold = self.config.priority_hold
        for pool in self._pools.values():
            if pool.backend.down:  # its server is unreachable: nothing it queues can run
                for task in pool.tasks:
                    if task.queue.entries:
                        self._drop_entries(task, task.queue.clear(), reasons.SERVER_UNAVAILABLE,
                                           now)
                continue
            if pool.free:
                pool.advance(now)
            while pool.free:
                if self._fifo:
                    task = select_fifo(pool.tasks)
                else:
                    task, holds = select_priority(pool.tasks, now, len(pool.free) == 1, hold,
                                                  pool.floors,
                                                  lambda: pool.expected_free(now))
                    for held, _, hold_wake in holds:
                        seq = held.next_entry(now)[1].seq
                        if held.held_seq != seq:
                            held.held_seq = seq
                            held.hold_streak += 1
                            held.telemetry.held_for_priority += 1
                        wake = min(wake, hold_wake)
                if task is None:
                    break
                deadline, frame, lower_at = task.queue.take(task.next_entry(now))
                slot = pool.free.pop()
                blocking = task.lower_busy - lower_at
                job = Job(task, frame, deadline, slot, now, blocking)
                slot.job = job
                task.in_flight += 1
                job.probe = task.late_streak >= PROBE_AFTER
                job.hold_probe = task.hold_streak >= PROBE_AFTER and not job.probe
                task.late_streak = task.hold_streak = 0
                task.started_rate.add(now)
                task.last_start = now
                task.share_s += task.median_s
                task.risk.blocking.append(blocking)
                if task.config.timeout_ms:  # the timer must look at it when it times out
                    wake = min(wake, now + task.config.timeout_ms / 1000.0)
                if self.virtual:
                    self.virtual_start(job)
                else:
                    job.handed = time.monotonic()
                    pool.backend.hand(slot, job)
        return wake
