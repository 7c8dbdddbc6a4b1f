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
The node's CPU per frame at intake against a bare rclpy subscriber (a script, not a test).

    source install/setup.bash
    python3 benchmarks/intake_benchmark.py --out docs/benchmarks/intake     # ~25 min
    python3 benchmarks/intake_benchmark.py --rounds 1 --window-s 10 --out /tmp/intake
    python3 benchmarks/intake_benchmark.py --profile --out /tmp/intake      # py-spy each

Configurations (--configs): 4x640x480 (4 cameras x 640x480 rgb8 x 30 fps) and 2x1280x720 (2
cameras x 1280x720 x 30 fps), one synthetic_camera process per camera (reliable, depth 10).
Systems, started fresh for every run, interleaved in rotating order within each round:
- node: the orchestrator with one dummy task over every camera (latency_ms 0: no inference;
  every frame is converted, routed, queued, run, published as a result and counted), one slot;
  its default single-threaded executor;
- node_mt: the same with executor_threads = cameras + 1 (a multi-threaded executor, each
  camera's subscription in a callback group of its own): the executor models compared;
- bare: a bare rclpy node (SingleThreadedExecutor) subscribing to the same topics with the same
  QoS, whose callback only counts the message: the floor rclpy itself needs (the
  deserialisation of every image).
Per run, over the window: the system process's CPU seconds (user + system, psutil; the
orchestrator with its threads) over the frames it received (the node's telemetry; the bare
node's own count). Per round: node / bare (and node_mt / bare). Target: the median over the
rounds of the ratio <= 2x at 4x640x480 (min-max shown), printed as met or not. With
--profile, py-spy records each system's process during its window (py-spy record --native
off, raw folded stacks) and the script prints each system's top functions by own time; the
folded files are in --out.

