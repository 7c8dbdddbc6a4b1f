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
What a background process costs the detector under the OS (a script, not a test; no ROS).

    pip install --no-deps rapidocr-onnxruntime   # the PP-OCR detector and recognizer .onnx
    python3 benchmarks/background_probe.py [--rounds 4] [--runs 50] [--json OUT]

The PP-OCR detector (480x640, onnxruntime) runs back to back in this process, --runs frames
per condition; a child process runs a background load meanwhile: `spin` (a Python loop: a core
and almost no memory), `stream` (numpy copies of 64 MB: memory bandwidth and the shared
cache) or `rec` (the PP-OCR recognizer back to back, one intra-op thread: the two-pool
recipe's background), at SCHED_IDLE (`idle`), nice 19 or normal priority. Detector settings:
- det2: 2 intra-op threads, idle threads spinning (allow_spinning on);
- det2_nospin: the same with spinning off (the worker's default);
- det1_pin0: 1 intra-op thread pinned to core 0, the background pinned to core 1 at normal
  priority: what the other core's load costs a detector that never shares its core.
Each round runs every condition in a rotating order; per condition the median service time
over its runs, then the median over rounds (min-max) of the same-round ratio to the setting
without background. Nothing runs at a real-time policy or a negative nice.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rapidocr_benchmark import MODELS, models_folder  # noqa: E402, I100

# The background child: argv = kind, policy, cpu ('-': any), recognizer model path.
BACKGROUND = r"""
import os, sys
import numpy as np
kind, policy, cpu, model = sys.argv[1:5]
if cpu != '-':
    os.sched_setaffinity(0, {int(cpu)})
if policy == 'idle':
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
elif policy == 'nice19':
    os.nice(19)
print('ready', flush=True)
if kind == 'spin':
    count = 0
    while True:
        count += 1
elif kind == 'stream':
    source = np.ones(16 * 2 ** 20, np.float32)
    target = np.empty_like(source)
    while True:
        np.copyto(target, source)
else:
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: np.random.rand(1, 3, 48, 320).astype(np.float32)}
    while True:
        session.run(None, feed)
"""

# setting: (intra-op threads, spinning, the core it is pinned to or None)
SETTINGS = {'det2': (2, True, None), 'det2_nospin': (2, False, None), 'det1_pin0': (1, True, 0)}
# setting: backgrounds as (kind, policy, cpu); None: no background (the ratios' reference)
CONDITIONS = {
    'det2': [None, ('spin', 'idle', '-'), ('stream', 'idle', '-'), ('rec', 'idle', '-'),
             ('rec', 'nice19', '-'), ('rec', 'normal', '-')],
    'det2_nospin': [None, ('spin', 'idle', '-'), ('rec', 'idle', '-'), ('rec', 'nice19', '-')],
    'det1_pin0': [None, ('spin', 'normal', '1'), ('stream', 'normal', '1'),
                  ('rec', 'normal', '1')],
}


def model_path(name: str) -> str:
    """Return the path of one of rapidocr_benchmark's MODELS (detector, recognizer)."""
    return os.path.join(models_folder(), MODELS[name][0])


def detector(threads: int, spinning: bool):
    """Return (session, feed) of the detector, warmed up."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry('session.intra_op.allow_spinning', '1' if spinning else '0')
    session = onnxruntime.InferenceSession(model_path('detector'), options,
                                           providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: np.random.rand(1, 3, 480, 640).astype(np.float32)}
    for _ in range(3):
        session.run(None, feed)
    return session, feed


def service_times(session, feed, background, runs: int) -> list:
    """Return the detector's service times (ms) while background runs in a child."""
    child = None
    if background:
        child = subprocess.Popen(
            [sys.executable, '-c', BACKGROUND, *background,
             model_path('recognizer')], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        time.sleep(1.0)  # the recognizer's session loaded and running
    times = []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        if child:
            child.kill()
            child.wait()
    return times


def label(setting: str, background) -> str:
    return f'{setting} | {"none" if background is None else "/".join(background)}'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=4)
    parser.add_argument('--runs', type=int, default=50, help='detector frames per condition')
    parser.add_argument('--json', help='write the per-round medians here')
    args = parser.parse_args(argv)
    every_core = os.sched_getaffinity(0)
    medians = {}
    for round_index in range(args.rounds):
        for setting, (threads, spinning, core) in SETTINGS.items():
            os.sched_setaffinity(0, every_core if core is None else {core})
            session, feed = detector(threads, spinning)
            conditions = CONDITIONS[setting]
            shift = round_index % len(conditions)
            for background in conditions[shift:] + conditions[:shift]:
                times = service_times(session, feed, background, args.runs)
                medians.setdefault(label(setting, background), []).append(
                    statistics.median(times))
            del session
        os.sched_setaffinity(0, every_core)
        print(f'round {round_index + 1}/{args.rounds} {time.strftime("%H:%M:%S")}',
              file=sys.stderr, flush=True)
    print('| detector | background (kind/policy/core) | service p50 ms | x no background, '
          'same round |\n| --- | --- | --- | --- |')
    for setting in SETTINGS:
        reference = medians[label(setting, None)]
        for background in CONDITIONS[setting]:
            values = medians[label(setting, background)]
            ratios = sorted(v / r for v, r in zip(values, reference))
            kind = 'none' if background is None else '/'.join(background)
            print(f'| {setting} | {kind} | {statistics.median(values):.1f} | '
                  f'{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f}) |')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump({'rounds': args.rounds, 'runs': args.runs, 'medians_ms': medians}, stream,
                      indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
