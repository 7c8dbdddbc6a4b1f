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
- replaces_stuck: a slot whose job never returns (3 x timeout_ms) is retired and the task gets
  a fresh worker on a new slot (a thread cannot be stopped).

A dead or broken slot is detected in band: its call raises WorkerCrashed (reason
worker_crashed), and the back-end replaces what died before the slot's next job.
"""

import queue
import threading
from typing import Callable, Optional

from inferedge_orchestrator.config.model import PoolConfig, TaskConfig
from inferedge_orchestrator.workers.base import Worker
from inferedge_orchestrator.workers.process import ChildSettings, ProcessWorker
from inferedge_orchestrator.workers.registry import create_worker, WorkerFactory


class PoolBackend:
    """The interface of a pool back-end (the methods are described in the module's text)."""

    isolation = ''
    replaces_stuck = False

    def __init__(self, config: PoolConfig,
                 on_respawn: Optional[Callable[[str, str], None]] = None):
        self.config = config
        self._on_respawn = on_respawn  # (task name, detail): respawned executors announce it

    def make_worker(self, task: TaskConfig, slots: int,
                    create: Optional[WorkerFactory]) -> Worker:
        raise NotImplementedError

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


class ThreadBackend(PoolBackend):
    """Slots run by threads of the engine's process: the jobs call the task's worker there."""

    isolation = 'thread'
    replaces_stuck = True

    def make_worker(self, task: TaskConfig, slots: int,
                    create: Optional[WorkerFactory]) -> Worker:
        if create is not None:
            return create(task, slots)
        return create_worker(task.worker, task.name, task.worker_options, slots)

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
        """Do nothing: a thread cannot be stopped, its slot stays busy until the call returns."""
        return False


class ProcessBackend(ThreadBackend):
    """
    Each slot's worker in a child process of its own: crashes and hangs stay there.

    The slots are still threads of the engine's process; each waits on its child (process.py).
    """

    isolation = 'process'
    replaces_stuck = False  # abort() kills the child: the slot never gets stuck

    def make_worker(self, task: TaskConfig, slots: int,
                    create: Optional[WorkerFactory]) -> Worker:
        if create is not None:
            raise ValueError(f'pool {self.config.name!r} isolates its workers in child '
                             'processes, which make them by kind: a worker factory works in '
                             'thread pools only')
        config = self.config
        settings = ChildSettings(config.address_space_mb, config.cpus, config.child_threads)
        return ProcessWorker(task.name, task.worker, task.worker_options, slots, settings,
                             on_respawn=self._on_respawn,
                             decoder=(task.decoder, task.decoder_options))

    def abort(self, job) -> bool:
        if job.worker is None or job.slot.thread is None:
            return False
        return job.worker.abort(job.slot.thread.ident)


BACKENDS = {backend.isolation: backend for backend in (ThreadBackend, ProcessBackend)}


def create_backend(config: PoolConfig, virtual: bool,
                   on_respawn: Optional[Callable[[str, str], None]] = None) -> PoolBackend:
    """Return the back-end of a pool; the virtual clock runs every pool in the thread back-end."""
    backend = ThreadBackend if virtual else BACKENDS[config.isolation]
    return backend(config, on_respawn)
