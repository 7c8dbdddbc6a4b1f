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
Several cameras, one detector: fairness and capacity over real ROS (a script, not a test).

    pip install --no-deps rapidocr-onnxruntime   # the PP-OCR detector .onnx
    source install/setup.bash
    python3 benchmarks/multicamera.py --out docs/benchmarks/multicamera     # ~6 min

Systems, started fresh for every run and fed by one synthetic_camera process per camera
(640x480 rgb8, reliable QoS, depth 10, each on its own topic):
- one_task: the orchestrator with one detector task over every camera (inputs: [...]), one
  cpu slot: one model copy, a queue per camera;
- per_camera: the orchestrator with one detector task per camera, all priority 100, the
  same budget, one cpu slot (what a user had to configure for several cameras before);
- alone: the detector alone on one camera through the orchestrator (on_deadline run): its
  service time gives the slot's capacity in the same round (1 / its median).
Each round runs both systems in a rotating order. A subscriber in this process receives
every result (stamp -> receipt); the node's telemetry gives each camera's received rate.
Figures per run: within-budget frames/s per camera and in all, Jain's index over the
cameras, the share of executed frames that ended after their budget, and the total against
the capacity, and the node's RSS (its telemetry's, models included). Targets (medians over
rounds of same-round figures, min-max), for one_task: Jain >= 0.98, the worst camera >= 90% of
the cameras' mean, within budget >= 90% of the capacity, RSS <= 0.5x per_camera's. Writes
multicamera.json and multicamera.md to --out.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

from ros_launch import Background, ros_environment, stamp_ns, summary
from ros_matrix import load_average, machine, model_folder, spread
import yaml

SYSTEMS = ('one_task', 'per_camera', 'alone')
COMPARED = ('one_task', 'per_camera')
NODE = '/inferedge_orchestrator'
DETECTOR = ('ch_PP-OCRv4_det_infer.onnx', [480, 640])


def camera_names(count: int) -> list:
    return [f'cam{index}' for index in range(count)]


def detector_block(name: str, cameras: list, budget_ms: float, on_deadline: str,
                   threads: int) -> dict:
    """Return one detector task in the core config format."""
    filename, size = DETECTOR
    return {'name': name, 'inputs': cameras, 'priority': 100, 'latency_budget_ms': budget_ms,
            'queue_size': 1, 'on_deadline': on_deadline, 'worker': 'onnxruntime',
            'worker_options': {'model_path': os.path.join(model_folder(), filename),
                               'input_size': size, 'intra_op_threads': threads,
                               'inter_op_threads': 1, 'warmup': 3, 'channel_order': 'bgr',
                               'scale': 1 / 255.0, 'mean': [0.5, 0.5, 0.5],
                               'std': [0.5, 0.5, 0.5]}}


def write_config(system: str, cameras: int, fps: float, budget_ms: float, threads: int,
                 folder: str) -> str:
    """Write the core config of a run; the orchestrator reads it as its config_file."""
    names = camera_names(1 if system == 'alone' else cameras)
    if system == 'one_task':
        tasks = [detector_block('detector', names, budget_ms, 'drop', threads)]
    else:
        tasks = [detector_block(f'detector_{camera}', [camera], budget_ms,
                                'run' if system == 'alone' else 'drop', threads)
                 for camera in names]
    config = {'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'period_s': 1.0}},
              'inputs': {camera: {'rate_hz': fps} for camera in names}, 'tasks': tasks}
    path = os.path.join(folder, f'{system}.yaml')
    with open(path, 'w', encoding='utf-8') as stream:
        yaml.safe_dump(config, stream)
    return path


def topic(camera: str) -> str:
    return f'/multicamera/{camera}/image'


def start_node(config: str, cameras: list, env: dict) -> Background:
    arguments = ['-p', f'config_file:={config}']
    for camera in cameras:
        arguments += ['-p', f'{camera}.topic:={topic(camera)}',
                      '-p', f'{camera}.reliability:=reliable', '-p', f'{camera}.depth:=1']
    return Background(['ros2', 'run', 'inferedge_orchestrator_ros', 'orchestrator',
                       '--ros-args'] + arguments, env)


def start_camera(camera: str, fps: float, env: dict) -> Background:
    return Background(['ros2', 'run', 'inferedge_orchestrator_ros', 'synthetic_camera',
                       '--ros-args', '-r', f'__node:={camera}', '-p', f'topic:={topic(camera)}',
                       '-p', f'fps:={fps}', '-p', 'width:=640', '-p', 'height:=480',
                       '-p', 'encoding:=rgb8', '-p', 'reliability:=reliable',
                       '-p', 'depth:=10'], env)


