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

"""The command line: compare-overload, and one-line errors with exit code 2."""

import json
import subprocess
import sys

from inferedge_orchestrator.tools.cli import main
import pytest


def run_cli(*args):
    return subprocess.run([sys.executable, '-m', 'inferedge_orchestrator', *args],
                          capture_output=True, text=True, timeout=120)


def test_compare_overload_writes_json_and_table(tmp_path, example_path, capsys):
    output = tmp_path / 'out.json'
    assert main(['compare-overload', '--config',
                 example_path('prototype', 'phase3_overload.json'),
                 '--frames', '50', '--output', str(output)]) == 0
    table = capsys.readouterr().out
    assert 'fifo' in table and 'priority' in table and 'detector' in table
    result = json.loads(output.read_text())
    for mode in ('fifo', 'priority'):
        for task in result['modes'][mode]['tasks'].values():
            assert task['routed'] == 50
            assert task['routed'] == (task['executed'] + task['failed'] + task['dropped'] +
                                      task['queued'] + task['in_flight'])
            assert {'p50_ms', 'p95_ms', 'p99_ms', 'max_ms'} <= set(task)


def test_compare_overload_plot(tmp_path, example_path):
    pytest.importorskip('matplotlib', reason='matplotlib is not installed')
    plot = tmp_path / 'cdf.png'
    assert main(['compare-overload', '--config',
                 example_path('prototype', 'phase3_overload.json'),
                 '--frames', '20', '--output', str(tmp_path / 'o.json'),
                 '--plot', str(plot)]) == 0
    assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('content, message', [
    ('tasks:\n  - name: a\n    priority: -1\n', 'tasks.a.priority: -1 is out of range'),
    ('tasks: [', 'not valid YAML'),
    ('tasks:\n  - name: a\n    colour: red\n', "unknown key 'colour'"),
    ('orchestrator: {mode: lifo}\ntasks: [{name: a}]\n', "orchestrator.mode: 'lifo'"),
])
def test_broken_config_gives_one_line_and_exit_code(tmp_path, content, message):
    path = tmp_path / 'broken.yaml'
    path.write_text(content)
    done = run_cli('compare-overload', '--config', str(path), '--frames', '5',
                   '--output', str(tmp_path / 'o.json'))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0]
    assert 'Traceback' not in done.stderr


def test_bad_arguments(tmp_path, example_path):
    done = run_cli('compare-overload', '--config',
                   example_path('prototype', 'phase3_overload.json'),
                   '--frames', '0', '--output', str(tmp_path / 'o.json'))
    assert done.returncode == 2 and 'frames' in done.stderr and 'Traceback' not in done.stderr


def test_new_user_errors_are_one_line_with_exit_2(tmp_path):
    onnx = {'inputs': {'camera': {}},
            'tasks': [{'name': 'detector', 'worker': 'onnxruntime',
                       'worker_options': {'model_path': str(tmp_path / 'missing.onnx')}}]}
    undeclared = {'inputs': {'camera': {}}, 'tasks': [{'name': 'detector', 'inputs': ['front']}]}
    broken = tmp_path / 'broken.yaml'
    broken.write_text('tasks: [\n')
    cases = [
        (onnx, 'compare-overload', "tasks.detector.worker: 'onnxruntime' cannot run under "
                                   'the virtual clock'),
        (undeclared, 'compare-overload', "tasks.detector.inputs: 'front' is not declared"),
        (str(broken), 'compare-overload', 'broken.yaml:2:1: not valid YAML'),
    ]
    for config, command, message in cases:
        path = config if isinstance(config, str) else str(tmp_path / 'config.json')
        if not isinstance(config, str):
            (tmp_path / 'config.json').write_text(json.dumps(config))
        done = run_cli(command, '--config', path, '--frames', '5',
                       '--output', str(tmp_path / 'out.json'))
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and 'Traceback' not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
