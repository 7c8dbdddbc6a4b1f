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
same engine runs under a virtual clock as a discrete-event simulation (tools/simulation.py):
its pools are then virtual back-ends, no thread is started, and the simulation calls poll()
and complete(). See docs/engine_api.md.

The engine is composed of parts that each own their state: Admission (the inputs' counters and
routes), the ExpiryIndex (the late-frame cache and the drop predictor), the Dispatcher (which
job starts on which free slot), Completion (the accounting of ended jobs and timeouts), the
Ledger (every drop's count, decision and trace line), the pools and their back-ends (slots,
jobs, hand-off), each task's TaskState (its queue, in-flight count and frame counters: their
only writer) and the LoadShedder (the shedding limits). Slot threads run the model and report
(SlotRunner); they decide nothing.

Locks:
- self._lock (its condition self._cond) guards the state, every TaskState, the pools and their
  slots and jobs, the admission's counters, the expiry index, the shedder, the decision log's
  DROP counts, the pending results and the timer's wake. Every part above runs under it.
- Outside it: the model calls on slot threads, the on_result and on_decision callbacks, worker
  loading, warm-up and closing, and thread joins.
- Their own locks: the decision log's ring and outbox (DecisionLog), the trace's file
  (TraceRecorder), a server pool's circuit breaker (ServerBackend), a process worker's
  children (ProcessWorker). None of them is taken before self._lock.
