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
The real-time run: the engine fed in wall-clock time by synthetic sources or an image folder.

Every input of the config gets frames at its rate_hz: a moving synthetic pattern of its width,
height and encoding, or the files of an image folder (JPEG/PNG bytes, decoded by the engine,
cycled). A frame's stamp is its due time, so a source that falls behind shows in end-to-end
latency; a source more than one period late skips frames (counted). Warm-ups happen in
engine.load(), before the clock starts. Ctrl-C stops cleanly and the report is still returned.
"""

from dataclasses import asdict
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from inferedge_orchestrator import draws
from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.config.model import InputConfig, OrchestratorConfig
from inferedge_orchestrator.contracts.formats import CHANNELS, dtype_of
from inferedge_orchestrator.engine.engine import Engine, Result
from inferedge_orchestrator.telemetry.job_trace import TraceRecorder
from inferedge_orchestrator.telemetry.prometheus import MetricsServer
from inferedge_orchestrator.telemetry.snapshot import LatencySummary, Snapshot
from inferedge_orchestrator.telemetry.stats import LogHistogram
import numpy as np

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
RUN_SCHEMA = 'inferedge_orchestrator_ros/run/1'


class SyntheticSource:
    """A moving pattern (diagonal stripes, gradient and a bouncing square) for one input."""

    def __init__(self, config: InputConfig):
        self.encoding = config.encoding
        self.width, self.height = config.width, config.height
        channels = CHANNELS[config.encoding]
        ys, xs = np.mgrid[0:config.height, 0:2 * config.width]
        stripes = ((xs + ys) // 16 % 2) * 96
        base = np.stack([(stripes + xs * 127 // (2 * config.width) + c * 40) % 256
                         for c in range(channels)], axis=-1)
        self.dtype = np.dtype(dtype_of(config.encoding))
        scale = {'uint8': 1, 'uint16': 257}.get(self.dtype.name, 257 / 1000.0)  # 32FC1: metres
        self._pattern = (base * scale).astype(self.dtype)
        self._peak = 255 * scale
        self.index = 0

    def read(self):
        """Return (image, encoding) of the next frame."""
        width, height = self.width, self.height
        shift = (self.index * 4) % width
        frame = self._pattern[:, shift:shift + width].copy()
        side = max(1, min(width, height) // 6)
        x = int((math.sin(self.index * 0.07) * 0.5 + 0.5) * (width - side))
        y = int((math.cos(self.index * 0.05) * 0.5 + 0.5) * (height - side))
        frame[y:y + side, x:x + side] = self._peak
        self.index += 1
        return frame, self.encoding


class ImageFolderSource:
    """The JPEG/PNG files of a folder, in name order, as encoded bytes, cycled."""

    def __init__(self, folder: str):
        try:
            names = sorted(name for name in os.listdir(folder)
                           if name.lower().endswith(IMAGE_SUFFIXES))
        except OSError as error:
            raise FileNotFoundError(f'{folder}: cannot list the image folder: '
                                    f'{error.strerror}') from None
        if not names:
            raise FileNotFoundError(f'{folder}: no .jpg, .jpeg or .png files')
        self.paths = [os.path.join(folder, name) for name in names]
        self.path = ''
        self.index = 0

    def read(self):
        """Return (encoded bytes, None) of the next file; its path is in `path`."""
        path = self.paths[self.index % len(self.paths)]
        self.index += 1
        self.path = path
        with open(path, 'rb') as stream:
            return stream.read(), None


def _feed_and_stop(engine: Engine, feed: 'Feed', on_progress, progress_every_s: float,
                   drain_s: float, stop: threading.Event) -> None:
    """Start the engine, feed it until the end (or Ctrl-C), drain it for drain_s, stop it."""
    previous_handler = _catch_sigint(stop)
    try:
        engine.start()
        feed.run(engine, on_progress, progress_every_s)
        if not feed.interrupted:
            engine.drain(drain_s)
    except KeyboardInterrupt:
        feed.interrupted = True
    finally:
        try:
            engine.stop(timeout=drain_s)
        except KeyboardInterrupt:  # a second Ctrl-C: give up waiting, still report
            feed.interrupted = True
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler[0] or signal.SIG_DFL)


class FirstResults:
    """Keeps per task the first OK result and the whole-run service-time histogram."""

    def __init__(self, forward: Optional[Callable[[Result], None]] = None):
        self.first: Dict[str, Dict[str, Any]] = {}
        self.service: Dict[str, LogHistogram] = {}
        self._forward = forward
        self._lock = threading.Lock()

    def __call__(self, result: Result) -> None:
        if result.status == 'OK':
            with self._lock:
                if result.task not in self.first:
                    self.first[result.task] = {
                        'seq': result.seq, 'service_ms': result.service_s * 1000.0,
                        'inference_ms': result.inference_s * 1000.0,
                        'end_to_end_ms': result.end_to_end_s * 1000.0}
                    self.service[result.task] = LogHistogram()
                self.service[result.task].add(result.service_s)
        if self._forward is not None:
            self._forward(result)

    def service_ms(self) -> Dict[str, Dict[str, Any]]:
        """Return the whole-run service time (worker takes the frame -> inference end)."""
        with self._lock:
            return {task: asdict(LatencySummary.from_seconds(histogram.summary()))
                    for task, histogram in self.service.items()}


def progress_line(snapshot: Snapshot, elapsed: float) -> str:
    """One terminal line: per task executed / dropped / failed and the live p95 end-to-end."""
    parts = [f'{elapsed:6.1f} s']
    for name, task in snapshot.tasks.items():
        e2e = task.latency.get('end_to_end')
        p95 = None if e2e is None else e2e.p95_ms
        parts.append(f'{name} {task.executed} ok {task.dropped} drop {task.failed} '
                     f'fail p95 {"-" if p95 is None else f"{p95:.0f}"} ms')
    return ' | '.join(parts)


def run(config: Any, seconds: Optional[float] = None, frames: Optional[int] = None,
        images: Optional[str] = None, mode: Optional[str] = None,
        on_progress: Optional[Callable[[str], None]] = None, progress_every_s: float = 1.0,
        tegrastats=None, on_result: Optional[Callable[[Result], None]] = None,
        drain_s: Optional[float] = None, stop_event: Optional[threading.Event] = None,
        worker_factory=None, trace_path: Optional[str] = None,
        metrics: Optional[MetricsServer] = None) -> Dict[str, Any]:
    """
    Run config in real time for `seconds` or `frames` per input; return the report.

    mode overrides orchestrator.mode (priority | fifo). tegrastats is a started
    TegrastatsMonitor (or None); its summary goes into the report. After the sources stop,
    queued and running frames get up to drain_s (default: the largest latency budget, at least
    1 s) to finish; what is left is dropped with reason shutdown. stop_event (or Ctrl-C) ends
    the run early: the first Ctrl-C (SIGINT, main thread only) sets it; a second one raises
    KeyboardInterrupt, and the report is still returned. trace_path: write the job trace
    there (job_trace.py). metrics: a started MetricsServer (or None); it serves this run's
    engine from its creation on (its owner stops it). A synthetic frame's age is the time it
    waited to be submitted plus a draw of its input's age distribution (InputConfig.age_*).
    """
    if (seconds is None) == (frames is None):
        raise ValueError('give exactly one of seconds and frames')
    base = with_mode(load_config(config), mode)
    stop = stop_event if stop_event is not None else threading.Event()
    first = FirstResults(on_result)
    trace = TraceRecorder(trace_path) if trace_path else None
    engine = Engine(base, on_result=first, worker_factory=worker_factory, trace=trace)
    if metrics is not None:
        metrics.source = engine
    feed = Feed(base, images, seconds, frames, stop)
    load_start = time.monotonic()
    engine.load()
    load_s = time.monotonic() - load_start
    if drain_s is None:
        drain_s = max(1.0, max(t.latency_budget_ms for t in base.tasks) / 1000.0)
    _feed_and_stop(engine, feed, on_progress, progress_every_s, drain_s, stop)
    report = engine.report()
    engine.close()
    if trace is not None:
        trace.close()
    report['run'] = {
        'schema': RUN_SCHEMA, 'source': 'images' if images else 'synthetic',
        'images': images, 'mode': base.mode, 'seconds': seconds, 'frames': frames,
        'interrupted': feed.interrupted, 'load_s': load_s, 'duration_s': feed.duration_s,
        'submitted': feed.submitted, 'source_skipped': feed.skipped,
        'first_results': dict(first.first), 'service_ms': first.service_ms(),
        'tegrastats': tegrastats.summary() if tegrastats is not None else None,
    }
    return report


def with_mode(config: OrchestratorConfig, mode: Optional[str]) -> OrchestratorConfig:
    """Return config in mode (priority | fifo; None: as it is)."""
    if mode is None or mode == config.mode:
        return config
    data = config.to_dict()
    data['orchestrator']['mode'] = mode
    return load_config(data)


class Feed:
    """The frames of every input's source, submitted at its rate until the run's end."""

    def __init__(self, config: OrchestratorConfig, images: Optional[str],
                 seconds: Optional[float], frames: Optional[int], stop: threading.Event):
        self._images = images
        self._seconds, self._frames = seconds, frames
        self._stop = stop
        self._ages = {name: draws.TransportAge(inp) for name, inp in config.inputs.items()}
        self._sources = {name: (ImageFolderSource(images) if images else SyntheticSource(inp))
                         for name, inp in config.inputs.items()}
        self._periods = {name: 1.0 / config.inputs[name].rate_hz for name in self._sources}
        self.submitted = dict.fromkeys(self._sources, 0)
        self.skipped = dict.fromkeys(self._sources, 0)  # frames a camera would have dropped
        self.interrupted = False
        self.duration_s = 0.0

    def run(self, engine: Engine, on_progress: Optional[Callable[[str], None]],
            progress_every_s: float) -> None:
        """Submit every source's frames when due until the end, or until stopped."""
        start = time.monotonic()
        due = {name: start for name in self._sources}
        next_progress = start + progress_every_s
        try:
            while not self._stop.is_set():
                active = [name for name in self._sources
                          if self._frames is None or self.submitted[name] < self._frames]
                if not active:
                    return
                name = min(active, key=lambda n: due[n])
                when = due[name]
                if self._seconds is not None and when - start >= self._seconds:
                    return
                now = time.monotonic()
                if on_progress is not None and now >= next_progress:
                    on_progress(progress_line(engine.snapshot(), now - start))
                    next_progress += progress_every_s * max(1, math.ceil(
                        (now - next_progress) / progress_every_s))
                if when > now:
                    self._stop.wait(min(when - now, max(0.0, next_progress - now) or
                                        when - now))
                    continue
                due[name] = self._submit(engine, name, when, now)
            self.interrupted = True
        finally:
            self.duration_s = time.monotonic() - start

    def _submit(self, engine: Engine, name: str, when: float, now: float) -> float:
        """Submit the frame of source name due at when; return when its next one is due."""
        period = self._periods[name]
        if now - when > period:  # fell behind: a camera would have dropped these
            missed = int((now - when) / period)
            self.skipped[name] += missed
            when += missed * period
        source = self._sources[name]
        data, encoding = source.read()
        age = time.monotonic() - when + (self._ages[name].draw() if not self._images else 0.0)
        # An image's path travels as the frame's meta: failure warnings name the file.
        engine.submit(name, data, age_s=max(0.0, age), encoding=encoding,
                      meta=getattr(source, 'path', None))
        self.submitted[name] += 1
        return when + period


