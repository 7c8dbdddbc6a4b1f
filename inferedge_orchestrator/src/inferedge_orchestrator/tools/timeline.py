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
The timeline of a job trace (`plot TRACE.jsonl`): what a run did over time, per task.

One row per task, in the order of the first frame each got, all sharing the time axis: the
end-to-end latency of every frame that ran (stamp to the end of inference) against the frame's
budget, over-budget frames highlighted, failures and timeouts marked; under it the frames
dropped per time bin, stacked by reason. Shedding (SHED_START to SHED_STOP) is shaded on every
row; the other decisions (LIMIT, PARAM_CHANGE, WORKER_*, SERVER_*, BATCH_SIZE) are vertical
lines on their task's row (on every row when they name no task in the trace). DROP decisions
are not drawn: the job lines hold every drop.
Frames are placed at their arrival, decisions at their time. Needs matplotlib (extra `plots`).
"""

from dataclasses import dataclass, field
import math
from typing import Any, Dict, List, Optional, Tuple

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.telemetry.job_trace import DROPPED, TraceContents

# Fixed colours, so that a reason or an event looks the same on every plot.
_PALETTE = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
            '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#637939')
DROP_COLOURS = {reason: _PALETTE[i % len(_PALETTE)]
                for i, reason in enumerate(reasons.DROP_REASONS)}
MARKED_EVENTS = tuple(event for event in reasons.EVENTS
                      if event not in (reasons.SHED_START, reasons.SHED_STOP, reasons.DROP))
EVENT_COLOURS = {event: _PALETTE[-1 - i] for i, event in enumerate(MARKED_EVENTS)}
IN_BUDGET, OVER_BUDGET, FAILED = '#4c72b0', '#dd3333', '#111111'
SHEDDING = '#f4a261'
_BINS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0,
           120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass
class TaskRow:
    """What one task's row shows, as drawn (ms; s on the time axis)."""

    latency_axis: Any
    drops_axis: Any
    budgets_ms: List[float]  # the budgets its frames had, in order of change
    ran: int = 0
    over_budget: int = 0
    failed: int = 0
    drops_by_reason: Dict[str, int] = field(default_factory=dict)
    decisions: Dict[str, int] = field(default_factory=dict)  # the marks drawn, by event


@dataclass
class Timeline:
    """The figure and, per task in order of first appearance, its row."""

    figure: Any
    rows: Dict[str, TaskRow]
    bin_s: float
    end_s: float
    shedding_spans: List[Tuple[float, float]]


def pyplot():
    """Return matplotlib.pyplot on the Agg back-end; ImportError without matplotlib."""
    import matplotlib
    matplotlib.use('Agg')  # files only, the same output with or without a display
    import matplotlib.pyplot as plt
    return plt


def _number(job: dict, key: str) -> float:
    value = job[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f'job of task {job["task"]!r} seq {job["seq"]}: {key}: {value!r} is not '
                         f'allowed; allowed: a finite number of seconds')
    return float(value)


def auto_bin_s(end_s: float, bins: int = 50) -> float:
    """Return the smallest round bin width that cuts 0..end_s into at most `bins` bins."""
    return next((width for width in _BINS_S if width * bins >= end_s), _BINS_S[-1])


def shedding_spans(decisions: List[dict], end_s: float) -> List[Tuple[float, float]]:
    """Return (start, stop) of each shedding episode; one still active ends at end_s."""
    spans, started = [], None
    for decision in sorted(decisions, key=lambda d: (d['time'], d['seq'])):
        if decision['event'] == reasons.SHED_START and started is None:
            started = float(decision['time'])
        elif decision['event'] == reasons.SHED_STOP and started is not None:
            spans.append((started, float(decision['time'])))
            started = None
    if started is not None:
        spans.append((started, end_s))
    return spans


