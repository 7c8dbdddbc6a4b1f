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

"""Tegrastats lines parsed into telemetry, from a log file or a (fake) live process."""

import os
import stat
import sys
import time

from inferedge_orchestrator.tools.tegrastats import parse_line, read_log, TegrastatsMonitor
import pytest

ORIN = ('RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) '
        'CPU [12%@1510,8%@1510,off,3%@1510] EMC_FREQ 0% GR3D_FREQ 0% cpu@45.5C soc2@44.1C '
        'VDD_IN 4783mW/4783mW VDD_CPU_GPU_CV 558mW/558mW VDD_SOC 1435mW/1435mW')
NANO = ('RAM 1983/3964MB (lfb 5x4MB) SWAP 0/1982MB CPU [3%@102,2%@102,1%@102,0%@102] '
        'EMC_FREQ 0% GR3D_FREQ 0% PLL@34C CPU@36C PMIC@100C GPU@35C AO@42C thermal@35.5C '
        'POM_5V_IN 1520/1520 POM_5V_GPU 0/0 POM_5V_CPU 322/322')
XAVIER = ('11-27-2025 10:00:01 RAM 3012/15389MB (lfb 1x4MB) SWAP 10/7694MB (cached 2MB) '
          'CPU [3%,2%,off,off]@1190 EMC_FREQ 1%@2133 GR3D_FREQ 12%@[305,305] APE 150 '
          'MTS fg 0% bg 0% AO@38.5C GPU@37C tj@40.1C GPU 120/110 CPU 311/300 SOC 1864/1800')


def test_orin_line():
    sample = parse_line(ORIN)
    assert sample['ram_used_mb'] == 2448 and sample['ram_total_mb'] == 7620
    assert (sample['lfb_blocks'], sample['lfb_block_mb']) == (2, 4.0)
    assert (sample['swap_used_mb'], sample['swap_total_mb'], sample['swap_cached_mb']) == (
        0, 3810, 0)
    assert sample['cpu_percent'] == [12.0, 8.0, None, 3.0]
    assert sample['cpu_freq_mhz'] == [1510.0, 1510.0, None, 1510.0]
    assert sample['gpu_percent'] == 0.0 and sample['emc_percent'] == 0.0
    assert sample['temperatures_c'] == {'cpu': 45.5, 'soc2': 44.1}
    assert sample['power_mw'] == {'VDD_IN': 4783.0, 'VDD_CPU_GPU_CV': 558.0, 'VDD_SOC': 1435.0}
    assert sample['power_avg_mw']['VDD_IN'] == 4783.0
    assert 'timestamp' not in sample


def test_nano_line_with_pom_rails_in_mw():
    sample = parse_line(NANO)
    assert sample['ram_used_mb'] == 1983 and 'swap_cached_mb' not in sample
    assert sample['cpu_percent'] == [3.0, 2.0, 1.0, 0.0]
    assert sample['cpu_freq_mhz'] == [102.0] * 4
    assert sample['temperatures_c'] == {'PLL': 34.0, 'CPU': 36.0, 'PMIC': 100.0, 'GPU': 35.0,
                                        'AO': 42.0, 'thermal': 35.5}
    assert sample['power_mw'] == {'POM_5V_IN': 1520.0, 'POM_5V_GPU': 0.0, 'POM_5V_CPU': 322.0}


def test_xavier_line_with_timestamp_common_frequency_and_bare_rails():
    sample = parse_line(XAVIER)
    assert sample['timestamp'] == '11-27-2025 10:00:01'
    assert sample['cpu_percent'] == [3.0, 2.0, None, None]
    assert sample['cpu_freq_mhz'] == [1190.0, 1190.0, None, None]
    assert sample['gpu_percent'] == 12.0 and sample['gpu_freq_mhz'] == [305.0, 305.0]
    assert sample['emc_percent'] == 1.0
    assert sample['power_mw'] == {'GPU': 120.0, 'CPU': 311.0, 'SOC': 1864.0}
    assert sample['power_avg_mw'] == {'GPU': 110.0, 'CPU': 300.0, 'SOC': 1800.0}
    assert sample['temperatures_c']['tj'] == 40.1


