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
Slot supervision: slot threads, job completion, timeouts, retired slots and replaced workers.

A mixin of Engine (engine.py); the slots and jobs themselves are in pool.py.
"""

import math
import threading
import time
from typing import Optional

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import (ChildError, DecodeError, PostprocessError,
                                                     RequestDropped, RequestTimedOut,
                                                     ServerUnavailable, WorkerCrashed)
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.engine.pool import Job, JOB_RUNNING, JOB_TIMED_OUT, Pool, Slot
from inferedge_orchestrator.engine.records import LOGGER, PAUSED, Result, RUNNING, STOPPING
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.scheduling.policy import TaskState
from inferedge_orchestrator.workers.base import Worker


class SlotSupervision:
    """Slot threads, job completion, timeouts, retired slots and replaced workers."""

    def _slot_loop(self, slot: Slot) -> None:
        """Run the jobs the pool's back-end hands the slot until it says stop (None)."""
        backend = slot.pool.backend
        next_job = backend.next_job
        while True:
            job = next_job(slot)
            if job is None:
                return
            output, error = None, None
            try:
                entered = time.monotonic()
                output = backend.call(job, job.deadline - self._clock())
                if not isinstance(output, InferenceOutput):
                    raise TypeError(f'infer() returned {type(output).__name__}, not '
                                    'InferenceOutput')
                decoder = job.task.decoder
                if decoder is not None and output.decoded is None:  # not decoded in a child
                    decoder.decode_into(output, job.frame.image.shape)
                if output.span is None:  # a child process sets its own
                    output.span = (entered, time.monotonic())
            except BaseException as exc:  # noqa: B902 - a worker never kills the engine
                error = exc
            if self.complete(job, output, error) and slot.retired:
                self._close_replaced(job.worker, job.task)
                return

    def _server_up(self, pool_name: str, detail: str) -> None:
        """Close a server pool's breaker: a health probe found it ready (the probe's thread)."""
        with self._lock:
            pool = self._pools[pool_name]
            if self._state not in (RUNNING, PAUSED) or not pool.backend.down:
                return
            now = self._clock()
            pool.backend.server_up(now)
            self.decisions.add(now, reasons.SERVER_UP, reasons.RECOVERED,
                               queue_depths=self._queue_depths(),
                               detail=f'pool {pool_name}: {detail}')
            self._dispatch(now)
            self._cond.notify_all()

    def _respawned(self, task_name: str, detail: str) -> None:
        """Count and announce a respawned executor (called by the back-end, on a slot thread)."""
        with self._lock:
            task = self._tasks_by_name.get(task_name)
            if task is None:
                return
            task.pool.respawns += 1
            self.decisions.add(self._clock(), reasons.WORKER_RESPAWN_EVENT, reasons.RESPAWNED,
                               task=task_name, queue_depths=self._queue_depths(), detail=detail)

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

    def complete(self, job: Job, output: Optional[InferenceOutput],
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

    def _finish(self, job: Job, output: Optional[InferenceOutput],
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
        if job.state == JOB_RUNNING and timeout and now - job.start >= timeout:
            self._time_out(job, now)  # it overran before the timer saw it: same outcome
        if job.state == JOB_RUNNING and isinstance(error, RequestTimedOut):
            self._time_out(job, now, str(error))  # the transport's own timeout
        if job.state != JOB_RUNNING:
            return None  # timed out or abandoned: its late output is discarded
        task.in_flight -= 1
        frame = job.frame
        if isinstance(error, RequestDropped):  # the server's queue policy: it never ran
            self._drop_frame(task, frame, error.reason, now, detail=str(error))
            if error.reason == reasons.EXPIRED:
                task.risk.loss(reasons.EXPIRED, now - job.blocking <= job.deadline)
            return None
        telemetry = task.telemetry
        result = Result(task.name, frame.input, frame.seq, reasons.OK, finished=now,
                        meta=frame.meta, decode_s=frame.decode_s,
                        queue_wait_s=max(0.0, job.start - frame.submitted))
        if error is not None:
            reason = reasons.DECODE_ERROR if isinstance(error, DecodeError) else \
                reasons.POSTPROCESS_ERROR if isinstance(error, PostprocessError) else \
                reasons.WORKER_CRASHED if isinstance(error, WorkerCrashed) else \
                reasons.SERVER_UNAVAILABLE if isinstance(error, ServerUnavailable) else \
                reasons.WORKER_ERROR
            if reason == reasons.DECODE_ERROR and not frame.decode_error_counted:
                self._inputs[frame.input].decode_errors += 1
                frame.decode_error_counted = True  # whichever task saw it first
            telemetry.fail(reason)
            if reason == reasons.WORKER_CRASHED:
                pool.crashes += 1
                self.decisions.add(now, reasons.WORKER_CRASH_EVENT, reason, task=task.name,
                                   queue_depths=self._queue_depths(), detail=str(error))
            elif reason == reasons.SERVER_UNAVAILABLE and \
                    pool.backend.lost(job.start):
                config = pool.backend.config
                self.decisions.add(now, reasons.SERVER_DOWN, reason, task=task.name,
                                   queue_depths=self._queue_depths(),
                                   detail=f'pool {pool.name}: {error}; its frames are dropped '
                                          f'until a health probe succeeds (every '
                                          f'{config.probe_backoff_s:g} s, doubling up to '
                                          f'{config.probe_backoff_max_s:g} s)')
            result.status, result.reason = reasons.FAILED, reason
            result.detail = f'{failure_type(error)}: {error}'
            self._warn_failure(task.name, frame, result.detail, now)
            if self._trace is not None:
                self._trace.ran(task.name, frame, job.start, now, reasons.FAILED, reason)
            return result
        service = now - job.start
        end_to_end = frame.age + (now - frame.arrival)
        result.outputs = output.outputs
        result.preprocess_s = output.preprocess_s
        result.inference_s = output.inference_s
        result.postprocess_s = output.postprocess_s
        result.decoded = output.decoded
        if output.decoded is not None:
            result.image, result.encoding = frame.image, frame.encoding
        result.service_s = service
        result.end_to_end_s = end_to_end
        if output.span is not None and job.handed:
            result.handoff_in_s = output.span[0] - job.handed
            result.model_span = output.span
        result.deadline_met = now <= job.deadline
        telemetry.executed += 1
        risk = task.risk
        if result.deadline_met:
            telemetry.within_budget += 1
        else:
            risk.loss(reasons.DEADLINE_MISS, now - job.blocking <= job.deadline)
        if job.hold_probe:  # faster than its history allows: the hold's measurement is stale
            task.probe_ended(now, service < task.fast_s)
        elif job.probe or result.deadline_met:
            task.probe_ended(now, result.deadline_met)
        grown = task.record_service(service)
        if grown:
            self._next_late -= grown  # its queued frames become late that much sooner
        risk.end_to_end.append(end_to_end)
        risk.unblocked_end_to_end.append(end_to_end - job.blocking)
        risk.service.append(service)
        telemetry.record_job(now, result.queue_wait_s, job.blocking, output.preprocess_s,
                             output.inference_s, output.postprocess_s, end_to_end)
        if self._trace is not None:
            self._trace.ran(task.name, frame, job.start, now, reasons.OK, '')
        return result

    def _warn_failure(self, task: str, frame: Frame, detail: str, now: float) -> None:
        """Log a failed frame, at most once a second per task (a broken stream fails them all)."""
        last, hidden = self._failure_log.get(task, (-math.inf, 0))
        if now - last < 1.0:
            self._failure_log[task] = (last, hidden + 1)
            return
        self._failure_log[task] = (now, 0)
        source = f' ({frame.meta})' if isinstance(frame.meta, str) else ''
        more = f'; {hidden} more failed since the last warning' if hidden else ''
        LOGGER.warning('task %s: frame %d%s failed: %s%s', task, frame.seq, source, detail, more)

    def _deliver(self, result: Result) -> None:
        if self._on_result is None:
            return
        if result.model_span[1]:
            result.handoff_out_s = time.monotonic() - result.model_span[1]
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
                if job.state == JOB_RUNNING:
                    if elapsed >= limit:
                        self._time_out(job, now)
                    else:
                        wake = min(wake, job.start + limit)
                if job.state == JOB_TIMED_OUT and pool.backend.retires_stuck:
                    if elapsed >= 3 * limit:
                        self._retire(slot, job, now)
                    else:
                        wake = min(wake, job.start + 3 * limit)
        return wake

    def _time_out(self, job: Job, now: float, transport: str = '') -> None:
        """Fail a job past timeout_ms, or whose request the transport timed out (its error)."""
        task = job.task
        job.state = JOB_TIMED_OUT
        task.in_flight -= 1
        task.telemetry.fail(reasons.TIMEOUT)
        task.risk.loss(reasons.TIMEOUT, False)  # its own service time, whatever blocked it
        running = f'running {1000 * (now - job.start):.0f} ms'
        detail = f'{running}: {transport}' if transport else \
            f'{running} > timeout_ms {task.config.timeout_ms:g}'
        self.decisions.add(now, reasons.WORKER_TIMEOUT_EVENT, reasons.TIMEOUT, task=task.name,
                           queue_depths=self._queue_depths(), detail=detail)
        frame = job.frame
        job.slot.pool.backend.abort(job)  # a process back-end frees the slot at once
        if self._trace is not None:
            self._trace.ran(task.name, frame, job.start, now, reasons.TIMED_OUT, reasons.TIMEOUT)
        self._pending_results.append(Result(
            task.name, frame.input, frame.seq, reasons.TIMED_OUT, reasons.TIMEOUT,
            transport or f'no result after {task.config.timeout_ms:g} ms', finished=now,
            meta=frame.meta,
            queue_wait_s=max(0.0, job.start - frame.submitted),
            end_to_end_s=frame.age + now - frame.arrival))

    def _retire(self, slot: Slot, job: Job, now: float) -> None:
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

    def _replace_worker(self, task: TaskState, pool: Pool) -> None:
        """Load a fresh worker for task and give the pool its slot back."""
        try:
            worker = self._create_worker(task.config, len(pool.slots) + 1)
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
            pool.backend.start_slot(slot, self._slot_loop)
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


def failure_type(error: BaseException) -> str:
    """Return the type name of a job's failure; a child's failure: the type raised there."""
    return error.type_name if isinstance(error, ChildError) else type(error).__name__
