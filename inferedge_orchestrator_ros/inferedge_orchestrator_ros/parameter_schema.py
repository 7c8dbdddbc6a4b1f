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
block of parameters (`detector.priority`, `camera.topic`, `cpu.slots`). Every parameter that
sets a core setting is that setting's Field from the core schema (inferedge_orchestrator's
config/model.py): its type, default, range, unit, description and whether it may change while
the node is configured (Field.live). The node's own settings (topics, QoS, lifecycle, files)
are Fields of the same kind, declared below. NodeParameters (parameters.py) declares them
with their descriptors, checks every value with Field.check on set and applies the live ones
after the set; docs/node.md lists them.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from inferedge_orchestrator import (ConfigError, DECODERS, MetricsConfig, OrchestratorConfig,
                                    PoolConfig, schema, SheddingConfig, TaskConfig,
                                    TelemetryConfig, WORKERS)
from inferedge_orchestrator_ros.conversion import AUTO, CONVERT_TO

# The ROS parameter types the Fields are declared with.
BOOLEAN, INTEGER, DOUBLE, STRING, STRING_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY, ANY = (
    'bool', 'integer', 'double', 'string', 'string_array', 'integer_array', 'double_array', 'any')
# Arrays may be empty, which has no ROS type: they are declared dynamically typed, unset = [].
ARRAYS = (STRING_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY)
_ROS_TYPES = {schema.BOOL: BOOLEAN, schema.INT: INTEGER, schema.FLOAT: DOUBLE,
              schema.STR_LIST: STRING_ARRAY, schema.INT_LIST: INTEGER_ARRAY,
              schema.FLOAT_LIST: DOUBLE_ARRAY}

RELIABILITIES = ('best_effort', 'reliable')
DURABILITIES = ('volatile', 'transient_local')
MESSAGE_TYPES = ('image', 'compressed_image')
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
WORKER_OPTIONS = 'worker_options'
DECODER_OPTIONS = 'decoder_options'
# The option blocks of a task: <task>.<block>.<key>, declared for the kind its <kind field> names.
OPTION_BLOCKS = {WORKER_OPTIONS: 'worker', DECODER_OPTIONS: 'decoder'}
BIG = 1e9


@dataclass(frozen=True)
class Param:
    """One ROS parameter: its name (within its block) and the Field that checks it."""

    name: str
    field: schema.Field
    kind: str  # the ROS parameter type: BOOLEAN, INTEGER, DOUBLE, STRING, an array, ANY

    @property
    def default(self) -> Any:
        return self.field.default

    @property
    def description(self) -> str:
        return self.field.description

    @property
    def live(self) -> bool:
        return self.field.live

    def check(self, full_name: str, value: Any) -> Optional[str]:
        """Return why value is refused, or None when it is acceptable."""
        if self.kind == ANY:
            return None  # worker options: the worker checks them at configure
        try:
            self.field.check(full_name, value)
        except ConfigError as error:
            return str(error)
        return None

    def range_text(self) -> str:
        field = self.field
        if field.kind in (schema.INT, schema.FLOAT, schema.INT_LIST, schema.FLOAT_LIST) or \
                field.choices:
            return field.allowed()
        return ''


def _param(field: schema.Field, name: Optional[str] = None) -> Param:
    kind = _ROS_TYPES.get(field.kind, STRING if field.kind in (schema.CHOICE, schema.NAME, 'str')
                          else ANY)
    return Param(name or field.name, field, kind)


def _core(cls: type, prefix: str = '', skip: Tuple[str, ...] = (),
          renames: Optional[Dict[str, str]] = None) -> Tuple[Param, ...]:
    renames = renames or {}
    return tuple(_param(field, renames.get(key, prefix + key))
                 for key, field in schema.schema(cls).items() if key not in skip)


def _node(name: str, default: Any, description: str, **settings: Any) -> Param:
    return _param(schema.setting(name, default, description, **settings))


