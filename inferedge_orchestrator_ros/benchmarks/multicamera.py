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
Several cameras, one detector: fairness, capacity and memory over real ROS (a script, not a test).

    pip install --no-deps rapidocr-onnxruntime   # the PP-OCR detector and classifier .onnx
    source install/setup.bash
    python3 benchmarks/multicamera.py --out docs/benchmarks/multicamera_points     # ~50 min
    python3 benchmarks/multicamera.py --points 4x15 --systems one_task,per_camera,alone \
        --no-classifier --out /tmp/multicamera        # the first sitting's comparison
    python3 benchmarks/multicamera.py --points 4x15 --systems one_task,batched,alone \
        --no-classifier --out docs/benchmarks/batching_ros   # batches on the CPU detector

Points (--points): cameras x fps, 640x480 rgb8, one synthetic_camera process per camera
(reliable QoS, depth 10, each on its own topic). Systems, started fresh for every run:
- one_task: the orchestrator with one detector task over every camera (inputs: [...]), one
  cpu slot: one model copy, a queue per camera;
- per_camera: the orchestrator with one detector task per camera, all priority 100, the same
  budget, one cpu slot (what a user had to configure for several cameras before);
- inline: one benchmarks/inline_node.py process per camera, the detector in its image
  callback (what yolo_ros users run: a node per camera);
- alone: the detector alone on one camera through the orchestrator (on_deadline run): its
  service time gives the slot's capacity in the same round (1 / its median);
- batched (not by default): one_task with max_batch 4: the scheduler picks the batch size
  from the measured cost per size (on this CPU, size 1 unless a batch pays); its target:
  within budget >= 0.98x one_task's of the same round; its jobs by size in the run table;
