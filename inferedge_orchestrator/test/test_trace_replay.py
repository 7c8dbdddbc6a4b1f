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

"""Job traces: written by run and the simulation, replayed under the virtual clock."""

import json

from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.telemetry.job_trace import FIELDS, read_trace, TraceRecorder
from inferedge_orchestrator.tools.cli import main
from inferedge_orchestrator.tools.simulation import periodic_trace, replay, Simulation
import pytest


def config(**detector):
    return {
        'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
        'inputs': {'camera': {'rate_hz': 40.0, 'width': 32, 'height': 24}},
        'tasks': [
            dict({'name': 'detector', 'priority': 100, 'latency_budget_ms': 60.0,
                  'worker_options': {'latency_ms': 12.0, 'jitter_ms': 6.0,
                                     'distribution': 'lognormal', 'seed': 4}}, **detector),
            {'name': 'ocr', 'priority': 10, 'latency_budget_ms': 200.0, 'queue_size': 2,
             'worker_options': {'latency_ms': 20.0, 'jitter_ms': 5.0, 'distribution': 'normal',
                                'seed': 5}},
        ],
    }


def record(tmp_path, cfg, frames=120):
    path = str(tmp_path / 'trace.jsonl')
    recorder = TraceRecorder(path)
    report = Simulation(cfg, trace=recorder).run(periodic_trace(['camera'], frames, 0.025),
                                                 frames * 0.025 + 0.5)
    recorder.close()
    return report, read_trace(path)


def test_a_trace_has_one_line_per_routed_frame_and_task(tmp_path):
    report, records = record(tmp_path, config())
    tasks = report['final']['tasks']
    assert len(records) == sum(t['routed'] - t['queued'] - t['in_flight']
                               for t in tasks.values())
    assert all(set(r) == set(FIELDS) for r in records)
    for name, task in tasks.items():
        mine = [r for r in records if r['task'] == name]
        assert sum(r['outcome'] == 'OK' for r in mine) == task['executed']
        dropped = {}
        for r in mine:
            if r['outcome'] == 'DROPPED':
                dropped[r['reason']] = dropped.get(r['reason'], 0) + 1
                assert r['start'] is None and r['service'] is None
            else:
                assert r['start'] >= r['arrival'] and r['end'] - r['start'] == \
                    pytest.approx(r['service'], abs=2e-6)
        assert dropped == task['dropped_by_reason']


def test_replaying_a_trace_with_its_config_gives_the_recorded_run(tmp_path):
    report, records = record(tmp_path, config())
    replayed = replay(config(), records)
    for name, task in report['final']['tasks'].items():
        again = replayed['final']['tasks'][name]
        for key in ('executed', 'completed_within_budget', 'dropped_by_reason'):
            assert again[key] == task[key], (name, key)


def test_replay_compares_configs_on_the_recorded_service_times(tmp_path):
    _, records = record(tmp_path, config())
    fifo = dict(config(), orchestrator=dict(config()['orchestrator'], mode='fifo'))
    priority, baseline = replay(config(), records), replay(fifo, records)
    detector = [r['final']['tasks']['detector'] for r in (priority, baseline)]
    assert detector[0]['completed_within_budget'] > detector[1]['completed_within_budget']
    assert priority['invariant_violations'] == baseline['invariant_violations'] == []


def test_frames_that_never_ran_get_the_tasks_recorded_distribution(tmp_path):
    # Recorded behind the detector, many ocr frames never ran. Replayed with the detector
    # disabled, all run: those with the recorded service time, the others with a draw from
    # the service times ocr was measured to take.
    _, records = record(tmp_path, config())
    ran = {r['seq']: r['service'] for r in records if r['task'] == 'ocr' and r['service']}
    path = str(tmp_path / 'replayed.jsonl')
    recorder = TraceRecorder(path)
    report = replay(config(enabled=False), records, trace=recorder)
    recorder.close()
    again = {r['seq']: r['service'] for r in read_trace(path)
             if r['task'] == 'ocr' and r['service']}
    assert report['final']['tasks']['ocr']['executed'] == len(again) > len(ran)
    for seq, service in again.items():
        if seq in ran:
            assert service == pytest.approx(ran[seq], abs=1e-8)
        else:
            assert min(abs(service - value) for value in ran.values()) < 1e-8


def test_replay_refuses_a_task_the_trace_never_ran(tmp_path):
    _, records = record(tmp_path, config())
    other = config()
    other['tasks'].append({'name': 'depth', 'priority': 5})
    with pytest.raises(ConfigError, match='tasks.depth: no job of it ran in the trace'):
        replay(other, records)


def test_run_writes_a_trace_and_simulate_replays_it(tmp_path, capsys):
    cfg = config()
    cfg['tasks'][0]['worker_options'] = {'latency_ms': 3.0}
    cfg['tasks'][1]['worker_options'] = {'latency_ms': 4.0}
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(cfg))
    trace, report = tmp_path / 'trace.jsonl', tmp_path / 'report.json'
    assert main(['run', '--config', str(path), '--frames', '20', '--output', str(report),
                 '--trace', str(trace), '--quiet']) == 0
    records = read_trace(str(trace))
    assert {r['task'] for r in records} == {'detector', 'ocr'}
    assert len({r['seq'] for r in records}) == 20
    replayed = tmp_path / 'replayed.json'
    assert main(['simulate', '--config', str(path), '--trace', str(trace),
                 '--output', str(replayed)]) == 0
    assert 'detector' in capsys.readouterr().out
    data = json.loads(replayed.read_text())
    assert data['final']['tasks']['detector']['routed'] == 20
    assert data['invariant_violations'] == []


def test_simulate_periodic_frames_and_its_errors(tmp_path, capsys):
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(config()))
    out = tmp_path / 'sim.json'
    assert main(['simulate', '--config', str(path), '--frames', '50', '--output',
                 str(out)]) == 0
    assert json.loads(out.read_text())['final']['tasks']['detector']['routed'] == 50
    bad = tmp_path / 'bad.jsonl'
    bad.write_text('{"task": "detector"}\nnot json\n')
    assert main(['simulate', '--config', str(path), '--trace', str(bad), '--output',
                 str(out)]) == 2
    error = capsys.readouterr().err
    assert 'bad.jsonl:1: missing' in error and 'Traceback' not in error
    onnx = config(worker='onnxruntime', worker_options={'model_path': 'model.onnx'})
    path.write_text(json.dumps(onnx))
    assert main(['simulate', '--config', str(path), '--frames', '5', '--output',
                 str(out)]) == 2
    assert "tasks.detector.worker: 'onnxruntime' cannot run under the virtual clock" in \
        capsys.readouterr().err