def result_topics(system: str, cameras: list) -> list:
    """Return the result topics of a system: per camera, one task's or its own task's."""
    if system == 'one_task':
        return [f'{NODE}/detector/{camera}/result' for camera in cameras]
    return [f'{NODE}/detector_{camera}/result' for camera in cameras]


def measure(domain: int, topics: list, args, processes) -> dict:
    """Spin a subscriber of every task's results and the telemetry until the window is over."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from inferedge_orchestrator_msgs.msg import InferenceResult, OrchestratorTelemetry
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('multicamera_measurer', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    clock = node.get_clock()
    # samples: (camera, stamp_ns, receipt_ns, status, service_ms, the node's deadline_met)
    samples, telemetry = [], []

    def on_result(msg):
        samples.append((msg.input, stamp_ns(msg.header), clock.now().nanoseconds, msg.status,
                        msg.preprocess_ms + msg.inference_ms, msg.deadline_met))
    reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    for name in topics:
        node.create_subscription(InferenceResult, name, on_result, reliable)
    node.create_subscription(OrchestratorTelemetry, f'{NODE}/telemetry', telemetry.append,
                             QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    window = None
    deadline = time.monotonic() + args.startup_timeout_s
    try:
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if not all(p.running() for p in processes):
                break
            if window is None and samples:
                begin = clock.now().nanoseconds + int(args.warmup_s * 1e9)
                window = (begin, begin + int(args.window_s * 1e9))
                deadline = time.monotonic() + args.warmup_s + args.window_s + 10.0
            if window is not None and clock.now().nanoseconds > window[1] + 1e9:
                break  # a second after the window, for the results of its last frames
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return {'window_ns': window, 'samples': samples, 'telemetry': telemetry}


def received_rates(telemetry: list, window_ns) -> dict:
    """Return each input's received frames/s between the first and last telemetry inside."""
    inside = [m for m in telemetry if window_ns[0] <= stamp_ns(m.header) <= window_ns[1]]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    seconds = (stamp_ns(last.header) - stamp_ns(first.header)) / 1e9
    before = {i.name: i.received for i in first.inputs}
    return {i.name: (i.received - before.get(i.name, 0)) / seconds for i in last.inputs}


def jain(values: list) -> float:
    """Return Jain's fairness index (1: all equal; 1/n: one gets everything)."""
    squares = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * squares) if squares else 1.0


def analyse(system: str, cameras: list, budget_ms: float, raw: dict) -> dict:
    """Return the figures of one run over the frames stamped inside the window."""
    begin, end = raw['window_ns']
    seconds = (end - begin) / 1e9
    per_camera = {}
    services = []
    for camera in cameras:
        ok = [((receipt - stamp) / 1e6, service, met) for name, stamp, receipt, status,
              service, met in raw['samples']
              if name == camera and begin <= stamp < end and status == 0]
        latencies = [latency for latency, _, _ in ok]
        services += [service for _, service, _ in ok]
        within = sum(1 for v in latencies if v <= budget_ms)
        per_camera[camera] = {'executed_per_s': len(ok) / seconds,
                              'within_budget_per_s': within / seconds,
                              'late_executed': len(ok) - within,
                              'late_in_node': sum(1 for _, _, met in ok if not met),
                              'end_to_end': summary(latencies)}
    executed = sum(c['executed_per_s'] for c in per_camera.values()) * seconds
    late = sum(c['late_executed'] for c in per_camera.values())
    late_in_node = sum(c['late_in_node'] for c in per_camera.values())
    within = [c['within_budget_per_s'] for c in per_camera.values()]
    rss = [m.rss_mb for m in raw['telemetry'] if begin <= stamp_ns(m.header) <= end]
    return {'system': system, 'seconds': seconds, 'cameras': per_camera,
            'rss_mb': max(rss) if rss else None,
            'camera_rates': received_rates(raw['telemetry'], raw['window_ns']),
            'within_budget_per_s': sum(within), 'worst_camera_within_per_s': min(within),
            'jain': jain(within), 'late_share': late / executed if executed else 0.0,
            'late_in_node_share': late_in_node / executed if executed else 0.0,
            'service_p50_ms': statistics.median(services) if services else None}


