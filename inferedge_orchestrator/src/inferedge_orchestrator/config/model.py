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
The config dataclasses: every setting declared once, with its schema (config/schema.py).

docs/config.md holds the same fields as tables, written from these declarations.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Tuple

from inferedge_orchestrator.config.checkers import name_list
from inferedge_orchestrator.config.schema import (CUSTOM, FLOAT_LIST, INT_LIST, MAPPING, NAME,
                                                  spec, STR_LIST)
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.contracts.formats import CHANNELS
from inferedge_orchestrator.contracts.kinds import DECODERS, DISTRIBUTIONS, WORKERS

DROP_POLICIES = ('drop_oldest', 'drop_newest')
ORDERS = ('oldest_first', 'newest_first')
ON_DEADLINE = ('drop', 'run')
MODES = ('priority', 'fifo')
OS_POLICIES = ('normal', 'batch', 'idle')
BIG = 1e9


def parse_cpus(text: str) -> Tuple[int, ...]:
    """Return the CPU ids of a list such as '0-3,6' (ValueError names what is wrong)."""
    cpus = set()
    for part in filter(None, (p.strip() for p in text.split(','))):
        first, _, last = part.partition('-')
        if not first.isdigit() or last and not last.isdigit():
            raise ValueError(f'{part!r} is not a CPU id or a range such as 0-3')
        low, high = int(first), int(last or first)
        if high < low:
            raise ValueError(f'the range {part!r} ends before it starts')
        cpus.update(range(low, high + 1))
    return tuple(sorted(cpus))


def check_cpus(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f'{where}: {value!r} is not a string; allowed: CPU ids and ranges, '
                          'e.g. 0-3,6')
    try:
        parse_cpus(value)
    except ValueError as error:
        raise ConfigError(f'{where}: {value!r}: {error}; allowed: CPU ids and ranges, '
                          'e.g. 0-3,6') from None
    return value


@dataclass
class PoolConfig:
    name: str
    slots: int = spec(1, 'worker slots of the pool: jobs that run at once', low=1, high=256)
    isolation: str = spec('thread', 'where its workers run: thread (in the engine process) '
                          'or process (a child process per slot, crash-isolated)',
                          choices=('thread', 'process'))
    address_space_mb: int = spec(0, 'process isolation: the address-space limit of each '
                                 'child (RLIMIT_AS; 0: none)', low=0, high=2 ** 30, unit='MB')
    cpus: str = spec('', 'process isolation: the CPUs each child runs on, e.g. 0-3,6 '
                     '(sched_setaffinity; empty: all the node may use)', kind=CUSTOM,
                     checker=check_cpus, allowed_text='CPU ids and ranges, e.g. 0-3,6')
    child_threads: int = spec(0, 'process isolation: the thread count of the '
                              'numeric libraries (OMP, OpenBLAS, MKL) and of onnxruntime when '
                              'its intra_op_threads is 0, in each child (0: theirs)',
                              low=0, high=1024)
    os_policy: str = spec('normal', 'process isolation: the Linux scheduling class of each '
                          "child's threads: normal, batch (SCHED_BATCH) or idle (SCHED_IDLE: "
                          'a core only when no normal thread wants it)', choices=OS_POLICIES)
    os_nice: int = spec(0, "process isolation: the nice value of each child's threads "
                        '(19: the lowest priority; raising priority is not offered)', low=0,
                        high=19)
    stream_priority: int = spec(0, 'tensorrt workers: the priority of their CUDA streams, '
                                "CUDA's convention (lower runs first: -1 above the default 0),"
                                " clamped to the device's range", low=-1000, high=1000)
    probe_backoff_s: float = spec(0.2, 'server pools (triton tasks): the wait before the first '
                                  'health probe after the server became unreachable; it '
                                  'doubles after each failed probe', low=0.01, high=600.0,
                                  unit='s')
    probe_backoff_max_s: float = spec(5.0, 'server pools: the longest wait between two health '
                                      'probes', low=0.01, high=3600.0, unit='s')


