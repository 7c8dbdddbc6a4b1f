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
Completion: the accounting of a job that ended, failed, timed out or got stuck.

A slot reports its finished job to the engine, which calls finish() under its lock and then
decides what runs next; timeouts are found by the engine's timer (check_timeouts()).
"""

import math
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import (ChildError, DecodeError, PostprocessError,
                                                     RequestDropped, RequestTimedOut,
                                                     ServerUnavailable, WorkerCrashed)
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.engine.admission import Admission
from inferedge_orchestrator.engine.expiry import ExpiryIndex
from inferedge_orchestrator.engine.ledger import Ledger
from inferedge_orchestrator.engine.pool import (Job, JOB_ABANDONED, JOB_RUNNING, JOB_TIMED_OUT,
                                                Pool, Slot)
from inferedge_orchestrator.engine.records import LOGGER, Result, SAME_INSTANT_S
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.scheduling.batching import describe_costs
from inferedge_orchestrator.scheduling.task import TaskState

_FAILURES = ((DecodeError, reasons.DECODE_ERROR), (PostprocessError, reasons.POSTPROCESS_ERROR),
             (WorkerCrashed, reasons.WORKER_CRASHED),
             (ServerUnavailable, reasons.SERVER_UNAVAILABLE))


class Completion:
    """Accounts for ended jobs and timeouts; the engine calls it under its lock."""

    def __init__(self, admission: Admission, ledger: Ledger, expiry: ExpiryIndex,
                 queue_depths: Callable[[], Dict[str, int]]):
        self._admission = admission
        self._ledger = ledger
        self._decisions = ledger.decisions
        self._expiry = expiry
        self._queue_depths = queue_depths
        self._failure_log: Dict[str, Tuple[float, int]] = {}  # task: (last warning, hidden)

    def finish(self, job: Job, output, error: Optional[BaseException],
               now: float) -> List[Result]:
        """
        Free the job's slot and count its frames' outcomes; return their Results to deliver.

        output: its InferenceOutput, or a batch's list of them (one per frame, in the order of
        job.batch). A frame has nothing to deliver when its job timed out or was abandoned
        before, or the server dropped its request without running it.
        """
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
        timeout = task.timeout_s
        if job.state == JOB_RUNNING and timeout and now - job.start >= timeout:
            return self.time_out(job, now)  # it overran before the timer saw it: same outcome
        if job.state == JOB_RUNNING and isinstance(error, RequestTimedOut):
            return self.time_out(job, now, str(error))  # the transport's own timeout
        if job.state != JOB_RUNNING:
            return []  # timed out or abandoned: its late output is discarded
        if job.batch is None:
            result = self._outcome(job, output, error, now, 1, True)
            return [] if result is None else [result]
        size = len(job.batch)
        outputs = output if error is None else [None] * size
        results = [self._outcome(member, member_output, error, now, size, member is job)
                   for member, member_output in zip(job.batch, outputs)]
        return [result for result in results if result is not None]

    def _outcome(self, job: Job, output: Optional[InferenceOutput],
                 error: Optional[BaseException], now: float, size: int,
                 lead: bool) -> Optional[Result]:
        """Count one frame's outcome (of a job of size frames; lead: the batch's first)."""
        task = job.task
        if isinstance(error, RequestDropped):  # the server's queue policy: it never ran
            task.count_end(job.frame.input)
            self._ledger.drop_frame(task, job.frame, error.reason, now, detail=str(error))
            if error.reason == reasons.EXPIRED:
                task.risk.loss(reasons.EXPIRED, now - job.blocking <= job.deadline)
            return None
        if error is not None:
            return self._failed(job, error, now, lead)
        return self._executed(job, output, now, size, lead)

    def _failed(self, job: Job, error: BaseException, now: float, lead: bool = True) -> Result:
        """Count a failed frame; lead: the first of its job's frames, which counts the job."""
        task, frame, pool = job.task, job.frame, job.slot.pool
        reason = next((r for kind, r in _FAILURES if isinstance(error, kind)),
                      reasons.WORKER_ERROR)
        if reason == reasons.DECODE_ERROR:
            self._admission.count_decode_error(frame)
        task.count_failed(reason, frame.input)
        # A batch's crash or outage is counted and announced once, by its lead.
        if lead and reason == reasons.WORKER_CRASHED:
            pool.crashes += 1
            self._decisions.add(now, reasons.WORKER_CRASH_EVENT, reason, task=task.name,
                                queue_depths=self._queue_depths(), detail=str(error))
        elif lead and reason == reasons.SERVER_UNAVAILABLE and pool.backend.lost(job.start):
            config = pool.backend.config
            self._decisions.add(now, reasons.SERVER_DOWN, reason, task=task.name,
                                queue_depths=self._queue_depths(),
                                detail=f'pool {pool.name}: {error}; its frames are dropped '
                                       f'until a health probe succeeds (every '
                                       f'{config.probe_backoff_s:g} s, doubling up to '
                                       f'{config.probe_backoff_max_s:g} s)')
        result = self._result(job, reasons.FAILED, reason, now, timed=False)
        result.detail = f'{failure_type(error)}: {error}'
        self._warn_failure(task.name, frame, result.detail, now)
        if self._ledger.trace is not None:
            self._ledger.trace.ran(task.name, frame, task.camera_budget_s(frame.input),
                                   job.start, now, reasons.FAILED, reason)
        return result

    def _executed(self, job: Job, output: InferenceOutput, now: float, size: int = 1,
                  lead: bool = True) -> Result:
        task, frame = job.task, job.frame
        result = self._result(job, reasons.OK, '', now)
        service = now - job.start
        result.outputs = output.outputs
        result.preprocess_s = output.preprocess_s
        result.inference_s = output.inference_s
        result.postprocess_s = output.postprocess_s
        result.decoded = output.decoded
        if output.decoded is not None:
            result.image, result.encoding = frame.image, frame.encoding
        result.service_s = service
        result.batch_size = size
        if output.span is not None:
            result.model_span = output.span
        result.deadline_met = now <= job.deadline + SAME_INSTANT_S
        task.count_executed(result.deadline_met, frame.input)
        risk = task.risk
        if not result.deadline_met:
            risk.loss(reasons.DEADLINE_MISS, now - job.blocking <= job.deadline)
        if job.hold_probe:  # faster than its history allows: the hold's measurement is stale
            task.probe_ended(now, service < task.fast_s)
        elif job.probe or result.deadline_met:
            task.probe_ended(now, result.deadline_met)
        if size > 1:
            if lead:  # one measurement of the batch's size
                task.batching.record(size, service)
        else:
            grown = task.record_service(service)
            if grown:
                self._expiry.sooner(grown)  # its queued frames become late that much sooner
        if task.batching is not None and lead:
            self._announce_batch_size(task, now)
        risk.end_to_end.append(result.end_to_end_s)
        risk.unblocked_end_to_end.append(result.end_to_end_s - job.blocking)
        risk.service.append(service)
        task.telemetry.record_job(now, result.queue_wait_s, job.blocking, output.preprocess_s,
                                  output.inference_s, output.postprocess_s,
                                  result.end_to_end_s)
        if self._ledger.trace is not None:
            self._ledger.trace.ran(task.name, frame, task.camera_budget_s(frame.input),
                                   job.start, now, reasons.OK, '')
        return result

    def _announce_batch_size(self, task: TaskState, now: float) -> None:
        """Announce (BATCH_SIZE) a change of the size its costs favour after a measurement."""
        costs = task.batching
        preferred = costs.preferred(task.service)
        if preferred != costs.size:
            self._decisions.add(now, reasons.BATCH_SIZE, reasons.BATCH_COST, task=task.name,
                                count=preferred, detail=f'batch size {costs.size} -> '
                                f'{preferred}: {describe_costs(costs, task.service)}')
            costs.size = preferred

    @staticmethod
    def _result(job: Job, status: str, reason: str, now: float, timed: bool = True) -> Result:
        """Return the Result of job; timed: with its end-to-end latency (not for a failure)."""
        frame = job.frame
        return Result(job.task.name, frame.input, frame.seq, status, reason, finished=now,
                      meta=frame.meta, decode_s=frame.decode_s,
                      queue_wait_s=max(0.0, job.start - frame.submitted),
                      end_to_end_s=frame.age + (now - frame.arrival) if timed else 0.0)

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

    def server_up(self, pool: Pool, detail: str, now: float) -> bool:
        """Close a server pool's breaker (SERVER_UP, the end of its SERVER_DOWN); False: open."""
        if not pool.backend.down:
            return False
        pool.backend.server_up(now)
        self._decisions.add(now, reasons.SERVER_UP, reasons.RECOVERED,
                            queue_depths=self._queue_depths(),
                            detail=f'pool {pool.name}: {detail}')
        return True

    def respawned(self, task: Optional[TaskState], detail: str, now: float) -> None:
        """Count and announce the respawned executor of task's pool (a child process)."""
        if task is not None:
            task.pool.respawns += 1
            self._decisions.add(now, reasons.WORKER_RESPAWN_EVENT, reasons.RESPAWNED,
                                task=task.name, queue_depths=self._queue_depths(),
                                detail=detail)

    def abandon(self, pools: Iterable[Pool], now: float, reason: str) -> None:
        """Abandon the jobs still running (stop): dropped with reason, their output discarded."""
        for pool in pools:
            for slot in pool.slots:
                job = slot.job
                if job is not None and job.state == JOB_RUNNING:
                    for member in job.members:
                        member.state = JOB_ABANDONED
                        job.task.count_end(member.frame.input)
                        self._ledger.drop_frame(job.task, member.frame, reason, now)

    # -- timeouts and stuck slots ----------------------------------------------------------

    def check_timeouts(self, now: float, pools: Iterable[Pool]
                       ) -> Tuple[float, List[Result], List[Slot]]:
        """
        Fail jobs past timeout_ms (TIMED_OUT); retire slots stuck past 3 x timeout_ms.

        Return (when to look again, the timed-out results to deliver, the slots retired).
        """
        wake, timed_out, retired = math.inf, [], []
        for pool in pools:
            for slot in list(pool.slots):
                job = slot.job
                if job is None or not job.task.config.timeout_ms:
                    continue
                limit = job.task.config.timeout_ms / 1000.0
                elapsed = now - job.start
                if job.state == JOB_RUNNING:
                    if elapsed >= limit:
                        timed_out += self.time_out(job, now)
                    else:
                        wake = min(wake, job.start + limit)
                if job.state == JOB_TIMED_OUT and pool.backend.retires_stuck:
                    if elapsed >= 3 * limit:
                        self._retire(slot, job, now)
                        retired.append(slot)
                    else:
                        wake = min(wake, job.start + 3 * limit)
        return wake, timed_out, retired

    def time_out(self, job: Job, now: float, transport: str = '') -> List[Result]:
        """Fail a job past timeout_ms, or whose request the transport timed out (its error)."""
        task = job.task
        running = f'running {1000 * (now - job.start):.0f} ms'
        detail = f'{running}: {transport}' if transport else \
            f'{running} > timeout_ms {task.config.timeout_ms:g}'
        results = []
        for member in job.members:
            member.state = JOB_TIMED_OUT
            task.count_failed(reasons.TIMEOUT, member.frame.input)
            task.risk.loss(reasons.TIMEOUT, False)  # its own service time, whatever blocked it
            if self._ledger.trace is not None:
                self._ledger.trace.ran(task.name, member.frame,
                                       task.camera_budget_s(member.frame.input), job.start,
                                       now, reasons.TIMED_OUT, reasons.TIMEOUT)
            result = self._result(member, reasons.TIMED_OUT, reasons.TIMEOUT, now)
            result.detail = transport or f'no result after {task.config.timeout_ms:g} ms'
            results.append(result)
        self._decisions.add(now, reasons.WORKER_TIMEOUT_EVENT, reasons.TIMEOUT, task=task.name,
                            queue_depths=self._queue_depths(), detail=detail)
        job.slot.pool.backend.abort(job)  # a process back-end frees the slot at once
        return results

    def _retire(self, slot: Slot, job: Job, now: float) -> None:
        pool = slot.pool
        slot.retired = True
        pool.slots.remove(slot)
        pool.stuck.append(slot)
        pool.retired += 1
        self._decisions.add(now, reasons.WORKER_ERROR_EVENT, reasons.SLOT_RETIRED,
                            task=job.task.name, queue_depths=self._queue_depths(),
                            detail=f'slot {pool.name}/{slot.id} stuck for '
                                   f'{1000 * (now - job.start):.0f} ms; pool capacity '
                                   f'{len(pool.slots)}')


def failure_type(error: BaseException) -> str:
    """Return the type name of a job's failure; a child's failure: the type raised there."""
    return error.type_name if isinstance(error, ChildError) else type(error).__name__
