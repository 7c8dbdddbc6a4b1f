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
Per-task scheduling state: the predictions of its service time, its arrivals, its counters.

TaskState is the one owner of a task's run-time state: its queue, its in-flight count and its
frame counters (the count_* methods are their only writers: the invariant routed = executed +
failed + dropped + queued + in_flight rests on them), and the predictions the scheduler reads
(fast, median and high quantiles of the next service time; the next expected frame).
"""

from collections import deque
import math
from typing import Dict, List, Optional, Sequence, Tuple

from inferedge_orchestrator.config.model import TaskConfig
from inferedge_orchestrator.scheduling.batching import BatchCosts
from inferedge_orchestrator.scheduling.queues import Entry, TaskQueue
from inferedge_orchestrator.scheduling.service import ServiceModel
from inferedge_orchestrator.telemetry.counters import CameraTelemetry, RateMeter, TaskTelemetry

# After this many predicted_late drops of frames that its own fast service time made late from
# their arrival (started at once, they would still end after their deadline: nothing else can
# let them run, so no new measurement would come), a task's next frame runs anyway (a probe): a
# stale prediction is measured again instead of dropping every frame. A probe that ends late makes
# the next one wait, first one latency budget, doubling up to PROBE_INTERVAL_MAX_S, so that a
# task that cannot make it wastes little slot time yet is measured at least that often; a job
# within budget ends the wait.
PROBE_AFTER = 3
PROBE_INTERVAL_MAX_S = 1.0
INTERARRIVAL_SMOOTHING = 0.1
IDLE_INTERARRIVALS = 2.0  # a source silent for this many mean intervals is not expected
# Transport ages vary: the next frame may arrive as early as its stamp plus the smallest of
# the recent ages, which is when the hold must expect it.
AGE_HISTORY = 16


class RiskSignals:
    """
    What one shedding tick saw of a task, with each loss attributed.

    A loss (a frame dropped as expired, predicted_late or queue_overflow, a deadline miss or a
    timeout) is blocked when lower-priority work explains it: without the time a lower-priority
    job held the slot while the frame waited, it would have made its deadline (by the drop
    predictor), or, for an overflow, a lower-priority job was running and the slot time such
    jobs held while the queue's oldest frame waited would have run one of the task's own jobs
    (Admission._overflow_blocked). Every other loss is explained by the task's own service time
    and by higher-priority work.
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

    def __init__(self, config: TaskConfig, index: int, window_s: float, window_samples: int,
                 extra_series: Sequence[str] = ()):
        self.config = config
        self.name = config.name
        self.index = index
        self.queue = TaskQueue(config.queue_size, config.drop_policy, config.order,
                               len(config.inputs))
        self.telemetry = TaskTelemetry(window_s, window_samples, extra_series)
        if len(config.inputs) > 1:
            self.telemetry.cameras = {name: CameraTelemetry() for name in config.inputs}
        self.worker = None
        self.decoder = None  # its Decoder (decoders/base.py), set when the engine loads
        self.pool = None  # the engine's pool object that runs the task
        self.priority_rank = 0  # 0: the highest priority of its pool (pool.sort_tasks)
        self.in_flight = 0
        self.busy_s = 0.0  # slot time its jobs took, since start (s)
        # The one-frame service-time predictor; its predictions are mirrored as attributes.
        self.service = ServiceModel(config.expected_latency_ms / 1000.0)
        self._mirror()
        # Its batch sizes' costs (scheduling/batching.py), when it batches: set at load.
        self.batching: Optional[BatchCosts] = None
        self.late_streak = 0  # predicted_late drops late from arrival since a job started
        self.hold_streak = 0  # frames the priority hold kept back since a job started
        self.probe_interval_s = 0.0  # the wait after a probe that ended late
        self.probe_not_before = -math.inf  # no probe before then
        # Slot-seconds of lower-priority jobs on the pool, divided by its slots, since start:
        # the blocking a frame suffered is the growth of this integral while it waited.
        self.lower_busy = 0.0
        self.last_arrival: Optional[float] = None
        self.last_stamp = 0.0  # the last frame's arrival less its age: when it was taken
        self.mean_interarrival: Optional[float] = None  # of the stamps: the source's period
        self._ages = deque(maxlen=AGE_HISTORY)  # the last frames' transport ages
        self.routed_rate = RateMeter()
        self.admitted_rate = RateMeter()
        self.started_rate = RateMeter()
        self.last_start = -math.inf  # when its last job started: how long it has waited
        self.share_s = 0.0  # slot time charged to it (a median per job): its level's share
        self.tokens = 1.0
        self.token_time = 0.0
        self.shed_limit_hz = 0.0  # 0: not limited by shedding
        self.held_seq = -1
        self.risk = RiskSignals()

    # -- configuration that can change at run time ---------------------------------------
    @property
    def config(self) -> TaskConfig:
        return self._config

    @config.setter
    def config(self, config: TaskConfig) -> None:
        # The fields the hot paths read, as plain attributes.
        self._config = config
        # Cameras with priorities of their own: each camera's frames stand at its priority.
        # The task's priority is then the highest of its cameras with frames queued (the
        # dispatcher refreshes it: refresh_priority), or of all its cameras when none is.
        self.camera_priorities = dict(zip(config.inputs, config.camera_priority))
        self.camera_levels = len(set(config.camera_priority)) > 1
        self.top_priority = max(config.camera_priority, default=config.priority)
        self.priority = self.top_priority
        # Cameras with budgets of their own: each frame's deadline is its camera's; the task's
        # budget (expected frames, probes, shedding) is the tightest of them.
        self.camera_budgets_s = {camera: budget / 1000.0 for camera, budget in
                                 zip(config.inputs, config.camera_budget_ms)} or None
        self.budget_s = min(self.camera_budgets_s.values()) if self.camera_budgets_s else \
            config.budget_s
        self.drops_late = config.on_deadline == 'drop'
        self.enabled = config.enabled
        self.timeout_s = config.timeout_ms / 1000.0  # 0: no timeout
        self.max_rate_hz = config.max_rate_hz

    def camera_budget_s(self, camera: str) -> float:
        """Return the latency budget of the task's frames from camera (its own or the task's)."""
        return (self.camera_budgets_s or {}).get(camera, self.budget_s)

    def reconfigure(self, config: TaskConfig, fifo: bool) -> List[Entry]:
        """Apply a validated config at run time; return the entries a smaller queue dropped."""
        old = self.config
        self.config = config
        dropped = self.queue.configure(config.queue_size, config.drop_policy,
                                       'oldest_first' if fifo else config.order)
        if config.expected_latency_ms != old.expected_latency_ms and config.expected_latency_ms:
            self.set_expected(config.expected_latency_ms / 1000.0)
        return dropped

    def refresh_priority(self) -> bool:
        """Set priority to its cameras' level now (camera_levels); True when it changed."""
        counts = self.queue.counts
        priority = max((level for camera, level in self.camera_priorities.items()
                        if counts.get(camera)), default=self.top_priority)
        changed = priority != self.priority
        self.priority = priority
        return changed

    def rate_limit_hz(self) -> float:
        """Return the admission limit in force: max_rate_hz and the shedding limit (0 = none)."""
        cap = self.max_rate_hz
        shed = self.shed_limit_hz
        if cap and shed:
            return min(cap, shed)
        return cap or shed

    def next_entry(self, now: float) -> Entry:
        """
        Return the queued entry its next job takes (its queue must not be empty).

        The head, in the task's order, unless the head is a gamble (its high service time,
        in_time_s, started now would end after its deadline): then the first later frame in
        time, or with none in time the newest, the likeliest to make it. The slot time is
        better spent on a frame likely to make it than on one likely not to (its task's and
        its level's next frames wait for it alike). The head stays queued until the drop
        predictor finds that even a fast run cannot fit. Frames that never drop (on_deadline:
        run) and newest_first queues (the head is the freshest) take the head. A task over
        several cameras: the head is the cameras' (TaskQueue), the frame in time the one with
        the earliest deadline.
        """
        queue_ = self.queue
        entries = queue_.entries
        if queue_.per_camera:
            return self._next_of_cameras(now)
        if queue_.newest_first:
            return entries[-1]
        head = entries[0]
        room = now + self.in_time_s
        if head[0] >= room or not self.drops_late or len(entries) == 1:
            return head
        for entry in entries:
            if entry.deadline >= room:
                return entry
        return max(entries, key=lambda entry: entry.deadline)

    def _next_of_cameras(self, now: float) -> Entry:
        """
        Return the next frame of a task over several cameras.

        Each camera offers its head, or (dropping late frames) its first frame in time; a
        gamble never goes ahead of another camera's frame in time. A camera owed its share
        (TaskQueue.owed: the cameras take equal numbers of frames) goes first with an offer in
        time, or a gamble whose median run fits. Otherwise earliest deadline first, ties to
        the camera served longest ago: a tie is an offer that, run first, keeps as many offers
        in time as the earliest-deadline order does (each planned for the task's median
        service, back to back). Cameras in step have deadlines that differ only by their
        stamps' offsets: exact ties would hand every frame to one camera, and cameras out of
        step would win by their phase. Cameras of several priorities (camera_priority): only
        those at the highest priority with frames queued offer.
        """
        queue_ = self.queue
        room = now + self.in_time_s
        offers = []
        cameras = queue_.camera_entries()
        if self.camera_levels:  # only the cameras at the highest priority with frames queued
            levels = self.camera_priorities
            top = max(levels[camera] for camera in cameras)
            cameras = {c: entries for c, entries in cameras.items() if levels[c] == top}
        for entries in cameras.values():
            offer = entries[0]
            if self.drops_late and offer.deadline < room:
                offer = next((e for e in entries if e.deadline >= room), offer)
            offers.append(offer)
        if self.drops_late and any(offer.deadline >= room for offer in offers):
            offers = [offer for offer in offers if offer.deadline >= room]
        owed = set(queue_.owed([offer.frame.input for offer in offers]))
        fits = [offer for offer in offers if offer.frame.input in owed and
                (offer.deadline >= room or now + self.median_s <= offer.deadline)]
        if fits:
            return min(fits, key=lambda e: (queue_.starts.get(e.frame.input, 0),
                                            queue_.last_served(e.frame.input)))
        by_deadline = sorted(offers, key=lambda entry: entry.deadline)
        kept = self._kept_in_time(by_deadline, now)
        for offer in sorted(offers, key=lambda e: queue_.last_served(e.frame.input)):
            if offer is by_deadline[0] or self._kept_in_time(
                    [offer] + [e for e in by_deadline if e is not offer], now) >= kept:
                return offer
        return by_deadline[0]

    def _kept_in_time(self, order: List[Entry], now: float) -> int:
        """Return how many of order end by their deadlines, run back to back at the median."""
        end, kept = now, 0
        for entry in order:
            end += self.median_s
            kept += end <= entry.deadline
        return kept

    # -- the frame counters: their only writers ---------------------------------------------
    def count_routed(self, now: float, age: float, camera: str) -> None:
        """
        Count a frame of camera (an input of the task) routed to the task, arrived now at age.

        Its arrival statistics too: the stamps' mean interval and the transport ages.
        """
        self.telemetry.routed += 1
        if self.telemetry.cameras:
            self.telemetry.cameras[camera].routed += 1
        stamp = now - age
        if self.last_arrival is not None:
            # The stamps' gaps: the source's period, without the transport's jitter (a frame
            # whose stamp went back, reordered or restamped, counts by its arrival).
            gap = stamp - self.last_stamp
            if gap <= 0.0:
                gap = now - self.last_arrival
            if self.mean_interarrival is None:
                self.mean_interarrival = gap
            else:
                self.mean_interarrival += INTERARRIVAL_SMOOTHING * (gap - self.mean_interarrival)
        self.last_arrival = now
        self.last_stamp = stamp
        self._ages.append(age)
        self.routed_rate.add(now)

    def count_queued(self) -> None:
        """Note the depth of its queue after a frame joined it."""
        depth = len(self.queue.entries)
        if depth > self.telemetry.max_queue_depth:
            self.telemetry.max_queue_depth = depth

    def count_start(self, now: float, camera: str, share_s: Optional[float] = None) -> None:
        """
        Count a frame started now: in flight, the rate, the wait and the share it takes.

        share_s: the slot time charged to it (a frame of a batch: its part of the batch's
        median); the one-frame median by default.
        """
        self.in_flight += 1
        if self.telemetry.cameras:
            self.telemetry.cameras[camera].in_flight += 1
        self.late_streak = self.hold_streak = 0
        self.started_rate.add(now)
        self.last_start = now
        self.share_s += self.median_s if share_s is None else share_s

    def count_end(self, camera: str) -> None:
        """Count a job no longer in flight that neither ran nor failed (abandoned, dropped)."""
        self.in_flight -= 1
        if self.telemetry.cameras:
            self.telemetry.cameras[camera].in_flight -= 1

    def count_executed(self, met_deadline: bool, camera: str) -> None:
        """Count a job that ran: no longer in flight, executed (within budget or not)."""
        self.in_flight -= 1
        telemetry = self.telemetry
        telemetry.executed += 1
        if met_deadline:
            telemetry.within_budget += 1
        if telemetry.cameras:
            counts = telemetry.cameras[camera]
            counts.in_flight -= 1
            counts.executed += 1
            counts.within_budget += met_deadline

    def count_failed(self, reason: str, camera: str) -> None:
        """Count a job that failed or timed out: no longer in flight, failed with reason."""
        self.in_flight -= 1
        self.telemetry.fail(reason)
        if self.telemetry.cameras:
            counts = self.telemetry.cameras[camera]
            counts.in_flight -= 1
            counts.failed += 1

    def count_dropped(self, reason: str, frames: Sequence) -> None:
        """Count frames (queue entries' or not queued) that left without running."""
        self.telemetry.drop(reason, len(frames))
        cameras = self.telemetry.cameras
        for frame in frames if cameras else ():
            dropped = cameras[frame.input].dropped
            dropped[reason] = dropped.get(reason, 0) + 1

    def count_held(self, seq: int) -> None:
        """Count the frame seq kept back by the priority hold (once per frame)."""
        if self.held_seq != seq:
            self.held_seq = seq
            self.hold_streak += 1
            self.telemetry.held_for_priority += 1

    # -- observations -----------------------------------------------------------------------
    def may_probe(self, now: float) -> bool:
        """Whether a late frame should run anyway, to measure the task again."""
        return self.late_streak >= PROBE_AFTER and now >= self.probe_not_before

    def may_probe_hold(self, now: float) -> bool:
        """Whether a frame the hold keeps back may run anyway, to measure the task again."""
        return self.hold_streak >= PROBE_AFTER and now >= self.probe_not_before

    def probe_ended(self, now: float, met_deadline: bool) -> None:
        """Space the next probe out after a probe that confirmed the prediction."""
        if met_deadline:
            self.probe_interval_s = 0.0
        else:
            self.probe_interval_s = min(max(2.0 * self.probe_interval_s, self.budget_s),
                                        PROBE_INTERVAL_MAX_S)
        self.probe_not_before = now + self.probe_interval_s

    def set_expected(self, seconds: float, fast: float = 0.0) -> None:
        """Set the guesses used before measurements: typical and fast service time (s)."""
        self.service.set_expected(seconds, fast)
        self._mirror()

    def record_service(self, seconds: float) -> float:
        """Add a measured one-frame service time; return how much the drop predictor grew (s)."""
        grown = self.service.record(seconds)
        self._mirror()
        return grown

    def _mirror(self) -> None:
        """Copy the one-frame predictions to the attributes the hot paths read."""
        service = self.service
        self.expected_s = service.expected_s
        self.predicted_s, self.in_time_s = service.predicted_s, service.in_time_s
        self.fast_s, self.median_s = service.fast_s, service.median_s

    def admit(self, now: float) -> bool:
        """Apply the rate limit (a one-token bucket); True when the frame may be queued."""
        cap, shed = self.max_rate_hz, self.shed_limit_hz  # rate_limit_hz(), inline: per frame
        limit = min(cap, shed) if cap and shed else cap or shed
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

    def next_expected_frame(self, now: float) -> Optional[Tuple[float, float]]:
        """
        Return (the earliest the next frame may arrive, its deadline); None if unknown or quiet.

        Its stamp is the last one plus the source's period; it arrives as early as that plus
        the smallest recent transport age, and its deadline is its stamp plus the budget.
        After a single arrival the interval is unknown: the next frame may come at once, and
        is expected so for one latency budget.
        """
        if self.last_arrival is None or now >= self.expectation_ends():
            return None
        if self.mean_interarrival is None:
            return now, now + self.budget_s - self._ages[-1]
        stamp = self.last_stamp + self.mean_interarrival
        return max(now, stamp + min(self._ages)), stamp + self.budget_s

    def expectation_ends(self) -> float:
        """Return the time after which a silent source is no longer expected to send a frame."""
        if self.mean_interarrival is None:
            return self.last_arrival + self.budget_s
        return self.last_arrival + IDLE_INTERARRIVALS * self.mean_interarrival
