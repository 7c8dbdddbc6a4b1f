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

"""The ledger of frames that leave a task without running: its counters, decisions, trace."""

from typing import List, Optional

from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.scheduling.queues import Entry
from inferedge_orchestrator.scheduling.task import TaskState
from inferedge_orchestrator.telemetry.decisions import DecisionLog
from inferedge_orchestrator.telemetry.job_trace import TraceRecorder


class Ledger:
    """
    Counts every drop in one place: the task's counter, the period's DROP decision, the trace.

    The engine calls it under its lock, from admission, dispatch, expiry, completion and stop.
    """

    def __init__(self, decisions: DecisionLog, trace: Optional[TraceRecorder]):
        self.decisions = decisions
        self.trace = trace

    def drop_entries(self, task: TaskState, entries: List[Entry], reason: str,
                     now: float) -> None:
        """Count queue entries of task that leave without running."""
        if not entries:
            return
        task.count_dropped(reason, [entry.frame for entry in entries])
        for entry in entries:
            self.decisions.count_drop(task.name, entry.frame.input, reason)
            if self.trace is not None:
                self.trace.dropped(task.name, entry.frame,
                                   task.camera_budget_s(entry.frame.input), reason)

    def drop_frame(self, task: TaskState, frame: Frame, reason: str, now: float,
                   detail: str = '') -> None:
        """
        Count a frame of task that leaves without running: not queued, abandoned, or dropped.

        detail: why, for the DROP decision of the period (a server's message).
        """
        task.count_dropped(reason, (frame,))
        self.decisions.count_drop(task.name, frame.input, reason, detail=detail)
        if self.trace is not None:
            self.trace.dropped(task.name, frame, task.camera_budget_s(frame.input), reason)
