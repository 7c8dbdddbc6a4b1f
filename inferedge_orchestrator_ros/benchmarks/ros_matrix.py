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
The real-ROS benchmark matrix (a script, not a test): four systems in interleaved rounds.

    pip install --no-deps rapidocr-onnxruntime   # its three PP-OCR .onnx models
    source install/setup.bash
    python3 benchmarks/ros_matrix.py --out docs/benchmarks            # ~45 min
    python3 benchmarks/ros_matrix.py --short --out /tmp/matrix        # one point, one round
    python3 benchmarks/ros_matrix.py --short --threads-study --out /tmp/threads
    python3 benchmarks/ros_matrix.py --pools --out docs/benchmarks/pools      # ~95 min

Systems, each started fresh for every run with its own parameters and fed by a fresh camera
process (synthetic_camera, 640x480 rgb8, reliable QoS, depth 10):
- priority: the orchestrator, priority mode (the detector 480x640 priority 100, the classifier
  48x192 priority 50 with a 300 ms budget, the recognizer 48x320 priority 10 with 500 ms; one
  cpu slot; onnxruntime with the threads of config/onnx_demo.yaml);
- fifo: the same in FIFO mode;
- inline: benchmarks/inline_node.py, the three models in the image callback;
- alone: the detector alone through the orchestrator, on_deadline run, the same detector
  block: the machine's floor at that moment.
