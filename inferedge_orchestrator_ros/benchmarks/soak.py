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
Soak (a script, not a test): the demo at about 2x overload for N minutes, with a leak gate.

    python3 benchmarks/soak.py [--minutes 30] [--leak-kib 0] [--isolation thread] [--out DIR]

The demo's camera (640x480, at 20 frames/s here) and node (config/demo.yaml: three dummy tasks
of 20, 15 and 60 ms on one slot: 1.9 times what the slot can run) run as processes. Every
--sample-s seconds the node's RSS (its own plus its child processes': with --isolation process
the models live in children), threads, open fds and child processes are read from /proc and
the latest telemetry message is checked against both invariants. Gate: RSS growth over the
second half <= --gate-mb (16), threads, fds and children the same at the end of the second half
as at its start, and no invariant broken. --leak-kib N makes the detector's dummy (it runs
nearly every frame) keep N KiB for good per call: the canary, which the gate must catch. Exit
code 0 when the gate passes.
"""

import argparse
import json
import os
import sys
import time

from inferedge_orchestrator import read_process_stats
from ros_launch import ros_environment, ScriptNode, start_demo


class TelemetryReader(ScriptNode):
    """The latest telemetry message of the node."""

    def __init__(self, domain_id):
        super().__init__(domain_id, 'soak_reader')
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from inferedge_orchestrator_msgs.msg import OrchestratorTelemetry
        self.last = None
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(OrchestratorTelemetry, '/inferedge_orchestrator/telemetry',
                                      self._on_message, qos)

    def _on_message(self, message):
        self.last = message


def gate(samples, gate_mb):
    """Return (passed, checks) over the second half of the samples."""
    half = samples[len(samples) // 2:]
    first, last = half[0], half[-1]
    checks = {
        'rss_growth_mb': last['total_rss_mb'] - first['total_rss_mb'],
        'threads': (first['threads'], last['threads']),
        'fds': (first['fds'], last['fds']),
        'children': (first['children'], last['children']),
        'invariant_breaks': sum(len(s['violations']) for s in samples),
        'no_telemetry': sum(1 for s in samples if s['executed'] is None),
    }
    passed = (checks['rss_growth_mb'] <= gate_mb and
              all(checks[k][0] == checks[k][1] for k in ('threads', 'fds', 'children')) and
              checks['invariant_breaks'] == 0 and checks['no_telemetry'] == 0)
    return passed, checks


def plot(samples, path, title):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: no plot', file=sys.stderr)
        return
    figure, axis = plt.subplots(figsize=(7, 3.2))
    axis.plot([s['t_s'] / 60.0 for s in samples], [s['total_rss_mb'] for s in samples],
              marker='.')
    axis.axvline(samples[len(samples) // 2]['t_s'] / 60.0, color='grey', linestyle=':')
    axis.set_xlabel('minutes')
    axis.set_ylabel('RSS, node + children (MB)')
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--minutes', type=float, default=30.0)
    parser.add_argument('--sample-s', type=float, default=10.0)
    parser.add_argument('--leak-kib', type=int, default=0)
    parser.add_argument('--gate-mb', type=float, default=16.0)
    parser.add_argument('--isolation', choices=('thread', 'process'), default='thread')
    parser.add_argument('--domain', type=int, default=61)
    parser.add_argument('--out', default='soak')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    name = f'soak_{args.isolation}_leak{args.leak_kib}'
    env = ros_environment(args.domain)
    from inferedge_orchestrator_ros.messages import telemetry_invariant_violations
    camera, node = start_demo(env, **{
        'report_path': os.path.join(args.out, f'{name}_report.json'),
        'detector.worker_options.leak_kib': args.leak_kib, 'cpu.isolation': args.isolation})
    reader = TelemetryReader(args.domain)
    samples = []
    start = time.monotonic()
    try:
        reader.spin(5.0)  # configure, warm-up
        while time.monotonic() - start < args.minutes * 60.0:
            reader.spin(args.sample_s)
            stats = read_process_stats(node.process.pid)
            telemetry = reader.last
            sample = dict(stats.to_dict(), t_s=time.monotonic() - start,
                          executed=None if telemetry is None else
                          {t.name: t.executed for t in telemetry.tasks},
                          violations=[] if telemetry is None else
                          telemetry_invariant_violations(telemetry))
            samples.append(sample)
            print(f'{sample["t_s"]:7.0f} s rss {stats.total_rss_mb:7.1f} MB threads '
                  f'{stats.threads} fds {stats.fds} children {stats.children} executed '
                  f'{sample["executed"]} {"; ".join(sample["violations"])}', flush=True)
    finally:
        reader.close()
        node_code = node.stop()
        camera.stop()
    passed, checks = gate(samples, args.gate_mb)
    result = {'minutes': args.minutes, 'leak_kib': args.leak_kib, 'gate_mb': args.gate_mb,
              'passed': passed, 'checks': checks, 'node_exit_code': node_code,
              'samples': samples}
    with open(os.path.join(args.out, f'{name}.json'), 'w', encoding='utf-8') as stream:
        json.dump(result, stream, indent=1)
    plot(samples, os.path.join(args.out, f'{name}.png'),
         f'soak, {args.isolation} pool, leak_kib {args.leak_kib}: '
         f'{"passed" if passed else "FAILED"}')
    print(f'gate {"passed" if passed else "FAILED"}: {checks}; node exit code {node_code}')
    return 0 if passed else 1


if __name__ == '__main__':
    sys.exit(main())
