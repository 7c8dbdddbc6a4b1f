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

"""Command line: python -m inferedge_orchestrator_ros <command> (console script: inferedge).

A broken config or bad argument prints one line and exits with code 2; no traceback.
"""

import argparse
import json
import sys
from typing import List, Optional

from inferedge_orchestrator_ros.config import ConfigError, load_config

EXIT_USAGE = 2


class CliError(Exception):
    """An error to report in one line (exit code 2)."""


def _write_json(path: str, data: dict) -> None:
    try:
        with open(path, 'w', encoding='utf-8') as stream:
            json.dump(data, stream, indent=2, sort_keys=True, allow_nan=False)
            stream.write('\n')
    except OSError as error:
        raise CliError(f'{path}: cannot write: {error.strerror}') from None


def _fmt(value, digits: int = 1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _table(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = ['  '.join(str(cell).rjust(width) if index else str(cell).ljust(width)
                       for index, (cell, width) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    lines.insert(1, '  '.join('-' * width for width in widths))
    return '\n'.join(lines)


def compare_overload_table(result: dict) -> str:
    header = ['mode', 'task', 'executed', 'in budget', 'dropped', 'queued', 'in flight',
              'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'drops by reason']
    rows = []
    for mode, data in result['modes'].items():
        for name, task in data['tasks'].items():
            rows.append([mode, name, task['executed'], task['completed_within_budget'],
                         task['dropped'], task['queued'], task['in_flight'],
                         _fmt(task['p50_ms']), _fmt(task['p95_ms']), _fmt(task['p99_ms']),
                         _fmt(task['max_ms']),
                         ', '.join(f'{k}={v}' for k, v in task['dropped_by_reason'].items())
                         or '-'])
    return _table(header, rows)


def plot_cdfs(result: dict, path: str) -> None:
    """Draw end-to-end latency CDFs per task and mode (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError('--plot needs matplotlib: pip install matplotlib') from None
    figure, axis = plt.subplots(figsize=(8, 5))
    for mode, tasks in result['end_to_end_samples_ms'].items():
        for name, samples in tasks.items():
            if not samples:
                continue
            values = sorted(samples)
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            axis.step(values, fractions, where='post', label=f'{mode} / {name}',
                      linestyle='-' if mode == 'priority' else '--')
    axis.set_xlabel('end-to-end latency (ms)')
    axis.set_ylabel('fraction of executed frames')
    axis.set_title(f'{result["scenario"]["config"]}: FIFO vs orchestrator')
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=100)
    except OSError as error:
        raise CliError(f'{path}: cannot write: {error.strerror}') from None


def cmd_compare_overload(args: argparse.Namespace) -> int:
    from inferedge_orchestrator_ros.simulation import compare_overload
    if args.frames < 1:
        raise CliError(f'--frames: {args.frames} is not allowed; allowed: an integer >= 1')
    if args.interval_ms <= 0:
        raise CliError(f'--interval-ms: {args.interval_ms:g} is not allowed; allowed: > 0')
    config = load_config(args.config)
    for warning in config.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    result = compare_overload(config, args.frames, args.interval_ms)
    print(compare_overload_table(result))
    _write_json(args.output, result)
    if args.plot:
        plot_cdfs(result, args.plot)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='inferedge', description='Orchestrate DNN inference tasks that share a computer.')
    commands = parser.add_subparsers(dest='command', required=True)
    compare = commands.add_parser(
        'compare-overload', help='FIFO vs orchestrator on one arrival trace (virtual clock)')
    compare.add_argument('--config', required=True, help='config file (YAML or JSON)')
    compare.add_argument('--frames', type=int, required=True, help='frames per input')
    compare.add_argument('--interval-ms', type=float, default=10.0,
                         help='time between frames of each input (default 10)')
    compare.add_argument('--output', required=True, help='JSON result file')
    compare.add_argument('--plot', help='PNG of latency CDFs (needs matplotlib)')
    compare.set_defaults(handler=cmd_compare_overload)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, CliError) as error:
        print(f'error: {error}', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