- alone_loaded (not by default): alone while every other camera of the point publishes too,
  taken by a bare rclpy subscriber (intake_benchmark.py --bare): the capacity the slot has
  beside the cameras' traffic on the same cores, shown beside the targets' capacity (which
  stays alone's) to tell the machine's share of a gap from the scheduler's.
With the classifier (default), the direction classifier (48x192, priority 50, budget 300 ms,
min_rate_hz 1) also runs on the front camera (cam0) in one_task and per_camera (a task of the
same node) and in the front camera's inline node. Each round runs every system at every point
in a rotating order. A subscriber in this process receives every result (stamp -> receipt);
the node's telemetry gives each camera's received rate; each camera process reports the rate
it kept, and a point where a camera kept less than 95% of its rate is left out of the targets
(said so). RSS and CPU are the system's processes' own (the orchestrator with its children,
or every inline node; psutil, the `ros2 run` wrappers excluded), sampled at the window's ends.
Figures per run: within-budget frames/s per camera and in all, Jain's index over the cameras,
the worst camera, p99 per camera, the classifier's frames/s, the share of executed frames
that ended after their budget, RSS, CPU. Targets (medians over rounds, min-max), for
one_task: within budget >= 90% of the capacity at every overloaded point, Jain >= 0.98 and
the worst camera >= 90% of the mean, the classifier >= its min_rate_hz, RSS at 4 cameras
<= 0.5x per_camera's, and the memory one_task adds per extra camera ((RSS at the most cameras
- at the fewest) / their difference) <= 10% of one detector task's own (per_camera's, the
same way). Writes multicamera.json, multicamera.md and multicamera.png (the plot) to --out.
"""

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import tempfile
import time

from ros_launch import Background, ros_environment, stamp_ns, summary
from ros_matrix import fmt, load_average, machine, model_folder, spread
import yaml

SYSTEMS = ('one_task', 'per_camera', 'inline', 'alone', 'batched', 'alone_loaded')
DEFAULT_SYSTEMS = SYSTEMS[:4]
ALONE = ('alone', 'alone_loaded')  # the detector on cam0 only
COMPARED = ('one_task', 'per_camera', 'inline', 'batched')
MAX_BATCH = 4  # the batched system's
NODE = '/inferedge_orchestrator'
DETECTOR = ('ch_PP-OCRv4_det_infer.onnx', [480, 640])
CLASSIFIER = ('ch_ppocr_mobile_v2.0_cls_infer.onnx', [48, 192])
CLASSIFIER_MIN_RATE_HZ = 1.0
HERE = os.path.dirname(os.path.abspath(__file__))


def camera_names(count: int) -> list:
    return [f'cam{index}' for index in range(count)]


def detector_block(name: str, cameras: list, budget_ms: float, on_deadline: str,
                   threads: int, model=DETECTOR, priority: int = 100) -> dict:
    """Return one detector (or classifier: model) task in the core config format."""
    filename, size = model
    return {'name': name, 'inputs': cameras, 'priority': priority,
            'latency_budget_ms': budget_ms, 'queue_size': 1 if model is DETECTOR else 2,
            'on_deadline': on_deadline, 'worker': 'onnxruntime',
            'worker_options': {'model_path': os.path.join(model_folder(), filename),
                               'input_size': size, 'intra_op_threads': threads,
                               'inter_op_threads': 1, 'warmup': 3, 'channel_order': 'bgr',
                               'scale': 1 / 255.0, 'mean': [0.5, 0.5, 0.5],
                               'std': [0.5, 0.5, 0.5]}}


def classifier_block(threads: int) -> dict:
    """Return the classifier on the front camera (cam0), with its rate floor."""
    block = detector_block('classifier', ['cam0'], 300.0, 'drop', threads, CLASSIFIER, 50)
    block['min_rate_hz'] = CLASSIFIER_MIN_RATE_HZ
    return block


def write_configs(system: str, cameras: int, fps: float, budget_ms: float, threads: int,
                  classifier: bool, folder: str) -> list:
    """Write the core configs of a run (one per inline node, else one); return the paths."""
    names = camera_names(1 if system in ALONE else cameras)
    if system in ('one_task', 'batched'):
        configs = [[detector_block('detector', names, budget_ms, 'drop', threads)]]
        if system == 'batched':
            configs[0][0]['max_batch'] = MAX_BATCH
    elif system == 'inline':
        configs = [[detector_block('detector', [camera], budget_ms, 'drop', threads)]
                   for camera in names]
    else:
        configs = [[detector_block(f'detector_{camera}', [camera], budget_ms,
                                   'run' if system in ALONE else 'drop', threads)
                    for camera in names]]
    if classifier and system not in ALONE:
        configs[0].append(classifier_block(threads))
    paths = []
    for index, tasks in enumerate(configs):
        inputs = sorted({camera for task in tasks for camera in task['inputs']})
        config = {'orchestrator': {'pools': {'cpu': {'slots': 1}},
                                   'telemetry': {'period_s': 1.0}},
                  'inputs': {camera: {'rate_hz': fps} for camera in inputs}, 'tasks': tasks}
        paths.append(os.path.join(folder, f'{system}_{index}.yaml'))
        with open(paths[-1], 'w', encoding='utf-8') as stream:
            yaml.safe_dump(config, stream)
    return paths


def topic(camera: str) -> str:
    return f'/multicamera/{camera}/image'


def start_node(config: str, cameras: list, env: dict) -> Background:
    arguments = ['-p', f'config_file:={config}']
    for camera in cameras:
        arguments += ['-p', f'{camera}.topic:={topic(camera)}',
                      '-p', f'{camera}.reliability:=reliable', '-p', f'{camera}.depth:=1']
    return Background(['ros2', 'run', 'inferedge_orchestrator_ros', 'orchestrator',
                       '--ros-args'] + arguments, env)


def start_inline(config: str, camera: str, env: dict) -> Background:
    return Background([sys.executable, os.path.join(HERE, 'inline_node.py'), '--ros-args',
                       '-r', f'__node:=inline_{camera}', '-p', f'config_file:={config}',
                       '-p', f'topic:={topic(camera)}', '-p', f'input:={camera}'], env)


def start_camera(camera: str, fps: float, env: dict) -> Background:
    return Background(['ros2', 'run', 'inferedge_orchestrator_ros', 'synthetic_camera',
                       '--ros-args', '-r', f'__node:={camera}', '-p', f'topic:={topic(camera)}',
                       '-p', f'fps:={fps}', '-p', 'width:=640', '-p', 'height:=480',
                       '-p', 'encoding:=rgb8', '-p', 'reliability:=reliable',
                       '-p', 'depth:=10'], env)


def result_topics(system: str, cameras: list, classifier: bool) -> list:
    """Return the result topics of a system: per camera, one task's or its own task's."""
    if system in ('one_task', 'batched'):
        topics = [f'{NODE}/detector/{camera}/result' for camera in cameras]
    elif system == 'inline':
        topics = [f'/inline_{camera}/detector/result' for camera in cameras]
    else:
        topics = [f'{NODE}/detector_{camera}/result' for camera in cameras]
    if classifier and system not in ALONE:
        topics.append('/inline_cam0/classifier/result' if system == 'inline' else
                      f'{NODE}/classifier/result')
    return topics


def process_tree(processes: list) -> list:
    """Return the psutil processes of the systems' nodes, their children, not ros2 run's."""
    import psutil
    found = []
    for process in processes:
        try:
            root = psutil.Process(process.process.pid)
            tree = [root] + root.children(recursive=True)
        except psutil.Error:
            continue
        for item in tree:
            try:
                command = ' '.join(item.cmdline())
            except psutil.Error:
                continue
            if 'ros2 run' not in command and '/ros2 ' not in command:
                found.append(item)
    return found


def usage(processes: list) -> tuple:
    """Return (RSS MB, CPU seconds) summed over the systems' processes now."""
    import psutil
    rss, cpu = 0.0, 0.0
    for item in process_tree(processes):
        try:
            rss += item.memory_info().rss / 2 ** 20
            times = item.cpu_times()
            cpu += times.user + times.system
        except psutil.Error:
            continue
    return rss, cpu


