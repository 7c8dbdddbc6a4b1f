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

import math
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from inferedge_orchestrator.config.loader import load_config, parse_task, remote_tasks
from inferedge_orchestrator.config.model import OrchestratorConfig, TaskConfig
from inferedge_orchestrator.config.schema import schema
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import ConfigError, WorkerLoadError
from inferedge_orchestrator.decoders.base import create_decoder
from inferedge_orchestrator.engine.admission import Admission
from inferedge_orchestrator.engine.backends import create_backend
from inferedge_orchestrator.engine.dispatch import Dispatch
from inferedge_orchestrator.engine.pool import JOB_ABANDONED, JOB_RUNNING, Pool
from inferedge_orchestrator.engine.records import (CLOSED, CREATED, LOGGER, PAUSED, REPORT_SCHEMA,
                                                   Result, RUNNING, STOPPED, STOPPING,
                                                   VirtualClock)
from inferedge_orchestrator.engine.slots import SlotSupervision
from inferedge_orchestrator.scheduling.policy import RiskSignals, TaskState
from inferedge_orchestrator.scheduling.shedding import LoadShedder
from inferedge_orchestrator.telemetry.counters import InputTelemetry, ResourceMonitor
from inferedge_orchestrator.telemetry.decisions import Decision, DecisionLog
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.telemetry.job_trace import TraceRecorder
from inferedge_orchestrator.telemetry.snapshot import (DecisionCounts, PoolSnapshot,
                                                       SheddingSnapshot, Snapshot, TaskSnapshot)
from inferedge_orchestrator.workers.base import Worker


