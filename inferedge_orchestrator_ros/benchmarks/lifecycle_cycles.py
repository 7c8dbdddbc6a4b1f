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
Lifecycle cycles (a script, not a test): configure, activate, deactivate, cleanup, N times.

    python3 benchmarks/lifecycle_cycles.py [--cycles 1000] [--isolation thread] [--out DIR]

The demo's node (config/demo.yaml, autostart off, deactivate_timeout_s 0.05) and its camera at
20 frames/s (1.9 times what the slot can run) run as processes; this script drives the node
over its lifecycle services, staying --active-s in active each cycle so that it stops under
load. After each cleanup it reads the node's threads, open fds, child processes and RSS from
/proc. Gate: 0 failed transitions; threads, fds and children after every cleanup equal to
those after the first (nothing left behind); RSS growth over the last half of the cycles <=
--gate-mb (16). Exit code 0 when the gate passes.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from inferedge_orchestrator import read_process_stats
from ros_launch import ros_environment, ScriptNode, start_demo

NODE = '/inferedge_orchestrator'


class LifecycleDriver(ScriptNode):
    """Transitions of the node over its lifecycle services."""

    def __init__(self, domain_id):
        super().__init__(domain_id, 'lifecycle_cycles')
        from lifecycle_msgs.srv import ChangeState
        self._change = self.node.create_client(ChangeState, f'{NODE}/change_state')

    def transition(self, transition_id) -> bool:
        from lifecycle_msgs.srv import ChangeState
        request = ChangeState.Request()
        request.transition.id = transition_id
        response = self.call(self._change, request)
        return response is not None and response.success


def main(argv=None) -> int:
    from lifecycle_msgs.msg import Transition
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--cycles', type=int, default=1000)
    parser.add_argument('--active-s', type=float, default=0.1)
    parser.add_argument('--isolation', choices=('thread', 'process'), default='thread')
    parser.add_argument('--gate-mb', type=float, default=16.0)
    parser.add_argument('--domain', type=int, default=64)
    parser.add_argument('--out', default='cycles')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    env = ros_environment(args.domain)
    camera, node = start_demo(env, **{'autostart': 'false', 'deactivate_timeout_s': 0.05,
                                      'cpu.isolation': args.isolation})
    driver = LifecycleDriver(args.domain)
    steps = [('configure', Transition.TRANSITION_CONFIGURE),
             ('activate', Transition.TRANSITION_ACTIVATE),
             ('deactivate', Transition.TRANSITION_DEACTIVATE),
             ('cleanup', Transition.TRANSITION_CLEANUP)]
    failed, samples = [], []
    start = time.monotonic()
    try:
        for cycle in range(args.cycles):
            for name, transition_id in steps:
                if not driver.transition(transition_id):
                    failed.append((cycle, name))
                    print(f'cycle {cycle}: {name} failed', flush=True)
                if name == 'activate':
                    driver.spin(args.active_s)
            stats = read_process_stats(node.process.pid)
            samples.append(dict(stats.to_dict(), cycle=cycle, t_s=time.monotonic() - start))
            if cycle % 50 == 0 or cycle == args.cycles - 1:
                print(f'cycle {cycle}: rss {stats.total_rss_mb:.1f} MB threads {stats.threads} '
                      f'fds {stats.fds} children {stats.children} '
                      f'({time.monotonic() - start:.0f} s)', flush=True)
        shutdown = driver.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        try:
            node.process.wait(20.0)  # it exits by itself after the shutdown transition
        except subprocess.TimeoutExpired:
            pass
    finally:
        driver.close()
        node_code = node.stop()
        camera.stop()
    first, half = samples[0], samples[len(samples) // 2:]
    checks = {
        'cycles': len(samples), 'failed_transitions': failed,
        'left_behind': [s['cycle'] for s in samples
                        if (s['threads'], s['fds'], s['children']) !=
                        (first['threads'], first['fds'], first['children'])],
        'rss_growth_last_half_mb': half[-1]['total_rss_mb'] - half[0]['total_rss_mb'],
        'unconfigured': {key: first[key] for key in ('threads', 'fds', 'children')},
        'seconds': time.monotonic() - start, 'shutdown': shutdown, 'node_exit_code': node_code,
    }
    passed = (not failed and not checks['left_behind'] and
              checks['rss_growth_last_half_mb'] <= args.gate_mb and shutdown and node_code == 0)
    name = f'cycles_{args.isolation}'
    with open(os.path.join(args.out, f'{name}.json'), 'w', encoding='utf-8') as stream:
        json.dump({'passed': passed, 'checks': checks, 'samples': samples}, stream, indent=1)
    print(f'gate {"passed" if passed else "FAILED"}: {checks}')
    return 0 if passed else 1


if __name__ == '__main__':
    sys.exit(main())