def _catch_sigint(stop: threading.Event):
    """
    Make a first Ctrl-C set stop (a clean stop, never mid-submit); return (old handler,).

    A second Ctrl-C raises KeyboardInterrupt as usual. Only the main thread can do this;
    elsewhere nothing changes and None is returned.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
    return (signal.signal(signal.SIGINT, on_sigint),)


def summary_rows(report: Dict[str, Any]) -> List[List[str]]:
    """Rows of the per-task summary table of a run report (see cli.report_table)."""
    rows = []
    services = (report.get('run') or {}).get('service_ms') or {}
    empty = LatencySummary()
    for name, task in Snapshot.from_dict(report['final']).tasks.items():
        run_latency = task.run_latency or {}
        e2e = run_latency.get('end_to_end', empty)
        service = services.get(name, {}).get('p50_ms', run_latency.get('service', empty).p50_ms)
        rows.append([name, task.priority, task.routed, task.executed,
                     task.completed_within_budget, task.failed, task.dropped,
                     _ms(e2e.p50_ms), _ms(e2e.p95_ms), _ms(e2e.p99_ms), _ms(service),
                     _reasons(task.dropped_by_reason), _reasons(task.failed_by_reason)])
    return rows


def _ms(value) -> str:
    return '-' if value is None else f'{value:.1f}'


def _reasons(counts: Dict[str, int]) -> str:
    return ', '.join(f'{k}={v}' for k, v in counts.items() if v) or '-'
