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
Adaptive load shedding: limit lower-priority work where it puts higher-priority work at risk.

Every tick (0.5 s by default) the shedder reads each task's RiskSignals (scheduler.py): its
losses, each attributed to blocking by lower-priority jobs or not, and its end-to-end
latencies with and without blocking. A task is at risk, and protected, when blocking explains
a loss (an expired, predicted_late or queue_overflow drop, or a deadline miss), or explains
its end-to-end p95 above p95_budget_fraction of its budget, or (with backlog_threshold) the
total backlog is above the threshold while its frames were blocked. Risks that its own service
time explains never shed: limiting others cannot help them.

On risk, the lowest-priority task below the protected one on its pool whose load (admitted rate
x median service time) is at least min_load_share of the pool and whose limit is above its
floor gets limit = max(floor, 0.5 x min(current limit, started rate)). After recovery_s
without risk, every limit rises by recovery_step_hz per tick and is lifted once it no longer
binds. The floor is min_rate_hz, or min_limit_hz without one. See docs/scheduling.md.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from inferedge_orchestrator.config.model import SheddingConfig
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.scheduling.task import RiskSignals, TaskState
from inferedge_orchestrator.telemetry.decisions import DecisionLog
from inferedge_orchestrator.telemetry.stats import percentile


@dataclass
class Risk:
    """A task at risk in a tick because of lower-priority work, and the evidence."""

    task: TaskState
    reason: str  # one of reasons.RISK_REASONS
    blocking_s: float  # p95 of the blocking its started frames suffered in the tick
    own_service_s: float  # p95 of its own service times in the tick (its prediction if none)


def _p95(values: List[float]) -> float:
    return percentile(sorted(values), 95.0) if values else 0.0


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

    def assess(self, tasks: List[TaskState], total_queued: int) -> List[Risk]:
        """Return the risks that blocking explains, for the tick that just ended, by priority."""
        risks = []
        enabled = sorted((t for t in tasks if t.config.enabled),
                         key=lambda t: (-t.priority, t.index))
        threshold = self.config.backlog_threshold
        for task in enabled:
            signals = task.risk
            reason = self._blocked_reason(task, signals)
            if reason is None and task is enabled[0] and threshold and \
                    total_queued > threshold and any(signals.blocking):
                reason = reasons.BACKLOG
            if reason is not None:
                own = _p95(signals.service) if signals.service else task.predicted_s
                risks.append(Risk(task, reason, _p95(signals.blocking), own))
        return risks

    def _blocked_reason(self, task: TaskState, signals: RiskSignals) -> Optional[str]:
        for reason in reasons.LOSS_REASONS:
            if signals.blocked.get(reason):
                return reason
        if signals.end_to_end:
            bound = self.config.p95_budget_fraction * task.budget_s
            if _p95(signals.end_to_end) > bound >= _p95(signals.unblocked_end_to_end):
                return reasons.LATENCY_P95
        return None

    def tick(self, now: float, tasks: List[TaskState], queue_depths: Dict[str, int]) -> None:
        self.ticks += 1
        risks = self.assess(tasks, sum(queue_depths.values())) if self.config.enabled else []
        for task in tasks:
            task.risk = RiskSignals()
        # Only a risk with some lower-priority task to limit counts: the lowest-priority task
        # losing frames is what shedding does, not a reason for more of it.
        for risk in risks:
            protected = risk.task
            if any(t.priority < protected.priority and t.config.enabled for t in tasks):
                self.last_risk_time = now
                self.last_risk = (protected.name, risk.reason)
                self._shed(now, risk, tasks, queue_depths)
                return
        if self.active and now - self.last_risk_time >= self.config.recovery_s:
            self._recover(now, tasks, queue_depths)

    def _shed(self, now: float, risk: Risk, tasks: List[TaskState],
              queue_depths: Dict[str, int]) -> None:
        protected = risk.task
        capacity = float(max(1, len(protected.pool.slots))) if protected.pool else 1.0
        candidates = [t for t in tasks if t.priority < protected.priority and t.config.enabled]
        for task in sorted(candidates, key=lambda t: (t.priority, -t.index)):
            if task.pool is not protected.pool:
                continue  # it does not hold the protected task's slots
            admitted = task.admitted_rate.rate(now)
            share = admitted * task.median_s / capacity
            if share < self.config.min_load_share:
                continue  # its work costs the pool too little for a limit to help
            current = task.shed_limit_hz or float('inf')
            floor = self.floor(task)
            if current <= floor:
                continue  # at its floor: try the next one up
            # Half of what it runs now: a task that higher-priority work starves goes to its
            # floor at once, so that it cannot take the slot time a limit higher up frees.
            running = min(current, task.started_rate.rate(now))
            limit = max(floor, 0.5 * running)
            freed = max(0.0, running - limit) * task.median_s / capacity
            cause = {'task': task.name, 'protected_task': protected.name, 'limit_hz': limit,
                     'queue_depths': dict(queue_depths), 'blocking_ms': 1000.0 * risk.blocking_s,
                     'own_service_ms': 1000.0 * risk.own_service_s, 'freed_load_share': freed}
            if not self.active:
                self.active = True
                self.decisions.add(now, reasons.SHED_START, risk.reason, **cause)
            task.shed_limit_hz = limit
            self.decisions.add(now, reasons.LIMIT, risk.reason,
                               detail=f'admitted {admitted:.1f} Hz, running {running:.1f} Hz, '
                                      f'load {share:.0%} of the pool, floor {floor:g} Hz',
                               **cause)
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
