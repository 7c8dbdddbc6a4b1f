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
The engine: admission, queues, scheduling, shedding, workers and telemetry behind one API.

submit() is thread-safe and cheap: it routes a frame to the tasks of its input and starts jobs on
free slots; inference runs on slot threads (one per pool slot, non-daemon, joined on stop). A
timer thread expires late frames, enforces timeouts, ticks shedding and flushes decisions. The
same engine runs under a virtual clock as a discrete-event simulation (simulation.py): then no
thread is started and the simulation calls poll() and complete().
See docs/engine_api.md.
"""

from dataclasses import dataclass
from dataclasses import field
import logging
import math
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from inferedge_orchestrator_ros import reasons
from inferedge_orchestrator_ros.config import load_config
from inferedge_orchestrator_ros.config import OrchestratorConfig
from inferedge_orchestrator_ros.config import TaskConfig
from inferedge_orchestrator_ros.decisions import Decision
from inferedge_orchestrator_ros.decisions import DecisionLog
from inferedge_orchestrator_ros.frame import CHANNELS
from inferedge_orchestrator_ros.frame import DecodeError
from inferedge_orchestrator_ros.frame import encoded_image_size
from inferedge_orchestrator_ros.frame import Frame
from inferedge_orchestrator_ros.job_trace import TraceRecorder
from inferedge_orchestrator_ros.scheduler import PROBE_AFTER
from inferedge_orchestrator_ros.scheduler import RiskSignals
from inferedge_orchestrator_ros.scheduler import select_fifo
from inferedge_orchestrator_ros.scheduler import select_priority
from inferedge_orchestrator_ros.scheduler import TaskState
from inferedge_orchestrator_ros.shedding import LoadShedder
from inferedge_orchestrator_ros.telemetry import check_invariants
from inferedge_orchestrator_ros.telemetry import InputTelemetry
from inferedge_orchestrator_ros.telemetry import ResourceMonitor
from inferedge_orchestrator_ros.workers import create_worker
from inferedge_orchestrator_ros.workers import InferenceOutput
from inferedge_orchestrator_ros.workers import Worker
import numpy as np

LOGGER = logging.getLogger('inferedge_orchestrator_ros')
REPORT_SCHEMA = 'inferedge_orchestrator_ros/report/1'

# Engine states.
CREATED, RUNNING, PAUSED, STOPPING, STOPPED, CLOSED = (
    'created', 'running', 'paused', 'stopping', 'stopped', 'closed')
# Job states.
_RUNNING, _TIMED_OUT, _ABANDONED = 0, 1, 2


class VirtualClock:
    """A clock that only moves when the simulation sets `now`."""

    def __init__(self, start: float = 0.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class Result:
    """
    The outcome of one job, delivered by on_result (on the slot thread; timeouts: timer).

    Times are seconds. queue_wait runs from submit() returning to a worker taking the frame;
    end_to_end from the caller's stamp (arrival - age) to the end of inference; finished is the
    engine clock at the end of inference. status is OK, FAILED or TIMED_OUT.
    """

    task: str
    input: str  # noqa: A003 - the input's name, as in the config
    seq: int
    status: str
    reason: str = ''
    detail: str = ''
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)
    queue_wait_s: float = 0.0
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    decode_s: float = 0.0
    service_s: float = 0.0
    end_to_end_s: float = 0.0
    deadline_met: bool = False
    finished: float = 0.0
    meta: Any = None


@dataclass
class Submission:
    """
    What submit() returns.

    accepted is False for a malformed frame, with its reason; seq is the frame's number; dropped
    lists the (task, reason) drops of this frame that admission decided at once.
    """

    accepted: bool
    reason: str = ''
    seq: int = -1
    dropped: Tuple[Tuple[str, str], ...] = ()


class WorkerLoadError(RuntimeError):
    """A worker failed to load or warm up; the message names the task."""


class _Slot:
    __slots__ = ('id', 'pool', 'job', 'retired', 'thread', 'inbox')

    def __init__(self, slot_id: int, pool: '_Pool'):
        self.id = slot_id
        self.pool = pool
        self.job: Optional[_Job] = None
        self.retired = False
        self.thread: Optional[threading.Thread] = None
        self.inbox: 'queue.SimpleQueue' = queue.SimpleQueue()


class _Job:
    __slots__ = ('task', 'frame', 'deadline', 'slot', 'start', 'state', 'worker', 'blocking',
                 'probe', 'hold_probe')

    def __init__(self, task: TaskState, frame: Frame, deadline: float, slot: _Slot,
                 start: float, blocking: float):
        self.task = task
        self.frame = frame
        self.deadline = deadline
        self.slot = slot
        self.start = start
        self.state = _RUNNING
        self.worker = task.worker
        self.blocking = blocking  # how long lower-priority jobs held the pool while it waited
        self.probe = False  # it ran although its prediction said late
        self.hold_probe = False  # it ran although the priority hold would have kept it back


class _Pool:
    """One pool: its slots, the free ones, and the tasks it serves (priority-sorted)."""

    def __init__(self, name: str, slots: int):
        self.name = name
        self.slots: List[_Slot] = []
        self.free: List[_Slot] = []
        self.tasks: List[TaskState] = []
        self.next_slot_id = 0
        self.retired = 0
        self.stuck: List[_Slot] = []  # retired slots whose job has not returned yet
        self.busy_time = 0.0  # completed job time, slot-seconds
        self.period_busy = 0.0
        self.utilisation = 0.0
        self.floors = False
        self.mixed = False  # tasks of more than one priority: blocking is possible
        self.integral_time = 0.0  # when advance() last grew the tasks' lower_busy
        for _ in range(slots):
            self.add_slot()

    def add_slot(self) -> _Slot:
        slot = _Slot(self.next_slot_id, self)
        self.next_slot_id += 1
        self.slots.append(slot)
        self.free.append(slot)
        return slot

    def busy_seconds(self, now: float) -> float:
        return self.busy_time + sum(now - s.job.start for s in self.slots if s.job is not None)

    def sort_tasks(self) -> None:
        """Order tasks by priority (the scheduler relies on it); call after any change."""
        self.tasks.sort(key=lambda t: (-t.priority, t.index))
        self.floors = any(t.config.min_rate_hz for t in self.tasks)
        self.mixed = len({t.priority for t in self.tasks}) > 1

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
            lowest = job.task.priority
            for task in self.tasks:  # priority-sorted
                if task.priority <= lowest:
                    return
                task.lower_busy += elapsed
            return
        running = [s.job.task.priority for s in self.slots if s.job is not None]
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
        return any(s.job is not None and s.job.task.priority < priority for s in self.slots)

    def free_at(self, now: float) -> float:
        """When a slot is expected to be free, by the drop predictor of the jobs running."""
        if self.free or not self.slots:
            return now
        return max(now, min(s.job.start + s.job.task.fast_s for s in self.slots
                            if s.job is not None))


class Engine:
    """Runs the tasks of one config. See docs/engine_api.md for the contract."""

    def __init__(self, config: Any, on_result: Optional[Callable[[Result], None]] = None,
                 on_decision: Optional[Callable[[Decision], None]] = None,
                 clock: Optional[Callable[[], float]] = None,
                 worker_factory: Optional[Callable[[TaskConfig, int], Worker]] = None,
                 virtual: bool = False, trace: Optional[TraceRecorder] = None):
        self.config: OrchestratorConfig = load_config(config)
        self._trace = trace  # its owner closes it
        self.virtual = virtual
        self._clock = clock or (VirtualClock() if virtual else time.monotonic)
        self._on_result = on_result
        self._worker_factory = worker_factory or (
            lambda task, slots: create_worker(task.worker, task.name, task.worker_options, slots))
        self._fifo = self.config.mode == 'fifo'
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._state = CREATED
        self._loaded = False
        telemetry = self.config.telemetry
        self.decisions = DecisionLog(telemetry.decision_history, on_decision)
        self._shedder = LoadShedder(self.config.shedding, self.decisions)
        self._resources = ResourceMonitor(telemetry.resources and not virtual)
        self._pools = {name: _Pool(name, pool.slots) for name, pool in self.config.pools.items()}
        self._tasks: List[TaskState] = []
        self._tasks_by_name: Dict[str, TaskState] = {}
        self._inputs: Dict[str, InputTelemetry] = {}
        self._routes: Dict[str, List[TaskState]] = {}
        for name in self.config.inputs:
            self._inputs[name] = InputTelemetry()
            self._routes[name] = []
        for index, task_config in enumerate(self.config.tasks):
            self._add_task(task_config, index)
        self.unknown_input = 0
        self._seq = 0
        self._started_at = self._clock()
        self._next_tick = math.inf
        self._next_period = math.inf
        self._timer_wake = math.inf
        self._next_late = -math.inf  # when the next queued frame becomes late; -inf: rescan
        self._timer: Optional[threading.Thread] = None
        self._pending_results: List[Tuple[Result, Any]] = []
        self.virtual_start: Optional[Callable[[Any], None]] = None  # set by the simulation

    def _add_task(self, task_config: TaskConfig, index: int) -> None:
        window = self.config.telemetry
        task = TaskState(task_config, index, window.window_s, window.window_samples)
        if self._fifo:
            task.queue.newest_first = False  # FIFO: one arrival order, whatever the task says
        self._tasks.append(task)
        self._tasks_by_name[task.name] = task
        self._routes[task_config.input].append(task)
        pool = self._pools[task_config.pool]
        task.pool = pool
        pool.tasks.append(task)
        pool.sort_tasks()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def tasks(self) -> Dict[str, TaskState]:
        return dict(self._tasks_by_name)

    def load(self) -> None:
        """Create, load and warm up every task's worker (slow; before start())."""
        if self._loaded:
            return
        for task in self._tasks:
            slots = len(self._pools[task.config.pool].slots)
            try:
                worker = self._worker_factory(task.config, slots)
                worker.load()
                worker.warmup(int(task.config.worker_options.get('warmup', 0) or 0))
            except Exception as error:  # noqa: B902 - any worker failure is reported the same
                self._close_workers()
                raise WorkerLoadError(f'task {task.name!r}: worker {task.config.worker!r} '
                                      f'failed to load: {type(error).__name__}: {error}'
                                      ) from error
            task.worker = worker
            fast = worker.fast_latency_s()
            if task.expected_s:
                task.set_expected(task.expected_s, min(fast, task.expected_s))
            else:
                task.set_expected(worker.expected_latency_s(), fast)
        self._loaded = True

    def start(self) -> None:
        """Load the workers if needed, start the slot threads and the timer; admit frames."""
        self.load()
        with self._lock:
            if self._state == RUNNING:
                return
            if self._state == CLOSED:
                raise RuntimeError('the engine is closed')
            now = self._clock()
            if self._state == CREATED:
                self._started_at = now
                if self._trace is not None:
                    self._trace.origin = now
            self._next_tick = now + self.config.shedding.tick_s
            self._next_period = now + self.config.telemetry.period_s
            self._state = RUNNING
            if not self.virtual:
                for pool in self._pools.values():
                    for slot in pool.slots:
                        self._start_slot_thread(slot)
                self._timer = threading.Thread(target=self._timer_loop,
                                               name='inferedge-timer', daemon=False)
                self._timer.start()

    def pause(self) -> None:
        """Stop admitting frames (they are dropped with reason deactivated); keep running."""
        with self._lock:
            if self._state == RUNNING:
                self._state = PAUSED

    def resume(self) -> None:
        with self._lock:
            if self._state == PAUSED:
                self._state = RUNNING

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; True if that happened within timeout."""
        if self.virtual:
            return self._idle()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def stop(self, timeout: float = 5.0, reason: str = reasons.SHUTDOWN) -> None:
        """
        Stop admitting frames and join the threads; start() may run again later.

        Drops what is queued with reason, waits up to timeout for jobs in flight and abandons
        the rest (dropped with reason; their late output is discarded).
        """
        with self._lock:
            if self._state not in (RUNNING, PAUSED):
                return
            self._state = STOPPING
            now = self._clock()
            for task in self._tasks:
                self._drop_entries(task, task.queue.clear(), reason, now)
        end = time.monotonic() + timeout
        with self._cond:
            while any(t.in_flight for t in self._tasks) and not self.virtual:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            now = self._clock()
            for pool in self._pools.values():
                for slot in pool.slots:
                    job = slot.job
                    if job is not None and job.state == _RUNNING:
                        job.state = _ABANDONED
                        job.task.in_flight -= 1
                        self._drop_frame(job.task, job.frame, reason, now)
            self._flush_period(now)
            self._state = STOPPED
            threads = [s.thread for p in self._pools.values() for s in p.slots if s.thread]
            for pool in self._pools.values():
                for slot in pool.slots:
                    slot.inbox.put(None)
                    slot.thread = None
            self._cond.notify_all()
        self._join(threads + ([self._timer] if self._timer else []), end)
        self._timer = None
        self.decisions.deliver()
        if self._trace is not None:
            self._trace.flush()

    def close(self, timeout: float = 5.0) -> None:
        """Stop, then release every worker (models, sessions, device memory)."""
        self.stop(timeout)
        with self._lock:
            self._state = CLOSED
        self._close_workers()

    def _close_workers(self) -> None:
        for task in self._tasks:
            if task.worker is not None:
                try:
                    task.worker.close()
                except Exception:  # noqa: B902 - closing must go on for the other tasks
                    LOGGER.exception('closing the worker of task %s failed', task.name)
                task.worker = None
        self._loaded = False

    @staticmethod
    def _join(threads: List[threading.Thread], end: float) -> None:
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, end - time.monotonic()))
                if thread.is_alive():
                    LOGGER.warning('thread %s is still running after stop()', thread.name)

    def _idle(self) -> bool:
        return not any(t.queue.entries or t.in_flight for t in self._tasks)

    # -- admission -------------------------------------------------------------------------

    def reject(self, input_name: str, reason: str) -> None:
        """Count a frame the caller found malformed before submit() (e.g. a bad image message)."""
        with self._lock:
            inp = self._inputs[input_name]
            inp.received += 1
            inp.malformed[reason] = inp.malformed.get(reason, 0) + 1

    def submit(self, input_name: str, data: Any, age_s: Optional[float] = None,
               encoding: Optional[str] = None, meta: Any = None) -> Submission:
        """
        Route one frame to the tasks of input_name; never runs inference.

        data is an HxWxC (or HxW) uint8 array (uint16 for mono16) or encoded JPEG/PNG bytes.
        age_s is the frame's age at arrival measured by the caller's clock (now - stamp); None,
        a negative age or one above max_stamp_age_ms count as stamp_fallback and use 0.
        """
        now = self._clock()
        with self._lock:
            inp = self._inputs.get(input_name)
            if inp is None:
                self.unknown_input += 1
                return Submission(False, reasons.UNKNOWN_INPUT)
            inp.received += 1
            inp.rate.add(now)
            image, encoded, encoding, malformed = self._check_data(data, encoding)
            if malformed:
                inp.malformed[malformed] = inp.malformed.get(malformed, 0) + 1
                return Submission(False, malformed)
            inp.accepted += 1
            if age_s is None or age_s < 0.0 or age_s * 1000.0 > self.config.max_stamp_age_ms:
                inp.stamp_fallback += 1
                age_s = 0.0
            self._seq += 1
            frame = Frame(input_name, self._seq, now, age_s, image, encoded, encoding, meta)
            dropped = []
            admitting = self._state == RUNNING
            fifo = self._fifo
            for task in self._routes[input_name]:
                telemetry = task.telemetry
                telemetry.routed += 1
                task.note_arrival(now, age_s)
                if not admitting:
                    reason = reasons.DEACTIVATED if self._state in (PAUSED, STOPPED) \
                        else reasons.SHUTDOWN
                elif not task.config.enabled:
                    reason = reasons.DISABLED
                elif not fifo and not task.admit(now):
                    reason = reasons.RATE_LIMITED
                else:
                    pool = task.pool
                    pool.advance(now)
                    deadline = now + task.budget_s - age_s
                    queue_ = task.queue
                    if len(queue_) >= queue_.capacity and not queue_.drop_oldest and \
                            task.drops_late and not fifo:
                        # A full drop_newest queue: its likely late frames make room.
                        self._next_late = min(self._next_late,
                                              self._expire_pool(pool, now, making_room=task))
                    out = queue_.push((deadline, frame, task.lower_busy))
                    depth = len(queue_)
                    if depth > telemetry.max_queue_depth:
                        telemetry.max_queue_depth = depth
                    if deadline - task.fast_s < self._next_late:
                        self._next_late = deadline - task.fast_s
                    if out is None:
                        if deadline - task.fast_s < self._timer_wake:
                            self._cond.notify()
                        continue
                    reason = reasons.QUEUE_OVERFLOW
                    if not fifo:
                        task.risk.loss(reason, pool.lower_running(task.priority))
                    if out[1] is not frame:  # drop_oldest: an older frame made room
                        self._drop_entries(task, [out], reason, now)
                        continue
                self._drop_frame(task, frame, reason, now)
                dropped.append((task.name, reason))
            frame.submitted = self._clock()
            if admitting:
                wake = self._dispatch(frame.submitted)
                if wake < self._timer_wake:
                    self._cond.notify()
        return Submission(True, '', frame.seq, tuple(dropped))

    def _check_data(self, data: Any, encoding: Optional[str]):
        """Return (image, encoded, encoding, malformed reason or '')."""
        if isinstance(data, np.ndarray):
            if data.ndim == 2:
                data = data[:, :, None]
            if data.ndim != 3 or data.dtype not in (np.uint8, np.uint16):
                return None, None, None, reasons.BAD_ARRAY
            height, width, channels = data.shape
            if data.size == 0:
                return None, None, None, reasons.ZERO_SIZE
            if height * width > self.config.max_image_pixels:
                return None, None, None, reasons.TOO_MANY_PIXELS
            if encoding is None:
                encoding = {1: 'mono16' if data.dtype == np.uint16 else 'mono8',
                            3: 'rgb8', 4: 'rgba8'}.get(channels)
            if CHANNELS.get(encoding) != channels:
                return None, None, None, reasons.UNKNOWN_ENCODING
            return data, None, encoding, ''
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            if not data:
                return None, None, None, reasons.ZERO_SIZE
            size = encoded_image_size(data)
            if size is not None:
                if size[0] * size[1] == 0:
                    return None, None, None, reasons.ZERO_SIZE
                if size[0] * size[1] > self.config.max_image_pixels:
                    return None, None, None, reasons.TOO_MANY_PIXELS
            return None, data, encoding or 'encoded', ''
        return None, None, None, reasons.BAD_ARRAY

    def _drop_entries(self, task: TaskState, entries: list, reason: str, now: float) -> None:
        """Count queue entries of task that leave without running."""
        if entries:
            task.telemetry.drop(reason, len(entries))
            self.decisions.count_drop(task.name, reason, len(entries))
            if self._trace is not None:
                for entry in entries:
                    self._trace.dropped(task.name, entry[1], reason, now)

    def _drop_frame(self, task: TaskState, frame: Frame, reason: str, now: float) -> None:
        """Count a frame of task that leaves without running (not queued, or abandoned)."""
        task.telemetry.drop(reason)
        self.decisions.count_drop(task.name, reason)
        if self._trace is not None:
            self._trace.dropped(task.name, frame, reason, now)

    # -- scheduling ------------------------------------------------------------------------

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

    def _expire_pool(self, pool: _Pool, now: float,
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
        free_at = pool.free_at(now)
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
            head = entries[-1] if queue_.newest_first else entries[0]
            waits = head[1].seq != task.held_seq  # a held task lets lower ones overtake
            if not task.drops_late:
                if waits:
                    level_work += len(entries) * fast / capacity
                continue
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
            if pool.free:
                pool.advance(now)
            while pool.free:
                if self._fifo:
                    task = select_fifo(pool.tasks)
                else:
                    task, holds = select_priority(pool.tasks, now, len(pool.free) == 1, hold,
                                                  pool.floors)
                    for held, _, hold_wake in holds:
                        seq = held.queue.head()[1].seq
                        if held.held_seq != seq:
                            held.held_seq = seq
                            held.hold_streak += 1
                            held.telemetry.held_for_priority += 1
                        wake = min(wake, hold_wake)
                if task is None:
                    break
                deadline, frame, lower_at = task.queue.pop()
                slot = pool.free.pop()
                blocking = task.lower_busy - lower_at
                job = _Job(task, frame, deadline, slot, now, blocking)
                slot.job = job
                task.in_flight += 1
                job.probe = task.late_streak >= PROBE_AFTER
                job.hold_probe = task.hold_streak >= PROBE_AFTER and not job.probe
                task.late_streak = task.hold_streak = 0
                task.started_rate.add(now)
                task.risk.blocking.append(blocking)
                if task.config.timeout_ms:  # the timer must look at it when it times out
                    wake = min(wake, now + task.config.timeout_ms / 1000.0)
                if self.virtual:
                    self.virtual_start(job)
                else:
                    slot.inbox.put(job)
        return wake

    def poll(self) -> float:
        """
        Run due timers and dispatch; return when to be called next (engine clock).

        The timers: expiry, timeouts, the shedding tick and the telemetry period.
        """
        with self._lock:
            wake = self._poll(self._clock())
            pending, self._pending_results = self._pending_results, []
        self.decisions.deliver()
        if self._trace is not None and not self.virtual:
            self._trace.flush()
        for result in pending:
            self._deliver(result)
        return wake

    def _poll(self, now: float) -> float:
        wake = self._check_timeouts(now)
        if now >= self._next_tick:
            if not self._fifo and self._state in (RUNNING, PAUSED):
                self._shedder.tick(now, self._tasks, self._queue_depths())
            else:
                for task in self._tasks:
                    task.risk = RiskSignals()  # nothing reads the risk signals: keep them bounded
            while self._next_tick <= now:
                self._next_tick += self.config.shedding.tick_s
        if now >= self._next_period:
            self._flush_period(now)
            while self._next_period <= now:
                self._next_period += self.config.telemetry.period_s
        return min(wake, self._dispatch(now), self._next_tick, self._next_period)

    def _flush_period(self, now: float) -> None:
        self.decisions.flush_drops(now, self._queue_depths())
        period = self.config.telemetry.period_s
        for pool in self._pools.values():
            busy = pool.busy_seconds(now)
            capacity = max(1, len(pool.slots))
            pool.utilisation = min(1.0, (busy - pool.period_busy) / (period * capacity))
            pool.period_busy = busy

    def _queue_depths(self) -> Dict[str, int]:
        return {t.name: len(t.queue) for t in self._tasks}

    # -- jobs ------------------------------------------------------------------------------

    def _start_slot_thread(self, slot: _Slot) -> None:
        slot.inbox = queue.SimpleQueue()
        slot.thread = threading.Thread(target=self._slot_loop, args=(slot,),
                                       name=f'inferedge-{slot.pool.name}-{slot.id}',
                                       daemon=False)
        slot.thread.start()

    def _slot_loop(self, slot: _Slot) -> None:
        inbox = slot.inbox
        while True:
            job = inbox.get()
            if job is None:
                return
            output, error = None, None
            try:
                output = job.worker.infer(job.frame)
                if not isinstance(output, InferenceOutput):
                    raise TypeError(f'infer() returned {type(output).__name__}, not '
                                    'InferenceOutput')
            except BaseException as exc:  # noqa: B902 - a worker never kills the engine
                error = exc
            if self.complete(job, output, error) and slot.retired:
                self._close_replaced(job.worker, job.task)
                return

    def _close_replaced(self, worker: Optional[Worker], task: TaskState) -> None:
        """Close a worker that a fresh one replaced, once no job runs on it any more."""
        with self._lock:
            if worker is None or worker is task.worker or any(
                    s.job is not None and s.job.worker is worker
                    for p in self._pools.values() for s in p.slots + p.stuck):
                return
        try:
            worker.close()
        except Exception:  # noqa: B902 - closing a stale worker must not stop anything
            LOGGER.exception('closing the replaced worker of task %s failed', task.name)

    def complete(self, job: _Job, output: Optional[InferenceOutput],
                 error: Optional[BaseException] = None) -> bool:
        """
        Account for a finished job and start the next ones; deliver its result.

        Called by the slot thread (or the simulation). Returns True when the job's slot is done.
        """
        with self._lock:
            now = self._clock()
            result = self._finish(job, output, error, now)
            wake = self._dispatch(now)
            if wake < self._timer_wake or self._state == STOPPING or \
                    self.decisions.has_outbox():
                self._cond.notify_all()
        if result is not None:
            self._deliver(result)
        return True

    def _finish(self, job: _Job, output: Optional[InferenceOutput],
                error: Optional[BaseException], now: float) -> Optional[Result]:
        slot = job.slot
        pool = slot.pool
        pool.advance(now)
        slot.job = None
        pool.busy_time += now - job.start
        job.task.busy_s += now - job.start
        if not slot.retired and slot in pool.slots:
            pool.free.append(slot)
        elif slot in pool.stuck:
            pool.stuck.remove(slot)
        task = job.task
        timeout = task.config.timeout_ms / 1000.0
        if job.state == _RUNNING and timeout and now - job.start >= timeout:
            self._time_out(job, now)  # it overran before the timer saw it: same outcome
        if job.state != _RUNNING:
            return None  # timed out or abandoned: its late output is discarded
        task.in_flight -= 1
        frame = job.frame
        telemetry = task.telemetry
        result = Result(task.name, frame.input, frame.seq, reasons.OK, finished=now,
                        meta=frame.meta, decode_s=frame.decode_s,
                        queue_wait_s=max(0.0, job.start - frame.submitted))
        if error is not None:
            reason = reasons.DECODE_ERROR if isinstance(error, DecodeError) \
                else reasons.WORKER_ERROR
            if reason == reasons.DECODE_ERROR and not frame.decode_error_counted:
                self._inputs[frame.input].decode_errors += 1
                frame.decode_error_counted = True  # whichever task saw it first
            telemetry.fail(reason)
            result.status, result.reason = reasons.FAILED, reason
            result.detail = f'{type(error).__name__}: {error}'
            LOGGER.warning('task %s: frame %d failed: %s', task.name, frame.seq, result.detail)
            if self._trace is not None:
                self._trace.ran(task.name, frame, job.start, now, reasons.FAILED, reason)
            return result
        service = now - job.start
        end_to_end = frame.age + (now - frame.arrival)
        result.outputs = output.outputs
        result.preprocess_s = output.preprocess_s
        result.inference_s = output.inference_s
        result.service_s = service
        result.end_to_end_s = end_to_end
        result.deadline_met = now <= job.deadline
        telemetry.executed += 1
        risk = task.risk
        if result.deadline_met:
            telemetry.within_budget += 1
        else:
            risk.loss(reasons.DEADLINE_MISS, now - job.blocking <= job.deadline)
        if job.hold_probe:  # a service under the held prediction: probe again soon
            task.probe_ended(now, service < task.predicted_s)
        elif job.probe or result.deadline_met:
            task.probe_ended(now, result.deadline_met)
        grown = task.record_service(service)
        if grown:
            self._next_late -= grown  # its queued frames become late that much sooner
        risk.end_to_end.append(end_to_end)
        risk.unblocked_end_to_end.append(end_to_end - job.blocking)
        risk.service.append(service)
        telemetry.record_job(now, result.queue_wait_s, job.blocking, output.preprocess_s,
                             output.inference_s, end_to_end)
        if self._trace is not None:
            self._trace.ran(task.name, frame, job.start, now, reasons.OK, '')
        return result

    def _deliver(self, result: Result) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(result)
        except Exception:  # noqa: B902 - a broken callback must not stop the slot
            LOGGER.exception('the result callback failed for task %s', result.task)

    def _check_timeouts(self, now: float) -> float:
        """Fail jobs past timeout_ms (TIMED_OUT); retire slots stuck past 3 x timeout_ms."""
        wake = math.inf
        for pool in self._pools.values():
            for slot in list(pool.slots):
                job = slot.job
                if job is None or not job.task.config.timeout_ms:
                    continue
                limit = job.task.config.timeout_ms / 1000.0
                elapsed = now - job.start
                if job.state == _RUNNING:
                    if elapsed >= limit:
                        self._time_out(job, now)
                    else:
                        wake = min(wake, job.start + limit)
                if job.state == _TIMED_OUT:
                    if elapsed >= 3 * limit:
                        self._retire(slot, job, now)
                    else:
                        wake = min(wake, job.start + 3 * limit)
        return wake

    def _time_out(self, job: _Job, now: float) -> None:
        task = job.task
        job.state = _TIMED_OUT
        task.in_flight -= 1
        task.telemetry.fail(reasons.TIMEOUT)
        task.risk.loss(reasons.TIMEOUT, False)  # its own service time, whatever blocked it
        self.decisions.add(now, reasons.WORKER_TIMEOUT_EVENT, reasons.TIMEOUT, task=task.name,
                           queue_depths=self._queue_depths(),
                           detail=f'running {1000 * (now - job.start):.0f} ms > timeout_ms '
                                  f'{task.config.timeout_ms:g}')
        frame = job.frame
        if self._trace is not None:
            self._trace.ran(task.name, frame, job.start, now, reasons.TIMED_OUT, reasons.TIMEOUT)
        self._pending_results.append(Result(
            task.name, frame.input, frame.seq, reasons.TIMED_OUT, reasons.TIMEOUT,
            f'no result after {task.config.timeout_ms:g} ms', finished=now, meta=frame.meta,
            queue_wait_s=max(0.0, job.start - frame.submitted),
            end_to_end_s=frame.age + now - frame.arrival))

    def _retire(self, slot: _Slot, job: _Job, now: float) -> None:
        pool = slot.pool
        slot.retired = True
        pool.slots.remove(slot)
        pool.stuck.append(slot)
        pool.retired += 1
        task = job.task
        self.decisions.add(now, reasons.WORKER_ERROR_EVENT, reasons.SLOT_RETIRED, task=task.name,
                           queue_depths=self._queue_depths(),
                           detail=f'slot {pool.name}/{slot.id} stuck for '
                                  f'{1000 * (now - job.start):.0f} ms; pool capacity '
                                  f'{len(pool.slots)}')
        if not self.virtual and job.worker is not None and job.worker.replaceable:
            threading.Thread(target=self._replace_worker, args=(task, pool),
                             name=f'inferedge-replace-{task.name}', daemon=True).start()

    def _replace_worker(self, task: TaskState, pool: _Pool) -> None:
        """Load a fresh worker for task and give the pool its slot back."""
        try:
            worker = self._worker_factory(task.config, len(pool.slots) + 1)
            worker.load()
            worker.warmup(int(task.config.worker_options.get('warmup', 0) or 0))
        except Exception as error:  # noqa: B902
            LOGGER.error('task %s: replacing the stuck worker failed: %s', task.name, error)
            with self._lock:
                self.decisions.add(self._clock(), reasons.WORKER_ERROR_EVENT,
                                   reasons.SLOT_RETIRED, task=task.name,
                                   detail=f'replacing the stuck worker failed: '
                                          f'{type(error).__name__}: {error}; pool '
                                          f'{pool.name} capacity {len(pool.slots)}')
                self._cond.notify_all()
            return
        with self._lock:
            if self._state not in (RUNNING, PAUSED):
                worker.close()
                return
            replaced, task.worker = task.worker, worker
            slot = pool.add_slot()
            self._start_slot_thread(slot)
            self.decisions.add(self._clock(), reasons.WORKER_ERROR_EVENT, reasons.SLOT_RETIRED,
                               task=task.name, detail=f'fresh worker on slot '
                                                      f'{pool.name}/{slot.id}')
            self._cond.notify_all()
            self._dispatch(self._clock())
        self._close_replaced(replaced, task)  # when its stuck call has returned already

    def _timer_loop(self) -> None:
        while True:
            with self._cond:
                if self._state not in (RUNNING, PAUSED):
                    return
                now = self._clock()
                wake = self._poll(now)
                pending, self._pending_results = self._pending_results, []
                trace_due = self._trace is not None and self._trace.due()
                if not pending and not self.decisions.has_outbox() and not trace_due:
                    self._timer_wake = wake
                    self._cond.wait(max(0.0005, min(wake - now, 0.25)))
                    self._timer_wake = -math.inf  # awake: nobody needs to notify
                    continue
            if self._trace is not None:
                self._trace.flush()
            self.decisions.deliver()
            for result in pending:
                self._deliver(result)

    # -- live retuning --------------------------------------------------------------------

    RETUNABLE = ('priority', 'latency_budget_ms', 'enabled', 'max_rate_hz', 'min_rate_hz',
                 'queue_size', 'drop_policy', 'order', 'on_deadline', 'expected_latency_ms',
                 'timeout_ms')

    def update_task(self, name: str, **changes: Any) -> Decision:
        """
        Change run-time settings of one task atomically, between two scheduling decisions.

        The values are validated first (ConfigError, nothing changes); then applied under the
        engine lock and announced as a PARAM_CHANGE decision. A priority or enabled change
        lifts every shedding limit; a smaller queue_size drops the oldest frames with reason
        queue_resized.
        """
        from inferedge_orchestrator_ros.config import ConfigError
        from inferedge_orchestrator_ros.config import parse_task
        task = self._tasks_by_name.get(name)
        if task is None:
            raise ConfigError(f'tasks: {name!r} is not a task; allowed: '
                              f'{", ".join(self._tasks_by_name)}')
        for key in changes:
            if key not in self.RETUNABLE:
                raise ConfigError(f'tasks.{name}.{key}: cannot change while running; allowed: '
                                  f'{", ".join(self.RETUNABLE)}')
        merged = dict(vars(task.config), **changes)
        new_config = parse_task(f'tasks.{name}', merged, task.config.pool)
        with self._lock:
            now = self._clock()
            old = task.config
            task.config = new_config
            self.config.tasks[task.index] = new_config
            dropped = task.queue.configure(new_config.queue_size, new_config.drop_policy,
                                           'oldest_first' if self._fifo else new_config.order)
            self._drop_entries(task, dropped, reasons.QUEUE_RESIZED, now)
            if new_config.expected_latency_ms != old.expected_latency_ms and \
                    new_config.expected_latency_ms:
                task.set_expected(new_config.expected_latency_ms / 1000.0)
            self._pools[new_config.pool].sort_tasks()
            self._next_late = -math.inf
            if new_config.priority != old.priority or new_config.enabled != old.enabled:
                self._shedder.reset(now, self._tasks, self._queue_depths())
            if not new_config.enabled:
                self._drop_entries(task, task.queue.clear(), reasons.DISABLED, now)
            detail = ', '.join(f'{key}: {getattr(old, key)!r} -> {getattr(new_config, key)!r}'
                               for key in changes if getattr(old, key) != getattr(new_config, key))
            decision = self.decisions.add(now, reasons.PARAM_CHANGE_EVENT, reasons.PARAM_CHANGE,
                                          task=name, queue_depths=self._queue_depths(),
                                          count=len(dropped), detail=detail or 'no change')
            self._dispatch(now)
            self._cond.notify_all()
        return decision

    # -- telemetry -------------------------------------------------------------------------

    def snapshot(self) -> Dict[str, Any]:
        """Return the live telemetry (docs/telemetry.md); both invariants hold in it."""
        with self._lock:
            return self._snapshot(self._clock())

    def _snapshot(self, now: float) -> Dict[str, Any]:
        tasks = {}
        for task in self._tasks:
            telemetry = task.telemetry
            tasks[task.name] = {
                'input': task.config.input, 'pool': task.config.pool,
                'priority': task.priority, 'enabled': task.config.enabled,
                'routed': telemetry.routed, 'executed': telemetry.executed,
                'completed_within_budget': telemetry.within_budget,
                'failed': telemetry.failed_total,
                'failed_by_reason': dict(sorted(telemetry.failed.items())),
                'dropped': telemetry.dropped_total,
                'dropped_by_reason': dict(sorted(telemetry.dropped.items())),
                'queued': len(task.queue), 'in_flight': task.in_flight,
                'held_for_priority': telemetry.held_for_priority,
                'max_queue_depth': telemetry.max_queue_depth,
                'rate_limit_hz': task.rate_limit_hz(),
                'shed_limit_hz': task.shed_limit_hz,
                'executed_rate_hz': task.started_rate.rate(now),
                'predicted_service_ms': task.predicted_s * 1000.0,
                'busy_s': task.busy_s,
                'latency': telemetry.live_latency(now),
                'window_overflow': telemetry.window_overflow(),
            }
        pools = {}
        for pool in self._pools.values():
            pools[pool.name] = {'slots': len(pool.slots), 'busy': sum(
                1 for s in pool.slots if s.job is not None), 'retired': pool.retired,
                'utilisation': pool.utilisation}
        shedder = self._shedder
        return {
            'time': now, 'uptime_s': now - self._started_at, 'state': self._state,
            'mode': self.config.mode,
            'inputs': {name: inp.to_dict(now) for name, inp in self._inputs.items()},
            'unknown_input': self.unknown_input,
            'tasks': tasks, 'pools': pools,
            'shedding': {'active': shedder.active, 'ticks': shedder.ticks,
                         'limits_hz': {t.name: t.shed_limit_hz for t in self._tasks
                                       if t.shed_limit_hz},
                         'last_risk': list(shedder.last_risk) if shedder.last_risk else None},
            'decisions': {'total': self.decisions.total, 'by_event': dict(
                self.decisions.by_event)},
            'resources': self._resources.sample(),
        }

    def report(self) -> Dict[str, Any]:
        """
        Return the whole-run report, as in docs/telemetry.md.

        It holds the final snapshot, whole-run latency percentiles per task and the decisions
        still in the ring.
        """
        with self._lock:
            now = self._clock()
            snapshot = self._snapshot(now)
            for task in self._tasks:
                snapshot['tasks'][task.name]['run_latency'] = task.telemetry.run_latency()
        return {'schema': REPORT_SCHEMA, 'config': self.config.to_dict(),
                'warnings': list(self.config.warnings), 'final': snapshot,
                'invariant_violations': check_invariants(snapshot),
                'decisions': [d.to_dict() for d in self.decisions.recent()]}

    def decisions_since(self, seq: int = 0) -> List[Decision]:
        """Return the decisions kept in the ring with a sequence number above seq."""
        return self.decisions.recent(seq)
