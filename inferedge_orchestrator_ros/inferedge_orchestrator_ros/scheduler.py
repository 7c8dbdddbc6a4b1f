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
Per-task scheduling state and the choice of the next job for a free slot.

Priority mode: strict priority, then earliest deadline of each task's next frame, then the
task's order (oldest_first | newest_first). A rate floor (min_rate_hz) runs a starved task
first; a priority hold keeps a slot idle rather than start a lower-priority job that would make
an expected higher-priority frame miss its deadline. FIFO mode: one arrival order across tasks.
"""

from collections import deque
import math
from typing import Dict, List, Optional, Tuple

from inferedge_orchestrator_ros.config import TaskConfig
from inferedge_orchestrator_ros.queues import TaskQueue
from inferedge_orchestrator_ros.telemetry import RateMeter
from inferedge_orchestrator_ros.telemetry import TaskTelemetry

SERVICE_HISTORY = 50  # service times kept for the predictions
MIN_SAMPLES = 5  # measurements before the predictions replace expected_latency_ms
# The drop predictor: a frame is predicted late only if even this quantile of the task's recent
# service times cannot finish it in time, so a dropped frame had at most this chance to make it.
LIKELY_QUANTILE = 0.25
# The hold predictor (and predicted_service_ms): a quantile that a job rarely exceeds.
HIGH_QUANTILE = 0.95
# After this many consecutive predicted_late drops the task's next frame runs anyway (a probe),
# so a prediction that has gone stale is measured again instead of dropping every frame.
PROBE_AFTER = 3
INTERARRIVAL_SMOOTHING = 0.1
IDLE_INTERARRIVALS = 2.0  # a source silent for this many mean intervals is not expected


def quantile(ordered: List[float], q: float) -> float:
    """Return the nearest-rank quantile q (0 < q <= 1) of a sorted, non-empty list."""
    return ordered[min(len(ordered) - 1, max(0, int(math.ceil(q * len(ordered))) - 1))]


class RiskSignals:
    """
    What one shedding tick saw of a task, with each loss attributed.

    A loss (a frame dropped as expired, predicted_late or queue_overflow, a deadline miss or a
    timeout) is blocked when lower-priority work explains it: without the time a lower-priority
    job held the slot while the frame waited, it would have made its deadline (by the drop
    predictor), or, for an overflow, a lower-priority job was running. Every other loss is
    explained by the task's own service time and by higher-priority work.
    """

    __slots__ = ('blocked', 'own', 'end_to_end', 'unblocked_end_to_end', 'blocking', 'service')

    def __init__(self):
        self.blocked: Dict[str, int] = {}  # reason -> losses that blocking explains
        self.own: Dict[str, int] = {}  # reason -> losses it does not
        self.end_to_end: List[float] = []  # executed frames (s)
        self.unblocked_end_to_end: List[float] = []  # the same, less each frame's blocking
        self.blocking: List[float] = []  # per started frame (s)
        self.service: List[float] = []  # per executed frame (s)

    def loss(self, reason: str, blocked: bool, count: int = 1) -> None:
        counts = self.blocked if blocked else self.own
        counts[reason] = counts.get(reason, 0) + count


class TaskState:
    """Everything the engine tracks about one task at run time."""

    def __init__(self, config: TaskConfig, index: int, window_s: float, window_samples: int):
        self.config = config
        self.name = config.name
        self.index = index
        self.queue = TaskQueue(config.queue_size, config.drop_policy, config.order)
        self.telemetry = TaskTelemetry(window_s, window_samples)
        self.worker = None
        self.pool = None  # the engine's pool object that runs the task
        self.in_flight = 0
        self.busy_s = 0.0  # slot time its jobs took, since start (s)
        self.expected_s = config.expected_latency_ms / 1000.0
        self._service = deque(maxlen=SERVICE_HISTORY)
        self.predicted_s = self.expected_s  # high quantile: holds, telemetry
        self.likely_s = self.expected_s  # low quantile: predicted_late
        self.median_s = self.expected_s  # the load a job adds
        self.late_streak = 0  # predicted_late drops since the task's last job started
        # Slot-seconds of lower-priority jobs on the pool, divided by its slots, since start:
        # the blocking a frame suffered is the growth of this integral while it waited.
        self.lower_busy = 0.0
        self.last_arrival: Optional[float] = None
        self.mean_interarrival: Optional[float] = None
        self.last_age = 0.0
        self.routed_rate = RateMeter()
        self.admitted_rate = RateMeter()
        self.started_rate = RateMeter()
        self.tokens = 1.0
        self.token_time = 0.0
        self.shed_limit_hz = 0.0  # 0: not limited by shedding
        self.held_seq = -1
        self.risk = RiskSignals()

    # -- configuration that can change at run time ---------------------------------------
    @property
    def priority(self) -> int:
        return self.config.priority

    @property
    def budget_s(self) -> float:
        return self.config.budget_s

    @property
    def drops_late(self) -> bool:
        return self.config.on_deadline == 'drop'

    def rate_limit_hz(self) -> float:
        """Return the admission limit in force: max_rate_hz and the shedding limit (0 = none)."""
        cap = self.config.max_rate_hz
        shed = self.shed_limit_hz
        if cap and shed:
            return min(cap, shed)
        return cap or shed

    # -- observations -----------------------------------------------------------------------
    def set_expected(self, seconds: float) -> None:
        self.expected_s = seconds
        if len(self._service) < MIN_SAMPLES:
            self.predicted_s = self.likely_s = self.median_s = seconds

    def record_service(self, seconds: float) -> bool:
        """Add a measured service time; True when the drop predictor grew."""
        self._service.append(seconds)
        if len(self._service) < MIN_SAMPLES:
            return False
        ordered = sorted(self._service)
        previous = self.likely_s
        self.predicted_s = quantile(ordered, HIGH_QUANTILE)
        self.likely_s = quantile(ordered, LIKELY_QUANTILE)
        self.median_s = quantile(ordered, 0.5)
        return self.likely_s > previous

    def load(self, now: float) -> float:
        """Return the slot-seconds per second the task adds: started rate x median service."""
        return self.started_rate.rate(now) * self.median_s

    def note_arrival(self, now: float, age: float) -> None:
        if self.last_arrival is not None:
            gap = now - self.last_arrival
            if self.mean_interarrival is None:
                self.mean_interarrival = gap
            else:
                self.mean_interarrival += INTERARRIVAL_SMOOTHING * (gap - self.mean_interarrival)
        self.last_arrival = now
        self.last_age = age
        self.routed_rate.add(now)

    def admit(self, now: float) -> bool:
        """Apply the rate limit (a one-token bucket); True when the frame may be queued."""
        limit = self.rate_limit_hz()
        if limit:
            tokens = min(1.0, self.tokens + (now - self.token_time) * limit)
            self.token_time = now
            # 10% slack so that arrival jitter does not halve the admitted rate.
            if tokens < 0.9:
                self.tokens = tokens
                return False
            self.tokens = tokens - 1.0
        self.admitted_rate.add(now)
        return True

    def next_expected_arrival(self, now: float) -> Optional[float]:
        """
        When the next frame should arrive; None if unknown or the source went quiet.

        After a single arrival the interval is unknown: the next frame may come at once, and
        is expected so for one latency budget.
        """
        if self.last_arrival is None or now >= self.expectation_ends():
            return None
        if self.mean_interarrival is None:
            return now
        return max(now, self.last_arrival + self.mean_interarrival)

    def expectation_ends(self) -> float:
        """Return the time after which a silent source is no longer expected to send a frame."""
        if self.mean_interarrival is None:
            return self.last_arrival + self.budget_s
        return self.last_arrival + IDLE_INTERARRIVALS * self.mean_interarrival


def hold_for(candidate: TaskState, tasks: List[TaskState], now: float
             ) -> Tuple[Optional[TaskState], float]:
    """
    Return (the higher-priority task whose expected frame would miss, when to look again).

    Starting candidate's job ends at now + its predicted service time. A higher-priority task
    whose next frame is expected before then would start only at that end and finish after
    its own service time: if that is past the frame's deadline, the job must not start.
    """
    end = now + candidate.predicted_s
    for other in tasks:  # priority-sorted: only the ones before candidate matter
        if other.priority <= candidate.priority:
            break
        if not other.config.enabled:
            continue
        expected = other.next_expected_arrival(now)
        if expected is None or expected >= end:
            continue
        deadline = expected + other.budget_s - other.last_age
        if end + other.predicted_s > deadline:
            return other, other.expectation_ends()
    return None, math.inf


def select_priority(tasks: List[TaskState], now: float, last_free_slot: bool,
                    priority_hold: bool, floors: bool = True
                    ) -> Tuple[Optional[TaskState], List[Tuple]]:
    """
    Pick the task whose next frame runs now; tasks are the pool's, priority-sorted.

    floors: whether any task of the pool has a min_rate_hz. Returns (task or None, holds)
    where holds lists (held task, blocking task, wake time).
    """
    if not floors:
        # Fast path: the highest priority with frames, then the earliest head deadline.
        best = None
        for task in tasks:
            if not task.queue.entries:
                continue
            if best is None:
                best, best_deadline = task, task.queue.head()[0]
            elif task.priority < best.priority:
                break
            elif task.queue.head()[0] < best_deadline:
                best, best_deadline = task, task.queue.head()[0]
        if best is None:
            return None, []
        if not (priority_hold and last_free_slot) or hold_for(best, tasks, now)[0] is None:
            return best, []
    ready = [t for t in tasks if t.queue.entries]
    # Rate floor first: a task below min_rate_hz over the last second runs ahead of priority.
    starved = [t for t in ready if t.config.min_rate_hz and
               t.started_rate.rate(now) < t.config.min_rate_hz]
    by_priority = sorted(ready, key=lambda t: (-t.priority, t.queue.head()[0], t.index))
    candidates = sorted(starved, key=lambda t: (-t.priority, t.queue.head()[0], t.index))
    candidates += [t for t in by_priority if t not in starved]
    holds = []
    for task in candidates:
        if priority_hold and last_free_slot:
            blocker, wake = hold_for(task, tasks, now)
            if blocker is not None:
                holds.append((task, blocker, wake))
                continue
        return task, holds
    return None, holds


def select_fifo(tasks: List[TaskState]) -> Optional[TaskState]:
    """Pick the task holding the earliest-arrived frame (ties: the task listed first)."""
    best = None
    best_key = None
    for task in tasks:
        head = task.queue.head()
        if head is None:
            continue
        key = (head[1].seq, task.index)
        if best_key is None or key < best_key:
            best, best_key = task, key
    return best