--pools: the background tasks on a pool of their own, at a lower OS priority (issue 26).
First a study at 15 fps / 150 ms (--study-point, --study-rounds, --study-window-s) of the
two-pool systems of POOL_SYSTEMS (or --study-systems, which may add `priority`) beside
`alone`; the one that best keeps the detector as alone while the others run
(pick_pool_system) then runs beside `priority` (one slot) and `alone` at the points of
--pool-points, --rounds (5) rounds of --window-s (60 s) windows.
One subscriber in this process measures every result from header.stamp to its receipt. Points:
fps x detector budget (10, 15, 30 x 80, 150 ms by default); each round runs every system at
every point, in a rotating order; figures are medians over rounds of same-round ratios to
`alone`. Writes matrix.json, matrix_cdf.png, matrix_within.png and matrix.md to --out and
prints the targets as met or not.
"""

import argparse
import collections
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time

from ros_launch import Background, ros_environment, stamp_ns, summary
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ('priority', 'fifo', 'inline', 'alone')
TASKS = ('detector', 'classifier', 'recognizer')
BUDGETS_MS = {'classifier': 300.0, 'recognizer': 500.0}  # the detector's is the point's
PRIORITIES = {'detector': 100, 'classifier': 50, 'recognizer': 10}
MODELS = {'detector': ('ch_PP-OCRv4_det_infer.onnx', [480, 640]),
          'classifier': ('ch_ppocr_mobile_v2.0_cls_infer.onnx', [48, 192]),
          'recognizer': ('ch_PP-OCRv4_rec_infer.onnx', [48, 320])}
QUEUES = {'detector': 1, 'classifier': 2, 'recognizer': 2}
# A two-pool system: the detector's pool, the background pool (classifier, recognizer), the
# intra-op threads of the background models (the detector keeps --threads) and the detector's
# own worker options. /spin: the detector's idle intra-op threads spin (allow_spinning): a thread
# that blocks between operators gives its core to the background, and waits to get it back.
PoolSystem = collections.namedtuple(
    'PoolSystem', 'detector_pool background_pool background_threads detector_options')
NICE19 = {'isolation': 'process', 'os_nice': 19}
IDLE = {'isolation': 'process', 'os_policy': 'idle'}
THREAD = {'isolation': 'thread'}
SPIN = {'allow_spinning': True}
POOL_SYSTEMS = {
    'nice19/t1': PoolSystem(THREAD, NICE19, 1, {}),
    'nice19/t2': PoolSystem(THREAD, NICE19, 2, {}),
    'idle/t1': PoolSystem(THREAD, IDLE, 1, {}),
    'idle/t2': PoolSystem(THREAD, IDLE, 2, {}),
    'nice19/t1/spin': PoolSystem(THREAD, NICE19, 1, SPIN),
    'idle/t1/spin': PoolSystem(THREAD, IDLE, 1, SPIN),
    # One core each, both at normal priority: the alternative the OS priorities replace.
    'pinned': PoolSystem({'isolation': 'process', 'cpus': '0'},
                         {'isolation': 'process', 'cpus': '1'}, 1, {}),
}
POOL_POINTS = '10/150,15/80,15/150,30/150'
TOPIC = '/matrix/image'
RESULT_TOPICS = {'inline': '/inline_inference'}
ORCHESTRATOR = '/inferedge_orchestrator'


def model_folder() -> str:
    spec = importlib.util.find_spec('rapidocr_onnxruntime')
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit('the models come from rapidocr-onnxruntime: '
                         'pip install --no-deps rapidocr-onnxruntime')
    return os.path.join(list(spec.submodule_search_locations)[0], 'models')


def task_blocks(system: str, budget_ms: float, threads: int) -> list:
    """Return the tasks of a system in the core config format (the inline node reads it too)."""
    tasks = []
    pools = POOL_SYSTEMS.get(system)
    for name in (('detector',) if system == 'alone' else TASKS):
        filename, size = MODELS[name]
        if pools:
            task_threads = threads if name == 'detector' else pools.background_threads
            if 'cpus' in pools.detector_pool:
                task_threads = 1  # one core each
        else:
            task_threads = threads
        tasks.append({
            'name': name, 'priority': PRIORITIES[name],
            'latency_budget_ms': budget_ms if name == 'detector' else BUDGETS_MS[name],
            'queue_size': QUEUES[name], 'on_deadline': 'run' if system == 'alone' else 'drop',
            'worker': 'onnxruntime',
            'worker_options': {'model_path': os.path.join(model_folder(), filename),
                               'input_size': size, 'intra_op_threads': task_threads,
                               'inter_op_threads': 1, 'warmup': 3, 'channel_order': 'bgr',
                               'scale': 1 / 255.0, 'mean': [0.5, 0.5, 0.5],
                               'std': [0.5, 0.5, 0.5]}})
        if pools:
            tasks[-1]['pool'] = 'detector' if name == 'detector' else 'background'
            if name == 'detector':
                tasks[-1]['worker_options'].update(pools.detector_options)
    return tasks


def write_config(system: str, budget_ms: float, threads: int, slots: int, folder: str) -> str:
    """Write the core config of a run; the orchestrator reads it as its config_file."""
    pools = {'cpu': {'slots': slots}}
    if system in POOL_SYSTEMS:
        chosen = POOL_SYSTEMS[system]
        pools = {'detector': dict(chosen.detector_pool, slots=1),
                 'background': dict(chosen.background_pool, slots=1)}
    config = {'orchestrator': {'mode': 'fifo' if system == 'fifo' else 'priority',
                               'pools': pools,
                               'telemetry': {'period_s': 1.0}},
              'inputs': {'camera': {'rate_hz': 30.0}},
              'tasks': task_blocks(system, budget_ms, threads)}
    path = os.path.join(folder, f'{system.replace("/", "_")}.yaml')
    with open(path, 'w', encoding='utf-8') as stream:
        yaml.safe_dump(config, stream)
    return path


def start_system(system: str, config: str, env: dict) -> Background:
    if system == 'inline':
        return Background([sys.executable, os.path.join(HERE, 'inline_node.py'), '--ros-args',
                           '-p', f'config_file:={config}', '-p', f'topic:={TOPIC}'], env)
    return Background(['ros2', 'run', 'inferedge_orchestrator_ros', 'orchestrator',
                       '--ros-args', '-p', f'config_file:={config}',
                       '-p', f'camera.topic:={TOPIC}', '-p', 'camera.reliability:=reliable',
                       '-p', 'camera.depth:=1'], env)


def start_camera(fps: float, env: dict) -> Background:
    return Background(['ros2', 'run', 'inferedge_orchestrator_ros', 'synthetic_camera',
                       '--ros-args', '-p', f'topic:={TOPIC}', '-p', f'fps:={fps}',
                       '-p', 'width:=640', '-p', 'height:=480', '-p', 'encoding:=rgb8',
                       '-p', 'reliability:=reliable', '-p', 'depth:=10'], env)


class Measurer:
    """The separate subscriber: every result's latency, the telemetry and the decisions."""

    def __init__(self, domain: int):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node('matrix_measurer', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)

    def measure(self, system: str, args, processes) -> dict:
        """Spin until the window is over; return the raw samples of the run."""
        from inferedge_orchestrator_msgs.msg import (InferenceResult, OrchestratorTelemetry,
                                                     SchedulerDecision)
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        clock = self.node.get_clock()
        samples = []  # (task, stamp_ns, receipt_ns, status, service_ms)
        telemetry, decisions = [], []
        prefix = RESULT_TOPICS.get(system, ORCHESTRATOR)
        subscriptions = []
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)

        def on_result(msg):
            samples.append((msg.task, stamp_ns(msg.header), clock.now().nanoseconds,
                            msg.status, msg.preprocess_ms + msg.inference_ms))
        for task in (('detector',) if system == 'alone' else TASKS):
            subscriptions.append(self.node.create_subscription(
                InferenceResult, f'{prefix}/{task}/result', on_result, reliable))
        if system != 'inline':
            subscriptions.append(self.node.create_subscription(
                OrchestratorTelemetry, f'{ORCHESTRATOR}/telemetry', telemetry.append,
                QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)))
            subscriptions.append(self.node.create_subscription(
                SchedulerDecision, f'{ORCHESTRATOR}/decisions',
                lambda msg: decisions.append((clock.now().nanoseconds, msg.event, msg.task,
                                              msg.reason)), reliable))
        window = None
        started = time.monotonic()
        first_result_s = None
        deadline = started + args.startup_timeout_s
        try:
            while time.monotonic() < deadline:
                self.executor.spin_once(timeout_sec=0.05)
                if not all(p.running() for p in processes):
                    break
                if window is None and any(s[0] == 'detector' for s in samples):
                    first_result_s = time.monotonic() - started
                    begin = clock.now().nanoseconds + int(args.warmup_s * 1e9)
                    window = (begin, begin + int(args.window_s * 1e9))
                    deadline = time.monotonic() + args.warmup_s + args.window_s + 10.0
                if window is not None and clock.now().nanoseconds > window[1] + 1e9:
                    break  # a second after the window, for the results of its last frames
        finally:
            for subscription in subscriptions:
                self.node.destroy_subscription(subscription)
        return {'window_ns': window, 'samples': samples, 'telemetry': telemetry,
                'decisions': decisions, 'first_result_s': first_result_s}


