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
The rapidocr detector local vs through Triton (a script, not a test).

    python3 benchmarks/triton_benchmark.py [--rounds 3] [--frames 30] [--slots 1,2,4]
        [--json OUT]

The PP-OCR detector of rapidocr-onnxruntime (pip install --no-deps rapidocr-onnxruntime),
480x640, 2 intra-op threads, served three ways: the local onnxruntime worker, and the triton
worker over gRPC to a tritonserver on this machine (tools/local_triton.py: the nvidia-pytriton
wheel's python backend running the same ONNX file with onnxruntime, one instance per slot),
with shared memory off and on; each on a pool of 1, 2 and 4 slots. Per configuration:

1. per frame: --frames 640x480 frames one at a time into an idle engine; the service time
   (the worker takes the frame -> its output is back) p50 / p99, and the overhead: the same
   round's Triton p50 (p99) minus the local p50 (p99) on as many slots;
2. frames/s: 20 frames per slot queued at once, until the last one is done.

For Triton it also reads the server's statistics of the one-at-a-time frames: the mean time
of the model's execute() in the server (the python backend's round trip to its stub process
and onnxruntime) and the mean time outside the server (the service time minus the server's
own: preprocessing, serialization, the transport, the client).

The configurations run interleaved, round by round, in one sitting (this machine is noisy:
only same-round ratios are comparable); the table gives the medians over the rounds.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.tools import local_triton
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rapidocr_benchmark import MODELS, models_folder, THREADS, worker_options  # noqa: E402, I100

MODES = ('local', 'triton', 'triton_shm')
IMAGE = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
FRAMES_PER_SLOT = 20


def options(mode: str, folder: str, server) -> dict:
    local = worker_options(folder, 'detector')
    if mode == 'local':
        return local
    preprocessing = {key: local[key]
                     for key in ('input_size', 'scale', 'mean', 'std', 'channel_order')}
    return dict(preprocessing, url=server.grpc_url, model_name='detector', warmup=3,
                shared_memory=mode == 'triton_shm')


def config(mode: str, slots: int, task_options: dict) -> dict:
    pool = 'server' if mode != 'local' else 'cpu'
    return {'orchestrator': {'pools': {pool: {'slots': slots}},
                             'shedding': {'enabled': False},
                             'telemetry': {'resources': False}},
            'tasks': [{'name': 'detector', 'pool': pool, 'latency_budget_ms': 600000.0,
                       'queue_size': 4096, 'on_deadline': 'run',
                       'worker': 'onnxruntime' if mode == 'local' else 'triton',
                       'worker_options': task_options}]}


