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
The Prometheus endpoint: the engine's counters, gauges and latency histograms over HTTP.

At each scrape the collector reads the engine's telemetry, Engine.snapshot_with_buckets(): the
snapshot (the counters' one source, as the ROS telemetry messages and reports read it) and the
fixed latency buckets, at one moment, so that each histogram's count equals its task's
executed frames. It keeps no state of its own: a scrape and a snapshot taken at the same moment
agree. Names follow Prometheus' conventions: the prefix
`inferedge_`, base units in the names (`_seconds`, `_hertz`), `_total` on counters, a reason
label instead of a name per reason, histograms for latency. METRICS lists them; the table in
docs/telemetry.md is written from it (python -m inferedge_orchestrator.telemetry.prometheus
docs/telemetry.md). prometheus_client is optional: only serving needs it, so it is imported
when a server starts (importing it takes about as long as the rest of the CLI).
"""

from dataclasses import dataclass
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from inferedge_orchestrator.config.schema import spec, with_marked_tables
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.telemetry.snapshot import Snapshot
from inferedge_orchestrator.telemetry.stats import BucketCounts

COUNTER, GAUGE, HISTOGRAM = 'counter', 'gauge', 'histogram'
# An input counts the reasons it refuses frames for; an unknown input and decode errors are
# counted elsewhere (inferedge_unknown_input_frames_total, inferedge_input_decode_errors_total).
INPUT_MALFORMED_REASONS = tuple(r for r in reasons.MALFORMED_REASONS
                                if r not in (reasons.UNKNOWN_INPUT, reasons.DECODE_ERROR))
INSTALL_HINT = ('pip install prometheus_client (the metrics extra of inferedge_orchestrator), '
                'or apt install python3-prometheus-client')


def check_address(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: an IP address or host '
                          'name of this computer, e.g. 127.0.0.1 (loopback) or 0.0.0.0 (all)')
    return value


@dataclass
class MetricsConfig:
    """Where the Prometheus endpoint listens (the node's parameters, run's options)."""

    metrics_port: int = spec(0, 'serve Prometheus metrics on this TCP port, path /metrics (0: '
                             'off; needs prometheus_client)', low=0, high=65535)
    metrics_address: str = spec('127.0.0.1', 'the address the metrics endpoint listens on '
                                '(0.0.0.0: every interface)', checker=check_address,
                                allowed_text='an IP address or host name of this computer')


@dataclass(frozen=True)
class Metric:
    """One metric family: its name as exposed, type, labels and meaning."""

    name: str
    kind: str  # COUNTER, GAUGE or HISTOGRAM
    labels: Tuple[str, ...]
    meaning: str  # its HELP text


def _metric(name: str, kind: str, labels: str, text: str) -> Metric:
    return Metric(name, kind, tuple(labels.split()), text)


METRICS = (
    _metric('inferedge_input_frames_received_total', COUNTER, 'input',
            'frames submitted to the input'),
    _metric('inferedge_input_frames_accepted_total', COUNTER, 'input',
            'frames the input routed to its tasks'),
    _metric('inferedge_input_frames_malformed_total', COUNTER, 'input reason',
            'frames the input refused before routing, by reason'),
    _metric('inferedge_input_frames_stamp_fallback_total', COUNTER, 'input',
            'frames with a zero, future or too old stamp (age 0 used)'),
    _metric('inferedge_input_decode_errors_total', COUNTER, 'input',
            'accepted frames whose encoded bytes failed to decode'),
    _metric('inferedge_unknown_input_frames_total', COUNTER, '',
            'frames submitted to an input that does not exist'),
    _metric('inferedge_task_frames_routed_total', COUNTER, 'task',
            'frames routed to the task'),
    _metric('inferedge_task_frames_executed_total', COUNTER, 'task',
            'frames whose inference ended OK'),
    _metric('inferedge_task_frames_within_budget_total', COUNTER, 'task',
            'executed frames that ended within their latency budget'),
    _metric('inferedge_task_frames_failed_total', COUNTER, 'task reason',
            'frames whose job failed, by reason'),
    _metric('inferedge_task_frames_dropped_total', COUNTER, 'task reason',
            'frames that left without running, by reason'),
    _metric('inferedge_task_frames_held_for_priority_total', COUNTER, 'task',
            'frames kept waiting so that a slot stays free for a higher-priority task'),
    _metric('inferedge_task_busy_seconds_total', COUNTER, 'task',
            'slot time its jobs took'),
    _metric('inferedge_task_batch_jobs_total', COUNTER, 'task batch_size',
            'jobs run at each batch size (tasks with max_batch > 1)'),
    _metric('inferedge_task_queued_frames', GAUGE, 'task', 'frames waiting in its queue'),
    _metric('inferedge_task_in_flight_frames', GAUGE, 'task', 'frames its running jobs hold'),
    _metric('inferedge_task_queue_depth_max_frames', GAUGE, 'task',
            'the deepest its queue has been'),
    _metric('inferedge_task_slots_down', GAUGE, 'task',
            'slots of its worker that cannot run a job now (a child respawning, a server '
            'down)'),
    _metric('inferedge_task_rate_limit_hertz', GAUGE, 'task',
            'the admission limit in force (0: none)'),
    _metric('inferedge_task_shed_limit_hertz', GAUGE, 'task',
            'the limit load shedding set (0: none)'),
    _metric('inferedge_task_predicted_service_seconds', GAUGE, 'task',
            'the service time the scheduler expects (the p95 predictor)'),
    _metric('inferedge_task_enabled', GAUGE, 'task', '1 while the task is enabled'),
    _metric('inferedge_task_queue_wait_seconds', HISTOGRAM, 'task',
            'submit() to a worker taking the frame, per executed frame'),
    _metric('inferedge_task_inference_seconds', HISTOGRAM, 'task',
            'the model call, as the worker measured it, per executed frame'),
    _metric('inferedge_task_end_to_end_seconds', HISTOGRAM, 'task',
            "the frame's stamp to the end of its inference, per executed frame"),
    _metric('inferedge_camera_frames_routed_total', COUNTER, 'task camera',
            'frames of the camera routed to the task (tasks over several inputs)'),
    _metric('inferedge_camera_frames_executed_total', COUNTER, 'task camera',
            'frames of the camera whose inference ended OK'),
    _metric('inferedge_camera_frames_within_budget_total', COUNTER, 'task camera',
            'executed frames of the camera that ended within their budget'),
    _metric('inferedge_camera_frames_failed_total', COUNTER, 'task camera',
            'frames of the camera whose job failed'),
    _metric('inferedge_camera_frames_dropped_total', COUNTER, 'task camera reason',
            'frames of the camera that left without running, by reason'),
    _metric('inferedge_camera_queued_frames', GAUGE, 'task camera',
            "frames of the camera waiting in the task's queue"),
    _metric('inferedge_camera_in_flight_frames', GAUGE, 'task camera',
            'frames of the camera that running jobs hold'),
    _metric('inferedge_pool_slots', GAUGE, 'pool', 'slots in service'),
    _metric('inferedge_pool_busy_slots', GAUGE, 'pool', 'slots running a job now'),
    _metric('inferedge_pool_slots_retired_total', COUNTER, 'pool',
            'slots retired because a job stayed stuck'),
    _metric('inferedge_pool_worker_crashes_total', COUNTER, 'pool',
            'child processes that died (process isolation)'),
    _metric('inferedge_pool_worker_respawns_total', COUNTER, 'pool',
            'child processes started again (process isolation)'),
    _metric('inferedge_pool_server_down', GAUGE, 'pool',
            '1 while the server of a server pool is unreachable'),
    _metric('inferedge_pool_server_outages_total', COUNTER, 'pool',
            'times the server became unreachable (SERVER_DOWN)'),
    _metric('inferedge_pool_server_probes_total', COUNTER, 'pool',
            'health probes sent while the server was unreachable'),
    _metric('inferedge_shedding_active', GAUGE, '', '1 while some task is shed'),
    _metric('inferedge_shedding_ticks_total', COUNTER, '', 'shedding evaluations'),
    _metric('inferedge_decisions_total', COUNTER, 'event', 'scheduler decisions, by event'),
    _metric('inferedge_engine_uptime_seconds', GAUGE, '', 'time since the engine started'),
)
BUCKETED = {'inferedge_task_queue_wait_seconds': 'queue_wait',
            'inferedge_task_inference_seconds': 'inference',
            'inferedge_task_end_to_end_seconds': 'end_to_end'}


class _Families:
    """The families of one scrape, made from METRICS and filled by name."""

    def __init__(self):
        from prometheus_client import core  # optional, imported on use (see above)
        self._kinds = {COUNTER: core.CounterMetricFamily, GAUGE: core.GaugeMetricFamily,
                       HISTOGRAM: core.HistogramMetricFamily}
        self._specs = {metric.name: metric for metric in METRICS}
        self._made: Dict[str, Any] = {}

    def family(self, name: str):
        made = self._made.get(name)
        if made is None:
            metric = self._specs[name]
            made = self._made[name] = self._kinds[metric.kind](name, metric.meaning,
                                                               labels=metric.labels)
        return made

    def add(self, name: str, labels: Sequence[str], value: float) -> None:
        self.family(name).add_metric(list(labels), float(value))

    def by_reason(self, name: str, labels: Sequence[str], counts: Dict[str, int],
                  closed: Iterable[str]) -> None:
        """Add a count per reason: every reason of the closed list, 0 when none yet."""
        for reason in dict.fromkeys(list(closed) + sorted(counts)):
            self.add(name, list(labels) + [reason], counts.get(reason, 0))

    def histogram(self, name: str, labels: Sequence[str], counts: BucketCounts) -> None:
        buckets = [(_le(bound), float(count))
                   for bound, count in zip(counts.bounds_s, counts.cumulative)]
        buckets.append(('+Inf', float(counts.count)))
        self.family(name).add_metric(list(labels), buckets, counts.sum_s)

    def every(self) -> List[Any]:
        """Return every family of METRICS, in its order (empty ones too: HELP and TYPE)."""
        return [self.family(metric.name) for metric in METRICS]


def _le(bound: float) -> str:
    """Return a bucket bound as an `le` label, as prometheus_client writes its own (0.0025)."""
    return repr(float(bound))


def families(snapshot: Snapshot, buckets: Dict[str, Dict[str, BucketCounts]]) -> List[Any]:
    """Return the metric families of a snapshot and the engine's latency buckets."""
    out = _Families()
    add = out.add
    for name, item in snapshot.inputs.items():
        add('inferedge_input_frames_received_total', [name], item.received)
        add('inferedge_input_frames_accepted_total', [name], item.accepted)
        out.by_reason('inferedge_input_frames_malformed_total', [name],
                      item.malformed_by_reason, INPUT_MALFORMED_REASONS)
        add('inferedge_input_frames_stamp_fallback_total', [name], item.stamp_fallback)
        add('inferedge_input_decode_errors_total', [name], item.decode_errors)
    add('inferedge_unknown_input_frames_total', [], snapshot.unknown_input)
    for name, task in snapshot.tasks.items():
        _task_families(out, name, task, buckets.get(name, {}))
    for name, pool in snapshot.pools.items():
        labels = [name]
        add('inferedge_pool_slots', labels, pool.slots)
        add('inferedge_pool_busy_slots', labels, pool.busy)
        add('inferedge_pool_slots_retired_total', labels, pool.retired)
        add('inferedge_pool_worker_crashes_total', labels, pool.crashes)
        add('inferedge_pool_worker_respawns_total', labels, pool.respawns)
        add('inferedge_pool_server_down', labels, int(pool.server_down))
        add('inferedge_pool_server_outages_total', labels, pool.outages)
        add('inferedge_pool_server_probes_total', labels, pool.probes)
    add('inferedge_shedding_active', [], int(snapshot.shedding.active))
    add('inferedge_shedding_ticks_total', [], snapshot.shedding.ticks)
    for event in dict.fromkeys(reasons.EVENTS + tuple(sorted(snapshot.decisions.by_event))):
        add('inferedge_decisions_total', [event], snapshot.decisions.by_event.get(event, 0))
    add('inferedge_engine_uptime_seconds', [], snapshot.uptime_s)
    return out.every()


def _task_families(out: '_Families', name: str, task, buckets: Dict[str, BucketCounts]) -> None:
    """Add one task's counters, gauges and histograms, then its cameras' counters."""
    add, labels = out.add, [name]
    add('inferedge_task_frames_routed_total', labels, task.routed)
    add('inferedge_task_frames_executed_total', labels, task.executed)
    add('inferedge_task_frames_within_budget_total', labels, task.completed_within_budget)
    out.by_reason('inferedge_task_frames_failed_total', labels, task.failed_by_reason,
                  reasons.FAILURE_REASONS)
    out.by_reason('inferedge_task_frames_dropped_total', labels, task.dropped_by_reason,
                  reasons.DROP_REASONS)
    add('inferedge_task_frames_held_for_priority_total', labels, task.held_for_priority)
    add('inferedge_task_busy_seconds_total', labels, task.busy_s)
    for size, jobs in enumerate(task.batch_jobs, start=1):
        add('inferedge_task_batch_jobs_total', [name, str(size)], jobs)
    add('inferedge_task_queued_frames', labels, task.queued)
    add('inferedge_task_in_flight_frames', labels, task.in_flight)
    add('inferedge_task_queue_depth_max_frames', labels, task.max_queue_depth)
    add('inferedge_task_slots_down', labels, task.slots_down)
    add('inferedge_task_rate_limit_hertz', labels, task.rate_limit_hz)
    add('inferedge_task_shed_limit_hertz', labels, task.shed_limit_hz)
    add('inferedge_task_predicted_service_seconds', labels, task.predicted_service_ms / 1000.0)
    add('inferedge_task_enabled', labels, int(task.enabled))
    for metric, series in BUCKETED.items():
        counts = buckets.get(series)
        if counts is not None:
            out.histogram(metric, labels, counts)
    for camera, counts in task.cameras.items():
        pair = [name, camera]
        add('inferedge_camera_frames_routed_total', pair, counts.routed)
        add('inferedge_camera_frames_executed_total', pair, counts.executed)
        add('inferedge_camera_frames_within_budget_total', pair, counts.completed_within_budget)
        add('inferedge_camera_frames_failed_total', pair, counts.failed)
        out.by_reason('inferedge_camera_frames_dropped_total', pair, counts.dropped_by_reason,
                      reasons.DROP_REASONS)
        add('inferedge_camera_queued_frames', pair, counts.queued)
        add('inferedge_camera_in_flight_frames', pair, counts.in_flight)


class EngineCollector:
    """A prometheus_client collector of an engine's telemetry (read at each scrape)."""

    def __init__(self, source: Optional[Any] = None):
        # source: anything with snapshot_with_buckets(), such as an Engine; None: nothing
        # yet (MetricsServer.source is set once the engine exists).
        self.source = source

    def collect(self):
        source = self.source
        if source is None:
            return []
        return families(*source.snapshot_with_buckets())


class MetricsServer:
    """
    An HTTP endpoint serving one engine's metrics, on a thread of its own, until stop().

    It has its own registry (the engine's metrics and the process' CPU and memory), not the
    global one, so that several servers in one process do not mix. port 0 takes a free port
    (tests; the settings' 0, off, is the caller's: it makes no server then).
    """

    def __init__(self, port: int, address: str = '127.0.0.1', source: Optional[Any] = None):
        self.collector = EngineCollector(source)
        self._port, self._address = port, address
        self._server = None
        self._thread: Optional[threading.Thread] = None

    @property
    def source(self) -> Optional[Any]:
        return self.collector.source

    @source.setter
    def source(self, value: Optional[Any]) -> None:
        self.collector.source = value

    @property
    def port(self) -> int:
        """Return the port it listens on (the one taken when 0 was asked), 0 when stopped."""
        return self._server.server_port if self._server is not None else 0

    @property
    def url(self) -> str:
        host = f'[{self._address}]' if ':' in self._address else self._address
        return f'http://{host}:{self.port}/metrics'

    def start(self) -> None:
        """Listen and serve; ConfigError says why not (no prometheus_client, port in use)."""
        where = f'metrics_port {self._port} on {self._address}'
        try:
            import prometheus_client  # optional, imported on use (see above)
        except ImportError:
            raise ConfigError(f'{where}: serving metrics needs prometheus_client, which is not '
                              f'installed; allowed: metrics_port 0 (off), or {INSTALL_HINT}'
                              ) from None
        registry = prometheus_client.CollectorRegistry()
        registry.register(self.collector)
        prometheus_client.ProcessCollector(registry=registry)
        try:
            self._server, self._thread = prometheus_client.start_http_server(
                self._port, addr=self._address, registry=registry)
        except OSError as error:
            raise ConfigError(f'{where}: cannot listen: {error.strerror or error}; allowed: a '
                              'free port and an address of this computer') from None
        self._thread.name = 'metrics-http'

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving and free the port (safe more than once)."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout)


def serve_metrics(config: MetricsConfig, source: Optional[Any] = None) -> Optional[MetricsServer]:
    """Start serving source's metrics as config says; None when metrics_port is 0 (off)."""
    if not config.metrics_port:
        return None
    server = MetricsServer(config.metrics_port, config.metrics_address, source)
    server.start()
    return server


def docs_table() -> str:
    """Return the markdown table of METRICS, as docs/telemetry.md holds it."""
    lines = ['| metric | type | labels | meaning |', '| --- | --- | --- | --- |']
    for metric in METRICS:
        lines.append(f'| `{metric.name}` | {metric.kind} | '
                     f'{", ".join(metric.labels) or "-"} | {metric.meaning} |')
    return '\n'.join(lines) + '\n'


def docs_with_table(text: str) -> str:
    """Return text (docs/telemetry.md) with the table between its metrics markers again."""
    return with_marked_tables(text, {'prometheus': docs_table()}, 'metrics')


if __name__ == '__main__':  # python -m ...telemetry.prometheus docs/telemetry.md: the table
    import sys
    with open(sys.argv[1], encoding='utf-8') as stream:
        updated = docs_with_table(stream.read())
    with open(sys.argv[1], 'w', encoding='utf-8') as stream:
        stream.write(updated)
