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
Real-model benchmark (a script, not a test): three OCR models on one CPU slot.

    pip install --no-deps rapidocr-onnxruntime   # only for its three .onnx models
    python3 benchmarks/rapidocr_benchmark.py [--seconds 60] [--fps 15] [--json OUT]

The PP-OCR models inside the rapidocr-onnxruntime package run as three onnxruntime tasks on
one camera (synthetic 640x480 frames at 15 frames/s) sharing one CPU slot, 2 intra-op threads
each: detector (input 480x640, priority 100, budget 150 ms), classifier (48x192, priority
50, budget 300 ms) and recognizer (48x320, priority 10, budget 500 ms).

1. Idle: each model alone, 3 warm-ups then 30 timed runs (preprocessing + inference).
2. The orchestrator (priority mode) for --seconds: per task executed, dropped by reason,
   whole-run p50/p95/p99 end-to-end and service time, the first post-warm-up frame's service
   time against the median.
3. The same run in FIFO mode.
Acceptance: detector p99 end-to-end <= idle detector p99 + idle recognizer p99 + 10 ms, and
>= 14 of 15 detector frames executed (the others shed with reasons).
"""

import argparse
import importlib.util
import json
import os
import platform
import sys
import time

from inferedge_orchestrator.config.model import InputConfig
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.tools import runner
from inferedge_orchestrator.workers.onnx import OnnxWorker
import numpy as np

MODELS = {
    'detector': ('ch_PP-OCRv4_det_infer.onnx', [480, 640], 100, 150.0),
    'classifier': ('ch_ppocr_mobile_v2.0_cls_infer.onnx', [48, 192], 50, 300.0),
    'recognizer': ('ch_PP-OCRv4_rec_infer.onnx', [48, 320], 10, 500.0),
}
THREADS = 2
WARMUPS = 3
IDLE_RUNS = 30
MARGIN_MS = 10.0


def models_folder(folder: str = '') -> str:
    """Return the models folder of rapidocr-onnxruntime without importing the package."""
    if not folder:
        spec = importlib.util.find_spec('rapidocr_onnxruntime')
        if spec is None or not spec.submodule_search_locations:
            sys.exit('rapidocr-onnxruntime is not installed: pip install --no-deps '
                     'rapidocr-onnxruntime (only its .onnx models are used)')
        folder = os.path.join(list(spec.submodule_search_locations)[0], 'models')
    missing = [m[0] for m in MODELS.values() if not os.path.isfile(os.path.join(folder, m[0]))]
    if missing:
        sys.exit(f'{folder}: missing {", ".join(missing)}')
    return folder


def worker_options(folder: str, name: str) -> dict:
    model, size, _, _ = MODELS[name]
    return {'model_path': os.path.join(folder, model), 'input_size': size,
            'intra_op_threads': THREADS, 'inter_op_threads': 1, 'warmup': WARMUPS,
            'scale': 1.0 / 255.0, 'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5],
            'channel_order': 'bgr'}


def config(folder: str, fps: float, mode: str, queues=(1, 2, 2),
           p95_fraction: float = 0.0) -> dict:
    """
    Return the three-task config.

    queues: the queue sizes of detector, classifier and recognizer; p95_fraction: the
    shedding's p95_budget_fraction (0: the engine's default).
    """
    tasks = []
    for (name, (_, _, priority, budget)), queue in zip(MODELS.items(), queues):
        tasks.append({'name': name, 'priority': priority, 'latency_budget_ms': budget,
                      'queue_size': queue, 'worker': 'onnxruntime',
                      'worker_options': worker_options(folder, name)})
    return {
        'orchestrator': dict({'name': 'rapidocr_benchmark', 'mode': mode,
                              'pools': {'cpu': {'slots': 1}}},
                             **({'shedding': {'p95_budget_fraction': p95_fraction}}
                                if p95_fraction else {})),
        'inputs': {'camera': {'rate_hz': fps, 'width': 640, 'height': 480,
                              'encoding': 'rgb8'}},
        'tasks': tasks,
    }


def percentiles(values_ms) -> dict:
    values = np.asarray(values_ms)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {'p50_ms': float(p50), 'p95_ms': float(p95), 'p99_ms': float(p99),
            'max_ms': float(values.max())}


def idle(folder: str, interval_s: float = 0.0) -> dict:
    """
    Measure each model alone: 3 warm-ups, then 30 timed runs on a 640x480 frame.

    interval_s > 0 starts the runs at that period (the camera's) instead of back to back: the
    CPU idles between them, as it does in a paced pipeline.
    """
    image = runner.SyntheticSource(InputConfig('camera', 15.0, 640, 480)).read()[0]
    out = {}
    for name in MODELS:
        options = OnnxWorker.validate_options(worker_options(folder, name), name)
        worker = OnnxWorker(name, options, 1)
        worker.load()
        worker.warmup(WARMUPS)
        times = []
        due = time.monotonic()
        for index in range(IDLE_RUNS):
            if interval_s:
                time.sleep(max(0.0, due - time.monotonic()))
                due += interval_s
            frame = Frame('camera', index, 0.0, 0.0, image=image, encoding='rgb8')
            start = time.perf_counter()
            worker.infer(frame)
            times.append((time.perf_counter() - start) * 1000.0)
        worker.close()
        out[name] = percentiles(times)
    return out


def print_idle(title: str, figures_by_model: dict) -> None:
    print(title)
    for name, figures in figures_by_model.items():
        print(f'  {name:<11} p50 {figures["p50_ms"]:6.1f}  p95 {figures["p95_ms"]:6.1f}  '
              f'p99 {figures["p99_ms"]:6.1f}  max {figures["max_ms"]:6.1f}')


def measure(folder: str, fps: float, seconds: float, mode: str, queues,
            p95_fraction: float = 0.0) -> dict:
    """Run the three tasks in real time in one mode; exact percentiles from every result."""
    print(f'{mode}: running {seconds:g} s ...', file=sys.stderr, flush=True)
    samples = {name: {'end_to_end': [], 'service': []} for name in MODELS}

    def on_result(result):
        if result.status == 'OK':  # list.append is atomic: slot threads may call at once
            samples[result.task]['end_to_end'].append(result.end_to_end_s * 1000.0)
            samples[result.task]['service'].append(result.service_s * 1000.0)

    report = runner.run(config(folder, fps, mode, queues, p95_fraction), seconds=seconds,
                        on_result=on_result,
                        on_progress=lambda line: print(f'  {line}', file=sys.stderr,
                                                       flush=True),
                        progress_every_s=10.0)
    tasks = {}
    for name, task in report['final']['tasks'].items():
        latency = {series: percentiles(values) if values else
                   {'p50_ms': None, 'p95_ms': None, 'p99_ms': None, 'max_ms': None}
                   for series, values in samples[name].items()}
        first = report['run']['first_results'].get(name)
        tasks[name] = {
            'routed': task['routed'], 'executed': task['executed'],
            'completed_within_budget': task['completed_within_budget'],
            'failed': task['failed'], 'failed_by_reason': task['failed_by_reason'],
            'dropped': task['dropped'], 'dropped_by_reason': task['dropped_by_reason'],
            'queued': task['queued'], 'in_flight': task['in_flight'],
            'end_to_end': latency['end_to_end'], 'service': latency['service'],
            'first_service_ms': first['service_ms'] if first else None,
        }
    return {'mode': mode, 'duration_s': report['run']['duration_s'],
            'submitted': report['run']['submitted']['camera'], 'tasks': tasks,
            'decisions': report['final']['decisions']['by_event'],
            'invariant_violations': report['invariant_violations']}


def fmt(value, digits=1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def print_run(result: dict) -> None:
    print(f'\n{result["mode"]}: {result["submitted"]} frames in '
          f'{result["duration_s"]:.1f} s')
    header = ('task', 'executed', 'in budget', 'failed', 'e2e p50', 'p95', 'p99',
              'service p50', 'p95', 'p99', 'first', 'dropped by reason')
    print('{:<11} {:>8} {:>9} {:>6} {:>8} {:>6} {:>6} {:>11} {:>6} {:>6} {:>6}  {}'.format(
        *header))
    for name, task in result['tasks'].items():
        e2e, service = task['end_to_end'], task['service']
        drops = ', '.join(f'{k}={v}' for k, v in task['dropped_by_reason'].items()) or '-'
        print('{:<11} {:>8} {:>9} {:>6} {:>8} {:>6} {:>6} {:>11} {:>6} {:>6} {:>6}  {}'.format(
            name, task['executed'], task['completed_within_budget'], task['failed'],
            fmt(e2e['p50_ms']), fmt(e2e['p95_ms']), fmt(e2e['p99_ms']),
            fmt(service['p50_ms']), fmt(service['p95_ms']), fmt(service['p99_ms']),
            fmt(task['first_service_ms']), drops))
    print(f'decisions: {", ".join(f"{k}={v}" for k, v in result["decisions"].items() if v)}')
    if result['invariant_violations']:
        print(f'invariant violations: {result["invariant_violations"]}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--seconds', type=float, default=60.0, help='per mode (default 60)')
    parser.add_argument('--fps', type=float, default=15.0, help='camera rate (default 15)')
    parser.add_argument('--skip-fifo', action='store_true', help='orchestrator only')
    parser.add_argument('--json', help='write every figure to this file')
    parser.add_argument('--queues', default='1,2,2',
                        help='queue sizes of detector, classifier, recognizer (default 1,2,2: '
                             'the detector always takes the newest frame)')
    parser.add_argument('--p95-fraction', type=float, default=0.0,
                        help='orchestrator.shedding.p95_budget_fraction (default: the '
                             "engine's, 0.8)")
    parser.add_argument('--models', default='',
                        help="folder holding the three .onnx files (default: the package's)")
    args = parser.parse_args()
    folder = models_folder(args.models)
    queues = tuple(int(q) for q in args.queues.split(','))
    if len(queues) != 3 or min(queues) < 1:
        sys.exit(f'--queues: {args.queues!r} is not allowed; allowed: three sizes >= 1')
    import onnxruntime
    machine = {'python': platform.python_version(), 'onnxruntime': onnxruntime.__version__,
               'cpus': os.cpu_count(), 'load_average': os.getloadavg(),
               'usable_cpus': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
               else None,
               'machine': platform.machine(), 'queues': queues,
               'p95_budget_fraction': args.p95_fraction or None}
    print(f'machine: {machine}')
    idle_ms = idle(folder)
    print_idle(f'\nidle, each model alone ({WARMUPS} warm-ups, {IDLE_RUNS} timed runs back to '
               'back, preprocessing + inference, ms):', idle_ms)
    paced_ms = idle(folder, 1.0 / args.fps)
    print_idle(f'alone, the {IDLE_RUNS} runs paced at {args.fps:g} per second (for '
               'information):', paced_ms)
    results = {'machine': machine, 'idle_ms': idle_ms, 'paced_idle_ms': paced_ms, 'runs': {}}
    for mode in ('priority',) + (() if args.skip_fifo else ('fifo',)):
        result = measure(folder, args.fps, args.seconds, mode, queues, args.p95_fraction)
        results['runs'][mode] = result
        print_run(result)
    bound = idle_ms['detector']['p99_ms'] + idle_ms['recognizer']['p99_ms'] + MARGIN_MS
    detector = results['runs']['priority']['tasks']['detector']
    p99 = detector['end_to_end']['p99_ms']
    rate = detector['executed'] / results['runs']['priority']['duration_s']
    latency_ok = p99 is not None and p99 <= bound
    rate_ok = detector['executed'] * args.fps >= 14.0 * detector['routed']
    results['acceptance'] = {'detector_p99_ms': p99, 'bound_ms': bound,
                             'latency_ok': latency_ok, 'executed_per_s': rate,
                             'rate_ok': rate_ok}
    print(f'\nacceptance: detector p99 end-to-end {fmt(p99)} ms <= idle detector p99 '
          f'{idle_ms["detector"]["p99_ms"]:.1f} + idle recognizer p99 '
          f'{idle_ms["recognizer"]["p99_ms"]:.1f} + {MARGIN_MS:g} = {bound:.1f} ms: '
          f'{"yes" if latency_ok else "NO"}')
    print(f'acceptance: detector executed {detector["executed"]} of {detector["routed"]} '
          f'({rate:.2f} frames/s; >= 14 of {args.fps:g} needed): '
          f'{"yes" if rate_ok else "NO"}')
    paced_bound = paced_ms['detector']['p99_ms'] + paced_ms['recognizer']['p99_ms'] + MARGIN_MS
    results['acceptance']['paced_bound_ms'] = paced_bound
    print(f'for information, the same bound from the paced figures: {paced_bound:.1f} ms: '
          f'{"yes" if p99 is not None and p99 <= paced_bound else "no"}')
    if 'fifo' in results['runs']:
        fifo = results['runs']['fifo']['tasks']['detector']['end_to_end']['p99_ms']
        print(f'FIFO detector p99 end-to-end beside it: {fmt(fifo)} ms')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(results, stream, indent=2)
    return 0 if latency_ok and rate_ok else 1


if __name__ == '__main__':
    sys.exit(main())
