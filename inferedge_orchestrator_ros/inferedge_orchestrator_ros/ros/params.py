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
The orchestrator node's parameters and their mapping to the core config (no rclpy here).

Parameters follow the Nav2 idiom: `inputs`, `tasks` and `pools` list names, and each name has a
block of parameters (`detector.priority`, `camera.topic`, `cpu.slots`). The schema below is the
single source of the names, types, defaults, ranges and of whether a parameter may change while
the node is configured (`live`); the node declares its parameters from it and docs/node.md
documents it. Values are validated twice: type and range here (on set), then the whole config
by the core (on configure, and by Engine.update_task for live task changes).
"""

from dataclasses import dataclass
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

from inferedge_orchestrator_ros import config as core
from inferedge_orchestrator_ros.workers import REQUIRED, worker_class, WORKER_KINDS

BOOL, INTEGER, DOUBLE, STRING, STRING_ARRAY, ANY = (
    'bool', 'integer', 'double', 'string', 'string_array', 'any')

RELIABILITIES = ('best_effort', 'reliable')
DURABILITIES = ('volatile', 'transient_local')
MESSAGE_TYPES = ('image', 'compressed_image')
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'


@dataclass(frozen=True)
class Param:
    """
    One parameter: a type, a default, a range or a list of allowed strings.

    A DOUBLE parameter is declared with dynamic typing so that 80 and 80.0 are both accepted
    (from YAML and from `ros2 param set`); check() enforces the type and the range itself.
    live: it may change while the node is configured (otherwise only when unconfigured).
    """

    name: str
    kind: str
    default: Any
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Tuple[str, ...] = ()
    live: bool = False

    def check(self, full_name: str, value: Any) -> Optional[str]:
        """Return why value is refused, or None when it is acceptable."""
        if self.kind == ANY:
            return None
        if self.kind == DOUBLE:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
                not math.isnan(value)
        elif self.kind == INTEGER:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind == BOOL:
            ok = isinstance(value, bool)
        elif self.kind == STRING:
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        if not ok:
            return f'{full_name}: {value!r} is not {_ARTICLE[self.kind]}'
        if self.choices and value not in self.choices:
            return f'{full_name}: {value!r} is not allowed; allowed: {", ".join(self.choices)}'
        if self.low is not None and value < self.low or \
                self.high is not None and value > self.high:
            return f'{full_name}: {value!r} is out of range; allowed: {self.range_text()}'
        return None

    def range_text(self) -> str:
        if self.choices:
            return ', '.join(self.choices)
        if self.low is None:
            return ''
        return f'{self.low:g}..{self.high:g}'


_ARTICLE = {BOOL: 'a boolean', INTEGER: 'an integer', DOUBLE: 'a number', STRING: 'a string',
            STRING_ARRAY: 'a list of strings'}

_TASK = core.TaskConfig(name='task')
_SHED = core.SheddingConfig()
_TEL = core.TelemetryConfig()
_ORCH = core.OrchestratorConfig()
BIG = 1e9

GLOBAL_PARAMS = (
    Param('autostart', BOOL, True, 'configure and activate by itself at startup (read once)',
          live=True),
    Param('config_file', STRING, '', 'a core YAML/JSON config with the tasks (instead of '
          'the tasks parameter; both given: configure fails)'),
    Param('inputs', STRING_ARRAY, [], 'input names; each has a block of input parameters '
          '(inputs named only by tasks get the defaults)'),
    Param('tasks', STRING_ARRAY, [], 'task names; each has a block of task parameters'),
    Param('pools', STRING_ARRAY, ['cpu'], 'pools of worker slots; each has <pool>.slots'),
    Param('mode', STRING, _ORCH.mode, 'priority (the scheduler) or fifo (the baseline)',
          choices=core.MODES),
    Param('priority_hold', BOOL, _ORCH.priority_hold,
          'keep the last free slot for a higher-priority frame that is about to arrive'),
    Param('max_stamp_age_ms', DOUBLE, _ORCH.max_stamp_age_ms,
          'older stamps (or future ones) count as stamp_fallback and use age 0', 0.001, BIG),
    Param('max_image_pixels', INTEGER, _ORCH.max_image_pixels,
          'larger images are malformed (too_many_pixels)', 1, 2 ** 40),
    Param('shedding.enabled', BOOL, _SHED.enabled, 'adaptive load shedding'),
    Param('shedding.tick_s', DOUBLE, _SHED.tick_s, 'shedding evaluation period', 0.01, 60.0),
    Param('shedding.recovery_s', DOUBLE, _SHED.recovery_s,
          'seconds without risk before limits are raised again', 0.0, 3600.0),
    Param('shedding.recovery_step_hz', DOUBLE, _SHED.recovery_step_hz,
          'how much a limit rises per recovery step', 0.001, 1000.0),
    Param('shedding.backlog_threshold', INTEGER, _SHED.backlog_threshold,
          'total queued frames that count as risk (0: off)', 0, 1000000),
    Param('shedding.p95_budget_fraction', DOUBLE, _SHED.p95_budget_fraction,
          'a protected task whose p95 exceeds this fraction of its budget is at risk',
          0.001, 10.0),
    Param('shedding.min_limit_hz', DOUBLE, _SHED.min_limit_hz,
          'the lowest limit shedding sets on a task without min_rate_hz', 0.001, 1000.0),
    Param('shedding.min_load_share', DOUBLE, _SHED.min_load_share,
          'a task whose load (rate x median service) is below this share of the pool is '
          'never limited', 0.0, 1.0),
    Param('telemetry.window_s', DOUBLE, _TEL.window_s, 'live latency percentile window',
          0.1, 3600.0),
    Param('telemetry.window_samples', INTEGER, _TEL.window_samples,
          'ring size per latency series', 16, 1000000),
    Param('telemetry.decision_history', INTEGER, _TEL.decision_history,
          'decisions kept for the report', 1, 1000000),
    Param('telemetry.resources', BOOL, _TEL.resources, 'sample CPU and RSS with psutil'),
    Param('telemetry_period_s', DOUBLE, _TEL.period_s, 'telemetry publishing period; also '
          'the DROP aggregation and pool utilisation period', 0.05, 3600.0),
    Param('publish_tensors', BOOL, False, 'put the output tensors into the results', live=True),
    Param('report_path', STRING, '', 'write the final JSON report there at cleanup and '
          'shutdown (empty: no report)', live=True),
    Param('trace_path', STRING, '', 'write the job trace there, one JSON line per routed '
          'frame and task, from configure to cleanup (empty: none; simulate --trace replays it)'),
    Param('deactivate_timeout_s', DOUBLE, 2.0, 'deactivate finishes queued frames for at most '
          'this long, then drops the rest (reason deactivated)', 0.0, 600.0, live=True),
)

INPUT_PARAMS = (
    Param('topic', STRING, '', 'the image topic (empty: <input>/image_raw, relative)'),
    Param('message_type', STRING, 'image', 'sensor_msgs Image (image) or CompressedImage '
          '(compressed_image: JPEG or PNG)', choices=MESSAGE_TYPES),
    Param('reliability', STRING, 'best_effort', 'subscription QoS reliability',
          choices=RELIABILITIES),
    Param('durability', STRING, 'volatile', 'subscription QoS durability',
          choices=DURABILITIES),
    Param('depth', INTEGER, 1, 'subscription queue depth (keep last)', 1, 10000),
    Param('deadline_ms', DOUBLE, 0.0, 'QoS deadline between messages (0: none); misses are '
          'counted', 0.0, BIG),
    Param('expected_rate_hz', DOUBLE, 0.0, 'diagnostics WARN below this rate (0: no check)',
          0.0, 10000.0, live=True),
    Param('stale_after_s', DOUBLE, 2.0, 'diagnostics ERROR when no message came for this long',
          0.01, 3600.0, live=True),
)

TASK_PARAMS = (
    Param('input', STRING, _TASK.input, 'the input it consumes'),
    Param('priority', INTEGER, _TASK.priority, 'higher runs first', 0, core.MAX_PRIORITY,
          live=True),
    Param('latency_budget_ms', DOUBLE, _TASK.latency_budget_ms,
          'stamp -> inference end budget', 0.001, BIG, live=True),
    Param('queue_size', INTEGER, _TASK.queue_size, 'queue bound (shrinking drops frames: '
          'queue_resized)', 1, core.MAX_QUEUE_SIZE, live=True),
    Param('drop_policy', STRING, _TASK.drop_policy, 'which frame a full queue drops',
          choices=core.DROP_POLICIES, live=True),
    Param('order', STRING, _TASK.order, 'which queued frame runs first', choices=core.ORDERS,
          live=True),
    Param('max_rate_hz', DOUBLE, _TASK.max_rate_hz, 'admission cap (0: none)', 0.0, 10000.0,
          live=True),
    Param('min_rate_hz', DOUBLE, _TASK.min_rate_hz, 'rate floor that runs ahead of priority '
          '(0: none)', 0.0, 10000.0, live=True),
    Param('on_deadline', STRING, _TASK.on_deadline, 'drop late frames or run them anyway',
          choices=core.ON_DEADLINE, live=True),
    Param('worker', STRING, _TASK.worker, 'worker kind', choices=tuple(WORKER_KINDS)),
    Param('expected_latency_ms', DOUBLE, _TASK.expected_latency_ms,
          'service time guess before measurements (0: ask the worker)', 0.0, BIG, live=True),
    Param('timeout_ms', DOUBLE, _TASK.timeout_ms, 'fail a job running longer (0: none)',
          0.0, BIG, live=True),
    Param('pool', STRING, _TASK.pool, 'the pool of slots it runs on'),
    Param('enabled', BOOL, _TASK.enabled, 'false: its frames are dropped (disabled)',
          live=True),
)

POOL_PARAMS = (
    Param('slots', INTEGER, 1, 'worker threads of the pool', 1, 256),
)

GLOBAL = {p.name: p for p in GLOBAL_PARAMS}
INPUT = {p.name: p for p in INPUT_PARAMS}
TASK = {p.name: p for p in TASK_PARAMS}
RESERVED_NAMES = {'shedding', 'telemetry', 'diagnostic_updater', 'qos_overrides', 'use_sim_time',
                  'start_type_description_service'} | {p.name for p in GLOBAL_PARAMS}
WORKER_OPTIONS = 'worker_options'


def worker_option_params(kind: str) -> Tuple[Param, ...]:
    """
    Return the parameters `<task>.worker_options.<key>` of a worker kind.

    They are dynamically typed: the worker validates them (on configure). A default that a ROS
    parameter cannot hold (REQUIRED, None, a mapping, an empty list) is left unset; mappings can
    only be given in a config_file.
    """
    params = []
    for key, (default, _) in worker_class(kind).OPTIONS.items():
        text = 'required' if default is REQUIRED else f'default {default!r}'
        if default is REQUIRED or isinstance(default, dict) or \
                isinstance(default, (list, tuple)) and not default:
            default = None  # no ROS parameter value: unset unless given
        elif isinstance(default, tuple):
            default = list(default)
        params.append(Param(f'{WORKER_OPTIONS}.{key}', ANY, default,
                            f'{kind} worker option {key} ({text})'))
    return tuple(params)


def check_names(kind: str, names: List[str], taken: Dict[str, str]) -> List[str]:
    """Validate block names (inputs, tasks, pools): unique, well formed, not reserved."""
    for name in names:
        if not isinstance(name, str) or not core.NAME_PATTERN.match(name):
            raise core.ConfigError(f'{kind}: {name!r} is not a valid name; allowed: a letter '
                                   'followed by letters, digits or underscores')
        if name in RESERVED_NAMES:
            raise core.ConfigError(f'{kind}: {name!r} is a reserved parameter name; allowed: '
                                   f'any other name than {", ".join(sorted(RESERVED_NAMES))}')
        if name in taken and not (kind == 'inputs' and taken[name] == 'inputs'):
            raise core.ConfigError(f'{kind}: {name!r} is already the name of one of the '
                                   f'{taken[name]}; allowed: names unique across inputs, '
                                   'tasks and pools')
        taken[name] = kind
    return list(names)


def config_from_parameters(get: Callable[[str], Any], inputs: List[str], tasks: List[str],
                           pools: List[str]) -> Dict[str, Any]:
    """
    Build the core config dict from parameter values; get(name) returns a value or None.

    The core validates the result (load_config), naming the failing field.
    """
    orchestrator = {
        'name': 'inferedge_orchestrator',
        'mode': get('mode'),
        'priority_hold': get('priority_hold'),
        'max_stamp_age_ms': get('max_stamp_age_ms'),
        'max_image_pixels': get('max_image_pixels'),
        'pools': {pool: {'slots': get(f'{pool}.slots')} for pool in pools},
        'shedding': {p.name.split('.', 1)[1]: get(p.name) for p in GLOBAL_PARAMS
                     if p.name.startswith('shedding.')},
        'telemetry': dict({p.name.split('.', 1)[1]: get(p.name) for p in GLOBAL_PARAMS
                           if p.name.startswith('telemetry.')},
                          period_s=get('telemetry_period_s')),
    }
    task_blocks = []
    for task in tasks:
        block = {'name': task}
        for param in TASK_PARAMS:
            block[param.name] = get(f'{task}.{param.name}')
        options = {}
        for param in worker_option_params(block['worker']):
            value = get(f'{task}.{param.name}')
            if value is not None:
                options[param.name.split('.', 1)[1]] = value
        block[WORKER_OPTIONS] = options
        task_blocks.append(block)
    return {'orchestrator': orchestrator, 'inputs': {name: {} for name in inputs},
            'tasks': task_blocks}


def task_parameter_values(task: core.TaskConfig) -> Dict[str, Any]:
    """Return `<key>: value` of a task's block parameters (for a config file's task)."""
    return {param.name: getattr(task, param.name) for param in TASK_PARAMS}


def default_topic(input_name: str) -> str:
    return f'{input_name}/image_raw'