def telemetry_delta(telemetry: list, window_ns) -> dict:
    """Return the drops by reason of each task between the two ends of the window."""
    def stamp(msg):
        return stamp_ns(msg.header)
    inside = [m for m in telemetry if window_ns[0] <= stamp(m) <= window_ns[1]]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    tasks = {}
    for before, after in zip(first.tasks, last.tasks):
        dropped = {r.reason: r.count for r in after.dropped_by_reason}
        for r in before.dropped_by_reason:
            dropped[r.reason] = dropped.get(r.reason, 0) - r.count
        tasks[after.name] = {'dropped_by_reason': {k: v for k, v in sorted(dropped.items())
                                                   if v},
                             'routed': after.routed - before.routed}
    return tasks


def series_in_window(telemetry: list, window_ns, task: str, series: str) -> dict:
    """Return the medians over the window's telemetry of a task's series' p50 and p95 (ms)."""
    values = collections.defaultdict(list)
    for msg in telemetry:
        if not window_ns[0] <= stamp_ns(msg.header) <= window_ns[1]:
            continue
        for item in msg.tasks:
            if item.name != task:
                continue
            for summary_ in item.latency:
                if summary_.series == series and summary_.count:
                    values['p50_ms'].append(summary_.p50_ms)
                    values['p95_ms'].append(summary_.p95_ms)
    return {key: statistics.median(found) for key, found in values.items()}


def analyse(system: str, fps: float, budget_ms: float, raw: dict) -> dict:
    """Return the figures of one run, per task, over the frames stamped inside the window."""
    begin, end = raw['window_ns']
    seconds = (end - begin) / 1e9
    frames = fps * seconds
    drops = telemetry_delta(raw['telemetry'], raw['window_ns'])
    tasks = {}
    for task in (('detector',) if system == 'alone' else TASKS):
        budget = budget_ms if task == 'detector' else BUDGETS_MS[task]
        ok = [(receipt - stamp) / 1e6 for name, stamp, receipt, status, _ in raw['samples']
              if name == task and begin <= stamp < end and status == 0]
        busy = sum(service for name, stamp, _, status, service in raw['samples']
                   if name == task and begin <= stamp < end)
        missing = max(0, int(round(frames)) - len(ok))
        with_misses = sorted(ok) + [math.inf] * missing
        index = min(len(with_misses) - 1, int(math.ceil(0.99 * len(with_misses))) - 1)
        p99_with_misses = with_misses[index] if with_misses else math.inf
        tasks[task] = {
            'executed_per_s': len(ok) / seconds,
            'within_budget_per_s': sum(1 for v in ok if v <= budget) / seconds,
            'executed_fraction': len(ok) / frames if frames else 0.0,
            'end_to_end': summary(ok),
            # None: more than 1% of the frames were lost, so the p99 is a miss.
            'p99_with_misses_ms': None if math.isinf(p99_with_misses) else p99_with_misses,
            'lost_fraction': missing / frames if frames else 0.0,
            'busy_fraction': busy / 1000.0 / seconds,
            'service': summary([service for name, stamp, _, status, service in raw['samples']
                                if name == task and begin <= stamp < end and status == 0]),
            'dropped_by_reason': drops.get(task, {}).get('dropped_by_reason', {}),
            # The time its frames waited while lower-priority jobs held the slot (the
            # telemetry's blocking series): the part of the gap to `alone` a started job costs.
            'blocking': series_in_window(raw['telemetry'], raw['window_ns'], task, 'blocking'),
            'latencies_ms': [round(v, 2) for v in ok],
        }
    shed = sum(1 for when, event, _, _ in raw['decisions']
               if event == 'SHED_START' and begin <= when <= end)
    limited = sorted({task for when, event, task, _ in raw['decisions']
                      if event == 'LIMIT' and begin <= when <= end and task})
    return {'system': system, 'fps': fps, 'budget_ms': budget_ms, 'seconds': seconds,
            'tasks': tasks, 'shed_starts': shed, 'limited_tasks': limited}


