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
Adaptive load shedding: limit low-priority admissions while higher-priority work is at risk.

Every tick (0.5 s by default) in which a task is at risk (it lost frames to expired or
predicted_late, missed a deadline, its end-to-end p95 over the tick exceeded a fraction of its
budget, or the total backlog is above the threshold), the lowest-priority task below it that is
above its floor gets limit = 0.5 x min(current limit, admitted rate). After recovery_s without
risk, every limit rises by recovery_step_hz per tick and is lifted once it no longer binds
(it reaches the task's arrival rate). The floor is min_rate_hz, or min_limit_hz without one.
"""

from typing import Dict, List, Optional, Tuple

from inferedge_orchestrator_ros import reasons
from inferedge_orchestrator_ros.config import SheddingConfig
from inferedge_orchestrator_ros.decisions import DecisionLog
from inferedge_orchestrator_ros.scheduler import TaskState
from inferedge_orchestrator_ros.stats import percentile


class LoadShedder:
    """Owns the shedding limits (TaskState.shed_limit_hz) and announces every change."""

    def __init__(self, config: SheddingConfig, decisions: DecisionLog):
        self.config = config
        self.decisions = decisions
        self.active = False
        self.last_risk_time = -float('inf')
        self.last_risk: Optional[Tuple[str, str]] = None  # (protected task, reason)
        self.ticks = 0

    def floor(self, task: TaskState) -> float:
        return task.config.min_rate_hz or self.config.min_limit_hz

    def assess(self, tasks: List[TaskState], total_queued: int) -> List[Tuple[TaskState, str]]:
        """Return (task at risk, why) for the tick that just ended, highest priority first."""
        risks = []
        enabled = sorted((t for t in tasks if t.config.enabled),
                         key=lambda t: (-t.priority, t.index))
        threshold = self.config.backlog_threshold
        if threshold and total_queued > threshold and enabled:
            risks.append((enabled[0], reasons.BACKLOG))
        for task in enabled:
            reason = None
            if task.tick_expired:
                reason = reasons.EXPIRED
            elif task.tick_predicted_late:
                reason = reasons.PREDICTED_LATE
            elif task.tick_misses:
                reason = reasons.DEADLINE_MISS
            elif task.tick_end_to_end:
                p95 = percentile(sorted(task.tick_end_to_end), 95.0)
                if p95 > self.config.p95_budget_fraction * task.budget_s:
                    reason = reasons.LATENCY_P95
            if reason:
                risks.append((task, reason))
        risks.sort(key=lambda risk: (-risk[0].priority, risk[0].index))
        return risks

    def tick(self, now: float, tasks: List[TaskState], queue_depths: Dict[str, int]) -> None:
        self.ticks += 1
        risks = self.assess(tasks, sum(queue_depths.values())) if self.config.enabled else []
        for task in tasks:
            task.reset_risk()
        # Only a risk with some lower-priority task to limit counts: the lowest-priority task
        # losing frames is what shedding does, not a reason for more of it.
        for protected, why in risks:
            if any(t.priority < protected.priority and t.config.enabled for t in tasks):
                self.last_risk_time = now
                self.last_risk = (protected.name, why)
                self._shed(now, protected, why, tasks, queue_depths)
                return
        if self.active and now - self.last_risk_time >= self.config.recovery_s:
            self._recover(now, tasks, queue_depths)

    def _shed(self, now: float, protected: TaskState, why: str, tasks: List[TaskState],
              queue_depths: Dict[str, int]) -> None:
        candidates = [t for t in tasks if t.priority < protected.priority and t.config.enabled]
        for task in sorted(candidates, key=lambda t: (t.priority, -t.index)):
            admitted = task.admitted_rate.rate(now)
            current = task.shed_limit_hz or float('inf')
            floor = self.floor(task)
            if min(current, admitted) <= floor:
                continue  # at its floor (or admitting nothing): try the next one up
            limit = max(floor, 0.5 * min(current, admitted))
            if not self.active:
                self.active = True
                self.decisions.add(now, reasons.SHED_START, why, task=task.name,
                                   protected_task=protected.name, limit_hz=limit,
                                   queue_depths=dict(queue_depths))
            task.shed_limit_hz = limit
            self.decisions.add(now, reasons.LIMIT, why, task=task.name,
                               protected_task=protected.name, limit_hz=limit,
                               queue_depths=dict(queue_depths),
                               detail=f'admitted {admitted:.1f} Hz, floor {floor:g} Hz')
            return

    def _recover(self, now: float, tasks: List[TaskState], queue_depths: Dict[str, int]) -> None:
        for task in tasks:
            if not task.shed_limit_hz:
                continue
            raised = task.shed_limit_hz + self.config.recovery_step_hz
            demand = task.routed_rate.rate(now)
            cap = task.config.max_rate_hz
            lifted = raised >= demand or (cap and raised >= cap)
            task.shed_limit_hz = 0.0 if lifted else raised
            self.decisions.add(now, reasons.LIMIT, reasons.RECOVERED, task=task.name,
                               limit_hz=task.shed_limit_hz, queue_depths=dict(queue_depths),
                               detail='lifted' if lifted else f'arrivals {demand:.1f} Hz')
        if not any(t.shed_limit_hz for t in tasks):
            self.active = False
            self.decisions.add(now, reasons.SHED_STOP, reasons.RECOVERED,
                               queue_depths=dict(queue_depths))

    def reset(self, now: float, tasks: List[TaskState], queue_depths: Dict[str, int],
              why: str = reasons.PARAM_CHANGE) -> None:
        """Lift every limit at once (a priority or enabled change)."""
        for task in tasks:
            task.shed_limit_hz = 0.0
        if self.active:
            self.active = False
            self.decisions.add(now, reasons.SHED_STOP, why, queue_depths=dict(queue_depths))
