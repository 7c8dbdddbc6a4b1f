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
The slot pool: slots (one worker thread each), the jobs they run, and the pool's accounting.

A pool is what tasks compete for: its free slots, the tasks it serves in priority order, busy
time (utilisation) and the blocking integral each task's frames wait behind lower-priority jobs.
The engine holds the lock around every call.
"""

import threading
from typing import List, Optional

from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.scheduling.task import TaskState

# Job states.
JOB_RUNNING, JOB_TIMED_OUT, JOB_ABANDONED = 0, 1, 2


class Slot:
    __slots__ = ('id', 'pool', 'job', 'retired', 'thread', 'inbox')

    def __init__(self, slot_id: int, pool: 'Pool'):
        self.id = slot_id
        self.pool = pool
        self.job: Optional[Job] = None
        self.retired = False
        self.thread: Optional[threading.Thread] = None
        self.inbox = None  # the back-end's hand-off queue, once it starts the slot


class Job:
    __slots__ = ('task', 'frame', 'deadline', 'slot', 'start', 'state', 'worker', 'blocking',
                 'probe', 'hold_probe', 'priority', 'batch', 'cost')

    def __init__(self, task: TaskState, frame: Frame, deadline: float, slot: Slot,
                 start: float, blocking: float):
        self.task = task
        self.frame = frame
        self.deadline = deadline
        self.slot = slot
        self.start = start
        self.state = JOB_RUNNING
        self.worker = task.worker
        self.blocking = blocking  # how long lower-priority jobs held the pool while it waited
        self.probe = False  # it ran although its prediction said late
        self.hold_probe = False  # it ran although the priority hold would have kept it back
        self.priority = task.priority  # its frame's (a camera's own priority may differ)
        # A batch (scheduling/batching.py): the jobs of its frames, this one first, each with
        # its own frame, deadline and blocking; the slot holds this one. None: one frame.
        self.batch: Optional[List['Job']] = None
        # What predicts its service time: its batch size's ServiceModel, or its task (whose
        # one-frame predictions bear the same names: median_s, fast_s).
        self.cost = task

    @property
    def members(self) -> List['Job']:
        """Return the jobs of its frames: its batch, or itself."""
        return self.batch or [self]


class Pool:
    """One pool: its slots, the free ones, and the tasks it serves (priority-sorted)."""

    def __init__(self, name: str, slots: int, backend):
        self.name = name
        self.backend = backend  # engine/backends.py: what runs the slots' jobs
        self.slots: List[Slot] = []
        self.free: List[Slot] = []
        self.tasks: List[TaskState] = []
        self.next_slot_id = 0
        self.retired = 0
        self.crashes = self.respawns = 0  # process isolation
        self.stuck: List[Slot] = []  # retired slots whose job has not returned yet
        self.busy_time = 0.0  # completed job time, slot-seconds
        self.period_busy = 0.0
        self.utilisation = 0.0
        self.floors = False
        self.mixed = False  # frames of more than one priority: blocking is possible
        self.camera_levels = []  # its tasks whose cameras stand at several priorities
        self.integral_time = 0.0  # when advance() last grew the tasks' lower_busy
        for _ in range(slots):
            self.add_slot()

    def add_slot(self) -> Slot:
        slot = Slot(self.next_slot_id, self)
        self.next_slot_id += 1
        self.slots.append(slot)
        self.free.append(slot)
        return slot

    def close_period(self, now: float, period_s: float) -> None:
        """End a telemetry period: its utilisation is the busy share of its slot time."""
        busy = self.busy_seconds(now)
        capacity = max(1, len(self.slots))
        self.utilisation = min(1.0, (busy - self.period_busy) / (period_s * capacity))
        self.period_busy = busy

    def busy_seconds(self, now: float) -> float:
        return self.busy_time + sum(now - s.job.start for s in self.slots if s.job is not None)

    def add_task(self, task) -> None:
        task.pool = self
        self.tasks.append(task)
        self.sort_tasks()

    def sort_tasks(self) -> None:
        """Order tasks by priority (the scheduler relies on it); call after any change."""
        self.tasks.sort(key=lambda t: (-t.priority, t.index))
        self.floors = any(t.config.min_rate_hz for t in self.tasks)
        # Tasks whose cameras stand at several priorities: refreshed before each dispatch.
        self.camera_levels = [t for t in self.tasks if t.camera_levels]
        priorities = sorted({t.priority for t in self.tasks}, reverse=True)
        self.mixed = len(priorities) > 1 or bool(self.camera_levels)
        for task in self.tasks:  # what a server's priority levels are mapped from
            task.priority_rank = priorities.index(task.priority)

    def advance(self, now: float) -> None:
        """
        Grow each task's lower_busy by the lower-priority work the pool ran since the last call.

        Call before a job starts or ends and before lower_busy is read: the running jobs are
        constant between calls.
        """
        elapsed = now - self.integral_time
        self.integral_time = now
        if elapsed <= 0.0 or not self.mixed:
            return
        if len(self.slots) == 1:  # the common case, without a list
            job = self.slots[0].job
            if job is None:
                return
            lowest = job.priority
            for task in self.tasks:  # priority-sorted
                if task.priority <= lowest:
                    return
                task.lower_busy += elapsed
            return
        running = [s.job.priority for s in self.slots if s.job is not None]
        if not running:
            return
        lowest = min(running)
        share = elapsed / len(self.slots)
        for task in self.tasks:  # priority-sorted
            priority = task.priority
            if priority <= lowest:
                break
            task.lower_busy += share * sum(1 for p in running if p < priority)

    def lower_running(self, priority: int) -> bool:
        """Whether a job of a priority below `priority` holds one of the pool's slots."""
        return any(s.job is not None and s.job.priority < priority for s in self.slots)

    def expected_free(self, now: float) -> List[float]:
        """When each slot is expected to be free: now, or its job's start + median service."""
        return [now if s.job is None else max(now, s.job.start + s.job.cost.median_s)
                for s in self.slots]

    def free_at(self, now: float) -> float:
        """When a slot is expected to be free, by the drop predictor of the jobs running."""
        if self.free or not self.slots:
            return now
        return max(now, min(s.job.start + s.job.cost.fast_s for s in self.slots
                            if s.job is not None))
