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
Pool back-ends: how the slots of a pool run the jobs the scheduler gives them.

The engine decides which job runs on which free slot and keeps the accounting; a back-end owns
what executes a slot's jobs (docs/engine_api.md, "Pool back-ends"):

- make_worker(task, slots, create): the worker the pool's tasks call (the task's own worker,
  or a proxy that runs it elsewhere); create, when given, is the caller's worker factory
  (Engine(worker_factory=...): tests), which only a thread pool can call;
- start_slot(slot, run): start the slot's executor; run(slot) is the engine's slot loop, which
  takes jobs with next_job(slot), calls the worker and reports the outcome;
- hand(slot, job) and next_job(slot): the hand-off of one job to a started slot;
- stop_slot(slot): end the executor after its job; returns what stop() joins;
- abort(job): stop a job past its timeout; True when the slot is free again at once;
- retires_stuck: a slot whose job never returns (3 x timeout_ms) is retired (a thread cannot
  be stopped); a replaceable worker (Worker.replaceable) then gets a fresh one on a new slot;
- call(job, budget_left_s): the model call of a job, on its slot's thread; call_batch: the
  same for a batch (job.batch), one output a frame;
- down, lost(started), stop(): a server pool's circuit breaker (below);
- threaded: whether its slots run on threads (all but the virtual clock's).

Under the virtual clock (VirtualBackend: tools/simulation.py) nothing runs: a job handed to a
slot is given to the simulation, which completes it at its virtual end (Engine.complete).

A dead or broken slot is detected in band: its call raises WorkerCrashed (reason
worker_crashed), and the back-end replaces what died before the slot's next job.

A server pool (ServerBackend: its tasks' workers are remote, the triton kind) has slots that
are requests in flight to one server. A request that cannot reach the server
(ServerUnavailable) opens the pool's circuit breaker: while `down`, the engine drops the
frames of its tasks at dispatch (server_unavailable), and one thread probes the server's
health after a backoff that doubles up to a cap, one probe at a time, until every task's
model answers; then the back-end calls on_server_up and the engine closes the breaker.
"""

import logging
import queue
import threading
import time
from typing import Callable, Dict, Optional

from inferedge_orchestrator.config.model import PoolConfig, TaskConfig
from inferedge_orchestrator.contracts.kinds import WORKERS
from inferedge_orchestrator.workers.base import Worker, WorkerFactory
from inferedge_orchestrator.workers.process import ChildSettings, ProcessWorker

LOGGER = logging.getLogger('inferedge_orchestrator')


class PoolBackend:
    """The interface of a pool back-end (the methods are described in the module's text)."""

    kind = ''  # thread, process, server or virtual: in the pool's telemetry
    retires_stuck = True
    threaded = True
    down = False  # a server pool whose breaker is open: its frames are dropped at dispatch
    outages = probes = 0

    def __init__(self, config: PoolConfig,
                 on_respawn: Optional[Callable[[str, str], None]] = None,
                 on_server_up: Optional[Callable[[str, str], None]] = None):
        self.config = config
        self._on_respawn = on_respawn  # (task name, detail): respawned executors announce it
        self._on_server_up = on_server_up  # (pool name, detail): the breaker may close

    def make_worker(self, task: TaskConfig, slots: int,
                    create: Optional[WorkerFactory]) -> Worker:
        """Return the task's worker, in this process (create: the caller's factory)."""
        if create is not None:
            return create(task, slots)
        return WORKERS.create(task.worker, task.name, task.worker_options, slots)

    def start_slot(self, slot, run: Callable[[object], None]) -> None:
        raise NotImplementedError

    def hand(self, slot, job) -> None:
        raise NotImplementedError

    def next_job(self, slot):
        raise NotImplementedError

    def stop_slot(self, slot) -> Optional[threading.Thread]:
        raise NotImplementedError

    def abort(self, job) -> bool:
        raise NotImplementedError

    def call(self, job, budget_left_s: float):
        """Run a job's model call on its slot's thread; return the InferenceOutput."""
        return job.worker.infer(job.frame)

    def call_batch(self, job, budget_left_s: float):
        """Run a batch's model call (its frames in job.batch's order); one output a frame."""
        return job.worker.infer_batch([member.frame for member in job.batch])

    def lost(self, started: float) -> bool:
        """Note that a job started at started could not reach its server; True: now down."""
        return False

    def stop(self) -> Optional[threading.Thread]:
        """End what the back-end runs besides the slots (a probe); return what to join."""
        return None


class ThreadBackend(PoolBackend):
    """Slots run by threads of the engine's process: the jobs call the task's worker there."""

    kind = 'thread'

    def start_slot(self, slot, run: Callable[[object], None]) -> None:
        slot.inbox = queue.SimpleQueue()
        slot.thread = threading.Thread(target=run, args=(slot,),
                                       name=f'inferedge-{slot.pool.name}-{slot.id}',
                                       daemon=False)
        slot.thread.start()

    def hand(self, slot, job) -> None:
        slot.inbox.put(job)

    def next_job(self, slot):
        """Wait for the slot's next job; None: the slot stops."""
        return slot.inbox.get()

    def stop_slot(self, slot) -> Optional[threading.Thread]:
        thread, slot.thread = slot.thread, None
        slot.inbox.put(None)
        return thread

    def abort(self, job) -> bool:
        """
        Ask the job's worker to stop the call its slot thread is in (Worker.abort).

        A thread cannot be stopped: an in-process worker says no and the slot stays busy until
        the call returns; a process worker kills its child, a server worker cancels the request.
        """
        if job.worker is None or job.slot.thread is None:
            return False
        return job.worker.abort(job.slot.thread.ident)


class ProcessBackend(ThreadBackend):
    """
    Each slot's worker in a child process of its own: crashes and hangs stay there.

    The slots are still threads of the engine's process; each waits on its child (process.py).
    """

    kind = 'process'  # abort() kills the child: the slot never gets stuck

    def make_worker(self, task: TaskConfig, slots: int,
                    create: Optional[WorkerFactory]) -> Worker:
        if create is not None:
            raise ValueError(f'pool {self.config.name!r} isolates its workers in child '
                             'processes, which make them by kind: a worker factory works in '
                             'thread pools only')
        config = self.config
        settings = ChildSettings(config.address_space_mb, config.cpus, config.child_threads,
                                 config.os_policy, config.os_nice)
        return ProcessWorker(task.name, task.worker, task.worker_options, slots,
                             settings, on_respawn=self._on_respawn,
                             decoder=(task.decoder, task.decoder_options))


class ServerBackend(ThreadBackend):
    """
    A pool whose slots are requests in flight to one inference server, with a circuit breaker.

    Each slot is a thread of the engine's process that preprocesses its frame and waits for
    the server's answer; no job holds a slot of a local pool. The budget left and the rank of
    the task's priority in the pool travel with each request (workers/triton.py).
    """

    kind = 'server'
    # A request ends by its client_timeout_ms (gRPC: abort() cancels it), and its slot with it:
    # retiring the slot would only lose it, and a new worker would wait on the same server.
    retires_stuck = False

    def __init__(self, config: PoolConfig,
                 on_respawn: Optional[Callable[[str, str], None]] = None,
                 on_server_up: Optional[Callable[[str, str], None]] = None):
        super().__init__(config, on_respawn, on_server_up)
        # The pool's tasks' workers, by task (a load retried replaces them): the probe asks each.
        self._workers: Dict[str, Worker] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._prober: Optional[threading.Thread] = None
        self.up_since = float('-inf')  # engine clock: when the breaker last closed

    def make_worker(self, task: TaskConfig, slots: int,
                    create: Optional[WorkerFactory]) -> Worker:
        worker = super().make_worker(task, slots, create)
        self._workers[task.name] = worker
        return worker

    def call(self, job, budget_left_s: float):
        task = job.task
        # A task that runs late frames anyway gives the server no deadline either.
        budget = budget_left_s if task.drops_late else None
        return job.worker.infer(job.frame, budget_s=budget, priority_rank=task.priority_rank)

    def call_batch(self, job, budget_left_s: float):
        task = job.task
        budget = budget_left_s if task.drops_late else None  # the lead's: the earliest
        return job.worker.infer_batch([member.frame for member in job.batch], budget_s=budget,
                                      priority_rank=task.priority_rank)

    def lost(self, started: float) -> bool:
        """Open the breaker and start probing, unless it is open or the job predates SERVER_UP."""
        with self._lock:
            if self.down or started < self.up_since or self._stopping.is_set():
                return False
            self.down = True
            self.outages += 1
            self._prober = threading.Thread(target=self._probe_loop, args=(self.outages,),
                                            name=f'inferedge-probe-{self.config.name}',
                                            daemon=True)
            self._prober.start()
        return True

    def server_up(self, now: float) -> None:
        """Close the breaker (the engine calls it under its lock when a probe succeeded)."""
        with self._lock:
            self.down = False
            self.up_since = now

    def stop(self) -> Optional[threading.Thread]:
        """Stop probing and close the breaker: a restarted engine finds out afresh."""
        with self._lock:
            self._stopping.set()
            prober, self._prober = self._prober, None
            self.down = False
        return prober

    def start_slot(self, slot, run: Callable[[object], None]) -> None:
        self._stopping.clear()
        super().start_slot(slot, run)

    def _probe_loop(self, outage: int) -> None:
        """Probe after each backoff until every worker's server and model answer, or stop."""
        config = self.config
        backoff = config.probe_backoff_s
        started = time.monotonic()
        while not self._stopping.wait(backoff):
            with self._lock:
                if outage != self.outages or not self.down:
                    return
                self.probes += 1
                probes = self.probes
            try:
                answers = [worker.probe() for worker in self._workers.values()]
            except Exception as error:  # noqa: B902 - any failure means: not yet
                LOGGER.debug('pool %s: probe %d: %s', config.name, probes, error)
                backoff = min(2.0 * backoff, config.probe_backoff_max_s)
                continue
            if self._on_server_up is not None:
                down_s = time.monotonic() - started
                self._on_server_up(config.name, f'{"; ".join(answers)} after {down_s:.2f} s '
                                                f'down (probe {probes})')
            return


class VirtualBackend(PoolBackend):
    """
    A pool under the virtual clock: its slots run nothing; a job handed is given to `start`.

    The simulation (tools/simulation.py) draws the job's service time and completes it at its
    virtual end with Engine.complete(); no thread is started.
    """

    kind = 'virtual'
    threaded = False

    def __init__(self, config: PoolConfig, start: Callable[[object], None]):
        super().__init__(config)
        self._start = start

    def start_slot(self, slot, run: Callable[[object], None]) -> None:
        pass

    def hand(self, slot, job) -> None:
        self._start(job)

    def stop_slot(self, slot) -> Optional[threading.Thread]:
        return None

    def abort(self, job) -> bool:
        return False


BACKENDS = {backend.kind: backend for backend in (ThreadBackend, ProcessBackend)}


def create_backend(config: PoolConfig, remote: bool = False,
                   on_respawn: Optional[Callable[[str, str], None]] = None,
                   on_server_up: Optional[Callable[[str, str], None]] = None,
                   virtual: Optional[Callable[[object], None]] = None) -> PoolBackend:
    """
    Return the back-end of a pool; remote: its tasks' workers run on a server.

    virtual: under the virtual clock, every pool is a VirtualBackend handing its jobs to it.
    """
    if virtual is not None:
        return VirtualBackend(config, virtual)
    backend = ServerBackend if remote else BACKENDS[config.isolation]
    return backend(config, on_respawn, on_server_up)
