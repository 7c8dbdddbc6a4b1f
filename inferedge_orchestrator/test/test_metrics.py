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
The Prometheus endpoint: names, scrapes against the engine's snapshots, the server's life.

A scrape taken while frames flow lies, counter by counter, between the snapshots taken just
before and just after it (counters only grow); once input stops it equals the snapshot. The
expected values are read from the snapshot here, field by field, not with the collector's code.
"""

import os
import socket
import sys
import threading
import time
import urllib.request

from inferedge_orchestrator.config.schema import schema
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.telemetry import prometheus
from inferedge_orchestrator.telemetry.prometheus import (METRICS, MetricsConfig, MetricsServer,
                                                         serve_metrics)
from inferedge_orchestrator.telemetry.stats import FixedBuckets, LATENCY_BOUNDS_S
from inferedge_orchestrator.tools import cli
import numpy as np
import pytest

IMAGE = np.zeros((24, 32, 3), dtype=np.uint8)
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'docs',
                    'telemetry.md')
# Two inputs; one task per input and one over both (its counters also per camera); a small
# queue and one slot, so that frames are dropped too.
CONFIG = {
    'orchestrator': {'pools': {'cpu': {'slots': 1}}},
    'inputs': {'front': {}, 'rear': {}},
    'tasks': [
        {'name': 'detector', 'inputs': ['front'], 'priority': 10, 'queue_size': 2,
         'worker_options': {'latency_ms': 3.0}},
        {'name': 'tracker', 'inputs': ['front', 'rear'], 'priority': 5, 'queue_size': 1,
         'worker_options': {'latency_ms': 2.0}},
    ],
}
# The counter families the expected values below cover: a new counter needs its check here.
REASON_FAMILIES = {'inferedge_input_frames_malformed_total', 'inferedge_task_frames_failed_total',
                   'inferedge_task_frames_dropped_total', 'inferedge_camera_frames_dropped_total',
                   'inferedge_decisions_total'}


@pytest.fixture
def client():
    return pytest.importorskip('prometheus_client', reason='prometheus_client is not installed '
                               '(pip install prometheus_client, the metrics extra)')


@pytest.fixture
def served(client):
    """Return (engine, server): a running engine served on a free port; both stopped after."""
    engine = Engine(CONFIG)
    engine.load()
    engine.start()
    server = MetricsServer(0, source=engine)
    server.start()
    yield engine, server
    server.stop()
    engine.close(timeout=2.0)


def scrape(client, server):
    """Return the families of one scrape, by name, parsed with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(server.url, timeout=5.0) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def key(name, **labels):
    return name, tuple(sorted(labels.items()))


def expected_counters(snapshot):
    """Return every counter sample the snapshot implies: (name, labels) -> value."""
    out = {}

    def put(name, value, **labels):
        out[key(name, **labels)] = float(value)
    for name, item in snapshot.inputs.items():
        put('inferedge_input_frames_received_total', item.received, input=name)
        put('inferedge_input_frames_accepted_total', item.accepted, input=name)
        for reason, count in item.malformed_by_reason.items():
            put('inferedge_input_frames_malformed_total', count, input=name, reason=reason)
        put('inferedge_input_frames_stamp_fallback_total', item.stamp_fallback, input=name)
        put('inferedge_input_decode_errors_total', item.decode_errors, input=name)
    put('inferedge_unknown_input_frames_total', snapshot.unknown_input)
    for name, task in snapshot.tasks.items():
        put('inferedge_task_frames_routed_total', task.routed, task=name)
        put('inferedge_task_frames_executed_total', task.executed, task=name)
        put('inferedge_task_frames_within_budget_total', task.completed_within_budget,
            task=name)
        for reason, count in task.failed_by_reason.items():
            put('inferedge_task_frames_failed_total', count, task=name, reason=reason)
        for reason, count in task.dropped_by_reason.items():
            put('inferedge_task_frames_dropped_total', count, task=name, reason=reason)
        put('inferedge_task_frames_held_for_priority_total', task.held_for_priority, task=name)
        put('inferedge_task_busy_seconds_total', task.busy_s, task=name)
        for size, jobs in enumerate(task.batch_jobs, start=1):
            put('inferedge_task_batch_jobs_total', jobs, task=name, batch_size=str(size))
        for camera, counts in task.cameras.items():
            labels = {'task': name, 'camera': camera}
            put('inferedge_camera_frames_routed_total', counts.routed, **labels)
            put('inferedge_camera_frames_executed_total', counts.executed, **labels)
            put('inferedge_camera_frames_within_budget_total', counts.completed_within_budget,
                **labels)
            put('inferedge_camera_frames_failed_total', counts.failed, **labels)
            for reason, count in counts.dropped_by_reason.items():
                put('inferedge_camera_frames_dropped_total', count, reason=reason, **labels)
    for name, pool in snapshot.pools.items():
        put('inferedge_pool_slots_retired_total', pool.retired, pool=name)
        put('inferedge_pool_worker_crashes_total', pool.crashes, pool=name)
        put('inferedge_pool_worker_respawns_total', pool.respawns, pool=name)
        put('inferedge_pool_server_outages_total', pool.outages, pool=name)
        put('inferedge_pool_server_probes_total', pool.probes, pool=name)
    put('inferedge_shedding_ticks_total', snapshot.shedding.ticks)
    for event, count in snapshot.decisions.by_event.items():
        put('inferedge_decisions_total', count, event=event)
    return out


