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
Command line: python -m inferedge_orchestrator <command> (console script: inferedge-orchestrator).

Commands: run (real time), report, compare-overload and simulate (virtual clock), plot (a
job trace's timeline), from-inferedge.
A broken config or bad argument prints one line and exits with code 2; a worker that fails to
load exits with code 1; no traceback.
"""

import argparse
import json
import logging
import os
import sys
from typing import List, Optional

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.config.schema import schema
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.telemetry.prometheus import MetricsConfig, serve_metrics

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """An error to report in one line (exit code 2)."""


def _write_json(path: str, data: dict) -> None:
    try:
        with open(path, 'w', encoding='utf-8') as stream:
            json.dump(data, stream, indent=2, sort_keys=True, allow_nan=False)
            stream.write('\n')
    except OSError as error:
        raise CliError(f'{path}: cannot write: {error.strerror}') from None


def check_writable(path: Optional[str], flag: str) -> None:
    """Fail before any work when an output file cannot be written (its folder, its mode)."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CliError(f'{flag}: {path} is a folder')
    if not os.path.isdir(folder):
        raise CliError(f'{flag}: {path}: the folder {folder} does not exist')
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise CliError(f'{flag}: {path}: not writable')


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
    from inferedge_orchestrator.tools.simulation import compare_overload
    if args.frames < 1:
        raise CliError(f'--frames: {args.frames} is not allowed; allowed: an integer >= 1')
    if args.interval_ms <= 0:
        raise CliError(f'--interval-ms: {args.interval_ms:g} is not allowed; allowed: > 0')
    check_writable(args.output, '--output')
    check_writable(args.plot, '--plot')
    config = load_config(args.config)
    for warning in config.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    result = compare_overload(config, args.frames, args.interval_ms)
    print(compare_overload_table(result))
    _write_json(args.output, result)
    if args.plot:
        plot_cdfs(result, args.plot)
    return 0


def report_table(report: dict) -> str:
    """Return the per-task summary table of a run report, with pool and tegrastats lines."""
    from inferedge_orchestrator.telemetry.snapshot import Snapshot
    from inferedge_orchestrator.tools.runner import summary_rows
    header = ['task', 'prio', 'routed', 'executed', 'in budget', 'failed', 'dropped',
              'e2e p50 ms', 'p95 ms', 'p99 ms', 'service p50 ms', 'drops by reason',
              'failures by reason']
    lines = [_table(header, summary_rows(report))]
    final = Snapshot.from_dict(report['final'])
    pools = ', '.join(f'{name}: {pool.slots} slot(s), {pool.retired} retired, utilisation '
                      f'{pool.run_utilisation:.2f} over the run '
                      f'({pool.period_utilisation:.2f} in the last telemetry period)'
                      for name, pool in final.pools.items())
    lines.append(f'pools: {pools}')
    decisions = ', '.join(f'{k}={v}' for k, v in final.decisions.by_event.items() if v)
    lines.append(f'decisions: {decisions or "none"}')
    run = report.get('run') or {}
    if run:
        submitted = ', '.join(f'{k}={v}' for k, v in run.get('submitted', {}).items())
        lines.append(f'run: mode {run.get("mode")}, source {run.get("source")}, '
                     f'{_fmt(run.get("duration_s"))} s, submitted {submitted}'
                     + (', interrupted' if run.get('interrupted') else ''))
    tegra = run.get('tegrastats')
    if tegra:
        latest = tegra.get('latest') or {}
        power = latest.get('power_mw') or {}
        temps = latest.get('temperatures_c') or {}
        lines.append(f'tegrastats: {tegra["samples"]} sample(s); latest: RAM '
                     f'{_fmt(latest.get("ram_used_mb"), 0)}/{_fmt(latest.get("ram_total_mb"), 0)}'
                     f' MB, GPU {_fmt(latest.get("gpu_percent"), 0)}%, '
                     + ', '.join(f'{k} {v:g} mW' for k, v in power.items())
                     + ('; ' if power and temps else '')
                     + ', '.join(f'{k} {v:g} C' for k, v in temps.items())
                     + (f'; error: {tegra["error"]}' if tegra.get('error') else ''))
    if report.get('invariant_violations'):
        lines.append('invariant violations: ' + '; '.join(report['invariant_violations']))
    return '\n'.join(lines)


def _read_json(path: str) -> dict:
    try:
        with open(path, 'r', encoding='utf-8') as stream:
            return json.load(stream)
    except OSError as error:
        raise CliError(f'{path}: cannot read: {error.strerror}') from None
    except ValueError as error:
        raise CliError(f'{path}: not valid JSON: {error}') from None


def cmd_report(args: argparse.Namespace) -> int:
    """Print the summary table of a run or compare-overload report file."""
    path = args.report or args.input
    if not path:
        raise CliError('report: give the report file (report REPORT.json)')
    data = _read_json(path)
    if isinstance(data, dict) and 'modes' in data:
        print(compare_overload_table(data))
    elif isinstance(data, dict) and isinstance(data.get('final'), dict):
        print(report_table(data))
    else:
        raise CliError(f'{path}: not a run or compare-overload report')
    return 0


def _progress_printer(tty: bool):
    """Return a callback printing progress lines: rewritten in place on a terminal."""
    def progress(line: str) -> None:
        if tty:
            sys.stderr.write('\r' + line[:200].ljust(100))
        else:
            sys.stderr.write(line + '\n')
        sys.stderr.flush()
    return progress


def cmd_run(args: argparse.Namespace) -> int:
    """Run a config in real time and write its report (exit 1 when a worker cannot load)."""
    check_writable(args.output, '--output')
    check_writable(args.trace, '--trace')
    from inferedge_orchestrator.contracts.errors import WorkerLoadError
    from inferedge_orchestrator.telemetry.snapshot import Snapshot
    from inferedge_orchestrator.tools import runner
    if args.seconds is not None and not args.seconds > 0:
        raise CliError(f'--seconds: {args.seconds:g} is not allowed; allowed: > 0')
    if args.frames is not None and args.frames < 1:
        raise CliError(f'--frames: {args.frames} is not allowed; allowed: an integer >= 1')
    if args.images and not os.path.isdir(args.images):
        raise CliError(f'--images: {args.images} is not a folder')
    config = load_config(args.config)
    for warning in config.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format='%(levelname)s: %(message)s')
    monitor = None
    if args.tegrastats:
        from inferedge_orchestrator.tools.tegrastats import TegrastatsMonitor
        monitor = TegrastatsMonitor(args.tegrastats, args.tegrastats_interval_ms)
        try:
            monitor.start()
        except OSError as error:
            raise CliError(f'--tegrastats: {error}') from None
    progress = None if args.quiet else _progress_printer(sys.stderr.isatty())
    metrics = None
    try:
        metrics = serve_metrics(_metrics_config(args))
        if metrics is not None:
            print(f'metrics: {metrics.url}', file=sys.stderr)
        report = runner.run(config, seconds=args.seconds, frames=args.frames,
                            images=args.images, mode=args.mode, on_progress=progress,
                            tegrastats=monitor, trace_path=args.trace, metrics=metrics)
    except WorkerLoadError as error:
        print(f'error: {error}', file=sys.stderr)
        return EXIT_FAILURE
    except FileNotFoundError as error:
        raise CliError(str(error)) from None
    finally:
        if monitor is not None:
            monitor.stop()
        if metrics is not None:
            metrics.stop()
    if progress is not None and sys.stderr.isatty():
        sys.stderr.write('\n')
    _write_json(args.output, report)
    print(report_table(report))
    if report['run']['interrupted']:
        print('interrupted: the report holds what ran until then', file=sys.stderr)
    inputs = Snapshot.from_dict(report['final']).inputs.values()
    decode_errors = sum(i.decode_errors for i in inputs)
    accepted = sum(i.accepted for i in inputs)
    if accepted and decode_errors == accepted:
        print(f'error: all {accepted} frames failed to decode', file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _metrics_config(args: argparse.Namespace) -> MetricsConfig:
    """Return the checked --metrics-port and --metrics-address."""
    fields = schema(MetricsConfig)
    return MetricsConfig(fields['metrics_port'].check('--metrics-port', args.metrics_port),
                         fields['metrics_address'].check('--metrics-address',
                                                         args.metrics_address))


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run a config under the virtual clock: replay a recorded trace, or periodic frames."""
    check_writable(args.output, '--output')
    from inferedge_orchestrator.tools import simulation
    from inferedge_orchestrator.telemetry.job_trace import read_trace
    config = load_config(args.config)
    if args.mode is not None and args.mode != config.mode:
        data = config.to_dict()
        data['orchestrator']['mode'] = args.mode
        config = load_config(data)
    for warning in config.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    if args.trace:
        try:
            records = read_trace(args.trace)
        except OSError as error:
            raise CliError(f'{args.trace}: cannot read: {error.strerror}') from None
        except ValueError as error:
            raise CliError(str(error)) from None
        report = simulation.replay(config, records, seed=args.seed)
    else:
        if not args.frames or args.frames < 1:
            raise CliError('simulate: give --trace FILE, or --frames N (>= 1) of periodic '
                           'frames per input')
        interval = {name: 1.0 / spec.rate_hz for name, spec in config.inputs.items()}
        arrivals = sorted((index * period, name) for name, period in interval.items()
                          for index in range(args.frames))
        until = arrivals[-1][0] + max(t.latency_budget_ms for t in config.tasks) / 1000.0
        report = simulation.Simulation(config, seed=args.seed).run(arrivals, until)
    _write_json(args.output, report)
    print(report_table(report))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw the timeline of a job trace: per task latency, budget, drops, shedding, decisions."""
    from inferedge_orchestrator.telemetry.job_trace import read_trace_contents
    from inferedge_orchestrator.tools import timeline
    check_writable(args.output, '--output')
    if args.bin_s is not None and not args.bin_s > 0:
        raise CliError(f'--bin-s: {args.bin_s:g} is not allowed; allowed: > 0')
    try:
        timeline.pyplot()
    except ImportError:
        raise CliError('plot needs matplotlib: pip install matplotlib') from None
    try:
        contents = read_trace_contents(args.trace)
        drawn = timeline.draw_timeline(contents, f'job trace {os.path.basename(args.trace)}',
                                       args.bin_s)
    except OSError as error:
        raise CliError(f'{args.trace}: cannot read: {error.strerror}') from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CliError(f'{args.trace}: {error}' if not str(error).startswith(args.trace)
                       else str(error)) from None
    try:
        timeline.save(drawn, args.output)
    except OSError as error:
        raise CliError(f'{args.output}: cannot write: {error.strerror}') from None
    print(f'wrote {args.output}: {len(drawn.rows)} task(s), {len(contents.jobs)} jobs, '
          f'{len(contents.decisions)} decisions, {len(drawn.shedding_spans)} shedding span(s), '
          f'drops per {drawn.bin_s:g} s')
    return 0


def cmd_from_inferedge(args: argparse.Namespace) -> int:
    """Write a one-task config whose budget comes from an InferEdge result."""
    from inferedge_orchestrator.tools import inferedge_import
    check_writable(args.output, '--output')
    result = _read_json(args.result)
    config, found = inferedge_import.build_config(
        result, task_name=args.task_name, priority=args.priority, target_fps=args.target_fps,
        model_path=args.model_path, queue_size=args.queue_size, drop_policy=args.drop_policy,
        worker=args.worker, engine_path=args.engine_path,
        budget_multiplier=args.budget_multiplier)
    _write_json(args.output, config)
    print(f'wrote config: {args.output}')
    print(f'{args.task_name}: {found["key"]} {found["latency_ms"]:g} ms -> recommended '
          f'latency_budget_ms {found["latency_budget_ms"]:g}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='inferedge-orchestrator',
        description='Orchestrate DNN inference tasks that share a computer.')
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

    _add_run(commands)

    _add_simulate(commands)

    report = commands.add_parser('report', help='per-task summary table of a report file')
    report.add_argument('report', nargs='?', help='report JSON (run or compare-overload)')
    report.add_argument('--input', help=argparse.SUPPRESS)  # the prototype's spelling
    report.set_defaults(handler=cmd_report)

    _add_plot(commands)

    _add_from_inferedge(commands)
    return parser


def _add_plot(commands) -> None:
    """Add the plot command: the timeline of a job trace."""
    plot = commands.add_parser(
        'plot', help='timeline PNG of a job trace: per task latency against its budget, drops '
        'by reason, shedding and decisions (needs matplotlib)')
    plot.add_argument('trace', help="a job trace written by run --trace or the node's "
                      'trace_path')
    plot.add_argument('--output', required=True, help='PNG file')
    plot.add_argument('--bin-s', type=float,
                      help='width of the drop bins in seconds (default: a round width giving '
                      'at most 50 bins)')
    plot.set_defaults(handler=cmd_plot)


def _add_run(commands) -> None:
    """Add the run command: a config in real time."""
    run = commands.add_parser('run', help='run a config in real time on synthetic frames or an '
                              'image folder, then write the report')
    run.add_argument('--config', required=True, help='config file (YAML or JSON)')
    length = run.add_mutually_exclusive_group(required=True)
    length.add_argument('--seconds', type=float, help='run for this long')
    length.add_argument('--frames', type=int, help='frames per input')
    run.add_argument('--images', help='folder of JPEG/PNG files fed to every input, cycled '
                     '(default: a synthetic moving pattern per input)')
    run.add_argument('--output', required=True, help='report JSON file')
    run.add_argument('--mode', choices=('priority', 'fifo'),
                     help='override orchestrator.mode')
    run.add_argument('--tegrastats', metavar='FILE|live',
                     help='Jetson telemetry: a tegrastats log file (followed) or live')
    run.add_argument('--tegrastats-interval-ms', type=int, default=1000,
                     help='interval of a live tegrastats (default 1000)')
    run.add_argument('--quiet', action='store_true', help='no progress line')
    run.add_argument('--trace', help='write the job trace there (JSON lines, one per job)')
    metrics = schema(MetricsConfig)
    for name, field in metrics.items():
        run.add_argument('--' + name.replace('_', '-'), type=type(field.default),
                         default=field.default,
                         help=f'{field.description} (default {field.default})')
    run.set_defaults(handler=cmd_run)


def _add_simulate(commands) -> None:
    """Add the simulate command: a config under the virtual clock."""
    simulate = commands.add_parser(
        'simulate', help='run a config under the virtual clock: replay a recorded job trace, '
        'or periodic frames at the rate_hz of each input')
    simulate.add_argument('--config', required=True, help='config file (YAML or JSON)')
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument('--trace', help='a job trace written by run --trace or the node')
    source.add_argument('--frames', type=int, help='periodic frames per input')
    simulate.add_argument('--output', required=True, help='report JSON file')
    simulate.add_argument('--mode', choices=('priority', 'fifo'),
                          help='override orchestrator.mode')
    simulate.add_argument('--seed', type=int, default=0,
                          help='seed of the draws (transport ages, unrecorded service times)')
    simulate.set_defaults(handler=cmd_simulate)


def _add_from_inferedge(commands) -> None:
    """Add the from-inferedge command: a task from a result.json."""
    inferedge = commands.add_parser(
        'from-inferedge', help='a task config from an InferEdge result.json latency')
    inferedge.add_argument('--result', required=True, help='InferEdge result.json')
    inferedge.add_argument('--output', required=True, help='config file to write (JSON)')
    inferedge.add_argument('--task-name', required=True)
    inferedge.add_argument('--model-path', help='ONNX model (onnxruntime worker)')
    inferedge.add_argument('--priority', type=int, required=True)
    inferedge.add_argument('--target-fps', type=float, required=True,
                           help='the input rate (rate_hz)')
    inferedge.add_argument('--queue-size', type=int, default=2)
    inferedge.add_argument('--drop-policy', default='drop_oldest')
    inferedge.add_argument('--worker', default='onnxruntime',
                           choices=('onnxruntime', 'tensorrt', 'dummy'))
    inferedge.add_argument('--engine-path', help='TensorRT engine (tensorrt worker)')
    inferedge.add_argument('--budget-multiplier', type=float, default=1.5,
                           help='latency_budget_ms = ceil(max(latency x this, 1)); default 1.5')
    inferedge.set_defaults(handler=cmd_from_inferedge)


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
