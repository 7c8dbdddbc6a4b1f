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
The tasks' workers: made by their pools' back-ends, loaded, replaced when stuck, closed.

Loading and closing run outside the engine's lock (they are slow); the swap of a replaced
worker runs under it (the engine's restore callback).
"""

import threading
from typing import Callable, Dict, List, Optional, Tuple

from inferedge_orchestrator.config.model import TaskConfig
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import WorkerLoadError
from inferedge_orchestrator.engine.pool import Pool, Slot
from inferedge_orchestrator.engine.records import LOGGER
from inferedge_orchestrator.scheduling.batching import BatchCosts
from inferedge_orchestrator.scheduling.task import TaskState
from inferedge_orchestrator.telemetry.decisions import DecisionLog
from inferedge_orchestrator.workers.base import Worker, WorkerFactory
from inferedge_orchestrator.workers.jobs import bound_decoder, bring_up

# (task, pool, fresh worker) -> (whether the engine took it: not if it stopped, the worker it
# replaced).
Restore = Callable[[TaskState, Pool, Worker], Tuple[bool, Optional[Worker]]]


class Workforce:
    """Owns the life of the tasks' workers (TaskState.worker and TaskState.decoder)."""

    def __init__(self, tasks: List[TaskState], pools: Dict[str, Pool],
                 factory: Optional[WorkerFactory], lock: threading.Condition,
                 clock: Callable[[], float], decisions: DecisionLog):
        self._tasks = tasks
        self._pools = pools
        self._factory = factory  # the caller's worker factory: thread pools only
        self._lock = lock  # the engine's
        self._clock = clock
        self._decisions = decisions
        self.loaded = False

    def _new_worker(self, task: TaskConfig, slots: int) -> Worker:
        """Return the task's worker as its pool's back-end runs it (a child process, say)."""
        return self._pools[task.pool].backend.make_worker(task, slots, self._factory)

    def load(self) -> None:
        """Create, load and warm up every task's worker and bind its decoder; WorkerLoadError."""
        if self.loaded:
            return
        for task in self._tasks:
            config = task.config
            try:
                worker = self._new_worker(config, len(task.pool.slots))
                bring_up(worker)
            except Exception as error:  # noqa: B902 - any worker failure is reported the same
                self.close()
                raise WorkerLoadError(f'task {task.name!r}: worker {config.worker!r} failed to '
                                      f'load: {type(error).__name__}: {error}') from error
            task.worker = worker
            try:
                task.decoder = bound_decoder(config.decoder, task.name, config.decoder_options,
                                             worker.model_info())
            except ValueError as error:
                self.close()
                raise WorkerLoadError(f'task {task.name!r}: decoder {config.decoder!r}: '
                                      f'{error}') from error
            fast = worker.fast_latency_s()
            if task.expected_s:
                task.set_expected(task.expected_s, min(fast, task.expected_s))
            else:
                task.set_expected(worker.expected_latency_s(), fast)
            task.batching = None
            if config.max_batch > 1:
                try:
                    task.batching = self._batch_costs(config, worker)
                except Exception as error:  # noqa: B902 - as a failed load
                    self.close()
                    raise WorkerLoadError(f'task {task.name!r}: max_batch {config.max_batch}: '
                                          f'{type(error).__name__}: {error}') from error
        self.loaded = True

    def _batch_costs(self, config: TaskConfig, worker: Worker) -> BatchCosts:
        """Warm a batching task's worker up at each size; return its sizes' seeded costs."""
        limit = worker.batch_limit()
        if limit < 2:
            isolated = self._pools[config.pool].backend.kind == 'process'
            raise ValueError(
                'its pool runs the worker in child processes, which take one frame a call'
                if isolated else f"the {config.worker} worker's model takes one frame a call "
                '(docs/workers.md, "Batches")')
        costs = BatchCosts(min(config.max_batch, limit))
        sizes = range(2, costs.max_batch + 1)
        worker.warmup_batches(sizes, int(worker.options.get('warmup', 0) or 0))
        for size in sizes:
            costs.seed(size, worker.expected_batch_latency_s(size),
                       worker.fast_batch_latency_s(size))
        return costs

    def close(self) -> None:
        """Release every task's worker (models, sessions, device memory)."""
        for task in self._tasks:
            if task.worker is not None:
                try:
                    task.worker.close()
                except Exception:  # noqa: B902 - closing must go on for the other tasks
                    LOGGER.exception('closing the worker of task %s failed', task.name)
                task.worker = None
        self.loaded = False

    def replace_later(self, slot: Slot, restore: Restore) -> None:
        """Give a retired slot's task a fresh worker on a new slot, when its kind allows."""
        job = slot.job
        if job is not None and job.worker is not None and job.worker.replaceable:
            threading.Thread(target=self._replace, args=(job.task, slot.pool, restore),
                             name=f'inferedge-replace-{job.task.name}', daemon=True).start()

    def _replace(self, task: TaskState, pool: Pool, restore: Restore) -> None:
        """Load a fresh worker for task and have the engine give the pool its slot back."""
        try:
            worker = self._new_worker(task.config, len(pool.slots) + 1)
            bring_up(worker)
        except Exception as error:  # noqa: B902
            LOGGER.error('task %s: replacing the stuck worker failed: %s', task.name, error)
            with self._lock:
                self._decisions.add(self._clock(), reasons.WORKER_ERROR_EVENT,
                                    reasons.SLOT_RETIRED, task=task.name,
                                    detail=f'replacing the stuck worker failed: '
                                           f'{type(error).__name__}: {error}; pool '
                                           f'{pool.name} capacity {len(pool.slots)}')
                self._lock.notify_all()
            return
        taken, replaced = restore(task, pool, worker)
        if not taken:
            worker.close()  # the engine stopped meanwhile
            return
        self.close_replaced(replaced, task)  # when its stuck call has returned already

    def close_replaced(self, worker: Optional[Worker], task: TaskState) -> None:
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
