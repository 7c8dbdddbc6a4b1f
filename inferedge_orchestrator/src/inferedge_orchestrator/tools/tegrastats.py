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
Jetson telemetry from tegrastats lines: RAM, swap, CPU, GPU, temperatures and power rails.

parse_line() understands the formats of L4T 28 to 36 (JetPack 3 to 6), for example

    RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [12%@1510,8%@1510,off,3%@1510]
    EMC_FREQ 0% GR3D_FREQ 0% cpu@45.5C soc2@44.1C VDD_IN 4783mW/4783mW VDD_SOC 1435mW/1435mW

    RAM 1983/3964MB (lfb 5x4MB) SWAP 0/1982MB CPU [3%@102,2%@102,1%@102,0%@102] EMC_FREQ 0%
    GR3D_FREQ 0% PLL@34C CPU@36C PMIC@100C GPU@35C AO@42C thermal@35.5C POM_5V_IN 1520/1520

and the older `CPU [3%,2%,off,off]@102` form. Power rails (VDD_*, POM_*, and the bare names of
Xavier such as `GPU 0/0 SOC 1864/1864`) are reported in mW as current and average.
TegrastatsMonitor keeps the latest sample of a log file (followed while it grows) or of a live
`tegrastats --interval N` process, plus bounded run aggregates.
"""

import math
import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

_DATE = re.compile(r'^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+')
_RAM = re.compile(r'\bRAM (\d+)/(\d+)MB(?: \(lfb (\d+)x(\d+)MB\))?')
_SWAP = re.compile(r'\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?')
_IRAM = re.compile(r'\bIRAM (\d+)/(\d+)kB(?: ?\(lfb (\d+)kB\))?')
_CPU = re.compile(r'\bCPU \[([^\]]*)\](?:@(\d+))?')
_FREQ = re.compile(r'\b([A-Z][A-Z0-9_]*)_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?')
_TEMP = re.compile(r'\b([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C\b')
_RAIL = re.compile(r'\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)')
_NOT_RAILS = ('RAM', 'SWAP', 'IRAM')


def parse_line(line: str) -> Optional[Dict[str, Any]]:
    """
    Parse one tegrastats line; None when it holds no RAM figure (not a tegrastats line).

    Keys (absent when the line lacks the figure): ram_used_mb, ram_total_mb, lfb_blocks,
    lfb_block_mb, swap_used_mb, swap_total_mb, swap_cached_mb, iram_used_kb, iram_total_kb,
    cpu_percent (per core; None for a core that is off), cpu_freq_mhz (per core), emc_percent,
    gpu_percent (GR3D_FREQ), gpu_freq_mhz, freq_percent (every *_FREQ engine),
    temperatures_c {sensor: C}, power_mw {rail: current mW}, power_avg_mw {rail: average mW},
    timestamp (the --timestamp prefix when present).
    """
    match = _RAM.search(line)
    if match is None:
        return None
    sample: Dict[str, Any] = {'ram_used_mb': float(match.group(1)),
                              'ram_total_mb': float(match.group(2))}
    if match.group(3):
        sample['lfb_blocks'] = int(match.group(3))
        sample['lfb_block_mb'] = float(match.group(4))
    date = _DATE.match(line)
    if date:
        sample['timestamp'] = date.group(1)
    match = _SWAP.search(line)
    if match:
        sample['swap_used_mb'] = float(match.group(1))
        sample['swap_total_mb'] = float(match.group(2))
        if match.group(3):
            sample['swap_cached_mb'] = float(match.group(3))
    match = _IRAM.search(line)
    if match:
        sample['iram_used_kb'] = float(match.group(1))
        sample['iram_total_kb'] = float(match.group(2))
    match = _CPU.search(line)
    if match:
        sample['cpu_percent'], sample['cpu_freq_mhz'] = _cores(match)
    engines = {}
    for name, percent, freq in _FREQ.findall(line):
        engines[name] = float(percent)
        if name == 'GR3D':
            sample['gpu_percent'] = float(percent)
            if freq:
                sample['gpu_freq_mhz'] = [float(f) for f in freq.split(',') if f]
        elif name == 'EMC':
            sample['emc_percent'] = float(percent)
    if engines:
        sample['freq_percent'] = engines
    temperatures = {name: float(value) for name, value in _TEMP.findall(line)}
    if temperatures:
        sample['temperatures_c'] = temperatures
    power, average = {}, {}
    for name, current, mean in _RAIL.findall(line):
        if name in _NOT_RAILS:
            continue
        power[name] = float(current)
        average[name] = float(mean)
    if power:
        sample['power_mw'] = power
        sample['power_avg_mw'] = average
    return sample


def _cores(match) -> Tuple[List[Optional[float]], List[Optional[float]]]:
    """Return each CPU core's load percent and frequency (None for a core that is off)."""
    percents: List[Optional[float]] = []
    freqs: List[Optional[float]] = []
    common = float(match.group(2)) if match.group(2) else None
    for core in match.group(1).split(','):
        core = core.strip()
        if not core or core == 'off':
            percents.append(None)
            freqs.append(None)
            continue
        load, _, freq = core.partition('@')
        percents.append(float(load.rstrip('%')) if load.rstrip('%') else None)
        freqs.append(float(freq) if freq else common)
    return percents, freqs


