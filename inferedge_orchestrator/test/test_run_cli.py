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

"""The real-time `run` command end to end on dummy workers, and `report`."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from inferedge_orchestrator.config.model import InputConfig
from inferedge_orchestrator.tools import runner
from inferedge_orchestrator.tools.cli import main
import numpy as np
import pytest

ORIN = ('RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [12%@1510,8%@1510] '
        'EMC_FREQ 0% GR3D_FREQ 7% cpu@45.5C VDD_IN 4783mW/4783mW VDD_SOC 1435mW/1435mW')


def write_config(tmp_path, rate_hz=50.0, **input_fields):
    config = {
        'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
        'inputs': {'camera': dict({'rate_hz': rate_hz, 'width': 64, 'height': 48},
                                  **input_fields)},
        'tasks': [
            {'name': 'detector', 'priority': 100, 'latency_budget_ms': 200.0,
             'worker_options': {'latency_ms': 2.0}},
            {'name': 'ocr', 'priority': 10, 'latency_budget_ms': 500.0,
             'worker_options': {'latency_ms': 3.0, 'fail_every': 4}},
        ],
    }
    path = tmp_path / 'config.json'
    path.write_text(json.dumps(config))
    return str(path)


def test_run_frames_writes_the_report_and_prints_the_table(tmp_path, capsys):
    output = tmp_path / 'report.json'
    assert main(['run', '--config', write_config(tmp_path), '--frames', '8',
                 '--output', str(output)]) == 0
    captured = capsys.readouterr()
    assert 'detector' in captured.out and 'e2e p50 ms' in captured.out
    assert 'run: mode priority, source synthetic' in captured.out
    report = json.loads(output.read_text())
    assert report['invariant_violations'] == []
    run = report['run']
    assert run['submitted'] == {'camera': 8} and run['interrupted'] is False
    assert run['source'] == 'synthetic' and run['tegrastats'] is None
    detector = report['final']['tasks']['detector']
    assert detector['routed'] == 8 and detector['executed'] == 8
    assert run['first_results']['detector']['seq'] == 1
    ocr = report['final']['tasks']['ocr']
    assert ocr['failed_by_reason'] == {'worker_error': ocr['failed']} and ocr['failed'] >= 1
    assert ocr['executed'] + ocr['failed'] + ocr['dropped'] == 8
    assert main(['report', str(output)]) == 0
    assert 'detector' in capsys.readouterr().out


def test_run_seconds_in_fifo_mode_with_progress(tmp_path, capsys):
    output = tmp_path / 'report.json'
    assert main(['run', '--config', write_config(tmp_path, rate_hz=40.0), '--seconds', '1.3',
                 '--mode', 'fifo', '--output', str(output)]) == 0
    err = capsys.readouterr().err
    assert 'detector' in err and ' ok ' in err  # the progress line
    report = json.loads(output.read_text())
    assert report['run']['mode'] == 'fifo' and report['config']['orchestrator']['mode'] == 'fifo'
    submitted = report['run']['submitted']['camera']
    assert 45 <= submitted <= 53
    assert report['final']['tasks']['detector']['routed'] == submitted
    assert report['invariant_violations'] == []


def test_run_on_an_image_folder(tmp_path):
    cv2 = pytest.importorskip('cv2')
    folder = tmp_path / 'images'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), np.full((30, 40, 3), 200, np.uint8))
    cv2.imwrite(str(folder / 'b.jpg'), np.full((20, 10, 3), 50, np.uint8))
    (folder / 'notes.txt').write_text('not an image')
    shapes = []
    report = runner.run(write_config(tmp_path), frames=4, images=str(folder),
                        on_result=lambda r: shapes.append((r.seq, r.task,
                                                           r.outputs['shape'].tolist()))
                        if r.status == 'OK' else None)
    assert report['run']['source'] == 'images'
    detector = sorted(s[2] for s in shapes if s[1] == 'detector')
    assert detector == [[20, 10, 3], [20, 10, 3], [30, 40, 3], [30, 40, 3]]
    with pytest.raises(FileNotFoundError, match='no .jpg, .jpeg or .png files'):
        runner.ImageFolderSource(str(tmp_path))


def test_synthetic_frames_move_and_follow_the_input_config():
    source = runner.SyntheticSource(InputConfig('camera', 30.0, 32, 24, 'mono16'))
    first, encoding = source.read()
    second, _ = source.read()
    assert first.shape == (24, 32, 1) and first.dtype == np.uint16 and encoding == 'mono16'
    assert not np.array_equal(first, second)
    rgb, encoding = runner.SyntheticSource(InputConfig('camera', 30.0, 8, 6, 'bgr8')).read()
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8 and encoding == 'bgr8'


def test_stop_event_ends_the_run_and_still_reports(tmp_path):
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    report = runner.run(write_config(tmp_path), seconds=30.0, stop_event=stop)
    assert time.monotonic() - started < 5.0
    assert report['run']['interrupted'] is True
    assert report['final']['state'] == 'stopped'
    assert report['invariant_violations'] == []


def test_ctrl_c_stops_cleanly_and_writes_the_report(tmp_path):
    output = tmp_path / 'report.json'
    process = subprocess.Popen(
        [sys.executable, '-m', 'inferedge_orchestrator', 'run', '--config',
         write_config(tmp_path), '--seconds', '60', '--output', str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ''
        while ' ok ' not in line:  # the first progress line: the run is under way
            line = process.stderr.readline()
            assert line, 'the run ended before its first progress line'
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert 'interrupted' in err
    report = json.loads(output.read_text())
    assert report['run']['interrupted'] is True
    assert report['final']['tasks']['detector']['executed'] > 0
    assert report['invariant_violations'] == []


def test_tegrastats_log_goes_into_the_report(tmp_path, capsys):
    log = tmp_path / 'tegrastats.log'
    log.write_text(f'{ORIN}\n{ORIN.replace("RAM 2448", "RAM 2500")}\n')
    output = tmp_path / 'report.json'
    assert main(['run', '--config', write_config(tmp_path), '--frames', '3', '--quiet',
                 '--tegrastats', str(log), '--output', str(output)]) == 0
    out = capsys.readouterr().out
    assert 'tegrastats: 2 sample(s); latest: RAM 2500/7620 MB, GPU 7%, VDD_IN 4783 mW' in out
    tegra = json.loads(output.read_text())['run']['tegrastats']
    assert tegra['samples'] == 2 and tegra['latest']['power_mw']['VDD_SOC'] == 1435.0


def test_worker_load_failure_exits_1(tmp_path, capsys):
    config = tmp_path / 'onnx.json'
    config.write_text(json.dumps({'tasks': [{'name': 'detector', 'worker': 'onnxruntime',
                                             'worker_options': {'model_path': 'absent.onnx'}}]}))
    assert main(['run', '--config', str(config), '--frames', '1', '--output',
                 str(tmp_path / 'r.json')]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: task 'detector': worker 'onnxruntime' failed to load")
    assert not (tmp_path / 'r.json').exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    config = write_config(tmp_path)
    output = str(tmp_path / 'r.json')
    assert main(['run', '--config', config, '--seconds', '0', '--output', output]) == 2
    assert '--seconds: 0 is not allowed' in capsys.readouterr().err
    assert main(['run', '--config', config, '--frames', '0', '--output', output]) == 2
    assert main(['run', '--config', config, '--frames', '1', '--images',
                 str(tmp_path / 'none'), '--output', output]) == 2
    assert main(['run', '--config', config, '--frames', '1', '--tegrastats',
                 str(tmp_path / 'none.log'), '--output', output]) == 2
    assert 'no such tegrastats log file' in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(['run', '--config', config, '--seconds', '1', '--frames', '1',
              '--output', output])
    assert info.value.code == 2
    assert not os.path.exists(output)


def test_report_reads_compare_overload_and_rejects_other_files(tmp_path, capsys):
    compare = tmp_path / 'compare.json'
    assert main(['compare-overload', '--config', write_config(tmp_path), '--frames', '5',
                 '--output', str(compare)]) == 0
    capsys.readouterr()
    assert main(['report', str(compare)]) == 0
    assert 'fifo' in capsys.readouterr().out
    other = tmp_path / 'other.json'
    other.write_text('[1, 2]')
    assert main(['report', str(other)]) == 2
    assert 'not a run or compare-overload report' in capsys.readouterr().err
    assert main(['report', '--input', str(tmp_path / 'absent.json')]) == 2


@pytest.mark.parametrize('name, tasks', [
    ('two_cameras.yaml', {'detector', 'classifier', 'rear_monitor'}),
    ('background_pool.yaml', {'detector', 'classifier', 'recognizer'})])
def test_the_shipped_core_configs_run(example_path, tmp_path, name, tasks):
    output = tmp_path / 'report.json'
    assert main(['run', '--config', example_path(name), '--frames', '5',
                 '--quiet', '--output', str(output)]) == 0
    report = json.loads(output.read_text())
    assert report['invariant_violations'] == []
    assert set(report['final']['tasks']) == tasks
    assert report['final']['tasks']['detector']['executed'] > 0


@pytest.mark.parametrize('output, message', [
    ('missing/report.json', 'does not exist'),
    ('.', 'is a folder'),
])
def test_an_unusable_output_fails_before_the_run(tmp_path, capsys, output, message):
    started = time.monotonic()
    assert main(['run', '--config', write_config(tmp_path), '--seconds', '30',
                 '--output', str(tmp_path / output)]) == 2
    assert time.monotonic() - started < 10.0  # refused at once, not after the 30 s run
    assert message in capsys.readouterr().err


def test_a_folder_of_undecodable_images_exits_1_naming_the_file(tmp_path, capsys, core_log):
    folder = tmp_path / 'images'
    folder.mkdir()
    for index in range(3):
        (folder / f'broken{index}.jpg').write_bytes(b'\xff\xd8\xff not a jpeg')
    output = tmp_path / 'report.json'
    code = main(['run', '--config', write_config(tmp_path), '--frames', '6', '--quiet',
                 '--images', str(folder), '--output', str(output)])
    assert code == 1
    assert 'all 6 frames failed to decode' in capsys.readouterr().err
    warnings = [r.getMessage() for r in core_log if 'failed' in r.getMessage()]
    assert warnings and 'broken0.jpg' in warnings[0]
    assert len(warnings) <= 2 * 2  # rate-limited: at most one a second per task, not one a frame
    report = json.loads(output.read_text())
    assert report['final']['inputs']['camera']['decode_errors'] == 6