def counter_samples(families):
    """Return the scrape's inferedge counter samples: (name, labels) -> value."""
    return {key(sample.name, **sample.labels): sample.value
            for family in families.values() if family.type == 'counter'
            and family.name.startswith('inferedge_')
            for sample in family.samples if sample.name.endswith('_total')}


def check_counters(scraped, low, high):
    """Check each counter sample lies between two expected maps (equal ones: equality)."""
    assert set(low) <= set(scraped), sorted(set(low) - set(scraped))
    for sample, value in scraped.items():
        if sample not in high:
            # a reason no frame had yet: 0, and only in a family with a reason label
            assert sample[0] in REASON_FAMILIES, sample
            assert value == 0.0, sample
            continue
        assert low.get(sample, 0.0) <= value <= high[sample], (sample, low.get(sample), value,
                                                               high[sample])


def feed(engine, stop):
    """Submit frames to both inputs, about 400 a second in all, until stop is set."""
    while not stop.is_set():
        engine.submit('front', IMAGE, age_s=0.0, encoding='rgb8')
        engine.submit('rear', IMAGE, age_s=0.0, encoding='rgb8')
        stop.wait(0.005)


def test_a_scrape_lies_between_the_snapshots_around_it_and_equals_them_at_rest(client, served):
    engine, server = served
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(engine, stop))
    feeder.start()
    try:
        time.sleep(0.3)
        scrapes = 0
        for _ in range(4):
            before = engine.snapshot()
            families = scrape(client, server)
            after = engine.snapshot()
            check_counters(counter_samples(families), expected_counters(before),
                           expected_counters(after))
            check_histograms_count_executed(families)
            scrapes += after.tasks['detector'].routed > before.tasks['detector'].routed
            time.sleep(0.2)
        assert scrapes, 'no frame arrived between the snapshots around a scrape'
    finally:
        stop.set()
        feeder.join()
    assert engine.drain(5.0)
    rest = engine.snapshot()
    families = scrape(client, server)
    later = engine.snapshot()
    expected = expected_counters(rest)
    check_counters(counter_samples(families), expected, expected_counters(later))
    # No input: only the shedding ticks (and a recovery's decisions) may still move.
    moving = {'inferedge_shedding_ticks_total', 'inferedge_decisions_total'}
    assert {k: v for k, v in expected.items() if k[0] not in moving} == \
        {k: v for k, v in expected_counters(later).items() if k[0] not in moving}
    tasks = rest.tasks
    assert tasks['detector'].executed > 0 and tasks['tracker'].dropped > 0  # both were used
    assert set(tasks['tracker'].cameras) == {'front', 'rear'}
    gauges = {key(s.name, **s.labels): s.value for f in families.values()
              if f.type == 'gauge' for s in f.samples}
    for name, task in tasks.items():
        assert gauges[key('inferedge_task_queued_frames', task=name)] == task.queued == 0
        assert gauges[key('inferedge_task_in_flight_frames', task=name)] == task.in_flight == 0
        assert gauges[key('inferedge_task_queue_depth_max_frames', task=name)] == \
            task.max_queue_depth
    assert gauges[key('inferedge_pool_slots', pool='cpu')] == 1.0
    assert gauges[key('inferedge_pool_busy_slots', pool='cpu')] == 0.0
    check_histograms(families, rest)


def check_histograms_count_executed(families):
    """Each histogram's count is its task's executed counter of the same scrape."""
    executed = {s.labels['task']: s.value
                for s in families['inferedge_task_frames_executed'].samples}
    assert set(executed) == {'detector', 'tracker'}
    for metric in ('inferedge_task_queue_wait_seconds', 'inferedge_task_inference_seconds',
                   'inferedge_task_end_to_end_seconds'):
        counts = {s.labels['task']: s.value for s in families[metric].samples
                  if s.name == metric + '_count'}
        assert counts == executed, metric


def check_histograms(families, snapshot):
    """Buckets ascend and grow; +Inf == count == the task's executed frames; sum > 0."""
    for metric in ('inferedge_task_queue_wait_seconds', 'inferedge_task_inference_seconds',
                   'inferedge_task_end_to_end_seconds'):
        family = families[metric]
        assert family.type == 'histogram'
        for name, task in snapshot.tasks.items():
            samples = [s for s in family.samples if s.labels['task'] == name]
            buckets = [(float(s.labels['le']), s.value) for s in samples
                       if s.name == metric + '_bucket']
            assert [b for b, _ in buckets] == list(LATENCY_BOUNDS_S) + [float('inf')]
            counts = [c for _, c in buckets]
            assert counts == sorted(counts)
            count = [s.value for s in samples if s.name == metric + '_count'][0]
            total = [s.value for s in samples if s.name == metric + '_sum'][0]
            assert counts[-1] == count == task.executed, (metric, name)
            assert total > 0.0 or metric == 'inferedge_task_queue_wait_seconds'


