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
Batches: how many queued frames of a task one job takes, from the measured cost of each size.

A task with max_batch > 1 whose model takes batches has one ServiceModel per batch size above
one (the task's own is size 1), seeded by the worker's warm-up at each size and learned from
every batch that runs, as one-frame jobs are. Before a job starts, choose() picks its size:

- a batch of n takes the job's frame and n - 1 other queued frames, those with the earliest
  deadlines among the frames that end by their deadline at size n's in-time bound (the
  fitted high quantile: a frame in time started now); it is formed only when the job's frame
  and n - 1 others do;
- among the sizes so formed, the one that ends the most frames per second of slot time
  (n / its median) wins; a tie goes to the smaller (its frames end sooner). A size whose
  frames per second are no better than a smaller one's is never run for throughput: on a CPU,
  where a batch of 4 costs more than 4 frames one by one, size 1 is chosen;
- a size not measured for SERVICE_HISTORY of the task's jobs is run once when its frames end
  in time at its median (a probe, counted as such), so that a cost curve that changes (another
  load on the GPU, a server busy with other clients) is learned again at every size, not only
  at the one chosen.

No constant picks a size: the choice follows the measured costs and the frames' deadlines.
"""

import bisect
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from inferedge_orchestrator.scheduling.service import (RESOLUTION_S, SERVICE_HISTORY,
                                                       ServiceModel)


class BatchCosts:
    """The service-time predictors of a task's batch sizes 2..max_batch, and the last choice."""

    __slots__ = ('max_batch', 'models', 'measured_at', 'jobs', 'size', 'probes')

    def __init__(self, max_batch: int):
        self.max_batch = max_batch
        self.models: Dict[int, ServiceModel] = {n: ServiceModel() for n in
                                                range(2, max_batch + 1)}
        self.measured_at: Dict[int, int] = dict.fromkeys(self.models, 0)  # the job count then
        self.jobs = 0  # the task's jobs started, of every size
        self.size = 1  # the size its costs preferred last: a decision when it changes
        self.probes = 0  # batches run to measure a stale size again

    def seed(self, size: int, expected_s: float, fast_s: float = 0.0) -> None:
        """Set the guess of a size before its measurements (the worker's warm-up at it)."""
        self.models[size].set_expected(expected_s, fast_s)

    def record(self, size: int, seconds: float) -> None:
        """Add the measured service time of a batch of size frames."""
        model = self.models[size]
        if not model.expected_s:  # no warm-up guess: its first measurement is one
            model.set_expected(seconds)
        model.record(seconds)
        self.measured_at[size] = self.jobs

    def preferred(self, single: ServiceModel) -> int:
        """Return the size that ends the most frames per second of slot time, by its costs."""
        best, best_cost = 1, _per_frame(1, single.median_s)
        for size, model in self.models.items():  # ascending: a tie keeps the smaller
            if model.median_s > 0.0 and _cheaper(_per_frame(size, model.median_s), best_cost):
                best, best_cost = size, _per_frame(size, model.median_s)
        return best

    def median_s(self, size: int, single: ServiceModel) -> float:
        """Return the median service time of a size (1: the task's one-frame model)."""
        return single.median_s if size == 1 else self.models[size].median_s

    def bound_s(self, size: int, single: ServiceModel, probe: bool = False) -> float:
        """
        Return the time by which a batch of size started now is expected to end.

        A choice: its in-time bound (the fitted high quantile), rarely exceeded. A probe: its
        median, the likely time: a stale size whose spread grew with a few slow runs must still
        be run to be measured again (its frames then end in time as likely as not). A size
        never measured and without a guess: its frames one by one (k x the one-frame bound).
        """
        model = self.models[size]
        if model.median_s <= 0.0:
            return size * single.in_time_s
        return model.median_s if probe else model.in_time_s

    def choose(self, now: float, lead_deadline: float, others: Sequence[float],
               single: ServiceModel) -> Tuple[int, bool]:
        """
        Return (the size of the next job, whether it is a probe of a stale size).

        lead_deadline: the deadline of the frame the job takes first; others: the deadlines of
        the task's other queued frames, in ascending order. A size can be chosen when the lead
        and size - 1 others end by their deadlines at its in-time bound; a stale size can be
        probed when any size of the queued frames end by theirs at its median (a probe takes
        the frames with the most time left: plan_batch).
        """
        self.jobs += 1
        best, best_cost = 1, _per_frame(1, single.median_s)
        stale: Optional[int] = None
        for size in range(2, min(self.max_batch, 1 + len(others)) + 1):
            model = self.models[size]
            known = model.median_s > 0.0
            end = now + self.bound_s(size, single)
            if known and lead_deadline >= end and _in_time(others, end) >= size - 1 and \
                    _cheaper(_per_frame(size, model.median_s), best_cost):
                best, best_cost = size, _per_frame(size, model.median_s)
            if stale is None and (not known or
                                  self.jobs - self.measured_at[size] > SERVICE_HISTORY):
                end = now + self.bound_s(size, single, probe=True)
                if _in_time(others, end) + (lead_deadline >= end) >= size:
                    stale = size
        if stale is not None and stale != best:
            self.probes += 1
            self.measured_at[stale] = self.jobs  # one probe per staleness
            return stale, True
        return best, False


def _in_time(deadlines: Sequence[float], end: float) -> int:
    """Return how many of deadlines (ascending) are at or after end."""
    return len(deadlines) - bisect.bisect_left(deadlines, end)


def _per_frame(size: int, median_s: float) -> float:
    """Slot time per frame at a size (the inverse of its frames per second of slot time)."""
    return median_s / size if median_s > 0.0 else 0.0


def _cheaper(cost: float, than: float) -> bool:
    """Whether a per-frame cost is lower, beyond the clock's resolution (a tie is not)."""
    return cost < than - RESOLUTION_S


def plan_batch(costs: BatchCosts, now: float, lead, queued: Iterable,
               single: ServiceModel) -> Tuple[List, bool]:
    """
    Return (the queue entries of the next job, lead's or a probe's, whether it is a probe).

    queued: the task's queued entries (lead among them). A job of size k takes lead and the
    k - 1 entries with the earliest deadlines among those that end in time at its bound. A
    probe of a stale size takes the k entries with the most time left (the latest deadlines),
    which end in time at its median: the lead, with less time left, waits for the next job.
    """
    others = sorted((entry for entry in queued if entry is not lead),
                    key=lambda entry: entry.deadline)
    if not others:
        costs.jobs += 1
        return [lead], False
    size, probe = costs.choose(now, lead.deadline, [entry.deadline for entry in others],
                               single)
    if size == 1:
        return [lead], False
    end = now + costs.bound_s(size, single, probe)
    if probe:
        fitting = sorted((entry for entry in others + [lead] if entry.deadline >= end),
                         key=lambda entry: entry.deadline)
        return fitting[-size:], True
    return [lead] + [entry for entry in others if entry.deadline >= end][:size - 1], False


def describe_costs(costs: BatchCosts, single: ServiceModel) -> str:
    """Return the measured median per frame of each size, for a decision's detail."""
    parts = []
    for size in range(1, costs.max_batch + 1):
        median = costs.median_s(size, single)
        if median > 0.0:
            parts.append(f'{size}: {1000.0 * median:.1f} ms ({1000.0 * median / size:.1f} '
                         'ms a frame)')
    return 'median by size ' + ', '.join(parts)