def test_other_lines_are_not_samples():
    assert parse_line('') is None
    assert parse_line('tegrastats: permission denied') is None


def test_read_log_skips_noise(tmp_path):
    path = tmp_path / 'tegra.log'
    path.write_text(f'{ORIN}\nsome noise\n{NANO}\n')
    samples = list(read_log(str(path)))
    assert [s['ram_used_mb'] for s in samples] == [2448.0, 1983.0]


def test_monitor_follows_a_growing_log_file(tmp_path):
    path = tmp_path / 'tegra.log'
    path.write_text(ORIN + '\n')
    monitor = TegrastatsMonitor(str(path), poll_s=0.01).start()
    try:
        assert monitor.wait_for_samples(1, 5.0)
        with open(path, 'a') as stream:
            stream.write('garbage\n')
            stream.write(NANO[:40])  # a line still being written
            stream.flush()
            time.sleep(0.05)
            stream.write(NANO[40:] + '\n')
        assert monitor.wait_for_samples(2, 5.0)
    finally:
        monitor.stop()
    summary = monitor.summary()
    assert summary['samples'] == 2 and summary['skipped_lines'] == 1
    assert summary['latest']['power_mw']['POM_5V_IN'] == 1520.0
    assert summary['max_temperatures_c']['cpu'] == 45.5
    assert summary['max_temperatures_c']['PMIC'] == 100.0
    assert summary['mean_power_mw'] == {'VDD_IN': 4783.0, 'VDD_CPU_GPU_CV': 558.0,
                                        'VDD_SOC': 1435.0, 'POM_5V_IN': 1520.0,
                                        'POM_5V_GPU': 0.0, 'POM_5V_CPU': 322.0}
    assert summary['max_ram_used_mb'] == 2448.0 and summary['mean_gpu_percent'] == 0.0
    assert summary['error'] is None


def fake_tegrastats(tmp_path, body):
    folder = tmp_path / 'bin'
    folder.mkdir()
    script = folder / 'tegrastats'
    script.write_text(f'#!{sys.executable}\n{body}')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_monitor_reads_a_live_tegrastats_process(tmp_path, monkeypatch):
    args_file = tmp_path / 'args'
    folder = fake_tegrastats(tmp_path, (
        'import sys, time\n'
        f"open({str(args_file)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        'for index in range(1000):\n'
        f"    print({ORIN!r}.replace('RAM 2448', 'RAM %d' % (2000 + index)), flush=True)\n"
        '    time.sleep(0.01)\n'))
    monkeypatch.setenv('PATH', f'{folder}{os.pathsep}{os.environ["PATH"]}')
    monitor = TegrastatsMonitor('live', interval_ms=10).start()
    try:
        assert monitor.wait_for_samples(3, 10.0)
    finally:
        monitor.stop()
    assert args_file.read_text() == '--interval 10'
    summary = monitor.summary()
    assert summary['source'] == 'live' and summary['samples'] >= 3
    assert summary['latest']['ram_used_mb'] >= 2002
    assert summary['error'] is None
    assert monitor._process.poll() is not None  # the process was ended


def test_live_errors_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='tegrastats: not found on PATH'):
        TegrastatsMonitor('live').start()
    folder = fake_tegrastats(tmp_path, 'import sys\nsys.exit(3)\n')
    monkeypatch.setenv('PATH', str(folder))
    monitor = TegrastatsMonitor('live').start()
    monitor._thread.join(5.0)
    monitor.stop()
    assert monitor.summary()['error'] == 'tegrastats exited with code 3'
    with pytest.raises(FileNotFoundError, match='no such tegrastats log file'):
        TegrastatsMonitor(str(tmp_path / 'absent.log')).start()
