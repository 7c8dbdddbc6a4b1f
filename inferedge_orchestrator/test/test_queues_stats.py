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

"""Bounded task queues and latency statistics."""

import math

from inferedge_orchestrator.scheduling.queues import Entry, TaskQueue
from inferedge_orchestrator.telemetry.stats import LatencyWindow, LogHistogram, percentile
import numpy as np
import pytest


def entries(*deadlines):
    return [Entry(d, f'frame{i}', 0.0) for i, d in enumerate(deadlines)]


def test_drop_oldest_makes_room():
    queue = TaskQueue(2, 'drop_oldest')
    a, b, c = entries(1.0, 2.0, 3.0)
    assert queue.push(a) is None and queue.push(b) is None
    assert queue.push(c) == a
    assert len(queue) == 2 and queue.pop() == b and queue.earliest_deadline == 3.0


def test_drop_newest_refuses():
    queue = TaskQueue(1, 'drop_newest')
    a, b = entries(1.0, 2.0)
    queue.push(a)
    assert queue.push(b) == b and queue.pop() == a


def test_newest_first_order():
    queue = TaskQueue(3, order='newest_first')
    for entry in entries(1.0, 2.0, 3.0):
        queue.push(entry)
    assert queue.head()[0] == 3.0 and queue.pop()[0] == 3.0 and queue.earliest_deadline == 1.0


def test_take_late_anywhere():
    queue = TaskQueue(4)
    for entry in entries(5.0, 1.0, 6.0, 2.0):  # deadlines are not in arrival order
        queue.push(entry)
    assert queue.earliest_deadline == 1.0
    assert queue.take_late(0.5, 0.9) == ([], [])
    expired, late = queue.take_late(1.5, 3.0)
    assert [e[0] for e in expired] == [1.0] and [e[0] for e in late] == [2.0]
    assert [queue.pop()[0], queue.pop()[0]] == [5.0, 6.0]
    assert queue.earliest_deadline == math.inf


def test_take_late_keeps_a_probe_only_when_every_entry_is_late():
    queue = TaskQueue(6)
    for entry in entries(4.0, 2.0, 0.5, 3.0, 9.0):
        queue.push(entry)
    expired, late = queue.take_late(1.0, 5.0, keep_probe=True)
    assert [e[0] for e in expired] == [0.5]  # expired frames always go
    assert [e[0] for e in late] == [2.0, 3.0, 4.0]  # 9.0 is not late: no probe is needed
    assert queue.take_late(2.0, 10.0, keep_probe=True) == ([], [])  # all late: it stays
    assert len(queue) == 1
    for entry in entries(7.0, 8.0):
        queue.push(entry)
    assert [e[0] for e in queue.take_late(2.0, 10.0, keep_probe=True)[1]] == [7.0, 8.0]
    assert [e[0] for e in queue.entries] == [9.0] and queue.earliest_deadline == 9.0


def test_configure_shrinks_oldest():
    queue = TaskQueue(4)
    for entry in entries(1.0, 2.0, 3.0):
        queue.push(entry)
    dropped = queue.configure(1, 'drop_newest', 'oldest_first')
    assert [d for d, _, _ in dropped] == [1.0, 2.0] and len(queue) == 1
    assert queue.push(Entry(9.0, 'x', 0.0)) == (9.0, 'x', 0.0)


def test_percentile_matches_numpy():
    values = sorted(np.random.default_rng(1).normal(size=101))
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert math.isnan(percentile([], 50))


def test_window_drops_old_samples_and_counts_overflow():
    window = LatencyWindow(window_s=1.0, capacity=4)
    for t in range(4):
        window.add(t * 0.1, t)
    window.add(0.5, 10.0)  # the ring is full with samples still inside the window
    assert window.overflow == 1
    summary = window.summary(1.45)  # samples older than 0.45 s are out of the window
    assert summary['count'] == 1 and summary['max'] == 10.0
    assert window.summary(10.0)['count'] == 0


def test_histogram_error_within_one_percent():
    rng = np.random.default_rng(7)
    values = rng.lognormal(-3.0, 1.0, 20000)
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    for q in (50, 95, 99):
        exact = np.percentile(values, q)
        assert abs(histogram.percentile(q) / exact - 1) < 0.015  # bucket 1% + rank rounding
    assert histogram.summary()['max'] == values.max()
    assert histogram.count == len(values)


def test_histogram_memory_is_bounded():
    histogram = LogHistogram()
    size = len(histogram._buckets)
    for value in np.linspace(1e-7, 1e3, 1000):
        histogram.add(value)
    assert len(histogram._buckets) == size
    assert abs(histogram.percentile(100) / histogram.max - 1) < 0.01
