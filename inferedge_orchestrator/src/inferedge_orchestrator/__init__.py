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
Keep several DNN inference tasks responsive on one robot computer.

The ROS-agnostic core; the ROS 2 node is the inferedge_orchestrator_ros package. Its public
API is the names below (docs/engine_api.md), e.g. `from inferedge_orchestrator import Engine,
load_config`; the modules behind them are internals that may move. Layers, bottom up:
contracts/ and config/; frames/, telemetry/; scheduling/, decoders/, workers/; engine/;
tools/. A name is imported on first use, so that importing one layer (or a module of it)
loads nothing of the layers above it.
"""

import importlib
from typing import Any, List

__version__ = '0.1.0'

_CONTRACTS = 'inferedge_orchestrator.contracts'
_CONFIG = 'inferedge_orchestrator.config'
_TELEMETRY = 'inferedge_orchestrator.telemetry'

# name -> the module that defines it; a module's own name: the module itself.
_API = {
    # the engine and its records
    'Engine': 'inferedge_orchestrator.engine.engine',
    'Submission': 'inferedge_orchestrator.engine.records',
    'Result': 'inferedge_orchestrator.engine.records',
    'Simulation': 'inferedge_orchestrator.tools.simulation',
    'periodic_trace': 'inferedge_orchestrator.tools.simulation',
    'replay': 'inferedge_orchestrator.tools.simulation',
    # configuration
    'load_config': f'{_CONFIG}.loader',
    'OrchestratorConfig': f'{_CONFIG}.model',
    'InputConfig': f'{_CONFIG}.model',
    'PoolConfig': f'{_CONFIG}.model',
    'TaskConfig': f'{_CONFIG}.model',
    'SheddingConfig': f'{_CONFIG}.model',
    'TelemetryConfig': f'{_CONFIG}.model',
    'schema': f'{_CONFIG}.schema',  # the field schema: Field, its kinds, tables
    # contracts: errors, what workers and decoders give, kinds, encodings, reasons
    'ConfigError': f'{_CONTRACTS}.errors',
    'WorkerLoadError': f'{_CONTRACTS}.errors',
    'InferenceOutput': f'{_CONTRACTS}.inference',
    'ModelInfo': f'{_CONTRACTS}.inference',
    'Geometry': f'{_CONTRACTS}.inference',
    'Decoded': f'{_CONTRACTS}.inference',
    'Detection': f'{_CONTRACTS}.inference',
    'ClassScore': f'{_CONTRACTS}.inference',
    'WORKERS': f'{_CONTRACTS}.kinds',
    'DECODERS': f'{_CONTRACTS}.kinds',
    'formats': f'{_CONTRACTS}.formats',  # the raw encodings: CHANNELS, dtype_of
    'reasons': f'{_CONTRACTS}.reasons',  # the closed vocabularies: reasons, events, statuses
    # frames
    'size_fault': 'inferedge_orchestrator.frames.checks',
    'plane_fault': 'inferedge_orchestrator.frames.checks',
    'Frame': 'inferedge_orchestrator.frames.frame',
    'PatternSource': 'inferedge_orchestrator.frames.synthetic',
    # telemetry
    'Snapshot': f'{_TELEMETRY}.snapshot',
    'InputSnapshot': f'{_TELEMETRY}.snapshot',
    'TaskSnapshot': f'{_TELEMETRY}.snapshot',
    'PoolSnapshot': f'{_TELEMETRY}.snapshot',
    'LatencySummary': f'{_TELEMETRY}.snapshot',
    'Decision': f'{_TELEMETRY}.decisions',
    'LATENCY_SERIES': f'{_TELEMETRY}.counters',
    'LatencyWindow': f'{_TELEMETRY}.stats',
    'LogHistogram': f'{_TELEMETRY}.stats',
    'check_invariants': f'{_TELEMETRY}.invariants',
    'read_process_stats': f'{_TELEMETRY}.process_stats',
    'TraceRecorder': f'{_TELEMETRY}.job_trace',
    'read_trace': f'{_TELEMETRY}.job_trace',
    'MetricsConfig': f'{_TELEMETRY}.prometheus',  # the Prometheus endpoint (optional)
    'MetricsServer': f'{_TELEMETRY}.prometheus',
    'serve_metrics': f'{_TELEMETRY}.prometheus',
    # workers and decoders
    'Worker': 'inferedge_orchestrator.workers.base',
    'PREPROCESS_OPTIONS': 'inferedge_orchestrator.workers.preprocess',
    'draw_detections': 'inferedge_orchestrator.decoders.draw',
    # a real Triton server on loopback (tests and benchmarks)
    'local_triton': 'inferedge_orchestrator.tools.local_triton',
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562) and keep it."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = importlib.import_module(module)
    if not module.endswith(f'.{name}'):
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