def start_sink(cameras: list, env: dict) -> Background:
    """Start a bare rclpy subscriber taking every frame of cameras (alone_loaded's traffic)."""
    return Background([sys.executable, os.path.join(HERE, 'intake_benchmark.py'), '--bare'] +
                      [topic(camera) for camera in cameras], env)


def kept_rate(camera: Background) -> float:
    """Return the rate the camera process says it kept (0 when it said nothing)."""
    match = re.findall(r'sent \d+ frames in [\d.]+ s: ([\d.]+) fps', camera.output())
    return float(match[-1]) if match else 0.0


def measure(domain: int, topics: list, args, processes, system_processes) -> dict:
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
    # samples: (task, camera, stamp_ns, receipt_ns, status, service_ms, deadline_met)
    samples, telemetry, usages = [], [], []

    def on_result(msg):
        samples.append((msg.task, msg.input, stamp_ns(msg.header), clock.now().nanoseconds,
                        msg.status, msg.preprocess_ms + msg.inference_ms, msg.deadline_met))
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
            now = clock.now().nanoseconds
            if window is not None and len(usages) < 2 and now >= window[len(usages)]:
                usages.append((now, *usage(system_processes)))
            if window is not None and now > window[1] + 1e9:
                break  # a second after the window, for the results of its last frames
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return {'window_ns': window, 'samples': samples, 'telemetry': telemetry, 'usages': usages}


def received_rates(telemetry: list, window_ns) -> dict:
    """Return each input's received frames/s between the first and last telemetry inside."""
    inside = [m for m in telemetry if window_ns[0] <= stamp_ns(m.header) <= window_ns[1]]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    seconds = (stamp_ns(last.header) - stamp_ns(first.header)) / 1e9
    before = {i.name: i.received for i in first.inputs}
    return {i.name: (i.received - before.get(i.name, 0)) / seconds for i in last.inputs}


def batch_jobs(telemetry: list) -> list:
    """Return the detector's jobs by batch size in the last telemetry (empty: no batches)."""
    tasks = {task.name: task for task in telemetry[-1].tasks} if telemetry else {}
    return list(tasks['detector'].batch_jobs) if 'detector' in tasks else []


def jain(values: list) -> float:
    """Return Jain's fairness index (1: all equal; 1/n: one gets everything)."""
    squares = sum(v * v for v in values)
    return sum(values) ** 2 / (len(values) * squares) if squares else 1.0