def run_once(system: str, cameras: int, fps: float, budget_ms: float, args,
             domain: int) -> dict:
    env = ros_environment(domain)
    names = camera_names(1 if system == 'alone' else cameras)
    with tempfile.TemporaryDirectory(prefix='multicamera_') as folder:
        config = write_config(system, cameras, fps, budget_ms, args.threads, folder)
        node = start_node(config, names, env)
        feeds = [start_camera(camera, fps, env) for camera in names]
        try:
            raw = measure(domain, result_topics(system, names), args, [node] + feeds)
        finally:
            for feed in feeds:
                feed.stop()
            node.stop()
        if raw['window_ns'] is None or not raw['samples']:
            print(node.output()[-3000:], file=sys.stderr)
            raise SystemExit(f'{system}: no results')
        for process in [node] + feeds:
            process.discard_log()
    return analyse(system, names, budget_ms, raw)


def aggregate(runs: list, fps: float) -> dict:
    """Per compared system: medians over rounds of figures against `alone` of the same round."""
    rounds = {}
    for run in runs:
        rounds.setdefault(run['round'], {})[run['system']] = run
    keys = ('jain', 'within_per_s', 'worst_camera_within_per_s', 'worst_x_mean',
            'capacity_per_s', 'within_x_capacity', 'late_share', 'late_in_node_share',
            'service_x_alone', 'camera_rate_min', 'rss_mb', 'rss_x_per_camera')
    table = {}
    for system in COMPARED:
        rows = {key: [] for key in keys}
        for systems in rounds.values():
            mine, alone = systems.get(system), systems.get('alone')
            if mine is None or alone is None or not alone['service_p50_ms']:
                continue
            capacity = 1000.0 / alone['service_p50_ms']
            within = [c['within_budget_per_s'] for c in mine['cameras'].values()]
            rows['jain'].append(mine['jain'])
            rows['within_per_s'].append(mine['within_budget_per_s'])
            rows['worst_camera_within_per_s'].append(mine['worst_camera_within_per_s'])
            mean = sum(within) / len(within)
            rows['worst_x_mean'].append(min(within) / mean if mean else 0.0)
            rows['capacity_per_s'].append(capacity)
            rows['within_x_capacity'].append(mine['within_budget_per_s'] / capacity)
            rows['late_share'].append(mine['late_share'])
            rows['late_in_node_share'].append(mine['late_in_node_share'])
            rows['service_x_alone'].append(mine['service_p50_ms'] / alone['service_p50_ms'])
            rows['camera_rate_min'].append(min(mine['camera_rates'].values(), default=0.0) /
                                           fps)
            if mine['rss_mb']:
                rows['rss_mb'].append(mine['rss_mb'])
            other = systems.get('per_camera')
            if system == 'one_task' and other and other['rss_mb'] and mine['rss_mb']:
                rows['rss_x_per_camera'].append(mine['rss_mb'] / other['rss_mb'])
        table[system] = {key: spread(values) for key, values in rows.items()}
    return table


# (figure, text, bound, sign): met when sign * (median - bound) >= 0.
TARGETS = (('jain', 'Jain >= 0.98', 0.98, 1),
           ('worst_x_mean', 'worst camera >= 90% of mean', 0.9, 1),
           ('within_x_capacity', 'within budget >= 90% of capacity', 0.9, 1),
           ('rss_x_per_camera', 'RSS <= 0.5x one task per camera', 0.5, -1))


def met(table: dict) -> list:
    """Return (target, median, met) of the one_task system."""
    figures = table.get('one_task', {})
    result = []
    for key, text, bound, sign in TARGETS:
        median = (figures.get(key) or {}).get('median')
        result.append((text, key, median is not None and sign * (median - bound) >= 0))
    return result


