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
from typing import Any, Dict, List, NamedTuple, Optional, Tuple


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

    A queue of a task over several inputs (cameras) bounds each camera's frames by capacity
    and drops within the camera; head() and pop() keep the arrival order across its cameras
    (FIFO mode), and the priority mode picks the frame (TaskState.next_entry) and take()s it.
    """

    __slots__ = ('capacity', 'drop_oldest', 'newest_first', 'entries', 'earliest_deadline',
                 'per_camera', 'counts', 'starts', '_served', '_serves')

    def __init__(self, capacity: int, drop_policy: str = 'drop_oldest',
                 order: str = 'oldest_first', cameras: int = 1):
        self.capacity = capacity
        self.drop_oldest = drop_policy == 'drop_oldest'
        self.newest_first = order == 'newest_first'
        self.entries: deque = deque()
        self.earliest_deadline = math.inf
        self.per_camera = cameras > 1
        self.counts: Dict[str, int] = {}  # per camera: its queued entries (read-only for others)
        self.starts: Dict[str, int] = {}  # per camera: frames taken to run (its share)
        self._served: Dict[str, int] = {}  # per camera: the take that served it last
        self._serves = 0

    def __len__(self) -> int:
        return len(self.entries)

    def configure(self, capacity: int, drop_policy: str, order: str) -> List[Entry]:
        """Apply new settings; return the entries dropped by a smaller capacity (oldest)."""
        self.drop_oldest = drop_policy == 'drop_oldest'
        self.newest_first = order == 'newest_first'
        self.capacity = capacity
        dropped = []
        if self.per_camera:
            for camera, count in list(self.counts.items()):
                for _ in range(count - capacity):
                    dropped.append(self._remove(self._oldest_of(camera)))
            return dropped
        while len(self.entries) > capacity:
            dropped.append(self.entries.popleft())
        if dropped:
            self._recompute_earliest()
        return dropped

    def push(self, entry: Entry) -> Optional[Entry]:
        """Add entry; return the entry dropped to respect the capacity, if any."""
        if self.per_camera:
            return self._push_camera(entry)
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

    def _push_camera(self, entry: Entry) -> Optional[Entry]:
        camera = entry.frame.input
        dropped = None
        if self.counts.get(camera, 0) >= self.capacity:
            if not self.drop_oldest:
                return entry
            dropped = self._remove(self._oldest_of(camera))
        self.entries.append(entry)
        self.counts[camera] = self.counts.get(camera, 0) + 1
        if entry.deadline < self.earliest_deadline:
            self.earliest_deadline = entry.deadline
        return dropped

    def head(self) -> Optional[Entry]:
        """Return the entry that pop() would return, without removing it."""
        entries = self.entries
        if not entries:
            return None
        return entries[-1] if self.newest_first else entries[0]

    def pop(self) -> Entry:
        if self.per_camera:
            return self.take(self.head())
        entry = self.entries.pop() if self.newest_first else self.entries.popleft()
        if entry.deadline <= self.earliest_deadline:
            self._recompute_earliest()
        return entry

    def take(self, entry: Entry) -> Entry:
        """Remove entry to run it, the one pop() would return or any other; return it."""
        if self.per_camera:
            camera = entry.frame.input
            self._serves += 1
            self._served[camera] = self._serves
            self.starts[camera] = self.starts.get(camera, 0) + 1
            return self._remove(entry)
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
            if self.per_camera:
                self._recount()
        return expired, late

    def clear(self) -> List[Entry]:
        entries = list(self.entries)
        self.entries.clear()
        self.counts.clear()
        self.earliest_deadline = math.inf
        return entries

    def camera_entries(self) -> Dict[str, List[Entry]]:
        """Return each camera's queued entries, its head (in the queue's order) first."""
        cameras: Dict[str, List[Entry]] = {}
        for entry in (reversed(self.entries) if self.newest_first else self.entries):
            cameras.setdefault(entry.frame.input, []).append(entry)
        return cameras

    def owed(self, cameras: List[str]) -> List[str]:
        """
        Return those of cameras whose share after one more frame is still the largest one's.

        Each camera's share is the frames taken to run; one that banked more than one round
        (it was idle, or just joined) is brought to one round below the largest first, so that
        a camera that comes back does not take the slot for long.
        """
        starts = self.starts
        most = max(starts.get(camera, 0) for camera in cameras)
        for camera in cameras:
            if starts.get(camera, 0) < most - 1:
                starts[camera] = most - 1
        return [camera for camera in cameras if starts.get(camera, 0) + 1 <= most]

    def last_served(self, camera: str) -> int:
        """Return the take that last served camera (-1: never): smaller waited longer."""
        return self._served.get(camera, -1)

    def _oldest_of(self, camera: str) -> Entry:
        return next(e for e in self.entries if e.frame.input == camera)

    def _remove(self, entry: Entry) -> Entry:
        self.entries.remove(entry)
        camera = entry.frame.input
        self.counts[camera] -= 1
        if not self.counts[camera]:
            del self.counts[camera]
        if entry.deadline <= self.earliest_deadline:
            self._recompute_earliest()
        return entry

    def _recount(self) -> None:
        counts: Dict[str, int] = {}
        for entry in self.entries:
            counts[entry.frame.input] = counts.get(entry.frame.input, 0) + 1
        self.counts = counts

    def _recompute_earliest(self) -> None:
        self.earliest_deadline = min((e.deadline for e in self.entries), default=math.inf)
