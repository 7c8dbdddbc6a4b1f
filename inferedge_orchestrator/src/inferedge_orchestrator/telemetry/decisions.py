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

"""Decisions: what the orchestrator dropped, limited or changed, and why, in a bounded ring."""

from collections import deque
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
import threading
from typing import Callable, Dict, List, Optional, Tuple

from inferedge_orchestrator.contracts import reasons


@dataclass
class Decision:
    """
    One decision. time is the engine clock (s); limit_hz is 0 when lifted or not a limit.

    SHED_START and LIMIT carry their cause: blocking_ms, the p95 of the time the protected
    task's frames waited while lower-priority jobs held its pool; own_service_ms, the p95 of its
    own service time; freed_load_share, the share of the pool's slot time the new limit frees.
    """

    seq: int
    time: float
    event: str
    reason: str
    task: str = ''
    camera: str = ''  # DROP: the input (camera) of the dropped frames
    protected_task: str = ''
    count: int = 0
    limit_hz: float = 0.0
    queue_depths: Dict[str, int] = field(default_factory=dict)
    detail: str = ''
    blocking_ms: float = 0.0
    own_service_ms: float = 0.0
    freed_load_share: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class DecisionLog:
    """Keeps the last `history` decisions; aggregates drops per task, camera, reason, period."""

    def __init__(self, history: int, on_decision: Optional[Callable[[Decision], None]] = None):
        self._ring: deque = deque(maxlen=history)
        self._on_decision = on_decision
        self._pending_drops: Dict[Tuple[str, str, str], int] = {}
        self._drop_details: Dict[Tuple[str, str, str], str] = {}  # the last one in the period
        self._seq = 0
        self.total = 0
        self.by_event: Dict[str, int] = dict.fromkeys(reasons.EVENTS, 0)
        self._outbox: List[Decision] = []
        self._lock = threading.Lock()  # the ring is read from other threads than the engine's

    def add(self, time: float, event: str, reason: str, **fields) -> Decision:
        with self._lock:
            self._seq += 1
            decision = Decision(self._seq, time, event, reason, **fields)
            self._ring.append(decision)
            self.total += 1
            self.by_event[event] += 1
            self._outbox.append(decision)
        return decision

    def has_outbox(self) -> bool:
        return bool(self._outbox)

    def deliver(self) -> None:
        """Hand new decisions to the callback; the engine calls it outside its lock."""
        if self._on_decision is None:
            self._outbox.clear()
            return
        with self._lock:
            outbox, self._outbox = self._outbox, []
        for decision in outbox:
            self._on_decision(decision)

    def count_drop(self, task: str, camera: str, reason: str, count: int = 1,
                   detail: str = '') -> None:
        """Count drops for the period's DROP decision; detail: why (the latest one is kept)."""
        key = (task, camera, reason)
        self._pending_drops[key] = self._pending_drops.get(key, 0) + count
        if detail:
            self._drop_details[key] = detail

    def flush_drops(self, time: float, queue_depths: Dict[str, int]) -> List[Decision]:
        """Emit one DROP decision per (task, camera, reason) counted since the last flush."""
        pending, self._pending_drops = self._pending_drops, {}
        details, self._drop_details = self._drop_details, {}
        return [self.add(time, reasons.DROP, reason, task=task, camera=camera, count=count,
                         queue_depths=dict(queue_depths), detail=details.get(key, ''))
                for key, count in sorted(pending.items()) for task, camera, reason in (key,)]

    def recent(self, since_seq: int = 0) -> List[Decision]:
        with self._lock:
            return [d for d in self._ring if d.seq > since_seq]