def report(table: dict, runs: list, meta: dict) -> str:
    def cell(system, key, percent=False, digits=2):
        value = table.get(system, {}).get(key)
        if value is None:
            return '-'
        if percent:
            return f'{value["median"]:.0%} ({value["min"]:.0%}-{value["max"]:.0%})'
        return (f'{value["median"]:.{digits}f} ({value["min"]:.{digits}f}-'
                f'{value["max"]:.{digits}f})')
    rows = (('within budget, all cameras (/s)', 'within_per_s', False, 2),
            ("slot capacity: 1 / the alone detector's median service (/s)", 'capacity_per_s',
             False, 2),
            ('within budget x capacity', 'within_x_capacity', True, 2),
            ('worst camera within budget (/s)', 'worst_camera_within_per_s', False, 2),
            ("worst camera x the cameras' mean", 'worst_x_mean', True, 2),
            ("Jain's index over the cameras", 'jain', False, 3),
            ('executed frames late at receipt', 'late_share', True, 2),
            ('executed frames late in the node (deadline_met false)', 'late_in_node_share',
             True, 2),
            ("detector median service x alone's", 'service_x_alone', False, 2),
            ("slowest camera's received rate x fps", 'camera_rate_min', True, 2),
            ('node RSS (MB)', 'rss_mb', False, 0),
            ("RSS x one task per camera's", 'rss_x_per_camera', False, 2))
    lines = [f'Measured {meta["date"]} on {meta["machine"]}; {meta["cameras"]} cameras x '
             f'{meta["fps"]:g} fps, budget {meta["budget_ms"]:g} ms, {meta["rounds"]} '
             f'round(s) of {meta["window_s"]:g} s windows; load average at the start '
             f'{meta["load_start"]}, at the end {meta["load_end"]}. Medians over rounds '
             '(min-max).', '',
             '| figure | one task over the cameras | one task per camera |',
             '| --- | --- | --- |']
    for text, key, percent, digits in rows:
        lines.append(f'| {text} | {cell("one_task", key, percent, digits)} | '
                     f'{cell("per_camera", key, percent, digits)} |')
    lines += ['', '| round | system | within/s per camera | executed/s per camera | '
              'service p50 ms | RSS MB |', '| --- | --- | --- | --- | --- | --- |']
    for run in runs:
        cameras = run['cameras'].values()
        within = ', '.join(f'{c["within_budget_per_s"]:.1f}' for c in cameras)
        executed = ', '.join(f'{c["executed_per_s"]:.1f}' for c in cameras)
        lines.append(f'| {run["round"] + 1} | {run["system"]} | {within} | {executed} | '
                     f'{run["service_p50_ms"] or 0:.1f} | {run["rss_mb"] or 0:.0f} |')
    lines += ['', '| target (one task over the cameras) | measured | met |',
              '| --- | --- | --- |']
    for text, key, ok in met(table):
        percent = key in ('worst_x_mean', 'within_x_capacity')
        lines.append(f'| {text} | {cell("one_task", key, percent, 3 if key == "jain" else 2)}'
                     f' | {"yes" if ok else "**no**"} |')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cameras', type=int, default=4)
    parser.add_argument('--fps', type=float, default=15.0)
    parser.add_argument('--budget-ms', type=float, default=150.0)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--window-s', type=float, default=40.0)
    parser.add_argument('--warmup-s', type=float, default=5.0,
                        help='from the first result to the window')
    parser.add_argument('--startup-timeout-s', type=float, default=90.0)
    parser.add_argument('--threads', type=int, default=2, help='intra-op threads')
    parser.add_argument('--domain', type=int, default=90,
                        help='the first ROS_DOMAIN_ID; run i uses domain + i %% 10 (90)')
    parser.add_argument('--out', required=True, help='folder of the outputs')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    meta = {'date': datetime.date.today().isoformat(), 'machine': machine(),
            'cameras': args.cameras, 'fps': args.fps, 'budget_ms': args.budget_ms,
            'rounds': args.rounds, 'window_s': args.window_s, 'load_start': load_average(),
            'command': ' '.join(sys.argv)}
    runs = []
    for round_index in range(args.rounds):
        shift = round_index % len(SYSTEMS)
        for system in SYSTEMS[shift:] + SYSTEMS[:shift]:
            run = run_once(system, args.cameras, args.fps, args.budget_ms, args,
                           args.domain + len(runs) % 10)
            run['round'] = round_index
            runs.append(run)
            print(f'round {round_index + 1}/{args.rounds} {system:<10} within/s '
                  f'{run["within_budget_per_s"]:.2f} jain {run["jain"]:.3f} late '
                  f'{run["late_share"]:.1%} service p50 {run["service_p50_ms"] or 0:.1f} ms',
                  flush=True)
    meta['load_end'] = load_average()
    table = aggregate(runs, args.fps)
    text = report(table, runs, meta)
    print(text)
    with open(os.path.join(args.out, 'multicamera.json'), 'w', encoding='utf-8') as stream:
        json.dump({'meta': meta, 'runs': runs, 'table': table}, stream, indent=1)
    with open(os.path.join(args.out, 'multicamera.md'), 'w', encoding='utf-8') as stream:
        stream.write(text)
    return 0 if all(ok for _, _, ok in met(table)) else 1


if __name__ == '__main__':
    sys.exit(main())