def analyse(system: str, cameras: list, budget_ms: float, raw: dict) -> dict:
    """Return the figures of one run over the frames stamped inside the window."""
    begin, end = raw['window_ns']
    seconds = (end - begin) / 1e9
    inside = [s for s in raw['samples'] if begin <= s[2] < end and s[4] == 0]
    per_camera = {}
    services = []
    for camera in cameras:
        ok = [((receipt - stamp) / 1e6, service, met) for task, name, stamp, receipt, _,
              service, met in inside if name == camera and task != 'classifier']
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
    usages = raw['usages']
    rss = cpu = None
    if len(usages) == 2:
        (t0, _, cpu0), (t1, rss, cpu1) = usages
        cpu = (cpu1 - cpu0) / ((t1 - t0) / 1e9)
    return {'system': system, 'seconds': seconds, 'cameras': per_camera,
            'rss_mb': rss, 'cpu_cores': cpu,
            'classifier_per_s': sum(1 for s in inside if s[0] == 'classifier') / seconds,
            'camera_rates': received_rates(raw['telemetry'], raw['window_ns']),
            'within_budget_per_s': sum(within), 'worst_camera_within_per_s': min(within),
            'jain': jain(within), 'late_share': late / executed if executed else 0.0,
            'late_in_node_share': late_in_node / executed if executed else 0.0,
            'p99_worst_ms': max((c['end_to_end']['p99_ms'] or 0.0)
                                for c in per_camera.values()),
            'batch_jobs': batch_jobs(raw['telemetry']),
            'service_p50_ms': statistics.median(services) if services else None}


def run_once(system: str, cameras: int, fps: float, budget_ms: float, args,
             domain: int) -> dict:
    env = ros_environment(domain)
    names = camera_names(1 if system in ALONE else cameras)
    others = camera_names(cameras)[1:] if system == 'alone_loaded' else []
    with tempfile.TemporaryDirectory(prefix='multicamera_') as folder:
        configs = write_configs(system, cameras, fps, budget_ms, args.threads, args.classifier,
                                folder)
        if system == 'inline':
            nodes = [start_inline(config, camera, env) for config, camera in
                     zip(configs, names)]
        else:
            nodes = [start_node(configs[0], names, env)]
        sinks = [start_sink(others, env)] if others else []
        feeds = [start_camera(camera, fps, env) for camera in names + others]
        try:
            raw = measure(domain, result_topics(system, names, args.classifier), args,
                          nodes + sinks + feeds, nodes)
        finally:
            for process in feeds + sinks + nodes:
                process.stop()
        if raw['window_ns'] is None or not raw['samples']:
            print(nodes[0].output()[-3000:], file=sys.stderr)
            raise SystemExit(f'{system}: no results')
        kept = {camera: kept_rate(feed) for camera, feed in zip(names + others, feeds)}
        for process in nodes + sinks + feeds:
            process.discard_log()
    result = analyse(system, names, budget_ms, raw)
    result.update(cameras_count=cameras, fps=fps, kept_rates=kept,
                  kept_min=min(kept.values()) / fps)
    return result


