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

"""Config validation: every kind of error names the field, the value and what is allowed."""

import json

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.contracts.errors import ConfigError
import pytest


def base(**task):
    return {'tasks': [dict({'name': 'detector'}, **task)]}


def test_defaults():
    config = load_config(base())
    task = config.task('detector')
    assert task.inputs == ['camera'] and task.pool == 'cpu' and task.queue_size == 4
    assert task.drop_policy == 'drop_oldest' and task.order == 'oldest_first'
    assert task.worker == 'dummy' and task.worker_options['latency_ms'] == 10.0
    assert config.pools['cpu'].slots == 1
    assert 'camera' in config.inputs
    assert config.shedding.tick_s == 0.5 and config.telemetry.window_s == 10.0


def test_ints_accepted_for_floats():
    task = load_config(base(latency_budget_ms=80, max_rate_hz=5)).task('detector')
    assert task.latency_budget_ms == 80.0 and isinstance(task.latency_budget_ms, float)
    assert task.max_rate_hz == 5.0


@pytest.mark.parametrize('task, expected', [
    ({'priority': -1}, 'tasks.detector.priority: -1 is out of range; allowed: 0..1000'),
    ({'priority': 1.5}, 'tasks.detector.priority: 1.5 is not an integer'),
    ({'latency_budget_ms': 0}, 'tasks.detector.latency_budget_ms: 0 is out of range; '
                               'allowed: a number >= 0.001 and <= 1e+09'),
    ({'latency_budget_ms': 'fast'}, "tasks.detector.latency_budget_ms: 'fast' is not a number"),
    ({'queue_size': 0}, 'tasks.detector.queue_size: 0 is out of range; allowed: 1..4096'),
    ({'drop_policy': 'drop_random'}, "tasks.detector.drop_policy: 'drop_random' is not allowed; "
                                     'allowed: drop_oldest, drop_newest'),
    ({'order': 'lifo'}, "tasks.detector.order: 'lifo' is not allowed"),
    ({'on_deadline': 'skip'}, "tasks.detector.on_deadline: 'skip' is not allowed"),
    ({'worker': 'tflite'}, "tasks.detector.worker: 'tflite' is not allowed; allowed: dummy"),
    ({'enabled': 'yes'}, "tasks.detector.enabled: 'yes' is not a boolean"),
    ({'prio': 3}, "tasks[0]: unknown key 'prio'; known keys: name, inputs, priority"),
    ({'pool': 'gpu'}, "tasks.detector.pool: 'gpu' is not a pool; allowed: cpu"),
    ({'min_rate_hz': 5, 'max_rate_hz': 2}, 'tasks.detector.min_rate_hz: 5 is above max_rate_hz'),
    ({'worker_options': {'latency': 3}}, "tasks.detector.worker_options: unknown key 'latency' "
                                         "for worker 'dummy'; known keys: latency_ms"),
    ({'worker_options': {'latency_ms': -3}}, 'tasks.detector.worker_options.latency_ms: -3 is '
                                             'out of range; allowed: a number >= 0'),
])
def test_task_errors(task, expected):
    with pytest.raises(ConfigError) as error:
        load_config(base(**task))
    assert expected in str(error.value)


