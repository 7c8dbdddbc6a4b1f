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

"""The accounting invariants: every frame is accounted for, in any snapshot."""

from typing import List

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.telemetry.snapshot import Snapshot


def check_invariants(snapshot: Snapshot) -> List[str]:
    """
    Return the accounting violations in a snapshot (empty when every frame is accounted).

    Per input: received == malformed + accepted. Per task: routed == executed + failed +
    dropped + queued + in_flight, every drop with a reason from the closed list; the same per
    camera of a task over several inputs, whose cameras add up to the task.
    """
    problems = []
    for name, inp in snapshot.inputs.items():
        if inp.received != inp.malformed + inp.accepted:
            problems.append(f'input {name}: received {inp.received} != malformed '
                            f'{inp.malformed} + accepted {inp.accepted}')
    for name, task in snapshot.tasks.items():
        total = task.executed + task.failed + task.dropped + task.queued + task.in_flight
        if task.routed != total:
            problems.append(f'task {name}: routed {task.routed} != executed {task.executed} + '
                            f'failed {task.failed} + dropped {task.dropped} + queued '
                            f'{task.queued} + in_flight {task.in_flight}')
        unknown = set(task.dropped_by_reason) - set(reasons.DROP_REASONS)
        if unknown:
            problems.append(f'task {name}: drop reasons outside the closed list: {unknown}')
        for camera, counts in task.cameras.items():
            total = counts.executed + counts.failed + counts.dropped + counts.queued + \
                counts.in_flight
            if counts.routed != total:
                problems.append(f'task {name} camera {camera}: routed {counts.routed} != '
                                f'executed + failed + dropped + queued + in_flight {total}')
        if task.cameras and sum(c.routed for c in task.cameras.values()) != task.routed:
            problems.append(f'task {name}: its cameras do not add up to its routed frames')
    return problems