def read_log(path: str) -> Iterator[Dict[str, Any]]:
    """Yield the samples of a tegrastats log file (tegrastats --logfile), skipping other lines."""
    with open(path, 'r', encoding='utf-8', errors='replace') as stream:
        for line in stream:
            sample = parse_line(line)
            if sample is not None:
                yield sample


class TegrastatsMonitor:
    """
    Keep the latest tegrastats sample and bounded aggregates, from a file or a live process.

    source: a log file path (read from the start, then followed while it grows, like tail -f)
    or 'live' (runs `tegrastats --interval interval_ms` from PATH). start() starts a daemon
    reader thread; stop() ends it (and the process). Errors are kept in `error`, never raised
    from the thread.
    """

    def __init__(self, source: str, interval_ms: int = 1000, executable: str = 'tegrastats',
                 poll_s: float = 0.2):
        self.source = source
        self.interval_ms = interval_ms
        self.executable = executable
        self.poll_s = poll_s
        self.samples = 0
        self.skipped_lines = 0
        self.error: Optional[str] = None
        self.latest: Optional[Dict[str, Any]] = None
        self.latest_time: Optional[float] = None
        self._max_temperature: Dict[str, float] = {}
        self._power_sum: Dict[str, float] = {}
        self._power_count: Dict[str, int] = {}
        self._max_ram = 0.0
        self._gpu_sum = 0.0
        self._gpu_count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._process: Optional[subprocess.Popen] = None

    @property
    def live(self) -> bool:
        return self.source == 'live'

    def start(self) -> 'TegrastatsMonitor':
        """Open the source (raise OSError when it cannot be opened) and start reading."""
        if self.live:
            path = shutil.which(self.executable)
            if path is None:
                raise FileNotFoundError(f'{self.executable}: not found on PATH (tegrastats '
                                        'ships with Jetson Linux)')
            self._process = subprocess.Popen(
                [path, '--interval', str(int(self.interval_ms))], stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, bufsize=1)
            target = self._read_process
        else:
            if not os.path.isfile(self.source):
                raise FileNotFoundError(f'{self.source}: no such tegrastats log file')
            target = self._follow_file
        self._thread = threading.Thread(target=target, name='inferedge-tegrastats',
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def wait_for_samples(self, count: int, timeout: float) -> bool:
        """Wait until count samples were read; True if that happened within timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.samples >= count:
                return True
            time.sleep(0.01)
        return self.samples >= count

    def feed(self, line: str) -> Optional[Dict[str, Any]]:
        """Parse a line and account for it; return the sample (None if not a tegrastats line)."""
        sample = parse_line(line)
        with self._lock:
            if sample is None:
                if line.strip():
                    self.skipped_lines += 1
                return None
            self.samples += 1
            self.latest = sample
            self.latest_time = time.monotonic()
            for name, value in sample.get('temperatures_c', {}).items():
                if value > self._max_temperature.get(name, -math.inf):
                    self._max_temperature[name] = value
            for name, value in sample.get('power_mw', {}).items():
                self._power_sum[name] = self._power_sum.get(name, 0.0) + value
                self._power_count[name] = self._power_count.get(name, 0) + 1
            self._max_ram = max(self._max_ram, sample['ram_used_mb'])
            if 'gpu_percent' in sample:
                self._gpu_sum += sample['gpu_percent']
                self._gpu_count += 1
        return sample

    def _read_process(self) -> None:
        process = self._process
        try:
            for line in process.stdout:
                if self._stop.is_set():
                    break
                self.feed(line)
        except (OSError, ValueError) as error:
            if not self._stop.is_set():
                self.error = f'reading tegrastats failed: {error}'
        if self._stop.is_set():
            return
        try:
            code = process.wait(5.0)  # end of output: the process is ending
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and not self._stop.is_set():
            self.error = f'tegrastats exited with code {code}'

    def _follow_file(self) -> None:
        try:
            with open(self.source, 'r', encoding='utf-8', errors='replace') as stream:
                partial = ''
                while not self._stop.is_set():
                    line = stream.readline()
                    if not line:
                        self._stop.wait(self.poll_s)
                        continue
                    if not line.endswith('\n'):
                        partial += line  # a line still being written
                        continue
                    self.feed(partial + line)
                    partial = ''
                if partial:
                    self.feed(partial)
        except OSError as error:
            self.error = f'{self.source}: {error.strerror}'

    def summary(self) -> Dict[str, Any]:
        """Return the telemetry block: the latest sample and the run aggregates."""
        with self._lock:
            age = None if self.latest_time is None else time.monotonic() - self.latest_time
            return {
                'source': self.source, 'samples': self.samples,
                'skipped_lines': self.skipped_lines, 'error': self.error,
                'latest': self.latest, 'latest_age_s': age,
                'max_ram_used_mb': self._max_ram if self.samples else None,
                'max_temperatures_c': dict(self._max_temperature),
                'mean_power_mw': {name: self._power_sum[name] / self._power_count[name]
                                  for name in self._power_sum},
                'mean_gpu_percent': (self._gpu_sum / self._gpu_count if self._gpu_count
                                     else None),
            }
