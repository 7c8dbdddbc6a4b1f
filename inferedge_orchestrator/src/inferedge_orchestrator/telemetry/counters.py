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
Telemetry counters: bounded counters and latency statistics per input and task.

Live percentiles come from a time window (LatencyWindow); whole-run percentiles for reports and
benchmarks from a log-bucket histogram (LogHistogram); the Prometheus histograms from fixed
buckets (FixedBuckets) of a few series. Nothing here grows with run length.
"""

from collections import deque
import os
from typing import Dict, Mapping, Optional, Sequence

from inferedge_orchestrator.telemetry.snapshot import InputSnapshot, LatencySummary, Resources
from inferedge_orchestrator.telemetry.stats import BucketCounts, FixedBuckets, LatencyWindow
from inferedge_orchestrator.telemetry.stats import LogHistogram

# blocking: the part of queue_wait during which lower-priority jobs held the pool's slots.
LATENCY_SERIES = ('queue_wait', 'blocking', 'preprocess', 'inference', 'postprocess',
                  'end_to_end')
# The series also counted in fixed buckets: the Prometheus histograms
# (Engine.snapshot_with_buckets, telemetry/prometheus.py).
BUCKET_SERIES = ('queue_wait', 'inference', 'end_to_end')


class RateMeter:
    """Counts events in the last `span_s` seconds (1 s: a rate in Hz)."""

    __slots__ = ('span_s', '_times')

    def __init__(self, span_s: float = 1.0):
        self.span_s = span_s
        self._times: deque = deque()

    def add(self, now: float) -> None:
        times = self._times
        times.append(now)
        if times[0] <= now - self.span_s:  # trim here too: rate() may be called rarely
            times.popleft()

    def rate_at(self, when: float, now: float) -> float:
        """Return the rate over the span ending at when (>= now) of the events until now."""
        horizon = when - self.span_s
        return sum(1 for time in self._times if horizon < time <= now) / self.span_s

    def rate(self, now: float) -> float:
        times = self._times
        horizon = now - self.span_s
        while times and times[0] <= horizon:
            times.popleft()
        return len(times) / self.span_s


class InputTelemetry:
    __slots__ = ('received', 'accepted', 'malformed', 'stamp_fallback', 'decode_errors',
                 'rate')

    def __init__(self):
        self.received = 0
        self.accepted = 0
        self.malformed: Dict[str, int] = {}
        self.stamp_fallback = 0
        self.decode_errors = 0  # accepted frames whose bytes failed to decode later
        self.rate = RateMeter()

    def snapshot(self, now: float) -> InputSnapshot:
        return InputSnapshot(self.received, self.accepted, sum(self.malformed.values()),
                             dict(sorted(self.malformed.items())), self.stamp_fallback,
                             self.decode_errors, self.rate.rate(now))


class CameraTelemetry:
    """Frame counters of one camera of a task over several inputs (queued: its queue's)."""

    __slots__ = ('routed', 'executed', 'within_budget', 'failed', 'dropped', 'in_flight')

    def __init__(self):
        self.routed = self.executed = self.within_budget = self.failed = self.in_flight = 0
        self.dropped: Dict[str, int] = {}


class TaskTelemetry:
    """
    Counters and latency statistics of one task (queued and in flight live elsewhere).

    extra_series: latency series its caller measures and records (record_extra), e.g. the ROS
    node's transport, convert and node_overhead; kept, summarised and reported as the own ones.
    """

    def __init__(self, window_s: float, window_samples: int, extra_series: Sequence[str] = ()):
        self.routed = 0
        self.executed = 0
        self.within_budget = 0
        self.failed: Dict[str, int] = {}
        self.dropped: Dict[str, int] = {}
        self.dropped_total = 0
        self.failed_total = 0
        self.held_for_priority = 0
        self.max_queue_depth = 0
        self.cameras: Dict[str, CameraTelemetry] = {}  # a task over several inputs: each
        self.batch_jobs: Dict[int, int] = {}  # a task that batches: jobs run, by size
        series = LATENCY_SERIES + tuple(extra_series)
        self.windows = {name: LatencyWindow(window_s, window_samples) for name in series}
        self.histograms = {name: LogHistogram() for name in series}
        self._window_list = [self.windows[name] for name in LATENCY_SERIES]
        self._histogram_list = [self.histograms[name] for name in LATENCY_SERIES]
        self.buckets = {name: FixedBuckets() for name in BUCKET_SERIES}
        self._queue_wait_buckets = self.buckets['queue_wait']
        self._inference_buckets = self.buckets['inference']
        self._end_to_end_buckets = self.buckets['end_to_end']

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.dropped_total += count

    def count_batch(self, size: int) -> None:
        """Count a job of a task that batches, by its size (frames)."""
        self.batch_jobs[size] = self.batch_jobs.get(size, 0) + 1

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1
        self.failed_total += 1

    def record_job(self, now: float, queue_wait: float, blocking: float, preprocess: float,
                   inference: float, postprocess: float, end_to_end: float) -> None:
        """Record the latency series of one executed job (the per-job hot path)."""
        for value, window, histogram in zip((queue_wait, blocking, preprocess, inference,
                                             postprocess, end_to_end),
                                            self._window_list, self._histogram_list):
            window.add(now, value)
            histogram.add(value)
        self._queue_wait_buckets.add(queue_wait)
        self._inference_buckets.add(inference)
        self._end_to_end_buckets.add(end_to_end)

    def record_extra(self, now: float, values: Mapping[str, Optional[float]]) -> None:
        """Record the caller's series of one job; None: not measured for this job."""
        windows, histograms = self.windows, self.histograms
        for name, value in values.items():
            if value is not None:
                windows[name].add(now, value)
                # A stamp age can be negative (clock offset); the histogram is of magnitudes.
                histograms[name].add(value if value > 0.0 else 0.0)

    def live_latency(self, now: float) -> Dict[str, LatencySummary]:
        return {name: LatencySummary.from_seconds(window.summary(now))
                for name, window in self.windows.items()}

    def run_latency(self) -> Dict[str, LatencySummary]:
        return {name: LatencySummary.from_seconds(hist.summary())
                for name, hist in self.histograms.items()}

    def latency_buckets(self) -> Dict[str, BucketCounts]:
        return {name: buckets.counts() for name, buckets in self.buckets.items()}

    def window_overflow(self) -> int:
        return sum(window.overflow for window in self.windows.values())


class ResourceMonitor:
    """Process CPU percent and RSS with psutil, when it is installed."""

    def __init__(self, enabled: bool = True):
        self._process = None
        if enabled:
            try:
                import psutil
                self._process = psutil.Process(os.getpid())
                self._process.cpu_percent(None)  # the first call only primes the counter
            except ImportError:
                self._process = None

    @property
    def available(self) -> bool:
        return self._process is not None

    def sample(self) -> Resources:
        if self._process is None:
            return Resources()
        return Resources(True, self._process.cpu_percent(None),
                         self._process.memory_info().rss / 2 ** 20)
