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
End-to-end benchmark over real ROS 2 (a script, not a test): three real models, one CPU slot.

    pip install --no-deps rapidocr-onnxruntime   # its three PP-OCR .onnx models
    source install/setup.bash
    python3 benchmarks/ros_benchmark.py [--seconds 60] [--out DIR]

Runs launch/onnx_demo.launch.py (synthetic camera 640x480 rgb8 at 15 fps -> the orchestrator
with the detector 480x640 priority 100 budget 150 ms, the classifier 48x192 priority 50 and the
recognizer 48x320 priority 10 on one CPU slot) for --seconds in priority mode, then the same
in FIFO mode. A separate subscriber (this process) measures each result's latency from
header.stamp to its receipt; the counts come from the telemetry at the start and the end of
the window. Prints a table and writes ros_benchmark.json and ros_benchmark.png to --out.
Acceptance (priority mode): detector p99 <= 150 ms and >= 14 of 15 frames/s executed, the
others shed with reasons.
"""

import argparse
import json
import os
import sys
import time

from ros_launch import Launch, ros_environment, stamp_ns, summary

TASKS = ('detector', 'classifier', 'recognizer')
NODE = '/inferedge_orchestrator'


def run_mode(mode: str, args, env) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from inferedge_orchestrator_msgs.msg import InferenceResult, OrchestratorTelemetry

    launch = Launch(env, 'onnx_demo.launch.py', f'mode:={mode}')
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain)
    node = rclpy.create_node('ros_benchmark', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    clock = node.get_clock()
    latencies = {task: [] for task in TASKS}
    window = {}
    telemetry = []

    def on_result(msg: InferenceResult) -> None:
        receipt_ns = clock.now().nanoseconds
        if 'start' in window and 'end' not in window and msg.status == InferenceResult.OK:
            latencies[msg.task].append((receipt_ns - stamp_ns(msg.header)) / 1e6)

    def on_telemetry(msg: OrchestratorTelemetry) -> None:
        telemetry.append(msg)
        if msg.node_state != 'active':
            return
        if 'start' not in window and msg.uptime_s >= args.warmup_s:
            window['start'] = msg
        elif 'start' in window and 'end' not in window and \
                msg.uptime_s - window['start'].uptime_s >= args.seconds:
            window['end'] = msg

    for task in TASKS:
        node.create_subscription(InferenceResult, f'{NODE}/{task}/result', on_result,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(OrchestratorTelemetry, f'{NODE}/telemetry', on_telemetry,
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    try:
        deadline = time.monotonic() + args.seconds + args.startup_timeout_s
        while 'end' not in window and time.monotonic() < deadline and launch.running():
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        code = launch.stop()
    if 'end' not in window:
        print(launch.output()[-3000:], file=sys.stderr)
        raise SystemExit(f'{mode}: no complete {args.seconds} s window (launch log '
                         f'{launch.log.name})')
    start, end = window['start'], window['end']
    seconds = end.uptime_s - start.uptime_s
    tasks = {}
    for before, after in zip(start.tasks, end.tasks):
        dropped = {r.reason: r.count for r in after.dropped_by_reason}
        for r in before.dropped_by_reason:
            dropped[r.reason] -= r.count
        tasks[after.name] = {
            'routed_per_s': (after.routed - before.routed) / seconds,
            'executed_per_s': (after.executed - before.executed) / seconds,
            'failed': after.failed - before.failed,
            'held_for_priority': after.held_for_priority - before.held_for_priority,
            'end_state': {'queued': after.queued, 'in_flight': after.in_flight,
                          'shed_limit_hz': after.shed_limit_hz,
                          'predicted_service_ms': after.predicted_service_ms},
            'dropped_by_reason': {k: v for k, v in sorted(dropped.items()) if v},
            'end_to_end': summary(latencies[after.name]),
        }
    died = launch.died()
    if code == 0 and not died:
        launch.discard_log()
    return {'mode': mode, 'seconds': seconds, 'tasks': tasks,
            'camera_rate_hz': (end.inputs[0].received - start.inputs[0].received) / seconds,
            'cpu_percent': end.cpu_percent, 'launch_exit_code': code, 'died': died}


def table(results) -> str:
    lines = [f'{"mode":<9}{"task":<12}{"exec/s":>8}{"routed/s":>10}{"p50 ms":>9}'
             f'{"p95 ms":>9}{"p99 ms":>9}{"max ms":>9}  dropped by reason']
    for result in results:
        for name, task in result['tasks'].items():
            e2e = task['end_to_end']

            def fmt(key):
                return f'{e2e[key]:9.1f}' if e2e[key] is not None else f'{"-":>9}'
            drops = ', '.join(f'{k} {v}' for k, v in task['dropped_by_reason'].items())
            lines.append(f'{result["mode"]:<9}{name:<12}{task["executed_per_s"]:8.2f}'
                         f'{task["routed_per_s"]:10.2f}{fmt("p50_ms")}{fmt("p95_ms")}'
                         f'{fmt("p99_ms")}{fmt("max_ms")}  {drops}')
    return '\n'.join(lines)


def plot(results, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(results)
    for index, result in enumerate(results):
        xs = [i + index * width for i in range(len(TASKS))]
        p99 = [result['tasks'][t]['end_to_end']['p99_ms'] or 0.0 for t in TASKS]
        rate = [result['tasks'][t]['executed_per_s'] for t in TASKS]
        left.bar(xs, p99, width, label=result['mode'])
        right.bar(xs, rate, width, label=result['mode'])
    for axis, title in ((left, 'end-to-end p99 (stamp -> receipt), ms'),
                        (right, 'executed frames per second')):
        axis.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(TASKS))])
        axis.set_xticklabels(TASKS)
        axis.set_title(title)
        axis.legend()
    left.axhline(150.0, color='grey', linestyle='--', linewidth=1)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=60.0, help='window per mode (60)')
    parser.add_argument('--warmup-s', type=float, default=5.0,
                        help='the window starts at this engine uptime (5)')
    parser.add_argument('--startup-timeout-s', type=float, default=120.0)
    parser.add_argument('--modes', default='priority,fifo')
    parser.add_argument('--domain', type=int, default=58, help='ROS_DOMAIN_ID (default 58)')
    parser.add_argument('--out', default='.', help='folder of the JSON and PNG')
    args = parser.parse_args(argv)
    env = ros_environment(args.domain)
    results = [run_mode(mode, args, env) for mode in args.modes.split(',')]
    print(table(results))
    first = results[0]
    detector = first['tasks']['detector']
    p99 = detector['end_to_end']['p99_ms']
    camera = first['camera_rate_hz']
    ok_latency = p99 is not None and p99 <= 150.0
    ok_rate = detector['executed_per_s'] >= camera * 14.0 / 15.0
    print(f'{first["mode"]}: detector p99 {p99 if p99 is None else round(p99, 1)} ms '
          f'(<= 150: {"yes" if ok_latency else "NO"}), executed {detector["executed_per_s"]:.2f}'
          f' of {camera:.2f} frames/s (>= 14/15: {"yes" if ok_rate else "NO"})')
    for result in results:
        print(f'{result["mode"]}: launch exit code {result["launch_exit_code"]}, process CPU '
              f'{result["cpu_percent"]:.0f}%')
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'ros_benchmark.json'), 'w', encoding='utf-8') as stream:
        json.dump({'results': results, 'acceptance': {'detector_p99_ok': ok_latency,
                                                      'detector_rate_ok': ok_rate}},
                  stream, indent=2)
        stream.write('\n')
    try:
        plot(results, os.path.join(args.out, 'ros_benchmark.png'))
    except ImportError:
        print('matplotlib is not installed: no PNG', file=sys.stderr)
    return 0 if all(r['launch_exit_code'] == 0 for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