The bare subscriber is this script run with --bare TOPIC... (it prints its count every second).
"""

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from ros_launch import Background, ros_environment, spin_until_interrupted
from ros_matrix import load_average, machine, spread
import yaml

CONFIGS = {'4x640x480': (4, 640, 480), '2x1280x720': (2, 1280, 720)}
FPS = 30.0
# node: the default single-threaded executor; node_mt: executor_threads = cameras + 1, each
# camera in a callback group of its own.
SYSTEMS = ('node', 'node_mt', 'bare')
TARGET = 2.0
TARGET_CONFIG = '4x640x480'
NODE = '/inferedge_orchestrator'
HERE = os.path.dirname(os.path.abspath(__file__))


def topic(camera: str) -> str:
    return f'/intake/{camera}/image'


def write_config(cameras: list, folder: str) -> str:
    task = {'name': 'intake', 'inputs': cameras, 'priority': 100, 'latency_budget_ms': 1000.0,
            'queue_size': 2, 'worker': 'dummy', 'worker_options': {'latency_ms': 0.0}}
    config = {'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'period_s': 1.0}},
              'inputs': {camera: {'rate_hz': FPS} for camera in cameras}, 'tasks': [task]}
    path = os.path.join(folder, 'intake.yaml')
    with open(path, 'w', encoding='utf-8') as stream:
        yaml.safe_dump(config, stream)
    return path


def start_system(system: str, cameras: list, folder: str, env: dict) -> Background:
    if system == 'bare':
        return Background([sys.executable, os.path.abspath(__file__), '--bare'] +
                          [topic(camera) for camera in cameras], env)
    arguments = ['-p', f'config_file:={write_config(cameras, folder)}']
    if system == 'node_mt':
        arguments += ['-p', f'executor_threads:={len(cameras) + 1}']
    for camera in cameras:
        arguments += ['-p', f'{camera}.topic:={topic(camera)}',
                      '-p', f'{camera}.reliability:=reliable', '-p', f'{camera}.depth:=10']
    return Background(['ros2', 'run', 'inferedge_orchestrator_ros', 'orchestrator',
                       '--ros-args'] + arguments, env)


def start_camera(camera: str, width: int, height: int, env: dict) -> Background:
    return Background(['ros2', 'run', 'inferedge_orchestrator_ros', 'synthetic_camera',
                       '--ros-args', '-r', f'__node:={camera}', '-p', f'topic:={topic(camera)}',
                       '-p', f'fps:={FPS}', '-p', f'width:={width}', '-p', f'height:={height}',
                       '-p', 'encoding:=rgb8', '-p', 'reliability:=reliable',
                       '-p', 'depth:=10'], env)


def system_process(background: Background):
    """Return the psutil process of the system itself (not `ros2 run`'s wrapper)."""
    import psutil
    root = psutil.Process(background.process.pid)
    for item in [root] + root.children(recursive=True):
        command = ' '.join(item.cmdline())
        if 'ros2 run' not in command and '/ros2 ' not in command:
            return item
    return root


def cpu_seconds(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def node_received(domain: int, seconds: float) -> list:
    """Return [(stamp_ns, frames received by every input)] of the node's telemetry."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from inferedge_orchestrator_msgs.msg import OrchestratorTelemetry
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('intake_measurer', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    counts = []
    node.create_subscription(
        OrchestratorTelemetry, f'{NODE}/telemetry',
        lambda msg: counts.append((time.monotonic(), sum(i.received for i in msg.inputs))),
        QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL))
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return counts


def bare_received(background: Background) -> list:
    """Return [(monotonic s, frames received)] from the bare subscriber's output."""
    return [(float(t), int(n)) for t, n in
            re.findall(r'^t=([\d.]+) received=(\d+)$', background.output(), re.MULTILINE)]


def frames_between(counts: list, begin: float, end: float) -> tuple:
    """Return (frames, seconds) between the first and last count inside [begin, end]."""
    inside = [(t, n) for t, n in counts if begin <= t <= end]
    if len(inside) < 2:
        return 0, 0.0
    return inside[-1][1] - inside[0][1], inside[-1][0] - inside[0][0]


def run_once(system: str, config: str, args, domain: int, profile_to: str) -> dict:
    count, width, height = CONFIGS[config]
    cameras = [f'cam{index}' for index in range(count)]
    env = ros_environment(domain)
    with tempfile.TemporaryDirectory(prefix='intake_') as folder:
        feeds = [start_camera(camera, width, height, env) for camera in cameras]
        subject = start_system(system, cameras, folder, env)
        spy = None
        try:
            time.sleep(args.startup_s)
            process = system_process(subject)
            begin, cpu0 = time.monotonic(), cpu_seconds(process)
            if profile_to:
                spy = subprocess.Popen(['py-spy', 'record', '--pid', str(process.pid),
                                        '--format', 'raw', '--rate', '200', '--duration',
                                        str(int(args.window_s)), '--output', profile_to],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            counts = time.sleep(args.window_s) if system == 'bare' else \
                node_received(domain, args.window_s)
            end, cpu1 = time.monotonic(), cpu_seconds(process)
            if spy is not None:
                spy.wait(timeout=60)
        finally:
            subject.stop()
            for feed in feeds:
                feed.stop()
        if system == 'bare':
            counts = bare_received(subject)
        frames, seconds = frames_between(counts or [], begin, end)
        for item in feeds + [subject]:
            item.discard_log()
    cpu = cpu1 - cpu0
    return {'system': system, 'config': config, 'frames': frames, 'seconds': seconds,
            'frames_per_s': frames / seconds if seconds else 0.0,
            'cpu_cores': cpu / (end - begin),
            'cpu_ms_per_frame': 1000.0 * (cpu / (end - begin)) / (frames / seconds)
            if frames else None}


def profile_rapidocr(args) -> str:
    """
    Profile the node at 30 fps with the three rapidocr tasks (priority) and the detector alone.

    ros_matrix.py's systems at 30 fps / 150 ms; py-spy over the window; returns the text.
    """
    import ros_matrix
    lines = []
    for index, system in enumerate(('priority', 'alone')):
        env = ros_environment(args.domain + index)
        path = os.path.join(args.out, f'rapidocr_{system}.folded')
        with tempfile.TemporaryDirectory(prefix='intake_') as folder:
            config = ros_matrix.write_config(system, 150.0, 2, 1, folder)
            camera = ros_matrix.start_camera(30.0, env)
            subject = ros_matrix.start_system(system, config, env)
            try:
                time.sleep(args.startup_s + 10.0)  # three models load and warm up
                process = system_process(subject)
                begin, cpu0 = time.monotonic(), cpu_seconds(process)
                subprocess.run(['py-spy', 'record', '--pid', str(process.pid), '--format',
                                'raw', '--rate', '200', '--duration', str(int(args.window_s)),
                                '--output', path], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, timeout=args.window_s + 60)
                cores = (cpu_seconds(process) - cpu0) / (time.monotonic() - begin)
            finally:
                subject.stop()
                camera.stop()
            for item in (camera, subject):
                item.discard_log()
        lines += ['', f'Profile rapidocr at 30 fps, {system} (node CPU {cores:.2f} cores; own '
                  'time, share of the samples):', '']
        lines += [f'- {share:.1%} {name}' for name, share in top_functions(path, 15)]
    return '\n'.join(lines) + '\n'


def top_functions(folded: str, count: int = 12) -> list:
    """Return [(function, share of the samples)] by own time from a py-spy raw profile."""
    own, total = collections.Counter(), 0
    with open(folded, encoding='utf-8', errors='replace') as stream:
        for line in stream:
            stack, _, samples = line.rstrip().rpartition(' ')
            if not stack or not samples.isdigit():
                continue
            total += int(samples)
            own[stack.split(';')[-1]] += int(samples)
    return [(name, value / total) for name, value in own.most_common(count)] if total else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--configs', default=','.join(CONFIGS))
    parser.add_argument('--systems', default=','.join(SYSTEMS),
                        help='of ' + ', '.join(SYSTEMS) + ' (bare is the reference)')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--window-s', type=float, default=60.0)
    parser.add_argument('--startup-s', type=float, default=8.0,
                        help='from the start of the system to its window')
    parser.add_argument('--domain', type=int, default=80)
    parser.add_argument('--profile', action='store_true', help='py-spy each run (round 1)')
    parser.add_argument('--profile-rapidocr', action='store_true',
                        help='only profile the node with the three rapidocr tasks at 30 fps and '
                        'with the detector alone (ros_matrix.py systems priority and alone)')
    parser.add_argument('--out', help='folder of the outputs (required)')
    parser.add_argument('--bare', nargs='*', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare is not None:
        return bare(args.bare)
    if not args.out:
        parser.error('--out is required')
    if (args.profile or args.profile_rapidocr) and not shutil.which('py-spy'):
        raise SystemExit('--profile needs py-spy: pip install py-spy')
    os.makedirs(args.out, exist_ok=True)
    if args.profile_rapidocr:
        text = profile_rapidocr(args)
        print(text)
        with open(os.path.join(args.out, 'rapidocr_profile.md'), 'w',
                  encoding='utf-8') as stream:
            stream.write(text)
        return 0
    configs = args.configs.split(',')
    systems = tuple(args.systems.split(','))
    if 'bare' not in systems or not set(systems) <= set(SYSTEMS):
        parser.error(f'--systems: some of {", ".join(SYSTEMS)}, bare included')
    meta = {'date': datetime.date.today().isoformat(), 'machine': machine(),
            'load_start': load_average(), 'rounds': args.rounds, 'window_s': args.window_s,
            'command': ' '.join(sys.argv)}
    runs = []
    for round_index in range(args.rounds):
        for config_index, config in enumerate(configs):
            # Rotating order: each system in each position about as often.
            shift = (round_index + config_index) % len(systems)
            order = systems[shift:] + systems[:shift]
            for system in order:
                profile = os.path.join(args.out, f'{config}_{system}.folded') \
                    if args.profile and round_index == 0 else ''
                run = run_once(system, config, args, args.domain + len(runs) % 10, profile)
                run['round'] = round_index
                runs.append(run)
                print(f'round {round_index + 1}/{args.rounds} {config} {system:<7} '
                      f'{run["frames_per_s"]:.1f} frames/s, {run["cpu_cores"]:.2f} cores, '
                      f'{run["cpu_ms_per_frame"] or 0:.2f} ms CPU/frame', flush=True)
    meta['load_end'] = load_average()
    text, table = report(runs, configs, systems, meta, args)
    print(text)
    with open(os.path.join(args.out, 'intake.json'), 'w', encoding='utf-8') as stream:
        json.dump({'meta': meta, 'runs': runs, 'table': table}, stream, indent=1)
    with open(os.path.join(args.out, 'intake.md'), 'w', encoding='utf-8') as stream:
        stream.write(text)
    return 0


def report(runs: list, configs: list, systems: tuple, meta: dict, args) -> tuple:
    lines = [f'Measured {meta["date"]} on {meta["machine"]}; {meta["rounds"]} round(s) of '
             f'{meta["window_s"]:g} s; load average at the start {meta["load_start"]}, at the '
             f'end {meta["load_end"]}. Medians over rounds (min-max).', '',
             '| configuration | system | CPU ms/frame | / bare (same round) | frames/s |',
             '| --- |' + ' --- |' * 4]
    table = {}

    def cell(value, digits=2):
        if not value:
            return 'n/a'
        return (f'{value["median"]:.{digits}f} ({value["min"]:.{digits}f}-'
                f'{value["max"]:.{digits}f})')
    for config in configs:
        rounds = {}
        for run in runs:
            if run['config'] == config:
                rounds.setdefault(run['round'], {})[run['system']] = run
        table[config] = {}
        for system in systems:
            row = {key: spread([r[system][key] for r in rounds.values()
                                if system in r and r[system][key] is not None])
                   for key in ('cpu_ms_per_frame', 'frames_per_s')}
            row['ratio'] = None if system == 'bare' else spread([
                r[system]['cpu_ms_per_frame'] / r['bare']['cpu_ms_per_frame']
                for r in rounds.values() if system in r and 'bare' in r
                and r[system]['cpu_ms_per_frame'] and r['bare']['cpu_ms_per_frame']])
            table[config][system] = row
            lines.append(f'| {config} x {FPS:g} fps | {system} | '
                         f'{cell(row["cpu_ms_per_frame"])} | '
                         f'{cell(row["ratio"]) if row["ratio"] else "-"} | '
                         f'{cell(row["frames_per_s"], 1)} |')
    for system in systems:
        target = table.get(TARGET_CONFIG, {}).get(system, {}).get('ratio')
        if target:
            met = 'met' if target['median'] <= TARGET else 'NOT met'
            lines += ['', f'Target ({system}): CPU per frame <= {TARGET:g}x the bare '
                      f"subscriber's at {TARGET_CONFIG} x {FPS:g} fps: "
                      f'{target["median"]:.2f}x: {met}.']
    executors = [system for system in systems if system != 'bare']
    if len(executors) > 1:
        for config in configs:
            ratios = {system: table[config][system]['ratio'] for system in executors}
            if all(ratios.values()):
                best = min(executors, key=lambda system: ratios[system]['median'])
                lines += ['', f'{config}: the executor that measures best: {best}.']
    if args.profile:
        for config in configs:
            for system in systems:
                path = os.path.join(args.out, f'{config}_{system}.folded')
                if not os.path.isfile(path):
                    continue
                lines += ['', f'Profile {config} {system} (own time, share of samples):', '']
                lines += [f'- {share:.1%} {name}' for name, share in top_functions(path)]
    return '\n'.join(lines) + '\n', table


def bare(topics: list) -> int:
    """Count every message of topics and print the count every second: the bare subscriber."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node('bare_subscriber')
    received = [0]

    def on_image(msg):
        received[0] += 1
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                     reliability=ReliabilityPolicy.RELIABLE)
    for name in topics:
        node.create_subscription(Image, name, on_image, qos)
    node.create_timer(1.0, lambda: print(f't={time.monotonic():.3f} received={received[0]}',
                                         flush=True))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    return spin_until_interrupted(node, executor)


if __name__ == '__main__':
    sys.exit(main())
