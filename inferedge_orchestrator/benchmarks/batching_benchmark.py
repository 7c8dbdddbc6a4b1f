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
Batches against one frame a job, where a batch costs less per frame (a script, not a test).

    python3 benchmarks/batching_benchmark.py [--rounds 3] [--seconds 20] [--no-triton]
        [--json OUT]

4 cameras x 30 fps into one task over them all (budget 100 ms, queues of 4, one slot), with
max_batch 1 and 4, on a model that costs 20 ms + 4 ms for each frame of a batch after the
first:
1. under the virtual clock, the dummy worker (latency_ms 20, per_item_ms 4): exact and
   repeatable;
2. with the real Triton server of tools/local_triton.py, a python-backend model (the channel
   sum ONNX model) that sleeps 20 ms + 4 ms x (n - 1) per request: a synthetic cost, as a
   GPU's grows with the batch; frames of 480x640 sent by this process at the cameras' rate.
The systems run interleaved, round by round; per round the within-budget frames of batch 4
over batch 1's (same-round ratio); the target, >= 1.5x (median over the rounds, min-max), is
printed as met or not. Also printed: the batch sizes run and the learned cost per size.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.tools import local_triton
from inferedge_orchestrator.tools.simulation import periodic_trace, Simulation
import numpy as np

CAMERAS = [f'cam{index}' for index in range(4)]
RATE_HZ = 30.0
BUDGET_MS = 100.0
LATENCY_MS, PER_ITEM_MS = 20.0, 4.0
SIZES = (1, 4)
TARGET = 1.5
IMAGE = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)


def config(max_batch: int, worker: str, options: dict) -> dict:
    return {'orchestrator': {'pools': {'cpu': {'slots': 1}},
                             'telemetry': {'resources': False}},
            'inputs': {name: {'rate_hz': RATE_HZ} for name in CAMERAS},
            'tasks': [{'name': 'detector', 'inputs': CAMERAS, 'latency_budget_ms': BUDGET_MS,
                       'queue_size': 4, 'max_batch': max_batch, 'worker': worker,
                       'pool': 'cpu' if worker == 'dummy' else 'server',
                       'worker_options': options}]}


def figures(task: dict, seconds: float) -> dict:
    return {'within_per_s': task['completed_within_budget'] / seconds,
            'executed_per_s': task['executed'] / seconds,
            'batch_jobs': task['batch_jobs'],
            'batch_cost_ms': [round(cost, 1) for cost in task['batch_cost_ms']]}


def virtual(max_batch: int, seconds: float) -> dict:
    options = {'latency_ms': LATENCY_MS, 'per_item_ms': PER_ITEM_MS, 'batch_limit': 4}
    trace = periodic_trace(CAMERAS, int(seconds * RATE_HZ), 1.0 / RATE_HZ)
    report = Simulation(config(max_batch, 'dummy', options)).run(trace, seconds)
    return figures(report['final']['tasks']['detector'], seconds)


def triton(max_batch: int, seconds: float, url: str) -> dict:
    options = {'url': url, 'model_name': 'growing', 'input_size': [48, 64], 'warmup': 5}
    cfg = config(max_batch, 'triton', options)
    cfg['orchestrator']['pools'] = {'server': {'slots': 1}}
    engine = Engine(cfg)
    engine.start()
    try:
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < seconds:
            for camera in CAMERAS:
                engine.submit(camera, IMAGE, age_s=0.0)
            sent += 1
            time.sleep(max(0.0, start + sent / RATE_HZ - time.monotonic()))
        engine.drain(5.0)
        task = engine.report()['final']['tasks']['detector']
    finally:
        engine.close()
    return figures(task, seconds)


def summarise(name: str, rounds: list) -> dict:
    ratios = [r[SIZES[1]]['within_per_s'] / r[SIZES[0]]['within_per_s']
              for r in rounds if r[SIZES[0]]['within_per_s']]
    median = statistics.median(ratios)
    met = 'met' if median >= TARGET else 'NOT met'
    print(f'{name}: within budget batch 4 / batch 1 = {median:.2f}x (min {min(ratios):.2f}, '
          f'max {max(ratios):.2f}); target >= {TARGET}x: {met}')
    for size in SIZES:
        within = statistics.median(r[size]['within_per_s'] for r in rounds)
        last = rounds[-1][size]
        print(f'  max_batch {size}: within budget {within:.1f}/s; last round: jobs by size '
              f'{last["batch_jobs"]}, learned median by size {last["batch_cost_ms"]} ms')
    return {'ratio_median': median, 'ratio_min': min(ratios), 'ratio_max': max(ratios),
            'met': median >= TARGET, 'rounds': rounds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--no-triton', dest='with_triton', action='store_false')
    parser.add_argument('--json', help='write the figures here')
    args = parser.parse_args()
    # The virtual clock is exact: one round says it all.
    out = {'virtual': summarise('virtual clock (dummy)',
                                [{size: virtual(size, args.seconds) for size in SIZES}])}
    if args.with_triton:
        out['triton'] = run_triton(args)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(out, stream, indent=1)
    return 0


def run_triton(args) -> dict:
    """Run the rounds against a Triton server started here (the python-backend growing model)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test'))
    from onnx_models import channel_sum_model  # noqa: I100 - the tests' model builder
    with tempfile.TemporaryDirectory() as folder:
        model = channel_sum_model(pathlib.Path(folder), batch='n')
        repository = os.path.join(folder, 'models')
        local_triton.write_onnx_model(
            repository, 'growing', model, max_batch_size=4, delay_s=LATENCY_MS / 1000.0,
            delay_per_item_s=PER_ITEM_MS / 1000.0,
            dynamic_batching='max_queue_delay_microseconds: 0')
        server = local_triton.LocalTriton(repository, folder).start()
        try:
            rounds = []
            for index in range(args.rounds):
                order = SIZES if index % 2 == 0 else SIZES[::-1]
                rounds.append({size: triton(size, args.seconds, server.grpc_url)
                               for size in order})
                print(f'round {index + 1}/{args.rounds}: ' + ', '.join(
                    f'max_batch {s} {rounds[-1][s]["within_per_s"]:.1f}/s' for s in SIZES))
        finally:
            server.stop()
    return summarise('Triton (synthetic growing cost)', rounds)


if __name__ == '__main__':
    sys.exit(main())
