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
Import of the InferEdgeOrchestrator prototype's config format (a `run` block plus `tasks`).

Mapping (docs/config.md):
- run.overload_backlog_threshold -> orchestrator.shedding.backlog_threshold
- run.name -> orchestrator.name; run.input_source is informational
- task drop_policy drop_low_priority -> drop_newest (what the prototype does with it)
- task simulated_latency_ms -> worker_options.latency_ms (dummy worker)
- task model_path / engine_path -> worker_options.model_path / engine_path (onnxruntime /
  tensorrt); informational for dummy
- task worker_options.warmup_runs -> worker_options.warmup; device_id kept for tensorrt
- task target_fps is informational: the prototype ignores it, so it never sets a rate or a cap
- every other key is kept under config.extras with a warning
All prototype tasks consume one input, `camera`, and share one pool with one slot (the
prototype runs one serial worker).
"""

from typing import Any, Dict, List, Tuple

NATIVE_TASK_KEYS = ('name', 'priority', 'latency_budget_ms', 'queue_size')
INFORMATIONAL_RUN_KEYS = ('name', 'input_source')
DROP_POLICY_MAP = {'drop_oldest': 'drop_oldest', 'drop_newest': 'drop_newest',
                   'drop_low_priority': 'drop_newest'}


def convert_prototype(data: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str], Dict[str, Any]]:
    """Return (native config dict, warnings, extras) for a prototype config."""
    warnings: List[str] = []
    extras: Dict[str, Any] = {'run': {}, 'tasks': {}}
    run = data.get('run') or {}
    shedding: Dict[str, Any] = {}
    orchestrator: Dict[str, Any] = {'pools': {'cpu': {'slots': 1}}, 'shedding': shedding}
    for key, value in run.items():
        if key == 'overload_backlog_threshold':
            shedding['backlog_threshold'] = value
        elif key == 'name':
            orchestrator['name'] = value
        elif key in INFORMATIONAL_RUN_KEYS:
            extras['run'][key] = value
        else:
            extras['run'][key] = value
            warnings.append(f'run.{key}: unknown prototype key kept in extras, not used')
    for key in data:
        if key not in ('run', 'tasks'):
            extras[key] = data[key]
            warnings.append(f'{key}: unknown prototype key kept in extras, not used')

    tasks = [_convert_task(index, proto, extras, warnings)
             for index, proto in enumerate(data.get('tasks') or [])]
    return {'orchestrator': orchestrator, 'tasks': tasks}, warnings, extras


def _convert_task(index: int, proto: Any, extras: Dict[str, Any], warnings: List[str]) -> Any:
    """Return one prototype task as a native task block; what is not used goes to extras."""
    if not isinstance(proto, dict):
        return proto  # parse_config reports the error
    name = proto.get('name', f'tasks[{index}]')
    task = {key: proto[key] for key in NATIVE_TASK_KEYS if key in proto}
    kept = extras['tasks'].setdefault(str(name), {})
    worker = proto.get('worker', 'dummy')
    task['worker'] = worker
    options: Dict[str, Any] = {}
    if 'drop_policy' in proto:
        task['drop_policy'] = DROP_POLICY_MAP.get(proto['drop_policy'], proto['drop_policy'])
    if 'simulated_latency_ms' in proto:
        if worker == 'dummy':
            options['latency_ms'] = proto['simulated_latency_ms']
        else:
            kept['simulated_latency_ms'] = proto['simulated_latency_ms']
    for path_key in ('model_path', 'engine_path'):
        if path_key not in proto:
            continue
        wanted = {'onnxruntime': 'model_path', 'tensorrt': 'engine_path'}.get(worker)
        if wanted == path_key:
            options[path_key] = proto[path_key]
        else:
            kept[path_key] = proto[path_key]
    if 'target_fps' in proto:
        kept['target_fps'] = proto['target_fps']  # informational, never a rate or a cap
    for key, value in (proto.get('worker_options') or {}).items():
        if key == 'warmup_runs' and worker != 'dummy':
            options['warmup'] = value
        elif key == 'device_id' and worker == 'tensorrt':
            options['device_id'] = value
        else:
            kept.setdefault('worker_options', {})[key] = value
            warnings.append(f'tasks.{name}.worker_options.{key}: prototype option kept in '
                            'extras, not used')
    known = set(NATIVE_TASK_KEYS) | {'worker', 'drop_policy', 'simulated_latency_ms',
                                     'model_path', 'engine_path', 'target_fps', 'worker_options'}
    for key in proto:
        if key not in known:
            kept[key] = proto[key]
            warnings.append(f'tasks.{name}.{key}: unknown prototype key kept in extras, not used')
    task['worker_options'] = options
    return task
