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

"""Live retuning: a task's run-time settings validated, then applied between two decisions."""

import threading
from typing import Any, Callable, Dict

from inferedge_orchestrator.config.loader import updated_task
from inferedge_orchestrator.config.model import OrchestratorConfig, TaskConfig
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.engine.expiry import ExpiryIndex
from inferedge_orchestrator.engine.ledger import Ledger
from inferedge_orchestrator.scheduling.shedding import LoadShedder
from inferedge_orchestrator.scheduling.task import TaskState
from inferedge_orchestrator.telemetry.decisions import Decision


class Retuner:
    """
    Validates task updates (any thread) and applies them under the engine's lock.

    lock: the engine's condition; clock and dispatch: the engine's (dispatch(now) starts what
    the change lets start).
    """

    def __init__(self, config: OrchestratorConfig, tasks: Dict[str, TaskState],
                 ledger: Ledger, expiry: ExpiryIndex, shedder: LoadShedder,
                 queue_depths: Callable[[], Dict[str, int]], lock: threading.Condition,
                 clock: Callable[[], float], dispatch: Callable[[float], Any]):
        self._lock = lock
        self._clock = clock
        self._dispatch = dispatch
        self._config = config
        self._tasks = tasks  # by name
        self._ledger = ledger
        self._expiry = expiry
        self._shedder = shedder
        self._queue_depths = queue_depths

    def validate(self, name: str, changes: Dict[str, Any]) -> TaskConfig:
        """Return task name's config with changes applied, validated; ConfigError names why."""
        task = self._tasks.get(name)
        if task is None:
            raise ConfigError(f'tasks: {name!r} is not a task; allowed: '
                              f'{", ".join(self._tasks)}')
        return updated_task(task.config, changes)

    def update(self, name: str, changes: Dict[str, Any]) -> Decision:
        """Validate, then apply under the lock and dispatch (Engine.update_task)."""
        config = self.validate(name, changes)
        with self._lock:
            now = self._clock()
            decision = self.apply(name, config, changes, now)
            self._dispatch(now)
            self._lock.notify_all()
        return decision

    def announce(self, detail: str) -> Decision:
        """Announce a setting changed outside the tasks (Engine.announce_setting)."""
        with self._lock:
            return self._ledger.decisions.add(self._clock(), reasons.PARAM_CHANGE_EVENT,
                                              reasons.PARAM_CHANGE, task='',
                                              queue_depths=self._queue_depths(), detail=detail)

    def apply(self, name: str, config: TaskConfig, changes: Dict[str, Any],
              now: float) -> Decision:
        """Apply a validated config to task name; announce it as a PARAM_CHANGE decision."""
        task = self._tasks[name]
        old = task.config
        dropped = task.reconfigure(config, self._config.mode == 'fifo')
        self._config.tasks[task.index] = config
        self._ledger.drop_entries(task, dropped, reasons.QUEUE_RESIZED, now)
        task.pool.sort_tasks()
        self._expiry.rescan()
        if (config.priority, config.camera_priority, config.enabled) != \
                (old.priority, old.camera_priority, old.enabled):
            self._shedder.reset(now, list(self._tasks.values()), self._queue_depths())
        if not config.enabled:
            self._ledger.drop_entries(task, task.queue.clear(), reasons.DISABLED, now)
        detail = ', '.join(f'{key}: {getattr(old, key)!r} -> {getattr(config, key)!r}'
                           for key in changes if getattr(old, key) != getattr(config, key))
        return self._ledger.decisions.add(now, reasons.PARAM_CHANGE_EVENT, reasons.PARAM_CHANGE,
                                          task=name, queue_depths=self._queue_depths(),
                                          count=len(dropped), detail=detail or 'no change')
