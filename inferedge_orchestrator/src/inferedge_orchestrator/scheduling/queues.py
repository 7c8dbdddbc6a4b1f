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

"""Bounded per-task queues of entries: a frame, its deadline and the blocking integral."""

from collections import deque
import math
from typing import Any, List, NamedTuple, Optional, Tuple


class Entry(NamedTuple):
    """A queued frame of a task."""

    deadline: float  # on the engine clock
    frame: Any  # the Frame (frames/frame.py)
    lower_busy: float  # the task's lower_busy integral when it was queued


class TaskQueue:
    """
    A bounded queue with a drop policy, an order and prompt removal of late entries.

    drop_oldest makes room for a new entry by dropping the oldest one; drop_newest refuses the
    new entry. order picks which entry runs next: the oldest or the newest. Entries are kept in
    arrival order; the earliest deadline is kept in `earliest_deadline` (read-only for others) so
    that expiry scans only when one is due. `entries` (a deque) may be read directly on hot
    paths: its truth value is "not empty".
    """

    __slots__ = ('capacity', 'drop_oldest', 'newest_first', 'entries', 'earliest_deadline')

    def __init__(self, capacity: int, drop_policy: str = 'drop_oldest',
                 order: str = 'oldest_first'):
        self.capacity = capacity
        self.drop_oldest = drop_policy == 'drop_oldest'
        self.newest_first = order == 'newest_first'
        self.entries: deque = deque()
        self.earliest_deadline = math.inf

    def __len__(self) -> int:
        return len(self.entries)

    def configure(self, capacity: int, drop_policy: str, order: str) -> List[Entry]:
        """Apply new settings; return the entries dropped by a smaller capacity (oldest)."""
        self.drop_oldest = drop_policy == 'drop_oldest'
        self.newest_first = order == 'newest_first'
        self.capacity = capacity
        dropped = []
        while len(self.entries) > capacity:
            dropped.append(self.entries.popleft())
        if dropped:
            self._recompute_earliest()
        return dropped

    def push(self, entry: Entry) -> Optional[Entry]:
        """Add entry; return the entry dropped to respect the capacity, if any."""
        entries = self.entries
        dropped = None
        if len(entries) >= self.capacity:
            if not self.drop_oldest:
                return entry
            dropped = entries.popleft()
        entries.append(entry)
        if entry.deadline < self.earliest_deadline:
            self.earliest_deadline = entry.deadline
        elif dropped is not None and dropped.deadline <= self.earliest_deadline:
            self._recompute_earliest()
        return dropped

    def head(self) -> Optional[Entry]:
        """Return the entry that pop() would return, without removing it."""
        if not self.entries:
            return None
        return self.entries[-1] if self.newest_first else self.entries[0]

    def pop(self) -> Entry:
        entry = self.entries.pop() if self.newest_first else self.entries.popleft()
        if entry.deadline <= self.earliest_deadline:
            self._recompute_earliest()
        return entry

    def take(self, entry: Entry) -> Entry:
        """Remove entry, the one pop() would return or any other; return it."""
        entries = self.entries
        if entry is (entries[-1] if self.newest_first else entries[0]):
            return self.pop()
        entries.remove(entry)
        if entry.deadline <= self.earliest_deadline:
            self._recompute_earliest()
        return entry

    def take_late(self, now: float, limit: float, keep_probe: bool = False
                  ) -> Tuple[List[Entry], List[Entry]]:
        """
        Remove late entries, wherever they are; return (expired, predicted late).

        Every entry whose deadline is before now is expired; every other one whose deadline is
        before limit is predicted late, except with keep_probe when no entry that is not late
        would stay: then the one with the latest deadline stays (the probe, engine/expiry.py).
        """
        if limit <= self.earliest_deadline and now <= self.earliest_deadline:
            return [], []
        expired = [e for e in self.entries if e.deadline < now]
        late = sorted((e for e in self.entries if now <= e.deadline < limit),
                      key=lambda e: e.deadline)
        if keep_probe and late and len(expired) + len(late) == len(self.entries):
            late.pop()
        if expired or late:
            gone = {id(e) for e in expired}
            gone.update(id(e) for e in late)
            self.entries = deque(e for e in self.entries if id(e) not in gone)
            self._recompute_earliest()
        return expired, late

    def clear(self) -> List[Entry]:
        entries = list(self.entries)
        self.entries.clear()
        self.earliest_deadline = math.inf
        return entries

    def _recompute_earliest(self) -> None:
        self.earliest_deadline = min((e.deadline for e in self.entries), default=math.inf)