def draw_timeline(contents: TraceContents, title: str = '',
                  bin_s: Optional[float] = None) -> Timeline:
    """
    Draw the timeline of a trace's contents; return the figure and its rows.

    ValueError: no job lines, or a job whose times are not numbers. ImportError: no matplotlib.
    """
    jobs = contents.jobs
    if not jobs:
        raise ValueError('no job lines; allowed: a job trace written by run --trace or the '
                         "node's trace_path")
    # Tasks in the order of the first frame they got (file order breaks ties): the order in
    # which the job lines were written depends on when each frame left.
    first: Dict[str, Tuple[int, int]] = {}
    for line, job in enumerate(jobs):
        first[job['task']] = min(first.get(job['task'], (job['seq'], line)), (job['seq'], line))
    tasks = sorted(first, key=first.__getitem__)
    end_s = max([_number(job, 'end') for job in jobs if job['end'] is not None] +
                [_number(job, 'arrival') for job in jobs] +
                [float(d['time']) for d in contents.decisions])
    end_s = max(end_s, 1e-3)
    bin_s = bin_s or auto_bin_s(end_s)
    spans = shedding_spans(contents.decisions, end_s)
    plt = pyplot()
    height = 1.0 + 3.3 * len(tasks)  # inches
    figure = plt.figure(figsize=(12, height))
    grid = figure.add_gridspec(2 * len(tasks), 1, height_ratios=[2.3, 1.0] * len(tasks),
                               hspace=0.45, top=1.0 - 0.6 / height, bottom=0.5 / height)
    rows: Dict[str, TaskRow] = {}
    shared = None
    for index, task in enumerate(tasks):
        latency = figure.add_subplot(grid[2 * index], sharex=shared)
        shared = shared or latency
        drops = figure.add_subplot(grid[2 * index + 1], sharex=shared)
        mine = [job for job in jobs if job['task'] == task]
        row = TaskRow(latency, drops, [])
        rows[task] = row
        _draw_latency(row, mine, end_s)
        _draw_drops(row, mine, bin_s)
        _draw_decisions(row, task, tasks, contents.decisions, spans)
        _label(row, task, bin_s, index == len(tasks) - 1)
    shared.set_xlim(0.0, end_s)
    if title:
        figure.suptitle(title, y=1.0 - 0.15 / height)
    return Timeline(figure, rows, bin_s, end_s, spans)


def _draw_latency(row: TaskRow, jobs: List[dict], end_s: float) -> None:
    axis = row.latency_axis
    points: Dict[str, Tuple[List[float], List[float]]] = {
        'in': ([], []), 'over': ([], []), 'failed': ([], [])}
    budget_xs: List[float] = []
    for job in sorted(jobs, key=lambda j: (_number(j, 'arrival'), j['seq'])):
        arrival, budget_ms = _number(job, 'arrival'), 1000.0 * _number(job, 'budget')
        if not row.budgets_ms or row.budgets_ms[-1] != budget_ms:
            row.budgets_ms.append(budget_ms)
            budget_xs.append(arrival if budget_xs else 0.0)
        if job['end'] is None:
            continue
        age = _number(job, 'age') if job['age'] is not None else 0.0  # as a replay reads it
        latency_ms = 1000.0 * (_number(job, 'end') - arrival + age)
        kind = 'failed' if job['outcome'] != reasons.OK else \
            'over' if latency_ms > budget_ms else 'in'
        points[kind][0].append(arrival)
        points[kind][1].append(latency_ms)
    row.ran = sum(len(xs) for xs, _ in points.values())
    row.over_budget, row.failed = len(points['over'][0]), len(points['failed'][0])
    styles = {'in': ('in budget', IN_BUDGET, 'o', 6),
              'over': ('over budget', OVER_BUDGET, 'o', 14),
              'failed': ('failed / timed out', FAILED, 'x', 18)}
    for kind, (xs, ys) in points.items():
        if xs:
            label, colour, marker, size = styles[kind]
            axis.scatter(xs, ys, s=size, c=colour, marker=marker, label=label, linewidths=0.8,
                         zorder=3)
    if row.budgets_ms:
        # A step line: a live retune changes the budget of the frames after it.
        axis.step(budget_xs + [end_s], row.budgets_ms + row.budgets_ms[-1:], where='post',
                  color='#222222', linestyle='--', linewidth=1.2, label='budget', zorder=2)
    if not row.ran:
        axis.text(0.5, 0.5, 'no frame ran', transform=axis.transAxes, ha='center',
                  va='center', color='#777777')
    top = max([max(points[k][1], default=0.0) for k in points] + row.budgets_ms)
    axis.set_ylim(0.0, 1.1 * top if top > 0 else 1.0)


