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

"""The trace's budgets and decisions, and `plot TRACE.jsonl`: the timeline drawn from them."""

import json
import sys

from inferedge_orchestrator.telemetry.job_trace import read_trace_contents, TraceRecorder
from inferedge_orchestrator.tools.cli import main
from inferedge_orchestrator.tools.simulation import periodic_trace, Simulation
import pytest

from .conftest import two_tasks

PNG = b'\x89PNG\r\n\x1a\n'


def shedding_run(tmp_path, config=None, more=()):
    """Record the overload of test_simulation's shedding scenario: sheds, limits, recovers."""
    path = str(tmp_path / 'trace.jsonl')
    recorder = TraceRecorder(path)
    simulation = Simulation(config or two_tasks(), trace=recorder)
    arrivals = periodic_trace(['camera'], 200, 0.01) + \
        [(2.0 + i * 0.2, 'camera') for i in range(40)]
    report = simulation.run(sorted(arrivals + list(more)), 10.0)
    recorder.close()
    return report, path


def matplotlib_or_skip():
    pytest.importorskip('matplotlib', reason='matplotlib is not installed (extra plots)')


def test_the_trace_holds_each_frames_budget_and_every_decision(tmp_path):
    config = two_tasks()
    config['inputs'] = {'camera': {}, 'side': {}}
    config['tasks'][1].update(inputs=['camera', 'side'], camera_budget_ms=[250.0, 400.0])
    config['tasks'][0]['inputs'] = ['camera']
    report, path = shedding_run(tmp_path, config, [(0.005 + i * 0.1, 'side') for i in range(50)])
    contents = read_trace_contents(path)
    budgets = {}
    for job in contents.jobs:
        budgets.setdefault((job['task'], job['input']), set()).add(job['budget'])
    assert budgets == {('detector', 'camera'): {0.08}, ('classifier', 'camera'): {0.25},
                       ('classifier', 'side'): {0.4}}
    # Every decision of the run, in order, its time on the trace's scale (the engine started
    # at 0 under the virtual clock).
    assert len(report['decisions']) < 100  # the ring kept them all
    assert [(d['seq'], d['event'], d['task']) for d in contents.decisions] == \
        [(d['seq'], d['event'], d['task']) for d in report['decisions']]
    assert [d['time'] for d in contents.decisions] == \
        pytest.approx([d['time'] for d in report['decisions']], abs=1e-8)
    events = {d['event'] for d in contents.decisions}
    assert {'SHED_START', 'LIMIT', 'SHED_STOP', 'DROP'} <= events


def test_the_timeline_draws_one_row_per_task_with_its_budget_drops_and_decisions(tmp_path):
    matplotlib_or_skip()
    from inferedge_orchestrator.tools import timeline
    _, path = shedding_run(tmp_path)
    contents = read_trace_contents(path)
    drawn = timeline.draw_timeline(contents, 'trace')
    assert list(drawn.rows) == ['detector', 'classifier']
    budgets = {'detector': 80.0, 'classifier': 250.0}
    for task, row in drawn.rows.items():
        mine = [job for job in contents.jobs if job['task'] == task]
        budget_lines = [line for line in row.latency_axis.get_lines()
                        if line.get_label() == 'budget']
        assert len(budget_lines) == 1
        assert set(budget_lines[0].get_ydata()) == {budgets[task]}
        counted = {}
        for job in mine:
            if job['outcome'] == 'DROPPED':
                counted[job['reason']] = counted.get(job['reason'], 0) + 1
        assert row.drops_by_reason == counted
        legend = row.drops_axis.get_legend()
        shown = set() if legend is None else {text.get_text() for text in legend.get_texts()}
        assert shown == set(counted)
        ran = [job for job in mine if job['end'] is not None]
        assert row.ran == len(ran) == sum(len(c.get_offsets())
                                          for c in row.latency_axis.collections
                                          if c.get_label() in ('in budget', 'over budget',
                                                               'failed / timed out'))
        limits = [d for d in contents.decisions if d['event'] == 'LIMIT' and d['task'] == task]
        assert row.decisions.get('LIMIT', 0) == len(limits)
        assert f'{task}: budget {budgets[task]:g} ms' in row.latency_axis.get_title(loc='left')
    assert drawn.rows['classifier'].drops_by_reason  # the overload dropped some
    assert drawn.rows['classifier'].decisions['LIMIT'] >= 1
    starts = [d['time'] for d in contents.decisions if d['event'] == 'SHED_START']
    stops = [d['time'] for d in contents.decisions if d['event'] == 'SHED_STOP']
    assert drawn.shedding_spans == list(zip(starts, stops)) and starts
    timeline.pyplot().close(drawn.figure)