def aggregate(runs: list) -> dict:
    """Per point and compared system: medians over rounds, against `alone` of the same round."""
    rounds = {}
    for run in runs:
        point = (run['cameras_count'], run['fps'])
        rounds.setdefault(point, {}).setdefault(run['round'], {})[run['system']] = run
    keys = ('jain', 'within_per_s', 'within_x_one_task', 'worst_camera_within_per_s',
            'worst_x_mean', 'capacity_per_s', 'within_x_capacity', 'loaded_capacity_per_s',
            'within_x_loaded_capacity', 'service_x_alone_loaded', 'late_share',
            'late_in_node_share', 'service_x_alone', 'camera_rate_min', 'kept_min', 'p99_worst_ms',
            'classifier_per_s', 'rss_mb', 'rss_x_per_camera', 'cpu_cores')
    table = {}
    for point, by_round in rounds.items():
        fps = point[1]
        for system in COMPARED:
            rows = {key: [] for key in keys}
            for systems in by_round.values():
                mine, alone = systems.get(system), systems.get('alone')
                if mine is None or alone is None or not alone['service_p50_ms']:
                    continue
                capacity = 1000.0 / alone['service_p50_ms']
                within = [c['within_budget_per_s'] for c in mine['cameras'].values()]
                mean = sum(within) / len(within)
                rows['jain'].append(mine['jain'])
                rows['within_per_s'].append(mine['within_budget_per_s'])
                rows['worst_camera_within_per_s'].append(mine['worst_camera_within_per_s'])
                rows['worst_x_mean'].append(min(within) / mean if mean else 0.0)
                rows['capacity_per_s'].append(capacity)
                rows['within_x_capacity'].append(mine['within_budget_per_s'] / capacity)
                loaded = systems.get('alone_loaded')
                if loaded and loaded['service_p50_ms']:
                    loaded_capacity = 1000.0 / loaded['service_p50_ms']
                    rows['loaded_capacity_per_s'].append(loaded_capacity)
                    rows['within_x_loaded_capacity'].append(
                        mine['within_budget_per_s'] / loaded_capacity)
                    if mine['service_p50_ms']:
                        rows['service_x_alone_loaded'].append(mine['service_p50_ms'] /
                                                              loaded['service_p50_ms'])
                rows['late_share'].append(mine['late_share'])
                rows['late_in_node_share'].append(mine['late_in_node_share'])
                if mine['service_p50_ms']:
                    rows['service_x_alone'].append(mine['service_p50_ms'] /
                                                   alone['service_p50_ms'])
                rows['camera_rate_min'].append(
                    min(mine['camera_rates'].values(), default=0.0) / fps)
                rows['kept_min'].append(mine['kept_min'])
                rows['p99_worst_ms'].append(mine['p99_worst_ms'])
                rows['classifier_per_s'].append(mine['classifier_per_s'])
                rows['cpu_cores'].append(mine['cpu_cores'])
                rows['rss_mb'].append(mine['rss_mb'])
                single = systems.get('one_task')
                if system == 'batched' and single and single['within_budget_per_s']:
                    rows['within_x_one_task'].append(mine['within_budget_per_s'] /
                                                     single['within_budget_per_s'])
                other = systems.get('per_camera')
                if system == 'one_task' and other and other['rss_mb'] and mine['rss_mb']:
                    rows['rss_x_per_camera'].append(mine['rss_mb'] / other['rss_mb'])
            table[(point, system)] = {key: spread(values) for key, values in rows.items()}
    return table


def memory_per_camera(runs: list) -> dict:
    """
    Return, per system, the RSS it adds per extra camera, at the fps with the most points.

    (RSS at the most cameras - at the fewest) / their difference, per round; one_task's against
    per_camera's of the same round (one detector task's own footprint, measured alike).
    """
    by_fps = {}
    for run in runs:
        by_fps.setdefault(run['fps'], set()).add(run['cameras_count'])
    if not by_fps:
        return {}
    fps = max(by_fps, key=lambda f: (len(by_fps[f]), -f))
    fewest, most = min(by_fps[fps]), max(by_fps[fps])
    if fewest == most:
        return {}
    rss = {}
    for run in runs:
        if run['fps'] == fps and run['cameras_count'] in (fewest, most) and run['rss_mb']:
            rss[(run['system'], run['round'], run['cameras_count'])] = run['rss_mb']
    added = {}
    for (system, round_index, count), value in rss.items():
        other = rss.get((system, round_index, fewest))
        if count == most and other is not None:
            added.setdefault(system, {})[round_index] = (value - other) / (most - fewest)
    ratios = [added['one_task'][r] / added['per_camera'][r]
              for r in added.get('one_task', {}) if added.get('per_camera', {}).get(r)]
    return {'fps': fps, 'fewest': fewest, 'most': most,
            'per_camera_mb': {system: spread(list(values.values()))
                              for system, values in added.items()},
            'one_task_x_task': spread(ratios)}


