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

"""Dispatch: the jobs that start on free slots, chosen by the rules of scheduling/policy.py."""

import math
from typing import Dict

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.engine.expiry import ExpiryIndex
from inferedge_orchestrator.engine.ledger import Ledger
from inferedge_orchestrator.engine.pool import Job, Pool
from inferedge_orchestrator.scheduling.policy import select_fifo, select_priority
from inferedge_orchestrator.scheduling.task import PROBE_AFTER, TaskState


class Dispatcher:
    """Starts jobs on the free slots of every pool; the engine calls it under its lock."""

    def __init__(self, pools: Dict[str, Pool], expiry: ExpiryIndex, ledger: Ledger,
                 fifo: bool, priority_hold: bool):
        self._pools = pools
        self._expiry = expiry
        self._ledger = ledger
        self._fifo = fifo
        self.priority_hold = priority_hold

    def dispatch(self, now: float, running: bool) -> float:
        """
        Expire late frames, then start jobs on free slots while running (or paused).

        Return when a held slot or a queued frame should be looked at again.
        """
        for pool in self._pools.values():
            # sum(), not any(): every task is refreshed; sorted again if one changed.
            if pool.camera_levels and sum(t.refresh_priority() for t in pool.camera_levels):
                pool.sort_tasks()
        wake = self._expiry.expire(now)
        if not running:
            return wake
        for pool in self._pools.values():
            if pool.backend.down:  # its server is unreachable: nothing it queues can run
                for task in pool.tasks:
                    if task.queue.entries:
                        self._ledger.drop_entries(task, task.queue.clear(),
                                                  reasons.SERVER_UNAVAILABLE, now)
                continue
            if pool.free:
                pool.advance(now)
            while pool.free:
                task, held_wake = self._select(pool, now)
                if held_wake < wake:
                    wake = held_wake
                if task is None:
                    break
                timeout_at = self._start(pool, task, now)
                if timeout_at < wake:
                    wake = timeout_at
        return wake

    def _select(self, pool: Pool, now: float):
        """Return (the task whose frame runs now or None, when a held one may run)."""
        if self._fifo:
            return select_fifo(pool.tasks), math.inf
        task, holds = select_priority(pool.tasks, now, len(pool.free) == 1,
                                      self.priority_hold, pool.floors,
                                      lambda: pool.expected_free(now))
        wake = math.inf
        for held, _, hold_wake in holds:
            held.count_held(held.next_entry(now).frame.seq)
            wake = min(wake, hold_wake)
        return task, wake

    def _start(self, pool: Pool, task: TaskState, now: float) -> float:
        """Start task's next frame on a free slot; return when its timeout is due."""
        queue_ = task.queue  # FIFO: its head, in arrival order across its cameras
        entry = queue_.pop() if self._fifo else queue_.take(task.next_entry(now))
        deadline, frame, lower_at = entry
        slot = pool.free.pop()
        blocking = task.lower_busy - lower_at
        job = Job(task, frame, deadline, slot, now, blocking)
        job.probe = task.late_streak >= PROBE_AFTER
        job.hold_probe = task.hold_streak >= PROBE_AFTER and not job.probe
        slot.job = job
        task.count_start(now, frame.input)
        task.risk.blocking.append(blocking)
        pool.backend.hand(slot, job)
        # The timer must look at the job when it times out.
        return now + task.timeout_s if task.timeout_s else math.inf