"""

import math
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from inferedge_orchestrator.config.loader import load_config, remote_tasks
from inferedge_orchestrator.config.model import OrchestratorConfig, TaskConfig
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.engine.admission import Admission
from inferedge_orchestrator.engine.backends import create_backend
from inferedge_orchestrator.engine.completion import Completion
from inferedge_orchestrator.engine.dispatch import Dispatcher
from inferedge_orchestrator.engine.expiry import ExpiryIndex
from inferedge_orchestrator.engine.ledger import Ledger
from inferedge_orchestrator.engine.pool import Job, Pool
from inferedge_orchestrator.engine.records import (CLOSED, CREATED, LOGGER, PAUSED, Result,
                                                   RUNNING, STOPPED, STOPPING, Submission,
                                                   VirtualClock)
from inferedge_orchestrator.engine.reporting import report, snapshot
from inferedge_orchestrator.engine.retuning import Retuner
from inferedge_orchestrator.engine.slots import SlotRunner
from inferedge_orchestrator.engine.workforce import Workforce
from inferedge_orchestrator.scheduling.shedding import LoadShedder
from inferedge_orchestrator.scheduling.task import RiskSignals, TaskState
from inferedge_orchestrator.telemetry.counters import ResourceMonitor
from inferedge_orchestrator.telemetry.decisions import Decision, DecisionLog
from inferedge_orchestrator.telemetry.job_trace import TraceRecorder
from inferedge_orchestrator.telemetry.snapshot import Snapshot
from inferedge_orchestrator.telemetry.stats import BucketCounts
from inferedge_orchestrator.workers.base import Worker, WorkerFactory


class Engine:
    """Runs the tasks of one config. See docs/engine_api.md for the contract."""

    def __init__(self, config: Any, on_result: Optional[Callable[[Result], None]] = None,
                 on_decision: Optional[Callable[[Decision], None]] = None,
                 clock: Optional[Callable[[], float]] = None,
                 worker_factory: Optional[WorkerFactory] = None,
                 trace: Optional[TraceRecorder] = None,
                 virtual: Optional[Callable[[Job], None]] = None,
                 latency_series: Sequence[str] = ()):
        self.config: OrchestratorConfig = load_config(config)
        self._trace = trace  # its owner closes it
        self._clock = clock or (VirtualClock() if virtual else time.monotonic)
        self._on_result = on_result
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._state = CREATED
        telemetry, fifo = self.config.telemetry, self.config.mode == 'fifo'
        self.decisions = DecisionLog(telemetry.decision_history,
                                     on_decision if trace is None else
                                     traced_decisions(trace, on_decision))
        self._shedder = LoadShedder(self.config.shedding, self.decisions)
        self._pools: Dict[str, Pool] = {}
        for name, pool in self.config.pools.items():
            backend = create_backend(pool, bool(remote_tasks(self.config, name)),
                                     self._respawned, self._server_up, virtual)
            self._pools[name] = Pool(name, pool.slots, backend)
        self._threaded = virtual is None  # slot threads and a timer; else a simulation's
        self._resources = ResourceMonitor(telemetry.resources and self._threaded)
        ledger = Ledger(self.decisions, trace)
        self._ledger = ledger
        self._expiry = ExpiryIndex(self._pools, ledger, fifo)
        self._admission = Admission(self.config, self._expiry, ledger)
        self._dispatcher = Dispatcher(self._pools, self._expiry, ledger, fifo,
                                      self.config.priority_hold)
        self._completion = Completion(self._admission, ledger, self._expiry,
                                      self._queue_depths)
        self._tasks = task_states(self.config, latency_series)
        self._tasks_by_name = {task.name: task for task in self._tasks}
        for task in self._tasks:
            self._admission.route(task)
            self._pools[task.config.pool].add_task(task)
        self._retuner = Retuner(self.config, self._tasks_by_name, ledger, self._expiry,
                                self._shedder, self._queue_depths, self._cond, self._clock,
                                self._dispatch)
        self._workforce = Workforce(self._tasks, self._pools, worker_factory, self._cond,
                                    self._clock, self.decisions)
        self._slots = SlotRunner(self._clock, self.complete,
                                 lambda job: self._workforce.close_replaced(job.worker, job.task))
        self._started_at = self._clock()
        self._next_tick = self._next_period = self._timer_wake = math.inf
        self._timer: Optional[threading.Thread] = None
        self._pending_results: List[Result] = []

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def tasks(self) -> Dict[str, TaskState]:
        return dict(self._tasks_by_name)

    def load(self) -> None:
        """Create, load and warm up every task's worker (slow; before start())."""
        self._workforce.load()

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
            for pool in self._pools.values():
                for slot in pool.slots:
                    pool.backend.start_slot(slot, self._slots.run)
            if self._threaded:
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
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._idle():
                left = deadline - time.monotonic()
                if left <= 0 or not self._threaded:
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
                self._ledger.drop_entries(task, task.queue.clear(), reason, now)
        end = time.monotonic() + timeout
        with self._cond:
            while self._threaded and any(t.in_flight for t in self._tasks):
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            threads = self._stop_slots(self._clock(), reason)
            self._cond.notify_all()
        join(threads + ([self._timer] if self._timer else []), end)
        self._timer = None
        self.decisions.deliver()
        if self._trace is not None:
            self._trace.flush()

    def _stop_slots(self, now: float, reason: str) -> List[threading.Thread]:
        """Abandon the jobs still running, stop every slot; return the threads to join."""
        self._completion.abandon(self._pools.values(), now, reason)
        self._flush_period(now)
        self._state = STOPPED
        threads = []
        for pool in self._pools.values():
            threads += [pool.backend.stop_slot(slot) for slot in pool.slots
                        if slot.thread is not None]
            threads.append(pool.backend.stop())
        return [thread for thread in threads if thread is not None]

    def close(self, timeout: float = 5.0) -> None:
        """Stop, then release every worker (models, sessions, device memory)."""
        self.stop(timeout)
        with self._lock:
            self._state = CLOSED
        self._workforce.close()

    def _idle(self) -> bool:
        return not any(t.queue.entries or t.in_flight for t in self._tasks)

    # -- frames in, results out ------------------------------------------------------------

    def submit(self, input_name: str, data: Any = None, age_s: Optional[float] = None,
               encoding: Optional[str] = None, meta: Any = None,
               malformed: str = '') -> Submission:
        """
        Route one frame to the tasks of input_name; never runs inference.

        data is an HxWxC (or HxW) uint8 array (uint16 for mono16 and 16UC1, float32 for 32FC1)
        or encoded JPEG/PNG bytes. age_s is the frame's age at arrival measured by the
        caller's clock (now - stamp); None, a stamp more than max_stamp_lead_ms in the future
        or older than max_stamp_age_ms count as stamp_fallback and use 0; a stamp less ahead
        than that uses 0 uncounted. malformed: the reason the caller refused the frame (a bad
        image message): it is only counted, as received and malformed.
        """
        now = self._clock()
        with self._lock:
            state = self._state
            refusal = None if state == RUNNING else reasons.DEACTIVATED \
                if state in (PAUSED, STOPPED) else reasons.SHUTDOWN
            submission, frame, late_at = self._admission.admit(
                now, input_name, data, age_s, encoding, meta, malformed, refusal)
            if frame is None:
                return submission
            frame.submitted = self._clock()
            if late_at < self._timer_wake:
                self._cond.notify()
            if refusal is None and \
                    self._dispatcher.dispatch(frame.submitted, True) < self._timer_wake:
                self._cond.notify()
        return submission

    def complete(self, job: Job, output: Optional[InferenceOutput],
                 error: Optional[BaseException] = None) -> None:
        """
        Account for a finished job, start the next ones and deliver its result.

        Called by the slot thread that ran it, or by the simulation at its virtual end.
        """
        with self._lock:
            now = self._clock()
            results = self._completion.finish(job, output, error, now)
            wake = self._dispatcher.dispatch(now, self._state in (RUNNING, PAUSED))
            if wake < self._timer_wake or self._state == STOPPING or \
                    self.decisions.has_outbox():
                self._cond.notify_all()
        for result in results:
            self._deliver(result)

    def _dispatch(self, now: float) -> float:
        return self._dispatcher.dispatch(now, self._state in (RUNNING, PAUSED))

    def _deliver(self, result: Result) -> None:
        if self._on_result is None:
            return
        if result.model_span[1]:
            result.handoff_out_s = time.monotonic() - result.model_span[1]
        try:
            self._on_result(result)
        except Exception:  # noqa: B902 - a broken callback must not stop the slot
            LOGGER.exception('the result callback failed for task %s', result.task)

    # -- timers ----------------------------------------------------------------------------

    def poll(self) -> float:
        """
        Run due timers and dispatch; return when to be called next (engine clock).

        The timers: expiry, timeouts, the shedding tick and the telemetry period.
        """
        with self._lock:
            wake = self._poll(self._clock())
            pending, self._pending_results = self._pending_results, []
        self.decisions.deliver()
        if self._trace is not None and self._threaded:
            self._trace.flush()
        for result in pending:
            self._deliver(result)
        return wake

    def _poll(self, now: float) -> float:
        wake, timed_out, retired = self._completion.check_timeouts(now, self._pools.values())
        self._pending_results += timed_out
        if self._threaded:
            for slot in retired:
                self._workforce.replace_later(slot, self._restore_slot)
        if now >= self._next_tick:
            if self.config.mode != 'fifo' and self._state in (RUNNING, PAUSED):
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
        for pool in self._pools.values():
            pool.close_period(now, self.config.telemetry.period_s)

    def _queue_depths(self) -> Dict[str, int]:
        return {t.name: len(t.queue) for t in self._tasks}

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

    # -- the back-ends' and slots' calls ---------------------------------------------------

    def _server_up(self, pool_name: str, detail: str) -> None:
        """Close a server pool's breaker: a health probe found it ready (the probe's thread)."""
        with self._lock:
            now = self._clock()
            if self._state in (RUNNING, PAUSED) and \
                    self._completion.server_up(self._pools[pool_name], detail, now):
                self._dispatch(now)
                self._cond.notify_all()

    def _respawned(self, task_name: str, detail: str) -> None:
        """Count and announce a respawned executor (called by the back-end, on a slot thread)."""
        with self._lock:
            self._completion.respawned(self._tasks_by_name.get(task_name), detail, self._clock())

    def _restore_slot(self, task: TaskState, pool: Pool,
                      worker: Worker) -> Tuple[bool, Optional[Worker]]:
        """Give a stuck slot's task its fresh worker on a new slot (the Workforce's call)."""
        with self._lock:
            if self._state not in (RUNNING, PAUSED):
                return False, None
            replaced, task.worker = task.worker, worker
            slot = pool.add_slot()
            pool.backend.start_slot(slot, self._slots.run)
            self.decisions.add(self._clock(), reasons.WORKER_ERROR_EVENT, reasons.SLOT_RETIRED,
                               task=task.name, detail=f'fresh worker on slot '
                                                      f'{pool.name}/{slot.id}')
            self._cond.notify_all()
            self._dispatch(self._clock())
        return True, replaced

    # -- live retuning ---------------------------------------------------------------------

    def validate_task_update(self, name: str, **changes: Any) -> TaskConfig:
        """
        Return task name's config with changes applied, validated; nothing changes.

        ConfigError names the field: an unknown task, a setting that cannot change while
        running, or a value out of its range. The ROS node checks parameters with it.
        """
        return self._retuner.validate(name, changes)

    def update_task(self, name: str, **changes: Any) -> Decision:
        """
        Change run-time settings of one task atomically, between two scheduling decisions.

        The values are validated first (validate_task_update: nothing changes on error); then
        applied under the engine lock and announced as a PARAM_CHANGE decision. A priority or
        enabled change lifts every shedding limit; a smaller queue_size drops the oldest frames
        with reason queue_resized.
        """
        return self._retuner.update(name, changes)

    def announce_setting(self, detail: str) -> Decision:
        """Announce a setting the caller changed ('name: old -> new'): PARAM_CHANGE, no task."""
        return self._retuner.announce(detail)

    # -- telemetry -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Return the live telemetry (docs/telemetry.md); both invariants hold in it."""
        with self._lock:
            return self._snapshot(self._clock())

    def snapshot_with_buckets(self) -> Tuple[Snapshot, Dict[str, Dict[str, BucketCounts]]]:
        """Return the live telemetry and each task's run latency buckets, read at one moment."""
        # At one moment, each series' count is the task's executed (telemetry/prometheus.py).
        with self._lock:
            return self._snapshot(self._clock()), {
                task.name: task.telemetry.latency_buckets() for task in self._tasks}

    def record_latency(self, task: str, values: Mapping[str, Optional[float]]) -> None:
        """Record a job's values of the caller's latency series (None: not measured)."""
        # Kept as the task's own series: the ROS node's transport, convert and node_overhead.
        with self._lock:
            self._tasks_by_name[task].telemetry.record_extra(self._clock(), values)

    def _snapshot(self, now: float) -> Snapshot:
        return snapshot(now, self._state, now - self._started_at, self.config.mode,
                        self._admission, self._tasks, self._pools, self._shedder,
                        self.decisions, self._resources)

    def report(self, lock_timeout: float = -1) -> Dict[str, Any]:
        """
        Return the whole-run report, as in docs/telemetry.md.

        It holds the final snapshot, whole-run latency percentiles per task and the decisions
        still in the ring. lock_timeout >= 0: raise TimeoutError when the engine stays busy
        that long (a forced exit writes what it can, without waiting for a stuck shutdown).
        """
        if not self._lock.acquire(timeout=lock_timeout):
            raise TimeoutError(f'the engine stayed busy for {lock_timeout:g} s')
        try:
            final = self._snapshot(self._clock())
            for task in self._tasks:
                final.tasks[task.name].run_latency = task.telemetry.run_latency()
        finally:
            self._lock.release()
        return report(self.config, final, self.decisions)

    def decisions_since(self, seq: int = 0) -> List[Decision]:
        """Return the decisions kept in the ring with a sequence number above seq."""
        return self.decisions.recent(seq)


def task_states(config: OrchestratorConfig, latency_series: Sequence[str]) -> List[TaskState]:
    """Return the run-time state of config's tasks, in config order."""
    window = config.telemetry
    tasks = [TaskState(task, index, window.window_s, window.window_samples, latency_series)
             for index, task in enumerate(config.tasks)]
    if config.mode == 'fifo':
        for task in tasks:
            task.queue.newest_first = False  # FIFO: one arrival order, whatever the task says
    return tasks


def traced_decisions(trace: TraceRecorder, on_decision: Optional[Callable[[Decision], None]]
                     ) -> Callable[[Decision], None]:
    """Return a decision callback: the trace records each decision, then on_decision gets it."""
    def deliver(decision: Decision) -> None:
        trace.decided(decision)
        if on_decision is not None:
            on_decision(decision)
    return deliver


def join(threads: List[threading.Thread], end: float) -> None:
    """Join threads until end (time.monotonic()); warn of those still running then."""
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(max(0.0, end - time.monotonic()))
            if thread.is_alive():
                LOGGER.warning('thread %s is still running after stop()', thread.name)