@dataclass
class InputConfig:
    name: str
    rate_hz: float = spec(30.0, 'the rate of synthetic frames (run); the expected rate',
                          low=0.1, high=10000.0, unit='Hz')
    width: int = spec(640, 'width of synthetic frames', low=1, high=65535, unit='px')
    height: int = spec(480, 'height of synthetic frames', low=1, high=65535, unit='px')
    encoding: str = spec('rgb8', 'encoding of synthetic frames', choices=tuple(CHANNELS))
    age_ms: float = spec(0.0, 'transport age of synthetic frames (stamp -> arrival) in run '
                         'and under the virtual clock: the mean', low=0.0, high=60000.0,
                         unit='ms')
    age_jitter_ms: float = spec(0.0, 'its spread (standard deviation; uniform: half-width)',
                                low=0.0, high=60000.0, unit='ms')
    age_distribution: str = spec('fixed', 'its distribution', choices=DISTRIBUTIONS)


@dataclass
class SheddingConfig:
    enabled: bool = spec(True, 'adaptive load shedding (priority mode)')
    tick_s: float = spec(0.5, 'how often the risk is assessed', low=0.01, high=60.0, unit='s')
    recovery_s: float = spec(2.0, 'time without risk before limits rise again', low=0.0,
                             high=3600.0, unit='s')
    recovery_step_hz: float = spec(1.0, 'how much a limit rises per tick while recovering',
                                   low=0.01, high=1000.0, unit='Hz')
    backlog_threshold: int = spec(0, 'total queued frames that count as a risk while the '
                                  'highest-priority task is blocked (0: off)', low=0,
                                  high=1000000)
    p95_budget_fraction: float = spec(0.8, 'a protected task whose end-to-end p95 exceeds '
                                      'this fraction of its budget because of blocking is at '
                                      'risk', low=0.01, high=10.0)
    min_limit_hz: float = spec(0.5, 'the lowest limit shedding sets on a task without '
                               'min_rate_hz', low=0.01, high=1000.0, unit='Hz')
    min_load_share: float = spec(0.05, 'a task adding less than this share of the slot time '
                                 'of its pool (admitted rate x median service) is never '
                                 'limited',
                                 low=0.0, high=1.0)


@dataclass
class TelemetryConfig:
    window_s: float = spec(10.0, 'the window of live percentiles', low=0.1, high=3600.0,
                           unit='s')
    period_s: float = spec(1.0, 'telemetry period: DROP aggregation, utilisation, the '
                           'telemetry messages of the node', low=0.05, high=3600.0, unit='s')
    window_samples: int = spec(4096, 'ring size per latency series (overflow is reported)',
                               low=16, high=1000000)
    decision_history: int = spec(1000, 'decisions kept for the report', low=1, high=1000000)
    resources: bool = spec(True, 'sample CPU and RSS with psutil, when installed')


