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
The choice of the next job for a free slot.

Priority mode: strict priority; within a priority level, earliest deadline first with ties to
the task that waited longest and equal shares of the slot time (level_order); each task's next
frame by its order (oldest_first | newest_first), a frame in time before a gamble. A rate floor
(min_rate_hz) runs a starved task first; a priority hold keeps a slot idle rather than start a
lower-priority job that would make an expected higher-priority frame miss its deadline. FIFO
mode: one arrival order across tasks. The tasks' predictions are their TaskState's (task.py).
"""

import heapq
import math
from typing import Callable, List, Optional, Sequence, Tuple

from inferedge_orchestrator.scheduling.queues import Entry
from inferedge_orchestrator.scheduling.task import TaskState


def hold_for(candidate: TaskState, tasks: List[TaskState], now: float,
             duration: Optional[float] = None) -> Tuple[Optional[TaskState], float]:
    """
    Return (the higher-priority task whose expected frame would be lost, when to look again).

    Starting candidate's job ends at now + its high (p95) service time. A higher-priority task
    whose next frame is expected before then would start only at that end, after the tasks
    above it that are also expected by then, and finish after its own high service time: if
    that is past the frame's deadline, the job must not start. Nor if more of its frames would
    arrive before that frame could start than its queue holds (the job would make it drop one:
    queue_overflow), when a later start could avoid that (otherwise holding would starve the
    candidate for nothing).
    """
    end = now + (candidate.predicted_s if duration is None else duration)
    ahead = 0.0  # work of the tasks above `other` whose frames come before the job ends
    for other in tasks:  # priority-sorted: only the ones before candidate matter
        if other.priority <= candidate.priority:
            break
        if not other.config.enabled:
            continue
        frame = other.next_expected_frame(now)
        if frame is None or frame[0] >= end:
            continue
        expected, deadline = frame
        if end + ahead + other.predicted_s > deadline:
            return other, other.expectation_ends()
        interval = other.mean_interarrival
        if interval:
            arriving = 1 + int((end + ahead - expected) / interval)
            # Only worth holding if a later start can avoid the overflow: started just after
            # `other` took a frame, the job and the work above must end before the queue fills.
            avoidable = end - now + ahead <= (other.queue.capacity + 1) * interval - \
                other.predicted_s
            if avoidable and len(other.queue) + arriving > other.queue.capacity:
                return other, other.expectation_ends()
        ahead += other.predicted_s
    return None, math.inf


def probes_hold(candidate: TaskState, tasks: List[TaskState], now: float) -> bool:
    """
    Whether a held candidate runs anyway: a probe of a hold its worker's own guess disputes.

    The hold trusts the candidate's measured p95; a task held every time is never measured
    again, so one slow start (seen: a classifier's first runs at 108 ms, 3 ms after) would
    hold it for good. When the worker's warm-up time (expected_s) would not be held, the
    measurement may be stale: after PROBE_AFTER held frames the next one runs, spaced out
    like the drop probes while probes confirm the measurement. Only a probe faster than the
    measured fast quantile disputes it (a noisy task's runs are mostly under its p95: counting
    those as news probed it every few frames, each a gamble with the higher task's frame).
    """
    return (candidate.expected_s > 0.0 and candidate.may_probe_hold(now) and
            hold_for(candidate, tasks, now, candidate.expected_s)[0] is None)


def level_order(level: List[TaskState], now: float, free_at: Sequence[float] = ()
                ) -> List[TaskState]:
    """
    Order the ready tasks of one priority level: the first one's next frame runs now.

    Earliest deadline first, with ties to the task that waited longest (the oldest last
    start); docs/scheduling.md gives the reasons. A tie: running that task first keeps as many
    of the level's queued frames expected in time (each run for its task's median service on
    the slot that frees first; free_at: when each slot of the pool is expected to be free,
    default one slot free now) as the earliest-deadline order does. A task owed its share of
    the slot time (share_s, charged a median per job; its charge after this job still no more
    than the most charged task's) goes first; an idle task banks no more than one round of
    the level (every ready task's median). A gamble (not in time started now: now +
    in_time_s after its deadline) never goes ahead of a frame in time, unless its task is
    owed and its median run fits; when all are gambles, the longest waiting task whose median
    run fits goes first.
    """
    nexts = {task: task.next_entry(now) for task in level}
    frames = sorted(((entry, task) for task in level for entry in task.queue.entries),
                    key=lambda item: (item[0].deadline, item[1].last_start, item[1].index))
    free_at = sorted(free_at) if free_at else [now]
    planned = _in_time(frames, free_at)
    waited = sorted(level, key=lambda t: (t.last_start, nexts[t].deadline, t.index))
    floor = max(t.share_s for t in level) - sum(t.median_s for t in level)
    for task in level:
        if task.share_s < floor:
            task.share_s = floor
    charged = sorted(t.share_s for t in level)
    first = None
    for task in waited:
        entry = nexts[task]
        leader = charged[-2] if task.share_s >= charged[-1] else charged[-1]
        owed = task.share_s + task.median_s <= leader
        if now + task.in_time_s > entry.deadline:  # a gamble: never ahead of a frame in time,
            if owed and now + task.median_s <= entry.deadline:  # unless owed and likely to fit
                first = task
                break
            continue
        if owed:
            first = task
            break
        rest = [item for item in frames if item[0] is not entry]
        if 1 + _in_time(rest, [now + task.median_s] + free_at[1:]) >= planned:
            first = task
            break
    if first is None:  # stable: in waited order
        first = min(waited, key=lambda t: now + t.median_s > nexts[t].deadline)
    others = sorted((t for t in level if t is not first),
                    key=lambda t: (nexts[t].deadline, t.last_start, t.index))
    return [first] + others


def _in_time(frames: List[Tuple[Entry, TaskState]], free_at: List[float]) -> int:
    """Count the frames expected in time when run in this order on slots free at free_at."""
    free_at = list(free_at)
    heapq.heapify(free_at)
    count = 0
    for entry, task in frames:
        end = free_at[0] + task.median_s
        if end <= entry.deadline:
            count += 1
            heapq.heapreplace(free_at, end)
    return count


def select_priority(tasks: List[TaskState], now: float, last_free_slot: bool,
                    priority_hold: bool, floors: bool = True,
                    free_at: Callable[[], Sequence[float]] = tuple
                    ) -> Tuple[Optional[TaskState], List[Tuple]]:
    """
    Pick the task whose next frame runs now; tasks are the pool's, priority-sorted.

    floors: whether any task of the pool has a min_rate_hz; free_at: when the pool's slots are
    expected to be free (see level_order), called only for a level of several tasks. Returns
    (task or None, holds) where holds lists (held task, blocking task, wake time).
    """
    if not floors:
        # Fast path: the highest priority with frames, ordered within its level.
        best, level = None, None
        for task in tasks:
            if not task.queue.entries:
                continue
            if best is None:
                best = task
            elif task.priority < best.priority:
                break
            elif level is None:
                level = [best, task]
            else:
                level.append(task)
        if best is None:
            return None, []
        if level is not None:
            best = level_order(level, now, free_at())[0]
        if not (priority_hold and last_free_slot) or hold_for(best, tasks, now)[0] is None or \
                probes_hold(best, tasks, now):
            return best, []
    ready = [t for t in tasks if t.queue.entries]
    # Rate floor first: a task that would be below min_rate_hz over the last second at its next
    # chance (when the job of the highest-priority task with frames ends) runs ahead of
    # priority.
    starved = [t for t in ready if t.config.min_rate_hz and t.started_rate.rate_at(
        now + (ready[0].median_s if t is not ready[0] else 0.0), now) < t.config.min_rate_hz]
    candidates = _by_priority(starved, now, free_at)
    candidates += _by_priority([t for t in ready if t not in starved], now, free_at)
    holds = []
    for task in candidates:
        if priority_hold and last_free_slot:
            blocker, wake = hold_for(task, tasks, now)
            if blocker is not None and not probes_hold(task, tasks, now):
                holds.append((task, blocker, wake))
                continue
        return task, holds
    return None, holds


def _by_priority(ready: List[TaskState], now: float,
                 free_at: Callable[[], Sequence[float]]) -> List[TaskState]:
    """Order priority-sorted ready tasks: by priority, each level by level_order."""
    ordered = []
    start = 0
    for end in range(1, len(ready) + 1):
        if end == len(ready) or ready[end].priority != ready[start].priority:
            level = ready[start:end]
            ordered += level_order(level, now, free_at()) if len(level) > 1 else level
            start = end
    return ordered


def select_fifo(tasks: List[TaskState]) -> Optional[TaskState]:
    """Pick the task holding the earliest-arrived frame (ties: the task listed first)."""
    best = None
    best_key = None
    for task in tasks:
        head = task.queue.head()
        if head is None:
            continue
        key = (head.frame.seq, task.index)
        if best_key is None or key < best_key:
            best, best_key = task, key
    return best