def test_run_trace_then_plot_writes_a_png(tmp_path, capsys):
    matplotlib_or_skip()
    config = two_tasks()
    config['inputs'] = {'camera': {'rate_hz': 100.0, 'width': 32, 'height': 24}}
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(config))
    trace, png = tmp_path / 'trace.jsonl', tmp_path / 'timeline.png'
    assert main(['run', '--config', str(path), '--frames', '30', '--output',
                 str(tmp_path / 'report.json'), '--trace', str(trace), '--quiet']) == 0
    capsys.readouterr()
    assert main(['plot', str(trace), '--output', str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == PNG and len(data) > 1000
    assert f'wrote {png}: 2 task(s)' in capsys.readouterr().out


@pytest.mark.parametrize('content, message', [
    (None, 'cannot read: No such file or directory'),
    ('', 'no job lines'),
    ('\n\n', 'no job lines'),
    ('not json\n', 'trace.jsonl:1: not a JSON line'),
    ('[1, 2]\n', 'trace.jsonl:1: not a JSON object'),
    ('{"task": "a", "input": "c", "seq": 1, "arrival": 0.1, "age": 0.0, "start": null, '
     '"end": null, "service": null, "outcome": "DROPPED", "reason": "expired"}\n',
     'trace.jsonl:1: missing budget'),
    ('{"decision": {"seq": 1, "event": "LIMIT"}}\n', 'trace.jsonl:1: missing time, reason'),
    ('{"task": "a", "input": "c", "seq": 1, "arrival": "soon", "age": 0.0, "budget": 0.1, '
     '"start": null, "end": null, "service": null, "outcome": "DROPPED", "reason": "x"}\n',
     "arrival: 'soon' is not allowed"),
])
def test_a_bad_trace_gives_one_line_and_exit_2(tmp_path, capsys, content, message):
    matplotlib_or_skip()
    trace = tmp_path / 'trace.jsonl'
    if content is not None:
        trace.write_text(content)
    assert main(['plot', str(trace), '--output', str(tmp_path / 'out.png')]) == 2
    error = capsys.readouterr().err
    assert error.startswith('error: ') and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / 'out.png').exists()


def test_bad_arguments_of_plot(tmp_path, capsys):
    _, path = shedding_run(tmp_path)
    assert main(['plot', path, '--output', str(tmp_path / 'out.png'), '--bin-s', '0']) == 2
    assert '--bin-s: 0 is not allowed; allowed: > 0' in capsys.readouterr().err
    assert main(['plot', path, '--output', str(tmp_path / 'missing' / 'out.png')]) == 2
    assert 'the folder' in capsys.readouterr().err


def test_plot_without_matplotlib_says_what_to_install(tmp_path, capsys, monkeypatch):
    _, path = shedding_run(tmp_path)
    # None in sys.modules makes `import matplotlib` raise ImportError, installed or not.
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    monkeypatch.setitem(sys.modules, 'matplotlib.pyplot', None)
    assert main(['plot', path, '--output', str(tmp_path / 'out.png')]) == 2
    assert capsys.readouterr().err == \
        'error: plot needs matplotlib: pip install matplotlib\n'
    assert not (tmp_path / 'out.png').exists()