def run_once(system, fps, budget_ms, args, domain, threads, slots) -> dict:
    """Run one system at one point, on a ROS domain of its own (stragglers cannot mix in)."""
    env = ros_environment(domain)
    measurer = Measurer(domain)
    try:
        return _run_once(system, fps, budget_ms, args, env, measurer, threads, slots)
    finally:
        measurer.close()


def _run_once(system, fps, budget_ms, args, env, measurer, threads, slots) -> dict:
    with tempfile.TemporaryDirectory(prefix='matrix_') as folder:
        config = write_config(system, budget_ms, threads, slots, folder)
        began = time.monotonic()
        node = start_system(system, config, env)
        camera = start_camera(fps, env)
        raw = {}
        try:
            raw = measurer.measure(system, args, [node, camera])
        finally:
            measured = time.monotonic()
            camera_code, node_code = camera.stop(), node.stop()
            stopped = time.monotonic()
        if raw.get('window_ns') is None or not raw['samples']:
            print(node.output()[-3000:], file=sys.stderr)
            raise SystemExit(f'{system} at {fps:g} fps / {budget_ms:g} ms: no results')
        result = analyse(system, fps, budget_ms, raw)
        result.update(exit_codes={'node': node_code, 'camera': camera_code},
                      threads=threads, slots=slots, first_result_s=raw['first_result_s'],
                      measured_s=measured - began, stop_s=stopped - measured)
        node.discard_log()
        camera.discard_log()
        return result


def ratio(value, reference):
    if value is None or reference in (None, 0) or math.isinf(reference):
        return None
    return value / reference


def spread(values):
    values = [v for v in values if v is not None and not math.isinf(v)]
    if not values:
        return None
    return {'median': statistics.median(values), 'min': min(values), 'max': max(values)}


def slot_share(run):
    """Return the share of the slot time the detector leaves that the other two used."""
    tasks = run['tasks']
    if run['system'] in POOL_SYSTEMS:
        return None  # the others have a slot of their own
    left = run['slots'] - tasks['detector']['busy_fraction']
    used = sum(tasks[t]['busy_fraction'] for t in ('classifier', 'recognizer') if t in tasks)
    return used / left if left > 0 else None


def aggregate(runs: list) -> dict:
    """Per point and system: medians over rounds, with same-round ratios to `alone`."""
    by_key = collections.defaultdict(dict)
    for run in runs:
        by_key[(run['fps'], run['budget_ms'], run['round'])][run['system']] = run
    points = collections.defaultdict(lambda: collections.defaultdict(list))
    for (fps, budget, _), systems in by_key.items():
        alone = systems.get('alone')
        floor = alone['tasks']['detector'] if alone else None
        for system, run in systems.items():
            row = points[(fps, budget)]
            detector = run['tasks']['detector']
            row[(system, 'detector_within_per_s')].append(detector['within_budget_per_s'])
            row[(system, 'detector_p99_with_misses_ms')].append(detector['p99_with_misses_ms'])
            if floor:
                row[(system, 'within_ratio')].append(
                    ratio(detector['within_budget_per_s'], floor['within_budget_per_s']))
                row[(system, 'p99_ratio')].append(
                    ratio(detector['p99_with_misses_ms'], floor['p99_with_misses_ms']))
            for task, data in run['tasks'].items():
                row[(system, f'{task}_executed_per_s')].append(data['executed_per_s'])
                row[(system, f'{task}_within_per_s')].append(data['within_budget_per_s'])
                row[(system, f'{task}_p99_ms')].append(data['end_to_end']['p99_ms'])
                row[(system, f'{task}_executed_fraction')].append(data['executed_fraction'])
                row[(system, f'{task}_lost_fraction')].append(data['lost_fraction'])
            row[(system, 'slot_share')].append(slot_share(run))
            row[(system, 'shed_starts')].append(run['shed_starts'])
            row[(system, 'detector_busy')].append(detector['busy_fraction'])
            row[(system, 'detector_service_p50_ms')].append(detector['service']['p50_ms'])
            row[(system, 'detector_blocking_p95_ms')].append(
                detector.get('blocking', {}).get('p95_ms'))
            if floor:
                row[(system, 'service_ratio')].append(
                    ratio(detector['service']['p50_ms'], floor['service']['p50_ms']))
    return {point: {key: spread(values) for key, values in row.items()}
            for point, row in points.items()}


def median(table, point, system, key):
    value = table.get(point, {}).get((system, key))
    return None if value is None else value['median']


