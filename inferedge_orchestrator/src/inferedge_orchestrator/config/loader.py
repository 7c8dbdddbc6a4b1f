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
Loading and validating a config: YAML, JSON or a dict, in the native or the prototype format.

Every value is checked against its field of the schema (config/model.py); an error names the
field, the value and what is allowed, in one line (a YAML syntax error with its line and
column). The prototype's format (a `run` block plus a `tasks` list) is recognised and
imported; docs/config.md has the mapping.
"""

import json
import os
from typing import Any, Dict, List

from inferedge_orchestrator.config.model import (InputConfig, OrchestratorConfig, PoolConfig,
                                                 SheddingConfig, TaskConfig, TelemetryConfig)
from inferedge_orchestrator.config.prototype import convert_prototype
from inferedge_orchestrator.config.schema import (check_keys, Field, NAME, parse_fields,
                                                  parse_section, schema)
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.contracts.kinds import DECODERS, WORKERS

_BLOCK_NAME = Field('name', NAME, '', 'a name')
TASK_KEYS = ['name'] + list(schema(TaskConfig))
ORCHESTRATOR_KEYS = list(schema(OrchestratorConfig)) + ['pools', 'shedding', 'telemetry']


def parse_task(where: str, data: Any, default_pool: str = 'cpu') -> TaskConfig:
    """Validate one task block and return its TaskConfig (worker options included)."""
    if isinstance(data, dict) and 'input' in data:
        raise ConfigError(f'{where}.input: renamed to inputs, a list; allowed: inputs: '
                          f'[{data["input"]}]')
    check_keys(where, data, TASK_KEYS)
    if 'name' not in data:
        raise ConfigError(f"{where}: missing required key 'name'")
    name = _BLOCK_NAME.check(f'{where}.name', data['name'])
    fields = dict(data)
    fields.pop('name')
    fields.setdefault('pool', default_pool)
    where = f'tasks.{name}'
    task = TaskConfig(name=name, **parse_fields(where, fields, schema(TaskConfig)))
    for key in ('camera_priority', 'camera_budget_ms'):
        values = getattr(task, key)
        if values and len(values) != len(task.inputs):
            raise ConfigError(f'{where}.{key}: {values!r} has {len(values)} value(s) for '
                              f'{len(task.inputs)} inputs {task.inputs}; allowed: one per '
                              'input, in their order, or none')
    if task.max_rate_hz and task.min_rate_hz > task.max_rate_hz:
        raise ConfigError(f'{where}.min_rate_hz: {task.min_rate_hz:g} is above max_rate_hz '
                          f'{task.max_rate_hz:g}; allowed: min_rate_hz <= max_rate_hz')
    task.worker_options = WORKERS.validate(task.worker, task.worker_options,
                                           f'{where}.worker_options')
    task.decoder_options = DECODERS.validate(task.decoder, task.decoder_options,
                                             f'{where}.decoder_options')
    return task


def updated_task(task: TaskConfig, changes: Dict[str, Any]) -> TaskConfig:
    """Return task with changes applied, validated; ConfigError names a field not live."""
    live = [key for key, field in schema(TaskConfig).items() if field.live]
    for key in changes:
        if key not in live:
            raise ConfigError(f'tasks.{task.name}.{key}: cannot change while running; '
                              f'allowed: {", ".join(live)}')
    return parse_task(f'tasks.{task.name}', dict(vars(task), **changes), task.pool)


def _blocks(where: str, data: Any) -> Dict[str, Any]:
    """Check a mapping of block names (pools, inputs) and return it."""
    if not isinstance(data, dict):
        raise ConfigError(f'{where}: expected a mapping of names, got {data!r}')
    for name in data:
        _BLOCK_NAME.check(where, name)
    return data


def parse_config(data: Any) -> OrchestratorConfig:
    """Validate a native or prototype config given as a dict."""
    if not isinstance(data, dict):
        raise ConfigError(f'config: expected a mapping, got {type(data).__name__}')
    if 'run' in data:
        native, warnings, extras = convert_prototype(data)
        config = parse_config(native)
        config.warnings.extend(warnings)
        config.extras.update(extras)
        return config
    check_keys('config', data, ['orchestrator', 'inputs', 'tasks'])
    section = data.get('orchestrator') or {}
    check_keys('orchestrator', section, ORCHESTRATOR_KEYS)
    settings = {key: value for key, value in section.items()
                if key not in ('pools', 'shedding', 'telemetry')}
    config = parse_section('orchestrator', settings, OrchestratorConfig)
    pools = section.get('pools', {'cpu': {'slots': 1}})
    if not isinstance(pools, dict) or not pools:
        raise ConfigError(f'orchestrator.pools: {pools!r} is not allowed; allowed: a mapping '
                          'of pool names to {slots: N}, e.g. {cpu: {slots: 1}}')
    for name, block in _blocks('orchestrator.pools', pools).items():
        config.pools[name] = _check_pool(parse_section(f'orchestrator.pools.{name}', block,
                                                       PoolConfig, name=name))
    config.shedding = parse_section('orchestrator.shedding', section.get('shedding'),
                                    SheddingConfig)
    config.telemetry = parse_section('orchestrator.telemetry', section.get('telemetry'),
                                     TelemetryConfig)
    declared = 'inputs' in data
    for name, block in _blocks('inputs', data.get('inputs') or {}).items():
        config.inputs[name] = parse_section(f'inputs.{name}', block, InputConfig, name=name)

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
        _pool_defaults(task, config.pools[task.pool])
        for name in task.inputs:
            if name not in config.inputs:
                if declared:  # a typo would otherwise make an input nobody feeds
                    raise ConfigError(f'tasks.{task.name}.inputs: {name!r} is not declared in '
                                      f'inputs; allowed: {", ".join(config.inputs) or "none"}')
                config.inputs[name] = InputConfig(name)
        config.tasks.append(task)
    _check_server_pools(config)
    return config


# Pool settings that are also options of the workers that declare them: the pool's value is
# the default of its tasks' workers (a task's own worker option wins).
POOL_WORKER_OPTIONS = ('stream_priority',)


def _pool_defaults(task: TaskConfig, pool: PoolConfig) -> None:
    """Give task's worker the pool's POOL_WORKER_OPTIONS that the task leaves unset."""
    declared = WORKERS.cls(task.worker).OPTIONS
    for name in POOL_WORKER_OPTIONS:
        if name in declared and task.worker_options.get(name) is None:
            task.worker_options[name] = getattr(pool, name)


def _check_pool(pool: PoolConfig) -> PoolConfig:
    """
    Refuse OS scheduling settings on a thread pool.

    Its slots are threads of the engine's process: a starved slot thread would hold the GIL
    and the engine's lock while a normal one waits for them (priority inversion).
    """
    if pool.isolation != 'process':
        for key, default in (('os_policy', 'normal'), ('os_nice', 0)):
            if getattr(pool, key) != default:
                raise ConfigError(f'orchestrator.pools.{pool.name}.{key}: '
                                  f'{getattr(pool, key)!r} needs isolation: process (a thread '
                                  "pool's slots share the engine's GIL and lock); allowed: "
                                  f'{default!r} here, or isolation: process')
    return pool


def remote_tasks(config: OrchestratorConfig, pool: str) -> List[TaskConfig]:
    """Return the tasks of a pool whose workers run on a server (the triton kind)."""
    return [t for t in config.tasks if t.pool == pool and WORKERS.cls(t.worker).remote]


def _check_server_pools(config: OrchestratorConfig) -> None:
    """
    Check the server pools: the pools of remote tasks (triton).

    Their slots are requests to one server, so such a pool serves no local task, isolates
    nothing and names one server.
    """
    for pool in config.pools.values():
        remote = remote_tasks(config, pool.name)
        if not remote:
            continue
        first = remote[0]
        local = [t for t in config.tasks if t.pool == pool.name and t not in remote]
        if local:
            raise ConfigError(f'tasks.{local[0].name}.pool: {pool.name!r} is the server pool '
                              f'of task {first.name} (worker {first.worker}), whose slots are '
                              'requests to its server; allowed: a pool of local tasks')
        if pool.isolation != 'thread':
            raise ConfigError(f'orchestrator.pools.{pool.name}.isolation: {pool.isolation!r} '
                              f'is not allowed for the server pool of task {first.name} '
                              f'(worker {first.worker}): its model runs on the server, there '
                              'is no local worker to isolate; allowed: thread')
        server = WORKERS.cls(first.worker).server(first.worker_options)
        for task in remote[1:]:
            other = WORKERS.cls(task.worker).server(task.worker_options)
            if other != server:
                raise ConfigError(f'tasks.{task.name}.worker_options.url: {other} is not the '
                                  f'server of pool {pool.name} ({server}, task {first.name}); '
                                  'allowed: one server per pool (its breaker and probes are '
                                  "the pool's): give this task a pool of its own")


def _read(path: str) -> Any:
    """Read a YAML or JSON file; a syntax error names its line and column."""
    try:
        with open(path, 'r', encoding='utf-8') as stream:
            text = stream.read()
    except OSError as error:
        raise ConfigError(f'{path}: cannot read the config: {error.strerror}') from None
    if path.endswith('.json'):
        try:
            return json.loads(text)
        except ValueError as error:
            raise ConfigError(f'{path}:{error.lineno}:{error.colno}: not valid JSON: '
                              f'{error.msg}') from None
    import yaml
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}:{mark.column + 1}' if mark is not None else path
        problem = getattr(error, 'problem', None) or str(error).splitlines()[0]
        raise ConfigError(f'{where}: not valid YAML: {problem}') from None


def load_config(source: Any) -> OrchestratorConfig:
    """Load a config from a path (YAML or JSON), a dict or an OrchestratorConfig."""
    if isinstance(source, OrchestratorConfig):
        return source
    if not isinstance(source, (str, os.PathLike)):
        return parse_config(source)
    path = os.fspath(source)
    data = _read(path)
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f'{path}: {error}') from None