def test_names_follow_the_conventions_and_the_docs_list_every_metric(client, served):
    engine, server = served
    engine.submit('front', IMAGE, age_s=0.0, encoding='rgb8')
    assert engine.drain(5.0)
    families = scrape(client, server)
    ours = {name: family for name, family in families.items() if name.startswith('inferedge_')}
    # The parser names a counter family without _total; its samples carry it.
    listed = {m.name[:-len('_total')] if m.kind == 'counter' else m.name: m for m in METRICS}
    assert set(ours) == set(listed)
    assert any(name.startswith('process_') for name in families)  # the process collector
    for name, family in ours.items():
        metric = listed[name]
        assert family.type == metric.kind, name
        assert metric.name == name + '_total' if metric.kind == 'counter' else True
        for sample in family.samples:
            assert set(sample.labels) - {'le'} == set(metric.labels), (name, sample.labels)
            if metric.kind == 'counter':
                assert sample.name == metric.name, sample.name
        if metric.kind == 'histogram':
            assert name.endswith('_seconds')
        assert not name.endswith('_total') or metric.kind == 'counter'
        assert not any(unit in name for unit in ('_ms', 'milliseconds', '_hz')), name
    if not os.path.exists(DOCS):
        pytest.skip(f'{DOCS} is not here (an installed copy of the package)')
    with open(DOCS, encoding='utf-8') as stream:
        text = stream.read()
    assert prometheus.docs_with_table(text) == text, (
        'docs/telemetry.md: the metrics table is stale; write it again with '
        'python -m inferedge_orchestrator.telemetry.prometheus docs/telemetry.md')


def test_the_server_frees_its_port_when_stopped_and_a_taken_port_is_a_clear_error(client):
    server = MetricsServer(0)  # no engine yet: only the process' metrics
    server.start()
    port = server.port
    assert port > 0
    families = scrape(client, server)
    assert not any(name.startswith('inferedge_') for name in families)
    taken = MetricsServer(port)
    with pytest.raises(ConfigError, match=f'metrics_port {port} on 127.0.0.1: cannot listen: '
                       '.*in use; allowed: a free port'):
        taken.start()
    server.stop()
    server.stop()  # twice is fine
    assert not any(t.name == 'metrics-http' for t in threading.enumerate())
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(('127.0.0.1', port))  # free again
    with pytest.raises(OSError):
        urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=2.0)


def test_port_0_is_off_and_settings_are_checked():
    assert serve_metrics(MetricsConfig()) is None  # the default: off
    fields = schema(MetricsConfig)
    with pytest.raises(ConfigError, match=r'metrics_port: 70000 is out of range; allowed: '
                       r'0\.\.65535'):
        fields['metrics_port'].check('metrics_port', 70000)
    with pytest.raises(ConfigError, match='metrics_address: .* allowed: an IP address'):
        fields['metrics_address'].check('metrics_address', ' ')


def test_without_prometheus_client_serving_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'prometheus_client', None)  # its import now fails
    with pytest.raises(ConfigError, match='needs prometheus_client, which is not installed; '
                       'allowed: metrics_port 0 .off., or pip install prometheus_client'):
        MetricsServer(0).start()


def test_fixed_buckets_count_a_value_equal_to_a_bound_in_it():
    buckets = FixedBuckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        buckets.add(value)
    counts = buckets.counts()
    assert counts.cumulative == [2, 4] and counts.count == 5
    assert counts.sum_s == pytest.approx(4.65)
    with pytest.raises(ValueError, match='not strictly increasing'):
        FixedBuckets((1.0, 0.5))


def test_run_serves_metrics_and_refuses_a_bad_port(client, tmp_path, capsys):
    output = tmp_path / 'report.json'
    config = tmp_path / 'config.json'
    config.write_text('{"tasks": [{"name": "a", "worker_options": {"latency_ms": 1.0}}]}')
    assert cli.main(['run', '--config', str(config), '--frames', '3', '--output', str(output),
                     '--quiet', '--metrics-port', '70000']) == cli.EXIT_USAGE
    assert '--metrics-port: 70000 is out of range; allowed: 0..65535' in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(['run', '--config', str(config), '--frames', '3', '--output',
                         str(output), '--quiet', '--metrics-port', str(port)]) == cli.EXIT_USAGE
        assert f'metrics_port {port} on 127.0.0.1: cannot listen' in capsys.readouterr().err
    with socket.socket() as free:
        free.bind(('127.0.0.1', 0))
        port = free.getsockname()[1]
    assert cli.main(['run', '--config', str(config), '--frames', '3', '--output', str(output),
                     '--quiet', '--metrics-port', str(port)]) == 0
    assert f'metrics: http://127.0.0.1:{port}/metrics' in capsys.readouterr().err
    assert not any(t.name == 'metrics-http' for t in threading.enumerate())