def targets(table: dict) -> list:
    """Return the targets, each (name, point, measured, met)."""
    out = []
    for point in sorted(table):
        fps, budget = point
        mine = median(table, point, 'priority', 'detector_within_per_s')
        baselines = [v for v in (median(table, point, 'fifo', 'detector_within_per_s'),
                                 median(table, point, 'inline', 'detector_within_per_s'))
                     if v is not None]
        if mine is not None and baselines:  # --systems may leave them out
            out.append(('detector within-budget rate >= best of FIFO and inline', point,
                        f'{mine:.2f} vs {max(baselines):.2f} /s', mine >= max(baselines)))
        within = median(table, point, 'priority', 'within_ratio')
        if budget == 80.0 and within is not None:
            out.append(('detector within-budget rate >= 90% of alone (80 ms)', point,
                        f'{within:.1%}', within >= 0.90))
        if fps == 30.0 and within is not None:
            out.append(('detector within-budget rate >= 95% of alone (30 fps, issue 28)', point,
                        f'{within:.1%}', within >= 0.95))
        p99 = median(table, point, 'priority', 'p99_ratio')
        if fps in (15.0, 30.0):
            if p99 is not None:
                out.append(('detector p99 (drops as misses) <= 1.15 x alone', point,
                            f'{p99:.2f} x', p99 <= 1.15))
            elif median(table, point, 'alone', 'detector_p99_with_misses_ms') is None:
                lost = median(table, point, 'alone', 'detector_lost_fraction')
                out.append(('detector p99 (drops as misses) <= 1.15 x alone', point,
                            f'n/a: alone itself loses {lost:.1%} of the frames, so its p99 '
                            'is a miss', None))
            else:
                lost = median(table, point, 'priority', 'detector_lost_fraction')
                out.append(('detector p99 (drops as misses) <= 1.15 x alone', point,
                            f'a miss: it loses {lost:.1%} of the frames', False))
        if fps == 10.0 and budget == 150.0:
            fractions = [median(table, point, 'priority', f'{t}_executed_fraction')
                         for t in TASKS]
            sheds = median(table, point, 'priority', 'shed_starts')
            out.append(('10 fps / 150 ms: every task >= 95% of its frames, no shedding', point,
                        f'executed {", ".join(f"{f:.1%}" for f in fractions)}; '
                        f'SHED_START {sheds:g}',
                        min(fractions) >= 0.95 and sheds == 0))
        share = median(table, point, 'priority', 'slot_share')
        order = (median(table, point, 'priority', 'classifier_executed_per_s') or 0.0) >= \
            (median(table, point, 'priority', 'recognizer_executed_per_s') or 0.0)
        if share is not None and within is not None:
            out.append(('classifier + recognizer use >= 50% of the slot time the detector '
                        'leaves, in priority order, detector >= 97% of alone', point,
                        f'{share:.1%} of it, detector {within:.1%} of alone',
                        share >= 0.5 and order and within >= 0.97))
    return out


def fmt(spread_value, digits=1, percent=False):
    if spread_value is None:
        return '-'
    if percent:
        return (f'{spread_value["median"]:.0%} ({spread_value["min"]:.0%}-'
                f'{spread_value["max"]:.0%})')
    return (f'{spread_value["median"]:.{digits}f} ({spread_value["min"]:.{digits}f}-'
            f'{spread_value["max"]:.{digits}f})')


def p99_cell(row, system) -> str:
    """Return the p99 with misses, or the frames lost when more than 1% were."""
    value = row.get((system, 'detector_p99_with_misses_ms'))
    if value is not None:
        return fmt(value)
    lost = row.get((system, 'detector_lost_fraction'))
    return f'miss: {lost["median"]:.1%} lost' if lost else '-'


def markdown(table: dict, checks: list, meta: dict) -> str:
    lines = [f'Measured {meta["date"]} on {meta["machine"]}; {meta["rounds"]} round(s) of '
             f'{meta["window_s"]:g} s windows after a {meta["warmup_s"]:g} s warm-up; '
             f'load average at the start {meta["load_start"]}, at the end {meta["load_end"]}. '
             'Medians over rounds (min-max); ratios are to `alone` of the same round.', '']
    header = ('| point | system | detector within/s | x alone | detector p99 (misses) ms '
              '| x alone | detector exec/s | classifier exec/s | recognizer exec/s '
              '| others use of spare slot | SHED_START | detector service p50 ms | x alone '
              '| detector blocking p95 ms |')
    lines += [header, '| ' + ' | '.join(['---'] * 14) + ' |']
    for point in sorted(table):
        for system in SYSTEMS:
            if (system, 'detector_within_per_s') not in table[point]:
                continue
            row = table[point]
            lines.append(
                f'| {point[0]:g} fps / {point[1]:g} ms | {system} '
                f'| {fmt(row.get((system, "detector_within_per_s")), 2)} '
                f'| {fmt(row.get((system, "within_ratio")), percent=True)} '
                f'| {p99_cell(row, system)} '
                f'| {fmt(row.get((system, "p99_ratio")), 2)} '
                f'| {fmt(row.get((system, "detector_executed_per_s")), 2)} '
                f'| {fmt(row.get((system, "classifier_executed_per_s")), 2)} '
                f'| {fmt(row.get((system, "recognizer_executed_per_s")), 2)} '
                f'| {fmt(row.get((system, "slot_share")), percent=True)} '
                f'| {fmt(row.get((system, "shed_starts")), 0)} '
                f'| {fmt(row.get((system, "detector_service_p50_ms")))} '
                f'| {fmt(row.get((system, "service_ratio")), 2)} '
                f'| {fmt(row.get((system, "detector_blocking_p95_ms")))} |')
    lines += ['', '| target | point | measured | met |', '| --- | --- | --- | --- |']
    for name, point, measured, met in checks:
        verdict = 'n/a' if met is None else ('yes' if met else '**no**')
        lines.append(f'| {name} | {point[0]:g} fps / {point[1]:g} ms | {measured} | '
                     f'{verdict} |')
    return '\n'.join(lines) + '\n'


