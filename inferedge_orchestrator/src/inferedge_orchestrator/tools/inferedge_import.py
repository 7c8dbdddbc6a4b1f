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
A task config from an InferEdge result.json (the prototype's `from-inferedge`).

The measured latency is the first numeric value found depth-first under the key
expected_latency_ms anywhere in the result; if there is none, under mean_latency_ms, then
p95_latency_ms, then latency_ms. The budget is ceil(max(latency x multiplier, 1)) ms
(multiplier 1.5 by default: 42.2 ms -> 64 ms). The output is a native config (docs/config.md)
with one task on one input; see docs/workers.md.
"""

import math
from typing import Any, Dict, Optional, Tuple

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.config.prototype import DROP_POLICY_MAP
from inferedge_orchestrator.contracts.errors import ConfigError

LATENCY_KEYS = ('expected_latency_ms', 'mean_latency_ms', 'p95_latency_ms', 'latency_ms')
DEFAULT_MULTIPLIER = 1.5


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _first_number(value: Any) -> Optional[float]:
    """Return the first finite number in value, depth-first (mappings in order, then lists)."""
    if _is_number(value):
        return float(value)
    children = value.values() if isinstance(value, dict) else value \
        if isinstance(value, list) else ()
    for child in children:
        found = _first_number(child)
        if found is not None:
            return found
    return None


def _find_under(value: Any, key: str) -> Optional[float]:
    """Return the first number under key, searching value depth-first."""
    if isinstance(value, dict):
        if key in value:
            found = _first_number(value[key])
            if found is not None:
                return found
        children = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        found = _find_under(child, key)
        if found is not None:
            return found
    return None


def find_latency(result: Any) -> Tuple[str, float]:
    """Return (key, latency ms) from an InferEdge result; ConfigError when there is none."""
    for key in LATENCY_KEYS:
        value = _find_under(result, key)
        if value is not None:
            if value <= 0:
                raise ConfigError(f'{key}: {value:g} is not allowed; allowed: a latency > 0 ms')
            return key, value
    raise ConfigError(f'no numeric latency found; looked for {", ".join(LATENCY_KEYS)}')


def recommend_budget_ms(latency_ms: float, multiplier: float = DEFAULT_MULTIPLIER) -> float:
    """Return ceil(max(latency x multiplier, 1)) as a float (42.2 ms x 1.5 -> 64.0)."""
    if not multiplier >= 1.0:
        raise ConfigError(f'--budget-multiplier: {multiplier:g} is not allowed; allowed: >= 1')
    # Round away float noise first: 42.2 x 1.5 is 63.300000000000004, 40 x 1.1 is 44.00...01.
    return float(math.ceil(round(max(latency_ms * multiplier, 1.0), 9)))


def build_config(result: Any, task_name: str, priority: int, target_fps: float,
                 model_path: Optional[str] = None, queue_size: int = 2,
                 drop_policy: str = 'drop_oldest', worker: str = 'onnxruntime',
                 engine_path: Optional[str] = None,
                 budget_multiplier: float = DEFAULT_MULTIPLIER,
                 input_name: str = 'camera') -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """
    Return (a native config dict with one task, what was found) from an InferEdge result.

    The measured latency becomes the task's expected_latency_ms (the scheduler's prior) and,
    for the dummy worker, its latency_ms; target_fps becomes the input's rate_hz (the
    synthetic source of `run`); the shedding backlog threshold is max(2, queue_size) as in the
    prototype. The config is validated with load_config(). What was found: the key, the
    latency and the budget.
    """
    key, latency = find_latency(result)
    budget = recommend_budget_ms(latency, budget_multiplier)
    options: Dict[str, Any] = {}
    if worker == 'onnxruntime':
        if not model_path:
            raise ConfigError('--model-path: required for the onnxruntime worker')
        options['model_path'] = model_path
    elif worker == 'tensorrt':
        path = engine_path or model_path
        if not path:
            raise ConfigError('--engine-path: required for the tensorrt worker')
        options['engine_path'] = path
    else:
        options['latency_ms'] = latency
    config = {
        'orchestrator': {
            'name': 'from_inferedge_result',
            'pools': {'cpu': {'slots': 1}},
            'shedding': {'backlog_threshold': max(2, queue_size)},
        },
        'inputs': {input_name: {'rate_hz': target_fps}},
        'tasks': [{
            'name': task_name, 'inputs': [input_name], 'priority': priority,
            'latency_budget_ms': budget, 'queue_size': queue_size,
            'drop_policy': DROP_POLICY_MAP.get(drop_policy, drop_policy),
            'worker': worker, 'worker_options': options,
            'expected_latency_ms': latency,
        }],
    }
    load_config(config)  # raises ConfigError naming the field
    return config, {'key': key, 'latency_ms': latency, 'latency_budget_ms': budget}