def targets(table: dict, memory: dict, classifier: bool) -> list:
    """Return (target, point or '', measured, met: True, False or None for n/a)."""
    def median(point, key, system='one_task'):
        value = table.get((point, system), {}).get(key)
        return None if value is None else value['median']
    out = []
    for point in sorted({point for point, _ in table}):
        cameras, fps = point
        label = f'{cameras} x {fps:g} fps'
        kept = median(point, 'kept_min')
        if kept is not None and kept < 0.95:
            out.append(('the cameras keep their rate', label,
                        f'a camera kept {kept:.0%} of {fps:g} fps: point left out', None))
            continue
        capacity = median(point, 'capacity_per_s')
        within = median(point, 'within_x_capacity')
        if capacity is not None and within is not None and cameras * fps > capacity:
            out.append(('within budget >= 90% of the capacity (overloaded)', label,
                        f'{within:.0%}', within >= 0.9))
        jain_index, worst = median(point, 'jain'), median(point, 'worst_x_mean')
        if jain_index is not None:
            out.append(('Jain >= 0.98', label, f'{jain_index:.3f}', jain_index >= 0.98))
            out.append(('worst camera >= 90% of the mean', label, f'{worst:.0%}',
                        worst >= 0.9))
        rate = median(point, 'classifier_per_s')
        if classifier and rate is not None:
            out.append((f'classifier >= its min_rate_hz {CLASSIFIER_MIN_RATE_HZ:g}', label,
                        f'{rate:.2f}/s', rate >= CLASSIFIER_MIN_RATE_HZ))
        batched = median(point, 'within_x_one_task', 'batched')
        if batched is not None:
            out.append((f'max_batch {MAX_BATCH}: within budget >= 0.98x one frame a job', label,
                        f'{batched:.2f}x', batched >= 0.98))
        ratio = median(point, 'rss_x_per_camera')
        if cameras == 4 and ratio is not None:
            out.append(("RSS <= 0.5x one task per camera's", label, f'{ratio:.2f}x',
                        ratio <= 0.5))
    ratio = (memory.get('one_task_x_task') or {}).get('median')
    if ratio is not None:
        out.append(("memory per extra camera <= 10% of one detector task's", f'{memory["fewest"]}'
                    f' -> {memory["most"]} cameras x {memory["fps"]:g} fps', f'{ratio:.1%}',
                    ratio <= 0.10))
    return out