@pytest.mark.parametrize('data, expected', [
    ({'tasks': []}, 'tasks: [] is not allowed; allowed: a non-empty list'),
    ({'task': []}, "config: unknown key 'task'; known keys: orchestrator, inputs, tasks"),
    ({'tasks': [{'priority': 3}]}, "tasks[0]: missing required key 'name'"),
    ({'tasks': [{'name': '9lives'}]}, "tasks[0].name: '9lives' is not a valid name"),
    ({'tasks': [{'name': 'a'}, {'name': 'a'}]}, "tasks[1].name: 'a' is used twice"),
    ({'orchestrator': {'mode': 'edf'}, 'tasks': [{'name': 'a'}]},
     "orchestrator.mode: 'edf' is not allowed; allowed: priority, fifo"),
    ({'orchestrator': {'pools': {'cpu': {'slots': 0}}}, 'tasks': [{'name': 'a'}]},
     'orchestrator.pools.cpu.slots: 0 is out of range; allowed: 1..256'),
    ({'orchestrator': {'shedding': {'tick': 1}}, 'tasks': [{'name': 'a'}]},
     "orchestrator.shedding: unknown key 'tick'; known keys: enabled, tick_s"),
    ({'orchestrator': {'telemetry': {'window_s': -1}}, 'tasks': [{'name': 'a'}]},
     'orchestrator.telemetry.window_s: -1 is out of range'),
    ({'inputs': {'camera': {'encoding': 'yuv422'}}, 'tasks': [{'name': 'a'}]},
     "inputs.camera.encoding: 'yuv422' is not allowed; allowed: rgb8"),
    ([1, 2], 'config: expected a mapping, got list'),
])
def test_config_errors(data, expected):
    with pytest.raises(ConfigError) as error:
        load_config(data)
    assert expected in str(error.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match='cannot read the config'):
        load_config(tmp_path / 'missing.yaml')
    broken = tmp_path / 'broken.yaml'
    broken.write_text('tasks: [name: a\n')
    with pytest.raises(ConfigError, match=r'broken.yaml:2:1: not valid YAML'):
        load_config(broken)
    bad_json = tmp_path / 'bad.json'
    bad_json.write_text('{"tasks": ')
    with pytest.raises(ConfigError, match='bad.json:1:11: not valid JSON'):
        load_config(bad_json)
    wrong = tmp_path / 'wrong.yaml'
    wrong.write_text('tasks:\n  - name: a\n    priority: high\n')
    with pytest.raises(ConfigError, match="wrong.yaml: tasks.a.priority: 'high' is not an"):
        load_config(wrong)


def test_round_trip(tmp_path):
    config = load_config(base(priority=7, worker_options={'latency_ms': 3}))
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(config.to_dict()))
    again = load_config(path)
    assert again.to_dict() == config.to_dict()


def test_prototype_import(example_path):
    config = load_config(example_path('prototype', 'phase3_overload.json'))
    assert config.name == 'phase3_overload'
    assert config.shedding.backlog_threshold == 8
    assert [t.name for t in config.tasks] == ['detector', 'classifier']
    detector = config.task('detector')
    assert detector.worker_options['latency_ms'] == 8.0 and detector.priority == 100
    assert detector.latency_budget_ms == 80.0 and detector.queue_size == 24
    assert detector.max_rate_hz == 0.0  # target_fps is informational, never a cap
    assert config.extras['tasks']['detector']['target_fps'] == 15.0
    assert config.pools['cpu'].slots == 1 and list(config.inputs) == ['camera']


def test_prototype_drop_low_priority_and_unknown_keys():
    config = load_config({
        'run': {'name': 'x', 'overload_backlog_threshold': 3, 'color': 'blue'},
        'tasks': [{'name': 'ocr', 'drop_policy': 'drop_low_priority', 'worker': 'dummy',
                   'simulated_latency_ms': 12, 'shape': [1, 2], 'target_fps': 5}],
    })
    task = config.task('ocr')
    assert task.drop_policy == 'drop_newest'
    assert task.worker_options['latency_ms'] == 12.0
    assert config.extras['run']['color'] == 'blue'
    assert config.extras['tasks']['ocr']['shape'] == [1, 2]
    assert any('run.color' in w for w in config.warnings)
    assert any('tasks.ocr.shape' in w for w in config.warnings)
    assert not any('target_fps' in w for w in config.warnings)


def test_prototype_errors_use_native_fields():
    with pytest.raises(ConfigError, match='tasks.a.priority: -5 is out of range'):
        load_config({'run': {}, 'tasks': [{'name': 'a', 'priority': -5}]})
