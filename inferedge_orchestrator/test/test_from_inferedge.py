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

"""from-inferedge: a task config whose budget comes from an InferEdge result.json."""

import json

from inferedge_orchestrator.config.loader import load_config

from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.tools.cli import main
from inferedge_orchestrator.tools.inferedge_import import (build_config, find_latency,
                                                           recommend_budget_ms)
import pytest


def test_the_prototype_sample_gives_64_ms(example_path, tmp_path, capsys):
    output = tmp_path / 'from_inferedge.json'
    assert main(['from-inferedge', '--result',
                 example_path('prototype', 'inferedge_result.json'),
                 '--output', str(output), '--task-name', 'detector',
                 '--model-path', 'models/detector.onnx', '--priority', '100',
                 '--target-fps', '15', '--queue-size', '4']) == 0
    printed = capsys.readouterr().out
    assert 'expected_latency_ms 42.2 ms -> recommended latency_budget_ms 64' in printed
    config = load_config(str(output))
    task = config.tasks[0]
    assert (task.name, task.priority, task.latency_budget_ms, task.queue_size) == (
        'detector', 100, 64.0, 4)
    assert task.worker == 'onnxruntime'
    assert task.worker_options['model_path'] == 'models/detector.onnx'
    assert task.expected_latency_ms == 42.2
    assert config.inputs['camera'].rate_hz == 15.0
    assert config.shedding.backlog_threshold == 4


def test_latency_keys_in_priority_order_depth_first():
    assert find_latency({'a': {'latency_ms': 9}, 'b': [{'p95_latency_ms': 7}],
                         'c': {'d': {'expected_latency_ms': 5}}}) == ('expected_latency_ms', 5)
    assert find_latency({'runs': [{'x': 1}, {'mean_latency_ms': 12.5}],
                         'latency_ms': 3}) == ('mean_latency_ms', 12.5)
    # The first number under the key, depth-first, when the key holds a structure.
    assert find_latency({'expected_latency_ms': {'unit': 'ms', 'values': [True, 30, 40]}}) == (
        'expected_latency_ms', 30.0)
    # Booleans and non-numbers are not latencies.
    assert find_latency({'expected_latency_ms': True, 'x': {'latency_ms': '8',
                                                            'y': {'latency_ms': 8}}}) == (
        'latency_ms', 8.0)
    with pytest.raises(ConfigError, match='no numeric latency found; looked for '
                                          'expected_latency_ms, mean_latency_ms'):
        find_latency({'runtime': {'summary': {}}})
    with pytest.raises(ConfigError, match='expected_latency_ms: 0 is not allowed'):
        find_latency({'expected_latency_ms': 0})


def test_budget_rounding():
    assert recommend_budget_ms(42.2) == 64.0
    assert recommend_budget_ms(0.1) == 1.0
    assert recommend_budget_ms(40.0, 1.1) == 44.0  # not 45 from 44.000000000000004
    assert recommend_budget_ms(10.0, 2.0) == 20.0
    with pytest.raises(ConfigError, match='--budget-multiplier: 0.5 is not allowed'):
        recommend_budget_ms(10.0, 0.5)


def test_workers_and_prototype_drop_policy():
    result = {'latency_ms': 20.0}
    trt, _ = build_config(result, 'seg', 5, 10.0, model_path='seg.onnx', worker='tensorrt',
                          engine_path='seg.plan', drop_policy='drop_low_priority')
    task = trt['tasks'][0]
    assert task['worker_options'] == {'engine_path': 'seg.plan'}
    assert task['drop_policy'] == 'drop_newest'
    dummy, found = build_config(result, 'sim', 1, 10.0, worker='dummy')
    assert dummy['tasks'][0]['worker_options'] == {'latency_ms': 20.0}
    assert found == {'key': 'latency_ms', 'latency_ms': 20.0, 'latency_budget_ms': 30.0}
    assert build_config(result, 'q', 1, 5.0, 'm.onnx', queue_size=1)[0][
        'orchestrator']['shedding']['backlog_threshold'] == 2
    with pytest.raises(ConfigError, match='--model-path: required'):
        build_config(result, 'x', 1, 5.0)
    with pytest.raises(ConfigError, match='tasks.x.priority: 5000 is out of range'):
        build_config(result, 'x', 5000, 5.0, 'm.onnx')


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    result = tmp_path / 'result.json'
    result.write_text(json.dumps({'device': 'orin'}))
    args = ['from-inferedge', '--result', str(result), '--output', str(tmp_path / 'c.json'),
            '--task-name', 'detector', '--model-path', 'm.onnx', '--priority', '1',
            '--target-fps', '5']
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        'error: no numeric latency found; looked for expected_latency_ms, mean_latency_ms, '
        'p95_latency_ms, latency_ms')
    result.write_text('{not json')
    assert main(args) == 2
    assert 'not valid JSON' in capsys.readouterr().err
    assert main(args[:2] + [str(tmp_path / 'absent.json')] + args[3:]) == 2
    assert 'cannot read' in capsys.readouterr().err
    assert not (tmp_path / 'c.json').exists()
