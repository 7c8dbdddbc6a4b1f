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

"""The engine's live telemetry as a Snapshot, and its whole-run report (docs/telemetry.md)."""

from typing import Any, Dict, List

from inferedge_orchestrator.config.model import OrchestratorConfig
from inferedge_orchestrator.engine.admission import Admission
from inferedge_orchestrator.engine.pool import Pool
from inferedge_orchestrator.engine.records import REPORT_SCHEMA
from inferedge_orchestrator.scheduling.shedding import LoadShedder
from inferedge_orchestrator.scheduling.task import TaskState
from inferedge_orchestrator.telemetry.counters import CameraTelemetry, ResourceMonitor
from inferedge_orchestrator.telemetry.decisions import DecisionLog
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.telemetry.snapshot import (CameraSnapshot, DecisionCounts,
                                                       PoolSnapshot, SheddingSnapshot, Snapshot,
                                                       TaskSnapshot)


def task_snapshot(task: TaskState, now: float) -> TaskSnapshot:
    """Return one task's counters, limits, predictions and live latency."""
    telemetry = task.telemetry
    pool = task.pool
    return TaskSnapshot(
        inputs=list(task.config.inputs), pool=task.config.pool, priority=task.priority,
        enabled=task.config.enabled, latency_budget_ms=task.budget_s * 1000.0,
        routed=telemetry.routed, executed=telemetry.executed,
        completed_within_budget=telemetry.within_budget, failed=telemetry.failed_total,
        failed_by_reason=dict(sorted(telemetry.failed.items())),
        dropped=telemetry.dropped_total, dropped_by_reason=dict(sorted(telemetry.dropped.items())),
        queued=len(task.queue), in_flight=task.in_flight,
        slots_down=len(pool.slots) if pool.backend.down else
        task.worker.slots_down() if task.worker is not None else 0,
        held_for_priority=telemetry.held_for_priority, max_queue_depth=telemetry.max_queue_depth,
        rate_limit_hz=task.rate_limit_hz(), shed_limit_hz=task.shed_limit_hz,
        executed_rate_hz=task.started_rate.rate(now),
        predicted_service_ms=task.predicted_s * 1000.0, busy_s=task.busy_s,
        latency=telemetry.live_latency(now), window_overflow=telemetry.window_overflow(),
        cameras={name: camera_snapshot(counts, task.queue.counts.get(name, 0),
                                       (task.camera_budgets_s or {}).get(name, task.budget_s))
                 for name, counts in telemetry.cameras.items()},
        **batch_fields(task))


def batch_fields(task: TaskState) -> dict:
    """Return a batching task's jobs and learned median per size (nothing for another)."""
    costs = task.batching
    if costs is None:
        return {}
    sizes = range(1, costs.max_batch + 1)
    jobs = task.telemetry.batch_jobs
    return {'batch_jobs': [jobs.get(size, 0) for size in sizes],
            'batch_cost_ms': [1000.0 * costs.median_s(size, task.service) for size in sizes]}


def camera_snapshot(counts: CameraTelemetry, queued: int, budget_s: float) -> CameraSnapshot:
    return CameraSnapshot(
        routed=counts.routed, executed=counts.executed,
        completed_within_budget=counts.within_budget, failed=counts.failed,
        dropped=sum(counts.dropped.values()),
        dropped_by_reason=dict(sorted(counts.dropped.items())),
        queued=queued, in_flight=counts.in_flight, latency_budget_ms=budget_s * 1000.0)


def pool_snapshot(pool: Pool, now: float, uptime: float) -> PoolSnapshot:
    """Return one pool's slots, failures, back-end state and utilisation."""
    capacity = max(1, len(pool.slots)) * uptime
    backend = pool.backend
    return PoolSnapshot(
        slots=len(pool.slots), busy=sum(1 for s in pool.slots if s.job is not None),
        retired=pool.retired, crashes=pool.crashes, respawns=pool.respawns,
        backend=backend.kind, server_down=backend.down, outages=backend.outages,
        probes=backend.probes,
        run_utilisation=min(1.0, pool.busy_seconds(now) / capacity) if capacity else 0.0,
        period_utilisation=pool.utilisation)


def snapshot(now: float, state: str, uptime: float, mode: str, admission: Admission,
             tasks: List[TaskState], pools: Dict[str, Pool], shedder: LoadShedder,
             decisions: DecisionLog, resources: ResourceMonitor) -> Snapshot:
    """Return the live telemetry of an engine's parts."""
    return Snapshot(
        time=now, uptime_s=uptime, state=state, mode=mode,
        inputs={name: inp.snapshot(now) for name, inp in admission.inputs.items()},
        unknown_input=admission.unknown_input,
        tasks={task.name: task_snapshot(task, now) for task in tasks},
        pools={pool.name: pool_snapshot(pool, now, uptime) for pool in pools.values()},
        shedding=SheddingSnapshot(
            active=shedder.active, ticks=shedder.ticks,
            limits_hz={t.name: t.shed_limit_hz for t in tasks if t.shed_limit_hz},
            last_risk=list(shedder.last_risk) if shedder.last_risk else None),
        decisions=DecisionCounts(decisions.total, dict(decisions.by_event)),
        resources=resources.sample())


def report(config: OrchestratorConfig, final: Snapshot, decisions: DecisionLog) -> Dict[str, Any]:
    """Return the whole-run report: the config, the final snapshot, its invariants, decisions."""
    return {'schema': REPORT_SCHEMA, 'config': config.to_dict(),
            'warnings': list(config.warnings), 'final': final.to_dict(),
            'invariant_violations': check_invariants(final),
            'decisions': [d.to_dict() for d in decisions.recent()]}