class Engine(Admission, Dispatch, SlotSupervision):
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
        self._custom_worker_factory = worker_factory  # thread pools only
        self._fifo = self.config.mode == 'fifo'
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._state = CREATED
        self._loaded = False
        telemetry = self.config.telemetry
        self.decisions = DecisionLog(telemetry.decision_history, on_decision)
        self._shedder = LoadShedder(self.config.shedding, self.decisions)
        self._resources = ResourceMonitor(telemetry.resources and not virtual)
        self._pools = {}
        for name, pool in self.config.pools.items():
            backend = create_backend(pool, virtual, bool(remote_tasks(self.config, name)),
                                     self._respawned, self._server_up)
            self._pools[name] = Pool(name, pool.slots, backend)
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
        self._failure_log: Dict[str, Tuple[float, int]] = {}  # task: (last warning, hidden)
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

    def _create_worker(self, task: TaskConfig, slots: int) -> Worker:
        """Return the task's worker, as its pool's back-end runs it (a child process, say)."""
        return self._pools[task.pool].backend.make_worker(task, slots,
                                                          self._custom_worker_factory)

    def load(self) -> None:
        """Create, load and warm up every task's worker (slow; before start())."""
        if self._loaded:
            return
        for task in self._tasks:
            slots = len(self._pools[task.config.pool].slots)
            try:
                worker = self._create_worker(task.config, slots)
                worker.load()
                worker.warmup(int(task.config.worker_options.get('warmup', 0) or 0))
            except Exception as error:  # noqa: B902 - any worker failure is reported the same
                self._close_workers()
                raise WorkerLoadError(f'task {task.name!r}: worker {task.config.worker!r} '
                                      f'failed to load: {type(error).__name__}: {error}'
                                      ) from error
            task.worker = worker
            config = task.config
            task.decoder = create_decoder(config.decoder, task.name, config.decoder_options)
            if task.decoder is not None:
                try:
                    task.decoder.bind(worker.model_info())
                except ValueError as error:
                    self._close_workers()
                    raise WorkerLoadError(f'task {task.name!r}: decoder {config.decoder!r}: '
                                          f'{error}') from error
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
                        pool.backend.start_slot(slot, self._slot_loop)
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
                    if job is not None and job.state == JOB_RUNNING:
                        job.state = JOB_ABANDONED
                        job.task.in_flight -= 1
                        self._drop_frame(job.task, job.frame, reason, now)
            self._flush_period(now)
            self._state = STOPPED
            threads = []
            for pool in self._pools.values():
                for slot in pool.slots:
                    if slot.thread is not None:
                        threads.append(pool.backend.stop_slot(slot))
                prober = pool.backend.stop()
                if prober is not None:
                    threads.append(prober)
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

    # -- live retuning --------------------------------------------------------------------

    def update_task(self, name: str, **changes: Any) -> Decision:
        """
        Change run-time settings of one task atomically, between two scheduling decisions.

        The values are validated first (ConfigError, nothing changes); then applied under the
        engine lock and announced as a PARAM_CHANGE decision. A priority or enabled change
        lifts every shedding limit; a smaller queue_size drops the oldest frames with reason
        queue_resized.
        """
        task = self._tasks_by_name.get(name)
        if task is None:
            raise ConfigError(f'tasks: {name!r} is not a task; allowed: '
                              f'{", ".join(self._tasks_by_name)}')
        live = [key for key, field in schema(TaskConfig).items() if field.live]
        for key in changes:
            if key not in live:
                raise ConfigError(f'tasks.{name}.{key}: cannot change while running; allowed: '
                                  f'{", ".join(live)}')
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

    def snapshot(self) -> Snapshot:
        """Return the live telemetry (docs/telemetry.md); both invariants hold in it."""
        with self._lock:
            return self._snapshot(self._clock())

    def _snapshot(self, now: float) -> Snapshot:
        tasks = {}
        for task in self._tasks:
            telemetry = task.telemetry
            tasks[task.name] = TaskSnapshot(
                input=task.config.input, pool=task.config.pool, priority=task.priority,
                enabled=task.config.enabled, routed=telemetry.routed,
                executed=telemetry.executed, completed_within_budget=telemetry.within_budget,
                failed=telemetry.failed_total,
                failed_by_reason=dict(sorted(telemetry.failed.items())),
                dropped=telemetry.dropped_total,
                dropped_by_reason=dict(sorted(telemetry.dropped.items())),
                queued=len(task.queue), in_flight=task.in_flight,
                slots_down=len(task.pool.slots) if task.pool.backend.down else
                task.worker.slots_down() if task.worker is not None else 0,
                held_for_priority=telemetry.held_for_priority,
                max_queue_depth=telemetry.max_queue_depth, rate_limit_hz=task.rate_limit_hz(),
                shed_limit_hz=task.shed_limit_hz, executed_rate_hz=task.started_rate.rate(now),
                predicted_service_ms=task.predicted_s * 1000.0, busy_s=task.busy_s,
                latency=telemetry.live_latency(now),
                window_overflow=telemetry.window_overflow())
        uptime = now - self._started_at
        pools = {}
        for pool in self._pools.values():
            capacity = max(1, len(pool.slots)) * uptime
            backend = pool.backend
            pools[pool.name] = PoolSnapshot(
                slots=len(pool.slots), busy=sum(1 for s in pool.slots if s.job is not None),
                retired=pool.retired, crashes=pool.crashes, respawns=pool.respawns,
                backend=backend.kind, server_down=backend.down, outages=backend.outages,
                probes=backend.probes,
                run_utilisation=min(1.0, pool.busy_seconds(now) / capacity) if capacity else 0.0,
                period_utilisation=pool.utilisation)
        shedder = self._shedder
        return Snapshot(
            time=now, uptime_s=uptime, state=self._state, mode=self.config.mode,
            inputs={name: inp.snapshot(now) for name, inp in self._inputs.items()},
            unknown_input=self.unknown_input, tasks=tasks, pools=pools,
            shedding=SheddingSnapshot(
                active=shedder.active, ticks=shedder.ticks,
                limits_hz={t.name: t.shed_limit_hz for t in self._tasks if t.shed_limit_hz},
                last_risk=list(shedder.last_risk) if shedder.last_risk else None),
            decisions=DecisionCounts(self.decisions.total, dict(self.decisions.by_event)),
            resources=self._resources.sample())

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
            now = self._clock()
            snapshot = self._snapshot(now)
            for task in self._tasks:
                snapshot.tasks[task.name].run_latency = task.telemetry.run_latency()
        finally:
            self._lock.release()
        return {'schema': REPORT_SCHEMA, 'config': self.config.to_dict(),
                'warnings': list(self.config.warnings), 'final': snapshot.to_dict(),
                'invariant_violations': check_invariants(snapshot),
                'decisions': [d.to_dict() for d in self.decisions.recent()]}

    def decisions_since(self, seq: int = 0) -> List[Decision]:
        """Return the decisions kept in the ring with a sequence number above seq."""
        return self.decisions.recent(seq)
