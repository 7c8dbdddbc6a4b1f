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
The typed telemetry snapshot: what Engine.snapshot() returns and every consumer reads.

Each part is a dataclass with to_dict() (the JSON of reports, docs/telemetry.md) and from_dict()
(a report read back from a file). Latencies are in milliseconds here, converted once from the
seconds the statistics keep (LatencySummary.from_seconds).
"""

from dataclasses import asdict, dataclass, field, fields, is_dataclass
import math
import typing
from typing import Any, Dict, List, Optional


@dataclass
class LatencySummary:
    """Percentiles of one latency series (ms; None when there is no sample)."""

    count: int = 0
    p50_ms: Optional[float] = None
    p95_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    max_ms: Optional[float] = None
    mean_ms: Optional[float] = None  # whole-run summaries only

    @classmethod
    def from_seconds(cls, summary: Dict[str, float]) -> 'LatencySummary':
        """Convert a statistics summary in seconds (NaN when empty) to milliseconds."""
        def ms(key):
            value = summary.get(key)
            return None if value is None or math.isnan(value) else value * 1000.0
        return cls(int(summary.get('count', 0)), ms('p50'), ms('p95'), ms('p99'), ms('max'),
                   ms('mean'))


@dataclass
class InputSnapshot:
    received: int = 0
    accepted: int = 0
    malformed: int = 0
    malformed_by_reason: Dict[str, int] = field(default_factory=dict)
    stamp_fallback: int = 0
    decode_errors: int = 0  # accepted frames whose bytes failed to decode later
    rate_hz: float = 0.0  # frames received in the last second


@dataclass
class CameraSnapshot:
    """The frames of one camera of a task over several inputs."""

    routed: int = 0
    executed: int = 0
    completed_within_budget: int = 0
    failed: int = 0
    dropped: int = 0
    dropped_by_reason: Dict[str, int] = field(default_factory=dict)
    queued: int = 0
    in_flight: int = 0
    latency_budget_ms: float = 0.0  # its frames' budget (its own or the task's)


@dataclass
class TaskSnapshot:
    inputs: List[str] = field(default_factory=list)  # its inputs' names, as in the config
    pool: str = ''
    priority: int = 0
    enabled: bool = True
    latency_budget_ms: float = 0.0  # the tightest of its cameras' budgets
    routed: int = 0
    executed: int = 0
    completed_within_budget: int = 0
    failed: int = 0
    failed_by_reason: Dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    dropped_by_reason: Dict[str, int] = field(default_factory=dict)
    queued: int = 0
    in_flight: int = 0
    slots_down: int = 0  # its worker's slots that cannot run a job now (a child respawning)
    held_for_priority: int = 0
    max_queue_depth: int = 0
    rate_limit_hz: float = 0.0  # the admission limit in force (0: none)
    shed_limit_hz: float = 0.0  # the limit shedding set (0: none)
    executed_rate_hz: float = 0.0  # jobs started in the last second
    predicted_service_ms: float = 0.0  # the high (p95) predictor
    busy_s: float = 0.0  # slot time its jobs took since start
    latency: Dict[str, LatencySummary] = field(default_factory=dict)  # live window
    window_overflow: int = 0
    run_latency: Optional[Dict[str, LatencySummary]] = None  # whole run (reports)
    cameras: Dict[str, CameraSnapshot] = field(default_factory=dict)  # several inputs: each
    # A task that batches (max_batch > 1): per size 1, 2, ...: the jobs run at it, and its
    # learned median service time (0: not known). Empty for a task that does not.
    batch_jobs: List[int] = field(default_factory=list)
    batch_cost_ms: List[float] = field(default_factory=list)


@dataclass
class PoolSnapshot:
    slots: int = 0  # capacity now
    busy: int = 0
    retired: int = 0
    crashes: int = 0  # process isolation: child processes that died
    respawns: int = 0  # ... and were started again
    backend: str = 'thread'  # thread, process or server (engine/backends.py)
    server_down: bool = False  # server pools: the circuit breaker is open
    outages: int = 0  # server pools: times it opened (SERVER_DOWN decisions)
    probes: int = 0  # server pools: health probes sent while it was open
    run_utilisation: float = 0.0  # busy fraction since start
    period_utilisation: float = 0.0  # busy fraction over the last telemetry period


@dataclass
class SheddingSnapshot:
    active: bool = False
    ticks: int = 0
    limits_hz: Dict[str, float] = field(default_factory=dict)
    last_risk: Optional[List[str]] = None  # [protected task, reason]


@dataclass
class DecisionCounts:
    total: int = 0
    by_event: Dict[str, int] = field(default_factory=dict)


@dataclass
class Resources:
    available: bool = False
    cpu_percent: Optional[float] = None
    rss_mb: Optional[float] = None


@dataclass
class Snapshot:
    """The engine's live telemetry; both accounting invariants hold in it."""

    time: float = 0.0  # engine clock (s)
    uptime_s: float = 0.0
    state: str = ''
    mode: str = ''
    inputs: Dict[str, InputSnapshot] = field(default_factory=dict)
    unknown_input: int = 0
    tasks: Dict[str, TaskSnapshot] = field(default_factory=dict)
    pools: Dict[str, PoolSnapshot] = field(default_factory=dict)
    shedding: SheddingSnapshot = field(default_factory=SheddingSnapshot)
    decisions: DecisionCounts = field(default_factory=DecisionCounts)
    resources: Resources = field(default_factory=Resources)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> 'Snapshot':
        """Read a snapshot back from its dict (a report's `final`); unknown keys are ignored."""
        return _build(cls, data)


def _build(kind: Any, value: Any) -> Any:
    """Build a value of a (dataclass, Dict, List, Optional) type from JSON data."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in typing.get_args(kind) if a is not type(None)][0]
        return _build(inner, value)
    if origin is dict:
        item = typing.get_args(kind)[1]
        return {key: _build(item, entry) for key, entry in value.items()}
    if origin is list:
        item = typing.get_args(kind)[0]
        return [_build(item, entry) for entry in value]
    if is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _build(hints[f.name], value[f.name])
                       for f in fields(kind) if f.name in value})
    return value