def plots(runs: list, table: dict, out: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    points = sorted(table)
    columns = sorted({p[0] for p in points})
    rows = sorted({p[1] for p in points})
    figure, axes = plt.subplots(len(rows), len(columns), squeeze=False,
                                figsize=(4.2 * len(columns), 3.4 * len(rows)))
    for run_point in points:
        axis = axes[rows.index(run_point[1])][columns.index(run_point[0])]
        for system in SYSTEMS:
            values = sorted(v for run in runs if (run['fps'], run['budget_ms']) == run_point
                            and run['system'] == system
                            for v in run['tasks']['detector']['latencies_ms'])
            if values:
                axis.step(values, [(i + 1) / len(values) for i in range(len(values))],
                          where='post', label=system)
        axis.axvline(run_point[1], color='grey', linestyle='--', linewidth=1)
        axis.set_title(f'detector, {run_point[0]:g} fps, budget {run_point[1]:g} ms')
        axis.set_xlabel('stamp -> receipt (ms)')
        axis.set_xlim(0, max(3 * run_point[1], 200))
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    for row_index, budget in enumerate(rows):  # a grid cell without a point stays blank
        for column_index, fps in enumerate(columns):
            if (fps, budget) not in points:
                axes[row_index][column_index].set_visible(False)
    figure.tight_layout()
    figure.savefig(os.path.join(out, 'matrix_cdf.png'), dpi=90)
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(points)), 4))
    width = 0.8 / len(SYSTEMS)
    for index, system in enumerate(SYSTEMS):
        xs, ys, low, high = [], [], [], []
        for position, point in enumerate(points):
            value = table[point].get((system, 'detector_within_per_s'))
            if value is None:
                continue
            xs.append(position + index * width)
            ys.append(value['median'])
            low.append(value['median'] - value['min'])
            high.append(value['max'] - value['median'])
        axis.bar(xs, ys, width, yerr=[low, high], capsize=3, label=system)
    axis.set_xticks([i + width * (len(SYSTEMS) - 1) / 2 for i in range(len(points))])
    axis.set_xticklabels([f'{p[0]:g} fps\n{p[1]:g} ms' for p in points])
    axis.set_ylabel('detector frames within budget per s')
    axis.set_title('detector within budget (median over rounds, min-max)')
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(out, 'matrix_within.png'), dpi=90)


def machine() -> str:
    import onnxruntime
    return (f'{os.cpu_count()} cores ({platform.processor() or platform.machine()}), '
            f'{platform.system()} {platform.release()}, Python {platform.python_version()}, '
            f'onnxruntime {onnxruntime.__version__}, ROS 2 {os.environ.get("ROS_DISTRO", "?")}, '
            f'{ros_environment(0)["RMW_IMPLEMENTATION"]} on loopback')


def load_average() -> str:
    return ' '.join(f'{v:.2f}' for v in os.getloadavg())


def pool_targets(table: dict, system: str) -> list:
    """Return the targets of the two-pool system (issue 26), each (name, point, measured, met)."""
    out = []
    for point in sorted(table):
        fps, budget = point
        within = median(table, point, system, 'within_ratio')
        if within is not None:
            out.append((f'{system}: detector within-budget rate >= 98% of alone', point,
                        f'{within:.1%}', within >= 0.98))
        if (fps, budget) in ((10.0, 150.0), (15.0, 80.0), (15.0, 150.0)):
            name = f'{system}: detector p99 (drops as misses) <= 1.05 x alone'
            p99 = median(table, point, system, 'p99_ratio')
            if p99 is not None:
                out.append((name, point, f'{p99:.2f} x', p99 <= 1.05))
            elif median(table, point, 'alone', 'detector_p99_with_misses_ms') is None:
                lost = median(table, point, 'alone', 'detector_lost_fraction')
                out.append((name, point, f'n/a: alone itself loses {lost:.1%} of the frames, '
                            'so its p99 is a miss', None))
            else:
                lost = median(table, point, system, 'detector_lost_fraction')
                out.append((name, point, f'a miss: it loses {lost:.1%} of the frames', False))
        if (fps, budget) == (15.0, 150.0):
            for task in ('classifier', 'recognizer'):
                rate = median(table, point, system, f'{task}_executed_per_s') or 0.0
                out.append((f'{system}: {task} >= 90% of the camera rate', point,
                            f'{rate:.2f} of {fps:g} /s', rate >= 0.9 * fps))
    return out


