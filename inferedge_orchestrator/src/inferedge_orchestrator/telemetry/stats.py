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
Bounded latency statistics: a time-windowed ring, a log-bucket histogram, fixed buckets.

The fixed buckets count values at or below each of a few round bounds, the way a Prometheus
histogram does (its `le` buckets), with their exact count and sum.
"""

from array import array
from bisect import bisect_left
from dataclasses import dataclass
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

PERCENTILES = (50.0, 95.0, 99.0)
# The upper bounds of the fixed latency buckets (s): 1 ms to 10 s, Prometheus's default
# buckets with 1 and 2.5 ms added for fast models.
LATENCY_BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                    2.5, 5.0, 10.0)


def percentile(sorted_values: List[float], q: float) -> float:
    """Return the q-th percentile by linear interpolation (numpy's default method)."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class LatencyWindow:
    """
    The samples of the last window_s seconds in a fixed-size ring.

    When more samples arrive within the window than the ring holds, the oldest are overwritten
    and counted in `overflow`, so a percentile is then over the newest `capacity` samples.
    """

    __slots__ = ('window_s', 'capacity', 'overflow', '_times', '_values', '_next', '_count')

    def __init__(self, window_s: float, capacity: int):
        self.window_s = window_s
        self.capacity = capacity
        self.overflow = 0
        # array('d') stores raw doubles: assignment is as cheap as a list's and allocates nothing
        self._times = array('d', bytes(8 * capacity))
        self._values = array('d', bytes(8 * capacity))
        self._next = 0
        self._count = 0

    def add(self, now: float, value: float) -> None:
        index = self._next
        if self._count == self.capacity:
            if now - self._times[index] < self.window_s:
                self.overflow += 1
        else:
            self._count += 1
        self._times[index] = now
        self._values[index] = value
        self._next = (index + 1) % self.capacity

    def values(self, now: float) -> np.ndarray:
        count = self._count
        times = np.frombuffer(self._times, dtype=np.float64, count=count)
        values = np.frombuffer(self._values, dtype=np.float64, count=count)
        return values[times >= now - self.window_s]

    def summary(self, now: float) -> Dict[str, float]:
        """Return count, p50, p95, p99 and max of the window (NaN when empty)."""
        values = self.values(now)
        if values.size == 0:
            return {'count': 0, 'p50': math.nan, 'p95': math.nan, 'p99': math.nan,
                    'max': math.nan}
        p50, p95, p99 = np.percentile(values, PERCENTILES)
        return {'count': int(values.size), 'p50': float(p50), 'p95': float(p95),
                'p99': float(p99), 'max': float(values.max())}


class LogHistogram:
    """
    Whole-run percentiles in bounded memory: geometric buckets, relative error <= 1%.

    Bucket i covers [min_value * r^i, min_value * r^(i+1)) with r = 1.02; a value is reported
    as the geometric middle of its bucket, which is within sqrt(1.02) - 1 < 1% of the value.
    Exact count, sum, min and max are kept beside it.
    """

    RATIO = 1.02

    def __init__(self, min_value: float = 1e-6, max_value: float = 1e4):
        self.min_value = min_value
        self._log_ratio = math.log(self.RATIO)
        self._inverse_log_ratio = 1.0 / self._log_ratio
        self._buckets = [0] * (int(math.ceil(math.log(max_value / min_value) /
                                             self._log_ratio)) + 2)
        self._last = len(self._buckets) - 1
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value <= self.min_value:
            self._buckets[0] += 1
            return
        index = int(math.log(value / self.min_value) * self._inverse_log_ratio) + 1
        self._buckets[index if index < self._last else self._last] += 1

    def percentile(self, q: float) -> float:
        if self.count == 0:
            return math.nan
        rank = q / 100.0 * (self.count - 1)
        cumulative = np.cumsum(np.array(self._buckets, dtype=np.int64))
        index = int(np.searchsorted(cumulative, rank + 1, side='left'))
        if index == 0:
            value = self.min_value
        else:
            value = self.min_value * self.RATIO ** (index - 0.5)
        return min(max(value, self.min), self.max)

    def summary(self) -> Dict[str, Optional[float]]:
        if self.count == 0:
            return {'count': 0, 'mean': math.nan, 'p50': math.nan, 'p95': math.nan,
                    'p99': math.nan, 'max': math.nan}
        return {'count': self.count, 'mean': self.total / self.count,
                'p50': self.percentile(50.0), 'p95': self.percentile(95.0),
                'p99': self.percentile(99.0), 'max': self.max}


@dataclass
class BucketCounts:
    """
    What FixedBuckets counted: cumulative counts per upper bound, then the exact count and sum.

    cumulative[i] counts the values <= bounds_s[i]; count (all values, the +Inf bucket) is
    >= the last of them.
    """

    bounds_s: Tuple[float, ...]
    cumulative: List[int]
    count: int
    sum_s: float


class FixedBuckets:
    """Counts of values per fixed upper bound (a value equal to a bound is counted in it)."""

    __slots__ = ('bounds', '_counts', 'total')

    def __init__(self, bounds: Tuple[float, ...] = LATENCY_BOUNDS_S):
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f'bucket bounds {bounds!r} are not strictly increasing')
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.total = 0.0

    def add(self, value: float) -> None:
        self._counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def counts(self) -> BucketCounts:
        cumulative, running = [], 0
        for count in self._counts:
            running += count
            cumulative.append(running)
        # The last running total is every value's: the +Inf bucket.
        return BucketCounts(self.bounds, cumulative[:-1], running, self.total)