GLOBAL_PARAMS = (
    _node('autostart', True, 'configure and activate by itself at startup (read once)',
          live=True),
    _node('config_file', '', 'a core YAML/JSON config with the tasks (instead of the tasks '
          'parameter; both given: configure fails)'),
    _node('inputs', [], 'input names; each has a block of input parameters (inputs named only '
          'by tasks get the defaults)', kind=schema.STR_LIST),
    _node('tasks', [], 'task names; each has a block of task parameters', kind=schema.STR_LIST),
    _node('pools', ['cpu'], 'pools of worker slots; each has <pool>.slots', kind=schema.STR_LIST),
) + _core(OrchestratorConfig, skip=('name',)) + _core(SheddingConfig, 'shedding.') + \
    _core(TelemetryConfig, 'telemetry.', renames={'period_s': 'telemetry_period_s'}) + \
    _core(MetricsConfig) + (
    _node('publish_tensors', False, 'put the output tensors into the results', live=True),
    _node('annotate_rate_hz', 0.0, 'publish ~/<task>/annotated (the detections drawn on the '
          'image) at most this often per task (0: off)', low=0.0, high=100.0, unit='Hz',
          live=True),
    _node('publish_queue_depth', 100, 'messages each published topic may hold waiting for '
          "the node's publisher thread; a full one drops its oldest, counted (0: no queue, "
          'publish on the slot threads, the timer thread and the executor)', low=0,
          high=100000),
    _node('report_path', '', 'write the final JSON report there at cleanup and shutdown '
          '(empty: no report)', live=True),
    _node('trace_path', '', 'write the job trace there, one JSON line per routed frame and '
          'task, from configure to cleanup (empty: none; simulate --trace replays it)'),
    _node('deactivate_timeout_s', 2.0, 'deactivate finishes queued frames for at most this '
          'long, then drops the rest (reason deactivated)', low=0.0, high=600.0, unit='s',
          live=True),
    _node('executor_threads', 1, "the node's executor (read once): 1 a single-threaded one; "
          'more: a multi-threaded one of that many threads, each input in a callback group of '
          "its own (cameras' images taken at once); docs/benchmarks.md measures both",
          low=1, high=64),
)

INPUT_PARAMS = (
    _node('topic', '', 'the image topic (empty: <input>/image_raw, relative)'),
    _node('message_type', 'image', 'sensor_msgs Image (image) or CompressedImage '
          '(compressed_image: JPEG or PNG)', choices=MESSAGE_TYPES),
    _node('convert_to', AUTO, 'what images in the camera encodings (YUV, Bayer) become, once '
          'per frame (auto: what the first task of the input wants, its channel_order; '
          'passthrough: no conversion, a Bayer mosaic as mono8 or mono16); message_type '
          'image only', choices=CONVERT_TO),
    _node('reliability', 'best_effort', 'subscription QoS reliability', choices=RELIABILITIES),
    _node('durability', 'volatile', 'subscription QoS durability', choices=DURABILITIES),
    _node('depth', 1, 'subscription queue depth (keep last)', low=1, high=10000),
    _node('deadline_ms', 0.0, 'QoS deadline between messages (0: none); misses are counted',
          low=0.0, high=BIG, unit='ms'),
    _node('expected_rate_hz', 0.0, 'diagnostics WARN below this rate (0: no check)', low=0.0,
          high=10000.0, unit='Hz', live=True),
    _node('stale_after_s', 2.0, 'diagnostics ERROR when no message came for this long',
          low=0.01, high=3600.0, unit='s', live=True),
)

TASK_PARAMS = _core(TaskConfig, skip=tuple(OPTION_BLOCKS))
POOL_PARAMS = _core(PoolConfig)

GLOBAL = {p.name: p for p in GLOBAL_PARAMS}
INPUT = {p.name: p for p in INPUT_PARAMS}
TASK = {p.name: p for p in TASK_PARAMS}
RESERVED_NAMES = {'shedding', 'telemetry', 'diagnostic_updater', 'qos_overrides', 'use_sim_time',
                  'start_type_description_service'} | {p.name for p in GLOBAL_PARAMS}


def _unchecked(where: str, value: Any) -> Any:
    return value


def option_params(block: str, kind: str) -> Tuple[Param, ...]:
    """
    Return the parameters `<task>.<block>.<key>` of a worker or decoder kind.

    block: worker_options or decoder_options. They are dynamically typed: the worker or the
    decoder validates them (on configure). A default that a ROS parameter cannot hold
    (REQUIRED, None, a mapping, an empty list) is left unset; mappings can only be given in a
    config_file.
    """
    if block == WORKER_OPTIONS:
        options, what = WORKERS.cls(kind).OPTIONS, 'worker'
    else:
        options, what = DECODERS.cls(kind).OPTIONS, 'decoder'
    params = []
    for key, field in options.items():
        default = field.default
        text = 'required' if default is schema.REQUIRED else f'default {default!r}'
        if default is schema.REQUIRED or isinstance(default, dict) or \
                isinstance(default, (list, tuple)) and not default:
            default = None  # no ROS parameter value: unset unless given
        elif isinstance(default, tuple):
            default = list(default)
        option = schema.setting(f'{block}.{key}', default,
                                f'{kind} {what} option {key} ({text}): {field.description}',
                                kind=schema.CUSTOM, checker=_unchecked)
        params.append(Param(option.name, option, ANY))
    return tuple(params)


