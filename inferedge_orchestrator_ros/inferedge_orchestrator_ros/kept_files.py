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
The node's output files (report_path, trace_path) are never lost to a later process.

launch respawns a node that died (respawn=True) with the same parameters, so the new process
writes to the same paths: its trace would truncate the dead process's at configure, and its
report replace the one an earlier process wrote at a clean exit. The first time a process is
about to write a path, a file already there (an earlier process's, or an earlier launch's) is
moved aside to the next number: report.json -> report.1.json, report.2.json, ... in the order
they were moved (the highest is the newest). Later writes of the same process (another
configure, cleanup) replace its own file, as they always did. No rclpy here.
"""

import os
import re
from typing import Optional, Set


def next_kept_path(path: str) -> str:
    """Return <stem>.<n><ext> beside path, n one above the highest kept one (1 when none)."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, extension = os.path.splitext(name)
    numbered = re.compile(re.escape(stem) + r'\.(\d+)' + re.escape(extension) + '$')
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        names = []
    numbers = [int(match.group(1)) for match in map(numbered.match, names) if match]
    return os.path.join(folder, f'{stem}.{max(numbers, default=0) + 1}{extension}')


class KeptFiles:
    """The paths this process has written: a file found at a new one is moved aside first."""

    def __init__(self):
        self._claimed: Set[str] = set()

    def claim(self, path: str) -> Optional[str]:
        """
        Make path this process's to write; return where an earlier file went (None: none).

        Raises OSError when an earlier file cannot be moved: writing would destroy it.
        """
        key = os.path.abspath(path)
        if key in self._claimed:
            return None
        moved = None
        if os.path.lexists(key):
            moved = next_kept_path(key)
            os.rename(key, moved)
        self._claimed.add(key)
        return moved