def pick_pool_system(table: dict) -> str:
    """
    Return the two-pool system that keeps the detector closest to alone.

    The one that meets the detector's targets (within >= 98% of alone; p99 <= 1.05 x alone
    unless alone itself loses frames, when no p99 exists) with the most background frames
    (the slower of the classifier and the recognizer); if none meets them, the one with the
    highest within ratio, then the lowest p99 ratio.
    """
    scores = {}
    for point, row in table.items():
        alone_p99 = median(table, point, 'alone', 'detector_p99_with_misses_ms')
        for system in POOL_SYSTEMS:
            if (system, 'within_ratio') not in row:
                continue
            p99 = median(table, point, system, 'p99_ratio')
            within = median(table, point, system, 'within_ratio') or 0.0
            background = min(median(table, point, system, f'{t}_executed_per_s') or 0.0
                             for t in ('classifier', 'recognizer'))
            p99_met = p99 <= 1.05 if p99 is not None else alone_p99 is None
            meets = p99_met and within >= 0.98
            scores[system] = (meets, background if meets else within,
                              -(p99 if p99 is not None else math.inf))
    return max(scores, key=scores.get)


def run_rounds(points, variants, rounds, args, runs, label='') -> list:
    """Run every variant at every point, rounds times, in rotating order; append to runs."""
    for round_index in range(rounds):
        for point_index, (fps, budget) in enumerate(points):
            shift = (round_index + point_index) % len(variants)
            for system, threads, slots in variants[shift:] + variants[:shift]:
                started = time.monotonic()
                domain = args.domain + len(runs) % 20
                run = run_once(system, fps, budget, args, domain, threads, slots)
                run['round'] = round_index
                run['phase'] = label
                if args.threads_study:
                    run['system'] = f'{system}/t{threads}/s{slots}'
                runs.append(run)
                detector = run['tasks']['detector']
                print(f'{label}round {round_index + 1}/{rounds} {fps:g} fps {budget:g} ms '
                      f'{run["system"]:<14} detector {detector["within_budget_per_s"]:.2f}'
                      f' within/s p99 {detector["end_to_end"]["p99_ms"] or 0:.1f} ms '
                      f'({time.monotonic() - started:.0f} s: first result '
                      f'{run["first_result_s"]:.0f} s, stop {run["stop_s"]:.0f} s)',
                      flush=True)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--fps', default='10,15,30', help='camera rates (10,15,30)')
    parser.add_argument('--budgets', default='80,150', help='detector budgets in ms (80,150)')
    parser.add_argument('--rounds', type=int, help='rounds (3; 1 with --short; 5 with --pools)')
    parser.add_argument('--window-s', type=float, help='the window of each run (20; 60 with '
                        '--pools)')
    parser.add_argument('--warmup-s', type=float, default=5.0,
                        help='from the first detector result to the window')
    parser.add_argument('--startup-timeout-s', type=float, default=90.0)
    parser.add_argument('--threads', type=int, default=2, help='intra-op threads per model')
    parser.add_argument('--slots', type=int, default=1)
    parser.add_argument('--systems', default=','.join(SYSTEMS),
                        help='the systems to run, of ' + ', '.join(SYSTEMS))
    parser.add_argument('--short', action='store_true',
                        help='one point (15 fps, 150 ms) and one round')
    parser.add_argument('--threads-study', action='store_true',
                        help='priority and alone with intra-op threads 1 and 2 and 1 or 2 '
                        'slots, instead of the four systems')
    parser.add_argument('--pools', action='store_true',
                        help='the two-pool systems: a study, then the best beside priority '
                        'and alone')
    parser.add_argument('--pool-points', default=POOL_POINTS,
                        help=f'fps/budget points of --pools ({POOL_POINTS})')
    parser.add_argument('--study-point', default='15/150',
                        help='fps/budget of the --pools study (15/150)')
    parser.add_argument('--study-only', action='store_true', help='--pools: the study alone')
    parser.add_argument('--study-systems', default=','.join(POOL_SYSTEMS),
                        help='--pools: the systems of the study, of POOL_SYSTEMS and priority '
                        '(all of POOL_SYSTEMS; alone always runs)')
    parser.add_argument('--study-rounds', type=int, default=3)
    parser.add_argument('--study-window-s', type=float, default=30.0)
    parser.add_argument('--pool-system', choices=sorted(POOL_SYSTEMS),
                        help='--pools: skip the study, run this system')
    parser.add_argument('--domain', type=int, default=70,
                        help='the first ROS_DOMAIN_ID; run i uses domain + i %% 20 (70)')
    parser.add_argument('--out', required=True, help='folder of the outputs')
    args = parser.parse_args(argv)
    fps_list = [15.0] if args.short else [float(v) for v in args.fps.split(',')]
    budgets = [150.0] if args.short else [float(v) for v in args.budgets.split(',')]
    points = [(f, b) for f in fps_list for b in budgets]
    rounds = args.rounds or (1 if args.short else 5 if args.pools else 3)
    window_s = args.window_s or (60.0 if args.pools else 20.0)
    os.makedirs(args.out, exist_ok=True)
    meta = {'date': datetime.date.today().isoformat(), 'machine': machine(),
            'rounds': rounds, 'window_s': window_s, 'warmup_s': args.warmup_s,
            'load_start': load_average(), 'command': ' '.join(sys.argv)}
    runs = []
    chosen_systems = tuple(args.systems.split(','))
    if not set(chosen_systems) <= set(SYSTEMS):
        parser.error(f'--systems: some of {", ".join(SYSTEMS)}')
    globals()['SYSTEMS'] = chosen_systems
    variants = [(system, args.threads, args.slots) for system in SYSTEMS]
    if args.threads_study:
        variants = [(system, threads, slots) for threads in (1, 2) for slots in (1, 2)
                    for system in ('priority', 'alone')]
    study = None
    if args.pools:
        chosen = args.pool_system
        if chosen is None:
            args.window_s = args.study_window_s
            study_point = tuple(float(v) for v in args.study_point.split('/'))
            studied = [s for s in args.study_systems.split(',') if s != 'alone'] + ['alone']
            if not set(studied) <= set(POOL_SYSTEMS) | {'priority', 'alone'}:
                parser.error(f'--study-systems: some of {", ".join(POOL_SYSTEMS)}, priority')
            study_runs = run_rounds([study_point], [(system, args.threads, 1)
                                                    for system in studied],
                                    1 if args.short else args.study_rounds, args, [],
                                    'study ')
            study_table = aggregate(study_runs)
            chosen = pick_pool_system(study_table)
            globals()['SYSTEMS'] = tuple(studied)
            study = markdown(study_table, [], dict(meta, rounds=args.study_rounds,
                                                   window_s=args.study_window_s,
                                                   load_end=load_average()))
            print(study)
            print(f'picked: {chosen}', flush=True)
            runs += study_runs
            if args.study_only:
                with open(os.path.join(args.out, 'study.json'), 'w',
                          encoding='utf-8') as stream:
                    json.dump({'meta': meta, 'runs': runs, 'picked': chosen}, stream, indent=1)
                with open(os.path.join(args.out, 'study.md'), 'w', encoding='utf-8') as stream:
                    stream.write(f'Study at {args.study_point} (picked: {chosen})\n\n{study}')
                return 0
        meta['pool_system'] = chosen
        points = [(15.0, 150.0)] if args.short else [
            tuple(float(v) for v in point.split('/')) for point in args.pool_points.split(',')]
        variants = [(chosen, args.threads, 1), ('priority', args.threads, 1),
                    ('alone', args.threads, 1)]
    args.window_s = window_s
    main_runs = run_rounds(points, variants, rounds, args, [])
    runs += main_runs
    meta['load_end'] = load_average()
    if args.threads_study or args.pools:
        globals()['SYSTEMS'] = tuple(dict.fromkeys(run['system'] for run in main_runs))
    table = aggregate(main_runs)
    checks = pool_targets(table, meta['pool_system']) if args.pools else \
        [] if args.threads_study else targets(table)
    report = markdown(table, checks, meta)
    if study is not None:
        report = (f'Study at {args.study_point} fps/ms (picked: {meta["pool_system"]})'
                  f'\n\n{study}\nMain\n\n{report}')
    print(report)
    with open(os.path.join(args.out, 'matrix.json'), 'w', encoding='utf-8') as stream:
        json.dump({'meta': meta, 'runs': runs,
                   'targets': [{'target': n, 'fps': p[0], 'budget_ms': p[1], 'measured': m,
                                'met': ok} for n, p, m, ok in checks]}, stream, indent=1)
    with open(os.path.join(args.out, 'matrix.md'), 'w', encoding='utf-8') as stream:
        stream.write(report)
    try:
        plots(main_runs, table, args.out)
    except ImportError:
        print('matplotlib is not installed: no plots', file=sys.stderr)
    return 0 if all(ok is not False for *_, ok in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
