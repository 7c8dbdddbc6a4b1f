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
A service-time predictor: the fast, median and high quantiles of a job's next service time.

One ServiceModel per kind of job whose time is measured: a task's one-frame jobs
(TaskState), and each batch size of a task that batches (scheduling/batching.py). It is
learned from the recent measurements with the same uncertainty handling for all: a lognormal
fit with its prediction bound, a worker's guess before MIN_SAMPLES, a history restarted when
the times shift.
"""

import bisect
from collections import deque
import functools
import math
from statistics import NormalDist
from typing import List

SERVICE_HISTORY = 50  # service times kept for the predictions
MIN_SAMPLES = 5  # measurements before the predictions replace expected_latency_ms
# The drop predictor: a frame is predicted late only if even a fast run (this quantile of the
# task's next service time) cannot end it in time: a dropped frame had at most this chance.
# It is predicted from a lognormal fitted to the recent service times (positive, skewed right),
# with the uncertainty of the fit (few samples give a lower quantile): the empirical quantile
# of a few dozen samples is one of the fastest few, noisy enough to call frames late that fit.
# Before MIN_SAMPLES it is the worker's own fast guess (0 when it has none: no frame is dropped
# for a service time nobody has measured).
FAST_QUANTILE = 0.05
FAST_Z = NormalDist().inv_cdf(FAST_QUANTILE)
# The hold predictor (and predicted_service_ms): a quantile that a job rarely exceeds.
HIGH_QUANTILE = 0.95
# Whether a frame is in time started now (the choice of the next frame, level_order): the same
# quantile predicted from the lognormal fit with its uncertainty, as the fast one is. The
# empirical p95 of a few dozen samples is one of the slowest few, and of fewer it is the
# slowest: too low a bound early in a run, when frames it calls in time would end late.
HIGH_Z = NormalDist().inv_cdf(HIGH_QUANTILE)
# A task whose service times change (a slow start under contention, a slow spell that ends)
# must not keep its old predictions until 50 new samples replace them: this many samples in a
# row outside the predicted band on the same side (below the fast quantile, or above the high
# one; each 5% likely, so by chance 1 in 8000) start the history again from them.
SHIFT_AFTER = 3
RESOLUTION_S = 1e-6  # service times closer than this are the same (clock and float noise)


def quantile(ordered: List[float], q: float) -> float:
    """Return the nearest-rank quantile q (0 < q <= 1) of a sorted, non-empty list."""
    return ordered[min(len(ordered) - 1, max(0, int(math.ceil(q * len(ordered))) - 1))]


@functools.lru_cache(maxsize=None)  # called per job with the same few (z, dof)
def student_t_quantile(z: float, dof: int) -> float:
    """Return Student's t quantile with dof degrees of freedom at the normal's z (A&S 26.7.5)."""
    g1 = (z ** 3 + z) / 4.0
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96.0
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384.0
    g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160.0
    return z + g1 / dof + g2 / dof ** 2 + g3 / dof ** 3 + g4 / dof ** 4


def predicted_lognormal_quantile(count: int, log_sum: float, log_square_sum: float,
                                 z: float) -> float:
    """
    Return the quantile at z of the next sample, for count positive samples taken as lognormal.

    Given the sum of their logs and of their squares. The prediction bound in log space
    (Student's t: mean and spread both estimated) is wider than the fitted quantile: the fewer
    the samples, the lower a low quantile, so that a handful of them cannot make frames that
    would still fit look late.
    """
    mean = log_sum / count
    variance = max(0.0, (log_square_sum - count * mean * mean) / (count - 1))
    bound = student_t_quantile(z, count - 1) * math.sqrt(variance * (1.0 + 1.0 / count))
    return math.exp(mean + bound)


class ServiceModel:
    """
    The predictions of one kind of job's next service time, from its recent measurements.

    expected_s: the guess before MIN_SAMPLES measurements; predicted_s: the high quantile
    (holds, telemetry); in_time_s: its fitted bound (a frame in time started now); fast_s:
    the low quantile (the drop predictor); median_s: the load a job adds.
    """

    __slots__ = ('expected_s', 'predicted_s', 'in_time_s', 'fast_s', 'median_s', '_service',
                 '_ordered', '_log_sum', '_log_square_sum', '_measured', '_shift_side',
                 '_shift_count', '_shift_band')

    def __init__(self, expected_s: float = 0.0):
        self.expected_s = expected_s
        self._service = deque(maxlen=SERVICE_HISTORY)  # arrival order
        self._ordered: List[float] = []  # the same values, sorted
        self._log_sum = self._log_square_sum = 0.0  # of their logs: the lognormal fit
        self.predicted_s = self.in_time_s = self.median_s = expected_s
        self.fast_s = 0.0
        self._measured = False  # MIN_SAMPLES reached: the predictions are the measurements'
        self._shift_side, self._shift_count = 0, 0
        self._shift_band = (0.0, 0.0)  # (fast, high) when the streak began

    @property
    def samples(self) -> int:
        """Return how many measurements the predictions rest on."""
        return len(self._service)

    def set_expected(self, seconds: float, fast: float = 0.0) -> None:
        """Set the guesses used before measurements: typical and fast service time (s)."""
        self.expected_s = seconds
        if len(self._service) < MIN_SAMPLES:
            self.predicted_s = self.median_s = self.in_time_s = seconds
            self.fast_s = fast

    def record(self, seconds: float) -> float:
        """Add a measured service time; return how much the drop predictor grew (s)."""
        side = 0
        if self._measured:
            # Against the band the history predicted when the streak began: the first sample
            # of a shift widens the fit (one 2 ms run among 100 ms ones puts its fast quantile
            # near 0), and the rest must not be judged by it.
            if self._shift_count:
                low, high = self._shift_band
            else:
                low, high = self.fast_s, self.predicted_s
            if seconds < low - RESOLUTION_S:
                side = -1
            elif seconds > high + RESOLUTION_S:
                side = 1
        if side and side == self._shift_side:
            self._shift_count += 1
        elif side:
            self._shift_side, self._shift_count = side, 1
            self._shift_band = (self.fast_s, self.predicted_s)
        else:
            self._shift_side = self._shift_count = 0
        history, ordered = self._service, self._ordered
        if self._shift_count >= SHIFT_AFTER:  # the task changed: its recent samples only
            recent = list(history)[-(SHIFT_AFTER - 1):]
            history.clear()
            ordered.clear()
            self._log_sum = self._log_square_sum = 0.0
            self._shift_side, self._shift_count = 0, 0
            for sample in recent:
                self._add_sample(sample)
        elif len(history) == SERVICE_HISTORY:
            oldest = history[0]  # it leaves
            del ordered[bisect.bisect_left(ordered, oldest)]
            log = math.log(max(oldest, 1e-9))
            self._log_sum -= log
            self._log_square_sum -= log * log
        self._add_sample(seconds)
        count = len(ordered)
        if count >= MIN_SAMPLES:
            self._measured = True
        if not self._measured:  # too few for a p95: no job is expected to exceed the slowest
            self.predicted_s = self.in_time_s = max(self.expected_s, ordered[-1])
            return 0.0
        previous = self.fast_s
        self.predicted_s = quantile(ordered, HIGH_QUANTILE)
        self.median_s = quantile(ordered, 0.5)
        # A low quantile is below the median; without spread the fit's exp(log) round trip
        # could put it a hair above every sample, all of which would then look faster.
        self.fast_s = min(self.median_s, predicted_lognormal_quantile(
            count, self._log_sum, self._log_square_sum, FAST_Z))
        self.in_time_s = predicted_lognormal_quantile(count, self._log_sum,
                                                      self._log_square_sum, HIGH_Z)
        return max(0.0, self.fast_s - previous)

    def _add_sample(self, seconds: float) -> None:
        self._service.append(seconds)
        bisect.insort(self._ordered, seconds)
        log = math.log(max(seconds, 1e-9))
        self._log_sum += log
        self._log_square_sum += log * log
