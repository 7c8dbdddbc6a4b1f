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
What `top` shows: the state it keeps from ~/telemetry and ~/decisions, and its screen (rich).

No rclpy here: NodeWatch takes the messages however they came (a subscription or a bag), and
render() draws every watched node from that state alone, so a test can draw a screen from
messages it made. Rates are counter deltas between two telemetry messages over their uptime
delta (the engine's clock, immune to wall-clock steps): the figures of the telemetry itself.
"""

from collections import deque
from dataclasses import dataclass, field
import math
import time
from typing import Deque, Dict, List, Optional, Tuple

from rich.console import Group
from rich.table import Table
from rich.text import Text

HISTORY_S = 60.0  # the sparkline's span
SPARK_WIDTH = 20  # characters: 3 s each
SPARKS = '▁▂▃▄▅▆▇█'
# Sort orders the `s` key cycles through: (name shown, key of a task row, descending).
SORTS = (('priority', lambda row: row.priority, True),
         ('name', lambda row: row.name, False),
         ('executed/s', lambda row: row.executed_hz, True),
         ('drops/s', lambda row: row.dropped_hz, True),
         ('p99', lambda row: row.p99_ms, True))
DECISION_LINES = 8


@dataclass
class TaskRow:
    """One task (or one camera of a task) as the last telemetry period saw it."""

    name: str
    priority: int = 0
    executed_hz: float = 0.0
    within_budget_hz: float = 0.0
    dropped_hz: float = 0.0
    dropped_hz_by_reason: Dict[str, float] = field(default_factory=dict)
    queued: int = 0
    in_flight: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    budget_ms: float = 0.0
    shed_limit_hz: float = 0.0
    slots_down: int = 0
    cameras: List['TaskRow'] = field(default_factory=list)


def _reasons(items) -> Dict[str, int]:
    return {item.reason: item.count for item in items}


def _rate(now: int, before: int, seconds: float) -> float:
    # A counter that went back means the node started again: no rate for that period.
    return max(0, now - before) / seconds


class NodeWatch:
    """What top knows of one orchestrator node: its last telemetry and the minute before."""

    def __init__(self, name: str):
        self.name = name
        self.telemetry = None
        self.previous = None
        self.received_at: Optional[float] = None  # monotonic time of the last telemetry
        self.period_s = 1.0  # between the node's telemetry messages, as measured
        self.publishers = 0  # of its telemetry topic (live mode; -1: unknown, e.g. a bag)
        self.rows: List[TaskRow] = []
        # By task: (uptime, p99 end-to-end ms) of the last minute, for the sparkline.
        self.history: Dict[str, Deque[Tuple[float, float]]] = {}
        self.dropping_since: Dict[str, float] = {}  # task -> uptime its drops began
        self.limit_reasons: Dict[str, str] = {}  # task -> why shedding limited it
        self.restarts = 0

    def on_telemetry(self, msg, now: float) -> None:
        """Take a telemetry message received at monotonic time now."""
        previous = self.telemetry
        if previous is not None and msg.uptime_s < previous.uptime_s:
            self.restarts += 1  # a new engine: its counters start again
            previous = None
            self.history.clear()
            self.dropping_since.clear()
        if previous is not None and msg.uptime_s > previous.uptime_s:
            self.period_s = msg.uptime_s - previous.uptime_s
        self.previous, self.telemetry, self.received_at = previous, msg, now
        self.rows = self._task_rows(msg, previous)

    def on_decision(self, msg) -> None:
        """Remember why shedding limits a task (its last LIMIT decision)."""
        if msg.event == 'LIMIT':
            if msg.limit_hz > 0:
                protected = f' for {msg.protected_task}' if msg.protected_task else ''
                self.limit_reasons[msg.task] = f'{msg.reason}{protected}'
            else:
                self.limit_reasons.pop(msg.task, None)
        elif msg.event == 'SHED_STOP':
            self.limit_reasons.clear()

    def waiting(self, now: float) -> Optional[str]:
        """Return why the view waits for this node ('' if it does not)."""
        if self.telemetry is None:
            return 'waiting for its first telemetry'
        if self.publishers == 0:
            return f'waiting: no publisher (last telemetry {now - self.received_at:.0f} s ago)'
        silent = now - self.received_at
        if silent > max(3.0 * self.period_s, 3.0):
            return f'waiting: no telemetry for {silent:.0f} s'
        return ''

    def _task_rows(self, msg, previous) -> List[TaskRow]:
        seconds = msg.uptime_s - previous.uptime_s if previous is not None else 0.0
        before = {task.name: task for task in previous.tasks} if previous is not None else {}
        rows = []
        for task in msg.tasks:
            row = _row(task.name, task, before.get(task.name), seconds)
            row.priority, row.shed_limit_hz = task.priority, task.shed_limit_hz
            row.slots_down = task.slots_down
            latency = {summary.series: summary for summary in task.latency}
            end_to_end = latency.get('end_to_end')
            if end_to_end is not None and end_to_end.count:
                row.p50_ms, row.p99_ms = end_to_end.p50_ms, end_to_end.p99_ms
                history = self.history.setdefault(task.name, deque())
                history.append((msg.uptime_s, end_to_end.p99_ms))
                while history and history[0][0] < msg.uptime_s - HISTORY_S:
                    history.popleft()
            if row.dropped_hz > 0:
                self.dropping_since.setdefault(task.name, msg.uptime_s)
            elif seconds > 0:
                self.dropping_since.pop(task.name, None)
            old_cameras = before[task.name].cameras if task.name in before else []
            old = {camera.input: camera for camera in old_cameras}
            row.cameras = [_row(camera.input, camera, old.get(camera.input), seconds)
                           for camera in task.cameras]
            rows.append(row)
        return rows


def _row(name: str, counts, before, seconds: float) -> TaskRow:
    """Return the rates of a task's or a camera's counters over the last period."""
    row = TaskRow(name=name, queued=counts.queued, in_flight=counts.in_flight,
                  budget_ms=counts.latency_budget_ms)
    if before is None or seconds <= 0:
        return row
    row.executed_hz = _rate(counts.executed, before.executed, seconds)
    row.within_budget_hz = _rate(counts.completed_within_budget,
                                 before.completed_within_budget, seconds)
    row.dropped_hz = _rate(counts.dropped, before.dropped, seconds)
    old = _reasons(before.dropped_by_reason)
    row.dropped_hz_by_reason = {
        reason: _rate(count, old.get(reason, 0), seconds)
        for reason, count in sorted(_reasons(counts.dropped_by_reason).items())
        if count > old.get(reason, 0)}
    return row


def sparkline(history, budget_ms: float, now_uptime: float) -> Text:
    """Return the last minute of p99 latency, one character per bin, full height = budget."""
    text = Text()
    bin_s = HISTORY_S / SPARK_WIDTH
    start = now_uptime - HISTORY_S
    bins: List[List[float]] = [[] for _ in range(SPARK_WIDTH)]
    for uptime, p99 in history:
        index = int((uptime - start) / bin_s)
        if 0 <= index < SPARK_WIDTH:
            bins[min(index, SPARK_WIDTH - 1)].append(p99)
    for values in bins:
        if not values:
            text.append(' ')
            continue
        worst = max(values)
        if budget_ms <= 0:
            text.append(SPARKS[0], style='dim')
            continue
        level = min(len(SPARKS) - 1, int(worst / budget_ms * (len(SPARKS) - 1)))
        text.append(SPARKS[level], style='red' if worst > budget_ms else 'green')
    return text


def _ms(value: float) -> str:
    return '-' if math.isnan(value) else f'{value:.0f}'


def _hz(value: float) -> str:
    return f'{value:.1f}'


def _drops(row: TaskRow, since: Optional[float], uptime: float) -> Text:
    if not row.dropped_hz_by_reason:
        return Text('-', style='dim')
    text = Text(', '.join(f'{reason} {rate:.1f}'
                          for reason, rate in row.dropped_hz_by_reason.items()), style='yellow')
    if since is not None:
        text.append(f' (since {uptime - since:.0f} s)', style='dim')
    return text


def _header(watch: NodeWatch, now: float) -> Text:
    msg = watch.telemetry
    text = Text(watch.name, style='bold')
    why = watch.waiting(now)
    if msg is None:
        return text.append(f'  {why}', style='bold red')
    text.append(f'  {msg.node_state}/{msg.engine_state}  mode {msg.mode}'
                f'  up {msg.uptime_s:.0f} s  cpu {msg.cpu_percent:.0f}%'
                f'  rss {msg.rss_mb:.0f} MB')
    if msg.shedding_active:
        text.append(f'  SHEDDING for {msg.last_risk_task} ({msg.last_risk_reason})',
                    style='bold yellow')
    if why:
        text.append(f'  {why}', style='bold red')
    return text


def _inputs_table(msg) -> Table:
    table = Table(box=None, header_style='bold cyan', pad_edge=False)
    for column in ('input', 'topic', 'rate/s', 'received', 'malformed', 'decode err',
                   'stamp fallback', 'QoS events'):
        table.add_column(column, justify='left' if column in ('input', 'topic') else 'right')
    for item in msg.inputs:
        malformed = ', '.join(f'{r.reason} {r.count}' for r in item.malformed_by_reason)
        qos = []
        if item.incompatible_qos:
            qos.append(f'incompatible {item.incompatible_qos}')
        if item.deadline_missed:
            qos.append(f'deadline missed {item.deadline_missed}')
        table.add_row(item.name, item.topic, _hz(item.rate_hz), str(item.received),
                      malformed or str(item.malformed), str(item.decode_errors),
                      str(item.stamp_fallback), ', '.join(qos) or '-')
    return table


def _tasks_table(watch: NodeWatch, sort: int) -> Table:
    msg = watch.telemetry
    table = Table(box=None, header_style='bold cyan', pad_edge=False)
    for column in ('task', 'prio', 'exec/s', 'in budget/s', 'queue', 'p50 ms', 'p99 ms',
                   'budget', f'p99 last {HISTORY_S:.0f} s', 'drops/s by reason',
                   'shed limit'):
        table.add_column(column, justify='left' if column in (
            'task', 'drops/s by reason', 'shed limit') or column.startswith('p99 last')
            else 'right', no_wrap=column != 'drops/s by reason')
    _, key, descending = SORTS[sort]
    for row in sorted(watch.rows, key=key, reverse=descending):
        limit = '-'
        if row.shed_limit_hz > 0:
            why = watch.limit_reasons.get(row.name, '')
            limit = f'{row.shed_limit_hz:.1f} Hz' + (f' ({why})' if why else '')
        name = row.name + (f' [{row.slots_down} slot down]' if row.slots_down else '')
        table.add_row(
            Text(name, style='bold'), str(row.priority), _hz(row.executed_hz),
            _hz(row.within_budget_hz), f'{row.queued}+{row.in_flight}', _ms(row.p50_ms),
            Text(_ms(row.p99_ms), style='red' if row.p99_ms > row.budget_ms else ''),
            _ms(row.budget_ms),
            sparkline(watch.history.get(row.name, ()), row.budget_ms, msg.uptime_s),
            _drops(row, watch.dropping_since.get(row.name), msg.uptime_s), limit)
        for camera in row.cameras:
            table.add_row(f'  {camera.name}', '', _hz(camera.executed_hz),
                          _hz(camera.within_budget_hz), f'{camera.queued}+{camera.in_flight}',
                          '', '', _ms(camera.budget_ms), '', _drops(camera, None, 0.0), '')
    return table


def _pools_table(msg) -> Table:
    table = Table(box=None, header_style='bold cyan', pad_edge=False)
    for column in ('pool', 'backend', 'slots', 'busy', 'down', 'utilisation', 'crashes',
                   'respawns', 'server'):
        table.add_column(column, justify='left' if column in ('pool', 'backend', 'server')
                         else 'right')
    for pool in msg.pools:
        down = pool.retired + (pool.slots if pool.server_down else 0)
        server = '-' if pool.backend != 'server' else (
            f'DOWN (outages {pool.outages})' if pool.server_down else f'up (outages '
            f'{pool.outages})')
        table.add_row(pool.name, pool.backend, str(pool.slots), str(pool.busy),
                      Text(str(down), style='red' if down else ''),
                      f'{pool.utilisation:.0%}', str(pool.crashes), str(pool.respawns), server)
    return table


def decision_line(node: str, msg) -> Text:
    """Return one decision as a line of the scrolling log."""
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    clock = time.strftime('%H:%M:%S', time.localtime(stamp)) if stamp > 1e9 else \
        f'{stamp:9.1f}'
    text = Text(f'{clock} ', style='dim')
    text.append(f'{node} ', style='dim')
    text.append(f'{msg.event:<14}', style='bold magenta')
    subject = msg.task + (f'/{msg.camera}' if msg.camera else '')
    text.append(f' {subject:<16} {msg.reason:<16}')
    if msg.event == 'DROP':
        text.append(f' x{msg.count}')
    elif msg.event == 'LIMIT':
        text.append(f' {msg.limit_hz:.1f} Hz')
    if msg.detail:
        text.append(f'  {msg.detail}', style='dim')
    return text


def render(watches: List[NodeWatch], decisions, sort: int, paused: bool,
           now: float, source: str) -> Group:
    """Return the whole screen: a block per node, then the last decisions."""
    title = Text('inferedge top', style='bold reverse')
    title.append(f'  {source}  sort: {SORTS[sort][0]}')
    if paused:
        title.append('  PAUSED', style='bold reverse yellow')
    title.append('   q quit  s sort  p pause', style='dim')
    parts = [title]
    for watch in watches:
        parts.append(Text(''))
        parts.append(_header(watch, now))
        msg = watch.telemetry
        if msg is None:
            continue
        parts.extend([_inputs_table(msg), _tasks_table(watch, sort), _pools_table(msg)])
    parts.append(Text(''))
    parts.append(Text('last decisions', style='bold cyan'))
    lines = list(decisions)[-DECISION_LINES:]
    parts.extend(lines if lines else [Text('  none yet', style='dim')])
    return Group(*parts)