@dataclass
class TaskConfig:
    name: str
    inputs: List[str] = spec(['camera'], 'the inputs it consumes (its cameras): one queue each, '
                             'one worker per slot for all', kind=STR_LIST, checker=name_list,
                             allowed_text='a non-empty list of distinct input names')
    priority: int = spec(0, 'higher runs first', low=0, high=1000, live=True)
    latency_budget_ms: float = spec(100.0, 'stamp -> inference end budget', low=0.001,
                                    high=BIG, unit='ms', live=True)
    camera_priority: List[int] = spec([], 'per input, in the order of inputs: the priority of '
                                      "that camera's frames, in place of priority (empty: "
                                      'priority for all)', kind=INT_LIST, low=0, high=1000,
                                      live=True)
    camera_budget_ms: List[float] = spec([], 'per input, in the order of inputs: the budget of '
                                         "that camera's frames, in place of latency_budget_ms "
                                         '(empty: latency_budget_ms for all)', kind=FLOAT_LIST,
                                         low=0.001, high=BIG, unit='ms', live=True)
    queue_size: int = spec(4, 'queue bound (a smaller one drops frames: queue_resized)', low=1,
                           high=4096, live=True)
    drop_policy: str = spec('drop_oldest', 'which frame a full queue drops',
                            choices=DROP_POLICIES, live=True)
    order: str = spec('oldest_first', 'which queued frame runs first', choices=ORDERS,
                      live=True)
    max_rate_hz: float = spec(0.0, 'admission cap (0: none)', low=0.0, high=10000.0,
                              unit='Hz', live=True)
    min_rate_hz: float = spec(0.0, 'rate floor that runs ahead of priority (0: none)', low=0.0,
                              high=10000.0, unit='Hz', live=True)
    on_deadline: str = spec('drop', 'drop late frames (expired, predicted_late) or run them '
                            'anyway', choices=ON_DEADLINE, live=True)
    worker: str = spec('dummy', 'worker kind', choices=WORKERS.names)
    worker_options: Dict[str, Any] = spec({}, 'options of the worker (docs/workers.md)',
                                          kind=MAPPING)
    decoder: str = spec('none', 'what turns the outputs into detections or classes (none: '
                        'raw tensors only)', choices=DECODERS.names)
    decoder_options: Dict[str, Any] = spec({}, 'options of the decoder (docs/decoders.md)',
                                           kind=MAPPING)
    expected_latency_ms: float = spec(0.0, 'typical service time before 5 measurements (0: '
                                      'ask the worker)', low=0.0, high=BIG, unit='ms',
                                      live=True)
    timeout_ms: float = spec(0.0, 'fail a job running longer (0: none)', low=0.0, high=BIG,
                             unit='ms', live=True)
    max_batch: int = spec(1, 'the most queued frames one job may take in one model call, when '
                          'the model takes batches and the measured cost says it pays (1: one '
                          'frame a job)', low=1, high=1024)
    max_batch_delay_ms: float = spec(0.0, 'how long a batch may wait for frames to fill it (0: '
                                     'take what is queued)', low=0.0, high=BIG, unit='ms',
                                     live=True)
    pool: str = spec('cpu', 'the pool of slots it runs on', kind=NAME)
    enabled: bool = spec(True, 'false: its frames are dropped (disabled)', live=True)

    @property
    def budget_s(self) -> float:
        return self.latency_budget_ms / 1000.0


@dataclass
class OrchestratorConfig:
    name: str = spec('orchestrator', 'a name for reports')
    mode: str = spec('priority', 'priority (the scheduler) or fifo (the baseline)',
                     choices=MODES)
    priority_hold: bool = spec(True, 'keep the last free slot for a higher-priority frame '
                               'that is about to arrive')
    max_stamp_age_ms: float = spec(5000.0, 'older stamps count as stamp_fallback and use '
                                   'age 0', low=1.0, high=BIG, unit='ms')
    max_stamp_lead_ms: float = spec(50.0, 'stamps further in the future count as '
                                    'stamp_fallback; nearer ones use age 0: the clock steps of '
                                    'use_sim_time (ros2 bag play publishes /clock at 40 Hz) and '
                                    'offsets between hosts', low=0.0, high=BIG, unit='ms')
    max_image_pixels: int = spec(8192 * 8192, 'larger images are malformed (too_many_pixels)',
                                 low=1, high=2 ** 40)
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
                'max_stamp_lead_ms': self.max_stamp_lead_ms,
                'max_image_pixels': self.max_image_pixels,
                'pools': {p.name: {k: v for k, v in asdict(p).items() if k != 'name'}
                          for p in self.pools.values()},
                'shedding': asdict(self.shedding),
                'telemetry': asdict(self.telemetry),
            },
            'inputs': {i.name: {k: v for k, v in asdict(i).items() if k != 'name'}
                       for i in self.inputs.values()},
            'tasks': [asdict(t) for t in self.tasks],
        }
