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
What a process holds, read from /proc (Linux): resident memory, threads, open files, children.

The soak and lifecycle-cycle scripts and tests sample the node with it from outside: no
psutil, and nothing the process itself must cooperate with.
"""

from dataclasses import asdict, dataclass
import os
from typing import Any, Dict, List


@dataclass
class ProcessStats:
    rss_mb: float
    threads: int
    fds: int
    children: int
    children_rss_mb: float  # the children's own (process isolation: the models live there)

    @property
    def total_rss_mb(self) -> float:
        return self.rss_mb + self.children_rss_mb

    def to_dict(self) -> Dict[str, Any]:
        return dict(asdict(self), total_rss_mb=self.total_rss_mb)


# Fields of /proc/<pid>/stat after the command's closing parenthesis.
STATE, PARENT, SESSION = 0, 1, 3


def live_processes_with(field: int, value: int) -> List[int]:
    """Return the ids of the live (not zombie) processes whose stat field equals value."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', encoding='ascii', errors='replace') as stream:
                fields = stream.read().rsplit(')', 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[field]) == value and fields[STATE] != 'Z':
            found.append(int(entry))
    return found


def children_of(pid: int) -> List[int]:
    """Return the ids of the live processes whose parent is pid."""
    return live_processes_with(PARENT, pid)


def _status(pid: int) -> Dict[str, List[str]]:
    values = {}
    with open(f'/proc/{pid}/status', encoding='ascii', errors='replace') as stream:
        for line in stream:
            key, _, value = line.partition(':')
            values[key] = value.split()
    return values


def read_process_stats(pid: int) -> ProcessStats:
    """Return the stats of a live process (OSError when it is gone)."""
    values = _status(pid)
    children_rss_kb = 0
    children = children_of(pid)
    for child in children:
        try:
            children_rss_kb += int(_status(child)['VmRSS'][0])
        except (OSError, KeyError):
            pass  # it ended meanwhile
    return ProcessStats(rss_mb=int(values['VmRSS'][0]) / 1024.0,
                        threads=int(values['Threads'][0]),
                        fds=len(os.listdir(f'/proc/{pid}/fd')),
                        children=len(children), children_rss_mb=children_rss_kb / 1024.0)