def report(table: dict, memory: dict, checks: list, runs: list, meta: dict) -> str:
    def cell(point, system, key, percent=False, digits=2):
        return fmt(table.get((point, system), {}).get(key), digits, percent)
    rows = (('detector within budget, all cameras (/s)', 'within_per_s', False, 2),
            ("slot capacity: 1 / the alone detector's median service (/s)", 'capacity_per_s',
             False, 2),
            ('within budget x capacity', 'within_x_capacity', True, 2),
            ("capacity beside the other cameras' traffic: 1 / alone_loaded's median service "
             '(/s)', 'loaded_capacity_per_s', False, 2),
            ('within budget x that capacity', 'within_x_loaded_capacity', True, 2),
            ("within budget x one_task's (batched)", 'within_x_one_task', False, 2),
            ('worst camera within budget (/s)', 'worst_camera_within_per_s', False, 2),
            ("worst camera x the cameras' mean", 'worst_x_mean', True, 2),
            ("Jain's index over the cameras", 'jain', False, 3),
            ('worst camera p99 (ms, executed frames)', 'p99_worst_ms', False, 0),
            ('classifier frames/s (front camera)', 'classifier_per_s', False, 2),
            ('executed frames late at receipt', 'late_share', True, 2),
            ("detector median service x alone's", 'service_x_alone', False, 2),
            ("detector median service x alone_loaded's", 'service_x_alone_loaded', False, 2),
            ("slowest camera's received rate x fps", 'camera_rate_min', True, 2),
            ("slowest camera process's own rate x fps", 'kept_min', True, 2),
            ('RSS of the system (MB)', 'rss_mb', False, 0),
            ("RSS x one task per camera's", 'rss_x_per_camera', False, 2),
            ('CPU (cores)', 'cpu_cores', False, 2))
    lines = [f'Measured {meta["date"]} on {meta["machine"]}; budget {meta["budget_ms"]:g} ms, '
             f'classifier {"on the front camera" if meta["classifier"] else "off"}, '
             f'{meta["rounds"]} round(s) of {meta["window_s"]:g} s windows; load average at '
             f'the start {meta["load_start"]}, at the end {meta["load_end"]}. Medians over '
             'rounds (min-max).']
    compared = [system for system in COMPARED if any(r['system'] == system for r in runs)]
    for point in sorted({point for point, _ in table}):
        lines += ['', f'{point[0]} cameras x {point[1]:g} fps', '',
                  '| figure | ' + ' | '.join(compared) + ' |',
                  '| --- |' + ' --- |' * len(compared)]
        for text, key, percent, digits in rows:
            if all(table.get((point, system), {}).get(key) is None for system in compared):
                continue  # a figure of a system not run (alone_loaded's)
            lines.append(f'| {text} | ' + ' | '.join(
                cell(point, system, key, percent, digits) for system in compared) + ' |')
    if memory:
        lines += ['', f'Memory per extra camera ({memory["fewest"]} -> {memory["most"]} cameras'
                  f' x {memory["fps"]:g} fps): ' + ', '.join(
                      f'{system} {value["median"]:.1f} MB ({value["min"]:.1f}-'
                      f'{value["max"]:.1f})' for system, value in
                      memory['per_camera_mb'].items() if value)]
    lines += ['', '| round | point | system | within/s per camera | executed/s per camera | '
              'service p50 ms | RSS MB | CPU | jobs by batch size |', '|' + ' --- |' * 9]
    for run in runs:
        cameras = run['cameras'].values()
        within = ', '.join(f'{c["within_budget_per_s"]:.1f}' for c in cameras)
        executed = ', '.join(f'{c["executed_per_s"]:.1f}' for c in cameras)
        lines.append(f'| {run["round"] + 1} | {run["cameras_count"]} x {run["fps"]:g} | '
                     f'{run["system"]} | {within} | {executed} | '
                     f'{run["service_p50_ms"] or 0:.1f} | {run["rss_mb"] or 0:.0f} | '
                     f'{run["cpu_cores"] or 0:.2f} | {run.get("batch_jobs") or ""} |')
    lines += ['', '| target (one task over the cameras) | point | measured | met |',
              '| --- | --- | --- | --- |']
    for text, label, measured, ok in checks:
        verdict = 'n/a' if ok is None else ('yes' if ok else '**no**')
        lines.append(f'| {text} | {label} | {measured} | {verdict} |')
    return '\n'.join(lines) + '\n'