class Collector:
    """The results of one engine, with a wake-up per result."""

    def __init__(self):
        self.results = []
        self.event = threading.Event()

    def on_result(self, result):
        self.results.append(result)
        self.event.set()

    def wait_for(self, count: int, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        while len(self.results) < count:
            if time.monotonic() > end:
                raise RuntimeError(f'{len(self.results)} of {count} results after {timeout} s')
            self.event.wait(1.0)
            self.event.clear()


def server_times(server) -> dict:
    """Return the detector's inference statistics of the server: phase -> (count, ns)."""
    from tritonclient.grpc import InferenceServerClient
    stats = InferenceServerClient(server.grpc_url).get_inference_statistics(
        'detector', as_json=True)['model_stats'][0]['inference_stats']
    return {phase: (int(stats[phase].get('count', 0)), int(stats[phase].get('ns', 0)))
            for phase in ('success', 'queue', 'compute_input', 'compute_infer',
                          'compute_output')}


def measure(mode: str, slots: int, frames: int, folder: str, server) -> dict:
    collector = Collector()
    engine = Engine(config(mode, slots, options(mode, folder, server)),
                    on_result=collector.on_result)
    engine.start()
    try:
        before = server_times(server) if mode != 'local' else {}
        for index in range(frames):  # one at a time
            engine.submit('camera', IMAGE, age_s=0.0)
            collector.wait_for(index + 1)
        after = server_times(server) if mode != 'local' else {}
        one_by_one = list(collector.results)
        collector.results.clear()
        count = FRAMES_PER_SLOT * slots
        start = time.monotonic()
        for _ in range(count):  # all at once: every slot busy
            engine.submit('camera', IMAGE, age_s=0.0)
        collector.wait_for(count)
        elapsed = time.monotonic() - start
        queued = list(collector.results)
    finally:
        engine.close()
    failed = [r for r in one_by_one + queued if r.status != reasons.OK]
    if failed:
        raise RuntimeError(f'{mode}, {slots} slots: {len(failed)} failed: {failed[0].detail}')
    service = np.asarray([r.service_s for r in one_by_one]) * 1000.0
    # In the server, per request (mean): the queue, the input copy, the model's execute() (the
    # python backend's stub round trip included), the output copy.
    inside = {f'server_{phase}_ms': (after[phase][1] - before[phase][1]) / 1e6 /
              max(1, after[phase][0] - before[phase][0]) for phase in after}
    figures = {'p50_ms': float(np.percentile(service, 50)),
               'p99_ms': float(np.percentile(service, 99)), 'mean_ms': float(service.mean()),
               'frames_per_s': count / elapsed}
    if inside:  # outside the server: the client, the transport, the gRPC server's threads
        inside['outside_server_ms'] = figures['mean_ms'] - inside['server_success_ms']
    return dict(figures, **inside)


def start_server(folder: str, slots: int, workdir: str):
    repository = os.path.join(workdir, 'models')
    path = os.path.join(folder, MODELS['detector'][0])
    local_triton.write_onnx_model(repository, 'detector', path, instances=slots,
                                  intra_op_threads=THREADS)
    return local_triton.LocalTriton(repository, workdir).start()


def median(values):
    return statistics.median(values) if values else float('nan')


def summary(rounds: list, slot_counts) -> list:
    """Return a row per (mode, slots): medians over rounds, same-round differences, ratios."""
    rows = []
    for slots in slot_counts:
        for mode in MODES:
            mine = [r[mode][slots] for r in rounds]
            base = [r['local'][slots] for r in rounds]
            rows.append({
                'mode': mode, 'slots': slots,
                'p50_ms': median([m['p50_ms'] for m in mine]),
                'p99_ms': median([m['p99_ms'] for m in mine]),
                'overhead_p50_ms': median([m['p50_ms'] - b['p50_ms']
                                           for m, b in zip(mine, base)]),
                'overhead_p99_ms': median([m['p99_ms'] - b['p99_ms']
                                           for m, b in zip(mine, base)]),
                'frames_per_s': median([m['frames_per_s'] for m in mine]),
                'model_in_server_ms': median([m.get('server_compute_infer_ms', 0.0)
                                              for m in mine]),
                'outside_server_ms': median([m.get('outside_server_ms', 0.0) for m in mine]),
                'frames_ratio': median([m['frames_per_s'] / b['frames_per_s']
                                        for m, b in zip(mine, base)]),
                'frames_ratios': [round(m['frames_per_s'] / b['frames_per_s'], 2)
                                  for m, b in zip(mine, base)],
            })
    return rows


def print_table(rows: list) -> None:
    print('| mode | slots | service p50 (ms) | p99 | overhead p50 (ms) | p99 | in the server: '
          'execute (ms) | outside it (ms) | frames/s | frames/s vs local (per round) |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for row in rows:
        local = row['mode'] == 'local'
        overhead = ('-', '-') if local else (f'{row["overhead_p50_ms"]:+.1f}',
                                             f'{row["overhead_p99_ms"]:+.1f}')
        ratio = '-' if local else (f'{row["frames_ratio"]:.2f} ('
                                   f'{", ".join(map(str, row["frames_ratios"]))})')
        server = ('-', '-') if local else (f'{row["model_in_server_ms"]:.1f}',
                                           f'{row["outside_server_ms"]:.1f}')
        print(f'| {row["mode"]} | {row["slots"]} | {row["p50_ms"]:.1f} | {row["p99_ms"]:.1f} | '
              f'{overhead[0]} | {overhead[1]} | {server[0]} | {server[1]} | '
              f'{row["frames_per_s"]:.1f} | {ratio} |')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--frames', type=int, default=30, help='one-at-a-time frames per run')
    parser.add_argument('--slots', default='1,2,4')
    parser.add_argument('--models', default='', help='the rapidocr models folder')
    parser.add_argument('--json', default='')
    args = parser.parse_args()
    folder = models_folder(args.models)
    slot_counts = [int(s) for s in args.slots.split(',')]
    workdir = tempfile.mkdtemp(prefix='triton_benchmark_')
    server = start_server(folder, max(slot_counts), workdir)
    started = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    load = os.getloadavg()[0]
    rounds = []
    try:
        for index in range(args.rounds):
            round_ = {mode: {} for mode in MODES}
            for slots in slot_counts:
                for mode in MODES:  # interleaved: one round, one machine state
                    round_[mode][slots] = measure(mode, slots, args.frames, folder, server)
                    print(f'round {index + 1} {mode} {slots} slot(s): '
                          f'{json.dumps(round_[mode][slots])}', file=sys.stderr)
            rounds.append(round_)
    finally:
        server.stop()
    rows = summary(rounds, slot_counts)
    print(f'{started}, {platform.machine()}, {os.cpu_count()} cores, load average {load:.2f} '
          f'at the start, Python {platform.python_version()}, {args.rounds} rounds')
    print_table(rows)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump({'started': started, 'load_average': load, 'rounds': rounds,
                       'rows': rows, 'frames': args.frames, 'slots': slot_counts}, stream,
                      indent=1, default=str)
    return 0


if __name__ == '__main__':
    sys.exit(main())