def check_names(kind: str, names: List[str], taken: Dict[str, str]) -> List[str]:
    """Validate block names (inputs, tasks, pools): unique, well formed, not reserved."""
    for name in names:
        if not isinstance(name, str) or not schema.NAME_PATTERN.match(name):
            raise ConfigError(f'{kind}: {name!r} is not a valid name; allowed: a letter '
                              'followed by letters, digits or underscores')
        if name in RESERVED_NAMES:
            raise ConfigError(f'{kind}: {name!r} is a reserved parameter name; allowed: any '
                              f'other name than {", ".join(sorted(RESERVED_NAMES))}')
        if name in taken and not (kind == 'inputs' and taken[name] == 'inputs'):
            raise ConfigError(f'{kind}: {name!r} is already the name of one of the '
                              f'{taken[name]}; allowed: names unique across inputs, tasks and '
                              'pools')
        taken[name] = kind
    return list(names)


def _section(prefix: str, cls: type, get: Callable[[str], Any],
             renames: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    renames = renames or {}
    return {key: get(renames.get(key, prefix + key)) for key in schema.schema(cls)}


def config_from_parameters(get: Callable[[str], Any], inputs: List[str], tasks: List[str],
                           pools: List[str]) -> Dict[str, Any]:
    """
    Build the core config dict from parameter values; get(name) returns a value or None.

    The core validates the result (load_config), naming the failing field.
    """
    orchestrator = {key: get(key) for key in schema.schema(OrchestratorConfig) if key != 'name'}
    orchestrator.update(
        name='inferedge_orchestrator',
        pools={pool: _section(f'{pool}.', PoolConfig, get) for pool in pools},
        shedding=_section('shedding.', SheddingConfig, get),
        telemetry=_section('telemetry.', TelemetryConfig, get,
                           {'period_s': 'telemetry_period_s'}))
    task_blocks = []
    for task in tasks:
        block = {'name': task}
        for param in TASK_PARAMS:
            block[param.name] = get(f'{task}.{param.name}')
        for options_block, kind_field in OPTION_BLOCKS.items():
            options = {}
            for param in option_params(options_block, block[kind_field]):
                value = get(f'{task}.{param.name}')
                if value is not None:
                    options[param.name.split('.', 1)[1]] = value
            block[options_block] = options
        task_blocks.append(block)
    return {'orchestrator': orchestrator, 'inputs': {name: {} for name in inputs},
            'tasks': task_blocks}


def task_parameter_values(task: TaskConfig) -> Dict[str, Any]:
    """Return `<key>: value` of a task's block parameters (for a config file's task)."""
    return {param.name: getattr(task, param.name) for param in TASK_PARAMS}


def default_topic(input_name: str) -> str:
    return f'{input_name}/image_raw'


# The tables of docs/node.md, each between the markers <!-- parameters: NAME --> and
# <!-- end parameters -->; test_ros_helpers.py checks that the file holds what this makes.
DOCS_TABLES = {'global': GLOBAL_PARAMS, 'pool': POOL_PARAMS, 'input': INPUT_PARAMS,
               'task': TASK_PARAMS}


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"'{value}'" if value == '' else value
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(str(v) for v in value) + ']'
    return f'{value:g}' if isinstance(value, float) else str(value)


def docs_table(params: Tuple[Param, ...]) -> str:
    """Return the markdown table of a parameter list, as docs/node.md holds it."""
    lines = ['| parameter | type | default | range / allowed | unit | live | description |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for param in params:
        field = param.field
        lines.append(f'| `{param.name}` | {param.kind} | {_cell(field.default)} | '
                     f'{param.range_text()} | {field.unit} | {"yes" if field.live else "no"} | '
                     f'{field.description} |')
    return '\n'.join(lines) + '\n'


def docs_with_tables(text: str) -> str:
    """Return text (docs/node.md) with every marked table made again from the schema."""
    return schema.with_marked_tables(text, {name: docs_table(params)
                                     for name, params in DOCS_TABLES.items()}, 'parameters')


if __name__ == '__main__':  # python3 parameter_schema.py docs/node.md: the tables again
    import sys
    with open(sys.argv[1], encoding='utf-8') as stream:
        updated = docs_with_tables(stream.read())
    with open(sys.argv[1], 'w', encoding='utf-8') as stream:
        stream.write(updated)
