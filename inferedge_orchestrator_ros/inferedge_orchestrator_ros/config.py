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
Validated configuration: tasks, inputs, pools, shedding and telemetry settings.

A config comes from YAML, JSON or a dict. The prototype's format (a `run` block plus a `tasks`
list) is recognised and imported; see docs/config.md for the mapping.
"""

import copy
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
import json
import math
import os
import re
from typing import Any, Dict, List

from inferedge_orchestrator_ros.draws import DISTRIBUTIONS

NAME_PATTERN = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
DROP_POLICIES = ('drop_oldest', 'drop_newest')
ORDERS = ('oldest_first', 'newest_first')
ON_DEADLINE = ('drop', 'run')
MODES = ('priority', 'fifo')
ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16')
MAX_PRIORITY = 1000
MAX_QUEUE_SIZE = 4096


class ConfigError(ValueError):
    """A configuration value is invalid: the message names the field, value and what is allowed."""


@dataclass
class PoolConfig:
    name: str
    slots: int = 1


@dataclass
class InputConfig:
    name: str
    rate_hz: float = 30.0  # synthetic source rate; the expected rate for diagnostics
    width: int = 640
    height: int = 480
    encoding: str = 'rgb8'
    # Transport age of synthetic frames (stamp -> arrival), for `run` and the virtual clock.
    age_ms: float = 0.0
    age_jitter_ms: float = 0.0
    age_distribution: str = 'fixed'


@dataclass
class SheddingConfig:
    enabled: bool = True
    tick_s: float = 0.5
    recovery_s: float = 2.0
    recovery_step_hz: float = 1.0
    backlog_threshold: int = 0  # total queued frames that count as risk; 0 disables the check
    p95_budget_fraction: float = 0.8
    min_limit_hz: float = 0.5  # floor for tasks without min_rate_hz
    min_load_share: float = 0.05  # a task adding less of the pool's slot time is never limited


@dataclass
class TelemetryConfig:
    window_s: float = 10.0
    period_s: float = 1.0
    window_samples: int = 4096  # ring size per latency series; overflow is reported
    decision_history: int = 1000
    resources: bool = True


@dataclass
class TaskConfig:
    name: str
    input: str = 'camera'  # noqa: A003 - the config key users write
    priority: int = 0
    latency_budget_ms: float = 100.0
    queue_size: int = 4
    drop_policy: str = 'drop_oldest'
    order: str = 'oldest_first'
    max_rate_hz: float = 0.0
    min_rate_hz: float = 0.0
    on_deadline: str = 'drop'
    worker: str = 'dummy'
    worker_options: Dict[str, Any] = field(default_factory=dict)
    expected_latency_ms: float = 0.0  # 0: ask the worker (dummy: its latency)
    timeout_ms: float = 0.0  # 0: no timeout
    pool: str = 'cpu'
    enabled: bool = True

    @property
    def budget_s(self) -> float:
        return self.latency_budget_ms / 1000.0


@dataclass
class OrchestratorConfig:
    name: str = 'orchestrator'
    mode: str = 'priority'
    priority_hold: bool = True
    max_stamp_age_ms: float = 5000.0
    max_image_pixels: int = 8192 * 8192
    pools: Dict[str, PoolConfig] = field(default_factory=dict)
    inputs: Dict[str, InputConfig] = field(default_factory=dict)
    tasks: List[TaskConfig] = field(default_factory=list)
    shedding: SheddingConfig = field(default_factory=SheddingConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    warnings: List[str] = field(default_factory=list)
    extras: Dict[str, Any] = field(default_factory=dict)  # prototype keys kept for reference

    def task(self, name: str) -> TaskConfig:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        """Return the config in the native format (loadable by load_config)."""
        return {
            'orchestrator': {
                'name': self.name, 'mode': self.mode, 'priority_hold': self.priority_hold,
                'max_stamp_age_ms': self.max_stamp_age_ms,
                'max_image_pixels': self.max_image_pixels,
                'pools': {p.name: {'slots': p.slots} for p in self.pools.values()},
                'shedding': asdict(self.shedding),
                'telemetry': asdict(self.telemetry),
            },
            'inputs': {i.name: {k: v for k, v in asdict(i).items() if k != 'name'}
                       for i in self.inputs.values()},
            'tasks': [asdict(t) for t in self.tasks],
        }


# --- field checking -------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_keys(where: str, data: Any, known: List[str]) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f'{where}: expected a mapping, got {_type_name(data)} {data!r}')
    for key in data:
        if key not in known:
            raise ConfigError(f'{where}: unknown key {key!r}; known keys: {", ".join(known)}')


def _number(where: str, value: Any, low: float, high: float = math.inf,
            low_open: bool = False) -> float:
    # YAML and `ros2 param set` give 80 and 80.0 alike: ints are accepted for floats.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f'{where}: {value!r} is not a number')
    bad_low = value <= low if low_open else value < low
    if bad_low or value > high:
        lower = f'> {low:g}' if low_open else f'>= {low:g}'
        upper = '' if high == math.inf else f' and <= {high:g}'
        raise ConfigError(f'{where}: {value!r} is out of range; allowed: a number {lower}{upper}')
    return float(value)


def _integer(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f'{where}: {value!r} is not an integer; allowed: {low}..{high}')
    if not low <= value <= high:
        raise ConfigError(f'{where}: {value!r} is out of range; allowed: {low}..{high}')
    return int(value)


def _choice(where: str, value: Any, allowed: tuple) -> str:
    if value not in allowed:
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: {", ".join(allowed)}')
    return value


def _boolean(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f'{where}: {value!r} is not a boolean; allowed: true, false')
    return value


def _name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ConfigError(f'{where}: {value!r} is not a valid name; allowed: a letter followed by '
                          'letters, digits or underscores')
    return value


# --- sections -------------------------------------------------------------------------------

TASK_KEYS = list(TaskConfig.__dataclass_fields__)


def parse_task(where: str, data: Any, default_pool: str = 'cpu') -> TaskConfig:
    """Validate one task block and return its TaskConfig."""
    _check_keys(where, data, TASK_KEYS)
    if 'name' not in data:
        raise ConfigError(f"{where}: missing required key 'name'")
    task = TaskConfig(name=_name(f'{where}.name', data['name']), pool=default_pool)
    where = f'tasks.{task.name}'
    checks = {
        'input': lambda v: _name(f'{where}.input', v),
        'priority': lambda v: _integer(f'{where}.priority', v, 0, MAX_PRIORITY),
        'latency_budget_ms': lambda v: _number(f'{where}.latency_budget_ms', v, 0.0,
                                               low_open=True),
        'queue_size': lambda v: _integer(f'{where}.queue_size', v, 1, MAX_QUEUE_SIZE),
        'drop_policy': lambda v: _choice(f'{where}.drop_policy', v, DROP_POLICIES),
        'order': lambda v: _choice(f'{where}.order', v, ORDERS),
        'max_rate_hz': lambda v: _number(f'{where}.max_rate_hz', v, 0.0),
        'min_rate_hz': lambda v: _number(f'{where}.min_rate_hz', v, 0.0),
        'on_deadline': lambda v: _choice(f'{where}.on_deadline', v, ON_DEADLINE),
        'worker': lambda v: _choice(f'{where}.worker', v, _worker_kinds()),
        'worker_options': lambda v: _mapping(f'{where}.worker_options', v),
        'expected_latency_ms': lambda v: _number(f'{where}.expected_latency_ms', v, 0.0),
        'timeout_ms': lambda v: _number(f'{where}.timeout_ms', v, 0.0),
        'pool': lambda v: _name(f'{where}.pool', v),
        'enabled': lambda v: _boolean(f'{where}.enabled', v),
    }
    for key, check in checks.items():
        if key in data:
            setattr(task, key, check(data[key]))
    if task.max_rate_hz and task.min_rate_hz > task.max_rate_hz:
        raise ConfigError(f'{where}.min_rate_hz: {task.min_rate_hz:g} is above max_rate_hz '
                          f'{task.max_rate_hz:g}; allowed: min_rate_hz <= max_rate_hz')
    from inferedge_orchestrator_ros.workers import validate_worker_options
    task.worker_options = validate_worker_options(task.worker, task.worker_options,
                                                  f'{where}.worker_options')
    return task


def _mapping(where: str, value: Any) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f'{where}: expected a mapping, got {_type_name(value)} {value!r}')
    return copy.deepcopy(value)


def _worker_kinds() -> tuple:
    from inferedge_orchestrator_ros.workers import WORKER_KINDS
    return tuple(WORKER_KINDS)


def _parse_dataclass(where: str, data: Any, instance: Any, ranges: Dict[str, Any]) -> Any:
    known = [f for f in instance.__dataclass_fields__ if f != 'name']
    _check_keys(where, data if data is not None else {}, known)
    for key, value in (data or {}).items():
        setattr(instance, key, ranges[key](f'{where}.{key}', value))
    return instance


def _num(low, high=math.inf, low_open=False):
    return lambda where, v: _number(where, v, low, high, low_open)


def _int(low, high):
    return lambda where, v: _integer(where, v, low, high)


SHEDDING_RANGES = {
    'enabled': _boolean, 'tick_s': _num(0.0, 60.0, True), 'recovery_s': _num(0.0, 3600.0),
    'recovery_step_hz': _num(0.0, 1000.0, True), 'backlog_threshold': _int(0, 1000000),
    'p95_budget_fraction': _num(0.0, 10.0, True), 'min_limit_hz': _num(0.0, 1000.0, True),
    'min_load_share': _num(0.0, 1.0),
}
TELEMETRY_RANGES = {
    'window_s': _num(0.0, 3600.0, True), 'period_s': _num(0.0, 3600.0, True),
    'window_samples': _int(16, 1000000), 'decision_history': _int(1, 1000000),
    'resources': _boolean,
}
INPUT_RANGES = {
    'rate_hz': _num(0.0, 10000.0, True), 'width': _int(1, 65535), 'height': _int(1, 65535),
    'encoding': lambda where, v: _choice(where, v, ENCODINGS),
    'age_ms': _num(0.0, 60000.0), 'age_jitter_ms': _num(0.0, 60000.0),
    'age_distribution': lambda where, v: _choice(where, v, DISTRIBUTIONS),
}
ORCHESTRATOR_KEYS = ['name', 'mode', 'priority_hold', 'max_stamp_age_ms', 'max_image_pixels',
                     'pools', 'shedding', 'telemetry']


def parse_config(data: Any) -> OrchestratorConfig:
    """Validate a native or prototype config given as a dict."""
    if not isinstance(data, dict):
        raise ConfigError(f'config: expected a mapping, got {_type_name(data)}')
    if 'run' in data:
        from inferedge_orchestrator_ros.prototype import convert_prototype
        native, warnings, extras = convert_prototype(data)
        config = parse_config(native)
        config.warnings.extend(warnings)
        config.extras.update(extras)
        return config
    _check_keys('config', data, ['orchestrator', 'inputs', 'tasks'])
    section = data.get('orchestrator') or {}
    _check_keys('orchestrator', section, ORCHESTRATOR_KEYS)
    config = OrchestratorConfig()
    if 'name' in section:
        if not isinstance(section['name'], str):
            raise ConfigError(f'orchestrator.name: {section["name"]!r} is not a string')
        config.name = section['name']
    if 'mode' in section:
        config.mode = _choice('orchestrator.mode', section['mode'], MODES)
    if 'priority_hold' in section:
        config.priority_hold = _boolean('orchestrator.priority_hold', section['priority_hold'])
    if 'max_stamp_age_ms' in section:
        config.max_stamp_age_ms = _number('orchestrator.max_stamp_age_ms',
                                          section['max_stamp_age_ms'], 0.0, low_open=True)
    if 'max_image_pixels' in section:
        config.max_image_pixels = _integer('orchestrator.max_image_pixels',
                                           section['max_image_pixels'], 1, 2 ** 40)
    pools = section.get('pools', {'cpu': {'slots': 1}})
    if not isinstance(pools, dict) or not pools:
        raise ConfigError(f'orchestrator.pools: {pools!r} is not allowed; allowed: a mapping '
                          'of pool names to {slots: N}, e.g. {cpu: {slots: 1}}')
    for name, pool in pools.items():
        where = f'orchestrator.pools.{_name("orchestrator.pools", name)}'
        _check_keys(where, pool, ['slots'])
        config.pools[name] = PoolConfig(name, _integer(f'{where}.slots', pool.get('slots', 1),
                                                       1, 256))
    config.shedding = _parse_dataclass('orchestrator.shedding', section.get('shedding'),
                                       SheddingConfig(), SHEDDING_RANGES)
    config.telemetry = _parse_dataclass('orchestrator.telemetry', section.get('telemetry'),
                                        TelemetryConfig(), TELEMETRY_RANGES)

    inputs = data.get('inputs') or {}
    if not isinstance(inputs, dict):
        raise ConfigError(f'inputs: expected a mapping of input names, got {inputs!r}')
    for name, block in inputs.items():
        where = f'inputs.{_name("inputs", name)}'
        config.inputs[name] = _parse_dataclass(where, block, InputConfig(name), INPUT_RANGES)

    tasks = data.get('tasks')
    if not isinstance(tasks, list) or not tasks:
        raise ConfigError(f'tasks: {tasks!r} is not allowed; allowed: a non-empty list of task '
                          'mappings, each with at least a name')
    default_pool = next(iter(config.pools))
    for index, block in enumerate(tasks):
        task = parse_task(f'tasks[{index}]', block, default_pool)
        if any(t.name == task.name for t in config.tasks):
            raise ConfigError(f'tasks[{index}].name: {task.name!r} is used twice; allowed: '
                              'unique task names')
        if task.pool not in config.pools:
            raise ConfigError(f'tasks.{task.name}.pool: {task.pool!r} is not a pool; allowed: '
                              f'{", ".join(config.pools)}')
        config.inputs.setdefault(task.input, InputConfig(task.input))
        config.tasks.append(task)
    return config


def load_config(source: Any) -> OrchestratorConfig:
    """Load a config from a path (YAML or JSON), a dict or an OrchestratorConfig."""
    if isinstance(source, OrchestratorConfig):
        return source
    if not isinstance(source, (str, os.PathLike)):
        return parse_config(source)
    path = os.fspath(source)
    try:
        with open(path, 'r', encoding='utf-8') as stream:
            text = stream.read()
    except OSError as error:
        raise ConfigError(f'{path}: cannot read the config: {error.strerror}') from None
    try:
        if path.endswith('.json'):
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except (ValueError, ImportError) as error:  # yaml.YAMLError derives from Exception only
        raise ConfigError(f'{path}: not valid {"JSON" if path.endswith(".json") else "YAML"}: '
                          f'{str(error).splitlines()[0]}') from None
    except Exception as error:  # noqa: B902 - yaml's errors share no narrower base
        raise ConfigError(f'{path}: not valid YAML: {str(error).splitlines()[0]}') from None
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f'{path}: {error}') from None
