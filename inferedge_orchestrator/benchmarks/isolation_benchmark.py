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
Thread vs process pools (a script, not a test): the hand-off cost, the detector, respawns.

    python3 benchmarks/isolation_benchmark.py [--rounds 5] [--frames 100] [--json OUT]

1. Hand-off, on 640x480 rgb8 frames, one at a time into an idle engine (a dummy of 0 ms):
   submit -> the model call's entry (the engine's dispatch, the slot, with isolation the copy
   into shared memory, the pipe and the child's wake-up) and the model call's end -> on_result
   (the pipe back, unpickling the outputs), p50 / p99 in microseconds.
2. The PP-OCR detector of rapidocr-onnxruntime (when installed: pip install --no-deps
   rapidocr-onnxruntime) at 10 frames/s on one slot: end-to-end p50 / p99 in ms.
3. The respawn time after SIGKILL: a child killed in the middle of a job, until its
   WORKER_RESPAWN decision (spawn, load, warm-up), the median of --kills, for the dummy and the
   detector; a job that ends well follows each respawn, so no kill meets a backoff.
The two back-ends run interleaved, round by round, in one sitting (this machine is noisy: only
same-round ratios are comparable).
"""

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.workers.process import pid_of_children
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rapidocr_benchmark import models_folder, worker_options  # noqa: E402, I100

BACKENDS = ('thread', 'process')
IMAGE = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)


def config(isolation, worker='dummy', options=None, **task):
    return {'orchestrator': {'pools': {'cpu': {'slots': 1, 'isolation': isolation}},
                             'shedding': {'enabled': False},
                             'telemetry': {'resources': False}},
            'tasks': [dict({'name': 'task', 'worker': worker, 'latency_budget_ms': 60000.0,
                            'queue_size': 4, 'worker_options': options or {'latency_ms': 0.0}},
                           **task)]}


def percentiles(samples, scale):
    values = np.asarray(samples) * scale
    return {'p50': float(np.percentile(values, 50)), 'p99': float(np.percentile(values, 99)),
            'count': len(samples)}


class Collector:
    """on_result and on_decision of one engine, with a wake-up per result."""

    def __init__(self):
        self.results = []
        self.respawned = []
        self.event = threading.Event()

    def on_result(self, result):
        self.results.append(result)
        self.event.set()

    def on_decision(self, decision):
        if decision.event == reasons.WORKER_RESPAWN_EVENT:
            self.respawned.append(time.monotonic())
            self.event.set()

    def wait(self, predicate, timeout=60.0):
        end = time.monotonic() + timeout
        while not predicate():
            self.event.wait(max(0.0, end - time.monotonic()))
            self.event.clear()
            if time.monotonic() > end:
                raise RuntimeError('no result within 60 s')


def handoff(isolation, frames):
    collector = Collector()
    engine = Engine(config(isolation), on_result=collector.on_result)
    engine.start()
    into, out_of = [], []
    try:
        for index in range(frames + 5):  # 5 to warm the path up
            submitted = time.monotonic()
            engine.submit('camera', IMAGE, age_s=0.0)
            collector.wait(lambda: len(collector.results) > index)
            result = collector.results[index]
            if index >= 5:
                into.append(result.model_span[0] - submitted)
                out_of.append(result.handoff_out_s)
    finally:
        engine.close()
    return {'submit_to_infer_us': percentiles(into, 1e6),
            'result_to_callback_us': percentiles(out_of, 1e6)}


def detector(isolation, folder, seconds, fps=10.0):
    collector = Collector()
    engine = Engine(config(isolation, 'onnxruntime', worker_options(folder, 'detector'),
                           latency_budget_ms=1000.0), on_result=collector.on_result)
    engine.start()
    try:
        start = time.monotonic()
        count = int(seconds * fps)
        for index in range(count):
            time.sleep(max(0.0, start + index / fps - time.monotonic()))
            engine.submit('camera', IMAGE, age_s=0.0)
        engine.drain(30.0)
    finally:
        engine.close()
    ok = [r for r in collector.results if r.status == reasons.OK]
    return {'end_to_end_ms': percentiles([r.end_to_end_s for r in ok], 1e3),
            'service_ms': percentiles([r.service_s for r in ok], 1e3),
            'executed': len(ok), 'frames': count}


def respawn(worker, options, kills):
    """Kill the child mid-job kills times; return the seconds from each kill to its respawn."""
    collector = Collector()
    engine = Engine(config('process', worker, options), on_result=collector.on_result,
                    on_decision=collector.on_decision)
    engine.start()
    times = []
    try:
        task = engine.tasks['task']
        for index in range(kills):
            engine.submit('camera', IMAGE, age_s=0.0)
            end = time.monotonic() + 30.0
            while not engine.snapshot().pools['cpu'].busy and time.monotonic() < end:
                time.sleep(0.001)
            time.sleep(0.02)
            killed = time.monotonic()
            os.kill(pid_of_children(task.worker)[0], signal.SIGKILL)
            collector.wait(lambda: len(collector.respawned) > index)
            times.append(collector.respawned[index] - killed)
            # One job that ends well, so that the next kill is a first crash (no backoff).
            engine.submit('camera', IMAGE, age_s=0.0)
            collector.wait(lambda: collector.results and
                           collector.results[-1].status == reasons.OK)
            collector.results.clear()
    finally:
        engine.close()
    return {'median_s': statistics.median(times), 'min_s': min(times), 'max_s': max(times),
            'kills': kills}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--frames', type=int, default=100, help='hand-off frames per round')
    parser.add_argument('--seconds', type=float, default=10.0, help='detector run per round')
    parser.add_argument('--kills', type=int, default=10)
    parser.add_argument('--models', default='', help='the rapidocr models folder')
    parser.add_argument('--json', default='')
    args = parser.parse_args()
    try:
        folder = models_folder(args.models)
    except SystemExit as missing:
        print(f'detector skipped: {missing}')
        folder = ''
    rounds = []
    for number in range(args.rounds):
        row = {}
        for isolation in BACKENDS:  # interleaved: the same round, the same machine state
            row[isolation] = {'handoff': handoff(isolation, args.frames)}
            if folder:
                row[isolation]['detector'] = detector(isolation, folder, args.seconds)
        rounds.append(row)
        for isolation in BACKENDS:
            hand = row[isolation]['handoff']
            text = (f'round {number + 1} {isolation:7s} submit->infer p50 '
                    f'{hand["submit_to_infer_us"]["p50"]:7.0f} us p99 '
                    f'{hand["submit_to_infer_us"]["p99"]:7.0f} us; result->callback p50 '
                    f'{hand["result_to_callback_us"]["p50"]:6.0f} us p99 '
                    f'{hand["result_to_callback_us"]["p99"]:6.0f} us')
            if folder:
                e2e = row[isolation]['detector']['end_to_end_ms']
                text += f'; detector end-to-end p50 {e2e["p50"]:.1f} ms p99 {e2e["p99"]:.1f} ms'
            print(text, flush=True)
    respawns = {'dummy': respawn('dummy', {'latency_ms': 200.0}, args.kills)}
    if folder:
        respawns['detector'] = respawn('onnxruntime', worker_options(folder, 'detector'),
                                       args.kills)
    for name, data in respawns.items():
        print(f'respawn after SIGKILL ({name}): median {data["median_s"]:.3f} s '
              f'(min {data["min_s"]:.3f}, max {data["max_s"]:.3f}, {data["kills"]} kills)')
    report = {'machine': {'platform': platform.platform(), 'cpus': os.cpu_count(),
                          'python': platform.python_version()},
              'rounds': rounds, 'respawn': respawns}
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(report, stream, indent=1)


if __name__ == '__main__':
    main()