def _draw_drops(row: TaskRow, jobs: List[dict], bin_s: float) -> None:
    counts: Dict[str, Dict[int, int]] = {}
    for job in jobs:
        if job['outcome'] == DROPPED:
            index = int(_number(job, 'arrival') // bin_s)
            by_bin = counts.setdefault(job['reason'], {})
            by_bin[index] = by_bin.get(index, 0) + 1
    axis = row.drops_axis
    order = [r for r in reasons.DROP_REASONS if r in counts] + \
        sorted(r for r in counts if r not in reasons.DROP_REASONS)
    bottoms: Dict[int, int] = {}
    for reason in order:
        by_bin = counts[reason]
        bins = sorted(by_bin)
        axis.bar([(b + 0.5) * bin_s for b in bins], [by_bin[b] for b in bins], width=bin_s,
                 bottom=[bottoms.get(b, 0) for b in bins], label=reason, edgecolor='none',
                 color=DROP_COLOURS.get(reason, '#999999'), zorder=3)
        for b in bins:
            bottoms[b] = bottoms.get(b, 0) + by_bin[b]
        row.drops_by_reason[reason] = sum(by_bin.values())
    if not counts:
        axis.text(0.5, 0.5, 'no drops', transform=axis.transAxes, ha='center', va='center',
                  color='#777777')
    axis.set_ylim(0.0, max(bottoms.values(), default=0) * 1.15 or 1.0)


def _draw_decisions(row: TaskRow, task: str, tasks: List[str], decisions: List[dict],
                    spans: List[Tuple[float, float]]) -> None:
    for index, (start, stop) in enumerate(spans):
        for axis in (row.latency_axis, row.drops_axis):
            axis.axvspan(start, stop, color=SHEDDING, alpha=0.25, linewidth=0, zorder=1,
                         label='shedding' if index == 0 and axis is row.latency_axis else None)
    for decision in decisions:
        event = decision['event']
        owner = decision.get('task', '')
        if event not in EVENT_COLOURS or (owner in tasks and owner != task):
            continue  # not marked, or another task's row
        time = float(decision['time'])
        first = event not in row.decisions
        row.decisions[event] = row.decisions.get(event, 0) + 1
        for axis in (row.latency_axis, row.drops_axis):
            axis.axvline(time, color=EVENT_COLOURS[event], linestyle=':', linewidth=1.3,
                         zorder=2, label=event if first and axis is row.latency_axis else None)
        if event == reasons.LIMIT:
            limit = float(decision.get('limit_hz') or 0.0)
            row.latency_axis.annotate(f'{limit:g} Hz' if limit else 'lifted', (time, 1.0),
                                      xycoords=('data', 'axes fraction'), rotation=90,
                                      fontsize=7, ha='right', va='top',
                                      color=EVENT_COLOURS[event])


def _label(row: TaskRow, task: str, bin_s: float, last: bool) -> None:
    budgets = ', '.join(f'{b:g}' for b in dict.fromkeys(row.budgets_ms))
    dropped = sum(row.drops_by_reason.values())
    row.latency_axis.set_title(
        f'{task}: budget {budgets} ms; {row.ran} ran ({row.over_budget} over budget, '
        f'{row.failed} failed), {dropped} dropped', loc='left', fontsize=10)
    row.latency_axis.set_ylabel('end-to-end\nlatency (ms)')
    row.drops_axis.set_ylabel(f'drops per\n{bin_s:g} s')
    for axis in (row.latency_axis, row.drops_axis):
        axis.grid(True, alpha=0.3, zorder=0)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc='upper left', bbox_to_anchor=(1.005, 1.0), fontsize=8,
                        borderaxespad=0.0)
        if not (last and axis is row.drops_axis):
            axis.tick_params(labelbottom=False)
    if last:
        row.drops_axis.set_xlabel('time since the engine started (s); frames at their arrival')


def save(timeline: Timeline, path: str) -> None:
    """Write the timeline as a PNG (OSError when it cannot be written)."""
    timeline.figure.savefig(path, dpi=90, bbox_inches='tight')
    pyplot().close(timeline.figure)
