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
Node overhead benchmark (a script, not a test): the demo over real ROS 2.

    source install/setup.bash
    python3 benchmarks/node_overhead_benchmark.py [--results 1000] [--domain 57] [--json OUT]

Starts `ros2 launch inferedge_orchestrator_ros demo.launch.py` (Cyclone DDS on loopback only,
its own ROS_DOMAIN_ID), subscribes to every task's results from this separate process and,
after --results results (the first --warmup-s seconds are left out), prints:

- node overhead as the node reports it: (callback entry -> submit() returned) +
  (inference end -> publish() called);
- the cross-check measured here: receipt - header.stamp - (transport + queue wait + preprocess
  + inference), where receipt is this subscriber's clock at its callback's entry. It holds the
  node overhead plus what no field covers: worker time outside preprocess and inference, the
  result's way through DDS and this subscriber's executor. So it bounds the node overhead
  from above, measured outside the node.

Then it stops the launch with SIGINT and reports the exit code (0 expected).
"""

import argparse
import json
import sys
import time

from ros_launch import Launch, ros_environment, stamp_ns, summary

TASKS = ('detector', 'classifier', 'ocr')


def line(name: str, stats: dict) -> str:
    return (f'{name:<44} n={stats["count"]:<6} p50 {stats["p50_ms"]:8.3f}  p95 '
            f'{stats["p95_ms"]:8.3f}  p99 {stats["p99_ms"]:8.3f}  max {stats["max_ms"]:8.3f} ms')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--results', type=int, default=1000,
                        help='results to collect after the warm-up (default 1000)')
    parser.add_argument('--warmup-s', type=float, default=3.0,
                        help='results in the first seconds are left out (default 3)')
    parser.add_argument('--timeout-s', type=float, default=300.0)
    parser.add_argument('--domain', type=int, default=57, help='ROS_DOMAIN_ID (default 57)')
    parser.add_argument('--json', help='write the numbers there')
    args = parser.parse_args(argv)

    env = ros_environment(args.domain)
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from inferedge_orchestrator_msgs.msg import InferenceResult

    launch = Launch(env, 'demo.launch.py')
    rclpy.init(domain_id=args.domain)
    node = rclpy.create_node('node_overhead_benchmark')
    clock = node.get_clock()
    rows = []
    first = []

    def on_result(msg: InferenceResult) -> None:
        receipt_ns = clock.now().nanoseconds
        if not first:
            first.append(receipt_ns)
        if receipt_ns - first[0] < args.warmup_s * 1e9 or msg.status != InferenceResult.OK:
            return
        receipt_ms = (receipt_ns - stamp_ns(msg.header)) / 1e6
        accounted = msg.transport_ms + msg.queue_wait_ms + msg.preprocess_ms + msg.inference_ms
        rows.append((msg.task, msg.node_overhead_ms, receipt_ms - accounted, receipt_ms,
                     msg.end_to_end_ms))

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    for task in TASKS:
        node.create_subscription(InferenceResult, f'/inferedge_orchestrator/{task}/result',
                                 on_result, qos)
    try:
        end = time.monotonic() + args.timeout_s
        while len(rows) < args.results and time.monotonic() < end and launch.running():
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        code = launch.stop()
    if len(rows) < args.results:
        print(f'only {len(rows)} results; launch log: {launch.log.name}', file=sys.stderr)
        print(launch.output()[-3000:], file=sys.stderr)
        return 1

    overhead = summary([r[1] for r in rows])
    cross = summary([r[2] for r in rows])
    receipt = summary([r[3] for r in rows])
    result = {
        'results': len(rows),
        'by_task': {task: sum(1 for r in rows if r[0] == task) for task in TASKS},
        'node_overhead': overhead,
        'cross_check_receipt_minus_stamp_minus_accounted': cross,
        'receipt_minus_stamp': receipt,
        'launch_exit_code': code,
        'died': launch.died(),
    }
    counts = ', '.join(f'{task} {count}' for task, count in result['by_task'].items())
    print(f'{len(rows)} results over ROS 2 ({counts})')
    print(line('node overhead (reported by the node)', overhead))
    print(line('cross-check: receipt - stamp - accounted', cross))
    print(line('receipt - stamp (end to end, subscriber)', receipt))
    print(f'node overhead p95 < 2 ms: {"yes" if overhead["p95_ms"] < 2.0 else "NO"}')
    print(f'launch exit code after SIGINT: {code}'
          f'{" (a process died, see " + launch.log.name + ")" if result["died"] else ""}')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as stream:
            json.dump(result, stream, indent=2)
            stream.write('\n')
    if not result['died'] and code == 0:
        launch.discard_log()
    return 0 if code == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
