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
from inferedge_orchestrator.scheduling.batching import plan_batch
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
                filled_at = self.batch_wait(task, now) if task.batching and not self._fifo \
                    else 0.0
                if filled_at:  # the slot waits for the batch to fill, no longer than its delay
                    wake = min(wake, filled_at)
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
        """Start task's next frame (and its batch mates) on a free slot; return its timeout."""
        queue_ = task.queue  # FIFO: its head, in arrival order across its cameras
        if self._fifo:
            lead, mates = queue_.pop(), []
        else:
            lead = task.next_entry(now)
            if task.batching:
                lead, *mates = self._batch(task, lead, now)
            else:
                mates = []
            queue_.take(lead)
            for mate in mates:
                queue_.take(mate)
        slot = pool.free.pop()
        job = self._job(task, lead, slot, now)
        job.probe = task.late_streak >= PROBE_AFTER
        job.hold_probe = task.hold_streak >= PROBE_AFTER and not job.probe
        if mates:
            job.batch = [job] + [self._job(task, mate, slot, now) for mate in mates]
            job.cost = task.batching.models[len(job.batch)]
            share = job.cost.median_s / len(job.batch)
        else:
            share = None
        slot.job = job
        for member in job.members:
            task.count_start(now, member.frame.input, share)
            task.risk.blocking.append(member.blocking)
        if task.batching:
            task.telemetry.count_batch(len(job.members))
        pool.backend.hand(slot, job)
        # The timer must look at the job when it times out.
        return now + task.timeout_s if task.timeout_s else math.inf

    @staticmethod
    def _job(task: TaskState, entry, slot, now: float) -> Job:
        deadline, frame, lower_at = entry
        return Job(task, frame, deadline, slot, now, task.lower_busy - lower_at)

    @staticmethod
    def _batch(task: TaskState, lead, now: float) -> list:
        """Return the queued entries of the next job, its lead first (scheduling/batching)."""
        return plan_batch(task.batching, now, lead, task.queue.entries, task.service)[0]

    def batch_wait(self, task: TaskState, now: float) -> float:
        """
        Return until when task's batch may wait to fill (max_batch_delay_ms), or 0: not.

        It waits only while its queue holds fewer frames than max_batch, its oldest frame has
        waited less than the delay, and its frames would still end in time at the largest
        size's in-time bound once the wait is over.
        """
        costs = task.batching
        delay = task.config.max_batch_delay_ms / 1000.0
        entries = task.queue.entries
        if not costs or not delay or len(entries) >= costs.max_batch:
            return 0.0
        until = min(entry.frame.submitted for entry in entries) + delay
        largest = costs.models[costs.max_batch]
        if until <= now or task.queue.earliest_deadline < until + largest.in_time_s:
            return 0.0
        return until