def plot(data: dict, path: str) -> None:
    """Plot per point: within budget x capacity, Jain's index, worst-camera p99 and RSS."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = data['table']
    points = sorted({(row['cameras'], row['fps']) for row in rows})
    systems = [s for s in COMPARED if any(row['system'] == s for row in rows)]
    panels = (('within_x_capacity', 'within budget x capacity', 0.9),
              ('jain', "Jain's index over the cameras", 0.98),
              ('p99_worst_ms', 'worst camera p99 (ms)', data['meta']['budget_ms']),
              ('rss_mb', 'RSS (MB)', None))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    width = 0.8 / len(systems)
    for axis, (key, title, line) in zip(axes, panels):
        for index, system in enumerate(systems):
            values = {(row['cameras'], row['fps']): row['figures'][key] for row in rows
                      if row['system'] == system}
            xs, medians, low, high = [], [], [], []
            for position, point in enumerate(points):
                value = values.get(point)
                if value:
                    xs.append(position + (index - (len(systems) - 1) / 2) * width)
                    medians.append(value['median'])
                    low.append(value['median'] - value['min'])
                    high.append(value['max'] - value['median'])
            axis.bar(xs, medians, width, yerr=[low, high], capsize=2, label=system)
        if line is not None:
            axis.axhline(line, color='black', linestyle='--', linewidth=0.8)
        axis.set_xticks(range(len(points)))
        axis.set_xticklabels([f'{c} x {f:g}' for c, f in points])
        axis.set_title(title, fontsize=10)
        if key == 'p99_worst_ms':
            axis.set_yscale('log')
    axes[0].legend(fontsize=8)
    figure.suptitle(f'cameras x fps, medians over {data["meta"]["rounds"]} rounds (min-max); '
                    f'dashed: the target or the budget', fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--points', default='2x15,4x15,8x15,4x30',
                        help='cameras x fps, comma-separated (2x15,4x15,8x15,4x30)')
    parser.add_argument('--systems', default=','.join(DEFAULT_SYSTEMS),
                        help=f'a subset of {",".join(SYSTEMS)} (alone is needed)')
    parser.add_argument('--no-classifier', dest='classifier', action='store_false',
                        help='no classifier on the front camera')
    parser.add_argument('--budget-ms', type=float, default=150.0)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--window-s', type=float, default=30.0)
    parser.add_argument('--warmup-s', type=float, default=5.0,
                        help='from the first result to the window')
    parser.add_argument('--startup-timeout-s', type=float, default=90.0)
    parser.add_argument('--threads', type=int, default=2, help='intra-op threads')
    parser.add_argument('--domain', type=int, default=90,
                        help='the first ROS_DOMAIN_ID; run i uses domain + i %% 10 (90)')
    parser.add_argument('--out', required=True, help='folder of the outputs')
    parser.add_argument('--plot-only', action='store_true',
                        help="only plot --out's multicamera.json again (multicamera.png)")
    args = parser.parse_args(argv)
    if args.plot_only:
        with open(os.path.join(args.out, 'multicamera.json'), encoding='utf-8') as stream:
            plot(json.load(stream), os.path.join(args.out, 'multicamera.png'))
        return 0
    points = [tuple(int(v) if i == 0 else float(v) for i, v in enumerate(p.split('x')))
              for p in args.points.split(',')]
    systems = tuple(s for s in SYSTEMS if s in args.systems.split(','))
    os.makedirs(args.out, exist_ok=True)
    meta = {'date': datetime.date.today().isoformat(), 'machine': machine(),
            'points': args.points, 'systems': list(systems), 'classifier': args.classifier,
            'budget_ms': args.budget_ms, 'rounds': args.rounds, 'window_s': args.window_s,
            'load_start': load_average(), 'command': ' '.join(sys.argv)}
    runs = []
    for round_index in range(args.rounds):
        for point_index, (cameras, fps) in enumerate(points):
            shift = (round_index + point_index) % len(systems)
            for system in systems[shift:] + systems[:shift]:
                run = run_once(system, cameras, fps, args.budget_ms, args,
                               args.domain + len(runs) % 10)
                run['round'] = round_index
                runs.append(run)
                print(f'round {round_index + 1}/{args.rounds} {cameras} x {fps:g} fps '
                      f'{system:<10} within/s {run["within_budget_per_s"]:.2f} jain '
                      f'{run["jain"]:.3f} classifier {run["classifier_per_s"]:.2f}/s kept '
                      f'{run["kept_min"]:.0%} RSS {run["rss_mb"] or 0:.0f} MB', flush=True)
    meta['load_end'] = load_average()
    table = aggregate(runs)
    memory = memory_per_camera(runs)
    checks = targets(table, memory, args.classifier)
    text = report(table, memory, checks, runs, meta)
    print(text)
    with open(os.path.join(args.out, 'multicamera.json'), 'w', encoding='utf-8') as stream:
        json.dump({'meta': meta, 'runs': runs, 'memory': memory,
                   'table': [{'cameras': point[0], 'fps': point[1], 'system': system,
                              'figures': figures}
                             for (point, system), figures in table.items()],
                   'targets': [{'target': t, 'point': p, 'measured': m, 'met': ok}
                               for t, p, m, ok in checks]}, stream, indent=1)
    with open(os.path.join(args.out, 'multicamera.md'), 'w', encoding='utf-8') as stream:
        stream.write(text)
    with open(os.path.join(args.out, 'multicamera.json'), encoding='utf-8') as stream:
        plot(json.load(stream), os.path.join(args.out, 'multicamera.png'))
    return 0 if all(ok is not False for *_, ok in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
