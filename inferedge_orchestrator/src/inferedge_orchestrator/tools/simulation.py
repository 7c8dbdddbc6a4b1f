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
The engine under a virtual clock: a deterministic discrete-event simulation.

Arrivals come from a trace of (stamp time, input) pairs, each frame delivered after a transport
age drawn from its input's age distribution (InputConfig.age_*; in stamp order, as one DDS
reader receives a publisher's messages), or of (arrival time, input, age) triples taken as
they are. A job's service time comes from its worker's simulated_service_time() (the dummy's
draw is a function of task, frame sequence and seed), or from a service_time function (a
recorded trace: replay_trace). Nothing sleeps; the same config, trace and seed give the same
report (apart from CPU and RSS, which are not sampled under the virtual clock).
"""

import heapq
import math
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from inferedge_orchestrator import draws
from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.config.model import OrchestratorConfig
from inferedge_orchestrator.contracts.errors import ConfigError
from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.contracts.kinds import WORKERS
from inferedge_orchestrator.engine.engine import Engine, Result, VirtualClock
from inferedge_orchestrator.telemetry.job_trace import DROPPED, TraceRecorder
from inferedge_orchestrator.telemetry.snapshot import Snapshot
from inferedge_orchestrator.workers.base import Worker
import numpy as np

_ARRIVAL, _COMPLETE, _WAKE = 0, 1, 2
MIN_STEP_S = 1e-6  # a timer due exactly now is looked at again one microsecond later


class _Replayed(Worker):
    """
    Stands in for a task's worker in a replay: the trace gives every service time.

    Its guesses before measurements (what a real worker takes from its warm-up) are the
    median and 5th percentile of the task's recorded service times.
    """

    kind = 'replayed'
    simulates = True

    def __init__(self, task_name, recorded: List[float], slots: int = 1):
        super().__init__(task_name, {}, slots)
        self._recorded = recorded

    def expected_latency_s(self) -> float:
        return self._recorded[len(self._recorded) // 2]

    def fast_latency_s(self) -> float:
        return self._recorded[int(0.05 * (len(self._recorded) - 1))]


class Simulation:
    """
    Drive an Engine with a trace of arrivals under a virtual clock.

    Every task's worker must be one that simulates (the dummy): a ConfigError names the task
    otherwise, before any model is loaded; except in a replay (recorded: each task's recorded
    service times, sorted), where the workers are stand-ins and nothing is loaded.
    """

    def __init__(self, config, on_result: Optional[Callable[[Result], None]] = None,
                 frame_shape: Tuple[int, int, int] = (4, 4, 3), keep_samples: bool = False,
                 seed: int = 0, service_time: Optional[Callable[[object], float]] = None,
                 trace: Optional[TraceRecorder] = None,
                 recorded: Optional[Dict[str, List[float]]] = None):
        self.config: OrchestratorConfig = load_config(config)
        self.clock = VirtualClock()
        self._on_result = on_result
        factory = None
        if recorded is not None:
            factory = (lambda task, slots: _Replayed(task.name, recorded[task.name], slots))
        else:
            for task in self.config.tasks:
                if not WORKERS.cls(task.worker).simulates:
                    raise ConfigError(f'tasks.{task.name}.worker: {task.worker!r} cannot run '
                                      'under the virtual clock; allowed: dummy (or replay a '
                                      'recorded trace: simulate --trace)')
        self.engine = Engine(self.config, on_result=self._result, clock=self.clock,
                             virtual=self._start_job, trace=trace, worker_factory=factory)
        self.trace = trace
        self._service_time = service_time or _simulated_service_time
        self._image = np.zeros(frame_shape, dtype=np.uint8)
        self._ages = {name: draws.TransportAge(spec, seed)
                      for name, spec in self.config.inputs.items()}
        self._delivered: Dict[str, float] = {}  # input -> last arrival (in-order delivery)
        self._events: List[tuple] = []
        self._order = 0
        self._wakes = set()
        self.events_processed = 0
        # Every executed frame's end-to-end latency (for CDF plots): grows with the run.
        self.keep_samples = keep_samples
        self.results: Dict[str, List[float]] = {t.name: [] for t in self.config.tasks}

    def _push(self, when: float, kind: int, payload=None) -> None:
        self._order += 1
        heapq.heappush(self._events, (when, self._order, kind, payload))

    def _push_next_arrival(self, arrivals) -> None:
        arrival = next(arrivals, None)
        if arrival is None:
            return
        if len(arrival) >= 3:  # (arrival time, input, age[, meta]): as recorded
            self._push(arrival[0], _ARRIVAL, arrival)
            return
        stamp, name = arrival
        age = self._ages[name].draw() if name in self._ages else 0.0
        # Delivered in stamp order, and never before the event being handled now.
        when = max(stamp + age, self._delivered.get(name, -math.inf), self.clock.now)
        self._delivered[name] = when
        self._push(when, _ARRIVAL, (when, name, when - stamp))

    def _start_job(self, job) -> None:
        service = self._service_time(job)
        self._push(self.clock.now + service, _COMPLETE, (job, service))

    def _result(self, result: Result) -> None:
        if self.keep_samples and result.status == 'OK':
            self.results[result.task].append(result.end_to_end_s)
        if self._on_result is not None:
            self._on_result(result)

    def run(self, arrivals: Iterable[tuple], until: float, snapshot_every: float = 0.0,
            on_snapshot: Optional[Callable[[Snapshot], None]] = None) -> dict:
        """Replay arrivals (sorted by time; read lazily) until `until` (s); return the report."""
        engine = self.engine
        engine.start()
        arrivals = iter(arrivals)
        self._push_next_arrival(arrivals)
        self._push(0.0, _WAKE)
        if snapshot_every and on_snapshot is not None:
            for index in range(1, int(until / snapshot_every) + 1):
                self._push(index * snapshot_every, _WAKE, 'snapshot')
        while self._events:
            when, _, kind, payload = heapq.heappop(self._events)
            if when > until:
                break
            self.clock.now = when
            self.events_processed += 1
            if kind == _ARRIVAL:
                meta = payload[3] if len(payload) > 3 else None
                engine.submit(payload[1], self._image, age_s=payload[2], meta=meta)
                self._push_next_arrival(arrivals)
            elif kind == _COMPLETE:
                job, service = payload
                output = InferenceOutput({}, 0.0, service)
                engine.complete(job, output if job.batch is None else
                                [output] * len(job.batch))
            else:
                self._wakes.discard(when)
                if payload == 'snapshot':
                    on_snapshot(engine.snapshot())
            wake = engine.poll()
            if wake < math.inf:
                wake = max(wake, when + MIN_STEP_S)
                if wake not in self._wakes:
                    self._wakes.add(wake)
                    self._push(wake, _WAKE)
        self.clock.now = until
        engine.poll()
        if self.trace is not None:
            self.trace.flush()
        return engine.report()


def _simulated_service_time(job) -> float:
    """Return a job's service time from its worker: one frame's, or its batch's."""
    if job.batch is None:
        return job.worker.simulated_service_time(job.frame)
    return job.worker.simulated_batch_time([member.frame for member in job.batch])


def replay_trace(records: List[dict], seed: int = 0
                 ) -> Tuple[List[tuple], Callable[[object], float], float,
                            Dict[str, List[float]]]:
    """
    Turn a job trace into (arrivals, service_time, duration, recorded service times by task).

    Arrivals are the recorded frames, at their recorded arrival times and ages. A job's
    service time is the recorded one where that task ran that frame; otherwise a draw from the
    task's recorded service times (the empirical distribution, keyed by task, frame and seed).
    """
    frames: Dict[int, tuple] = {}
    ran: Dict[Tuple[str, int], float] = {}
    recorded: Dict[str, List[float]] = {}
    for record in records:
        seq = int(record['seq'])
        frames.setdefault(seq, (float(record['arrival']), record['input'],
                                float(record['age'] or 0.0), seq))
        if record['outcome'] != DROPPED and record['service'] is not None:
            ran[(record['task'], seq)] = float(record['service'])
            recorded.setdefault(record['task'], []).append(float(record['service']))
    for values in recorded.values():
        values.sort()
    keys = {task: draws.name_key(task) for task in recorded}

    def service_time(job) -> float:
        task, seq = job.task.name, job.frame.meta
        if (task, seq) in ran:
            return ran[(task, seq)]
        values = recorded[task]
        u = draws.unit(seed, keys[task], seq)
        return values[min(len(values) - 1, int(u * len(values)))]

    arrivals = sorted(frames.values())
    duration = max((float(r['end']) for r in records if r['end'] is not None),
                   default=arrivals[-1][0] if arrivals else 0.0)
    return arrivals, service_time, duration, recorded


def replay(config, records: List[dict], seed: int = 0,
           trace: Optional[TraceRecorder] = None) -> dict:
    """
    Replay a recorded trace with config under the virtual clock; return the report.

    Every task of config must have run in the trace (its service times are the record);
    ConfigError names the first that did not. The replay runs on for the largest latency
    budget after the last recorded event.
    """
    base = load_config(config)
    arrivals, service_time, duration, measured = replay_trace(records, seed)
    missing = [t.name for t in base.tasks if t.name not in measured]
    if missing:
        raise ConfigError(f'tasks.{missing[0]}: no job of it ran in the trace; allowed: the '
                          f'tasks the trace measured ({", ".join(sorted(measured)) or "none"})')
    names = {name for _, name, _, _ in arrivals}
    unknown = sorted(names - set(base.inputs))
    if unknown:
        raise ConfigError(f'inputs: the trace has frames of {", ".join(unknown)}, which the '
                          f'config does not declare')
    simulation = Simulation(base, seed=seed, service_time=service_time, recorded=measured,
                            trace=trace)
    # After the last recorded event, time for what is still queued to run or expire.
    return simulation.run(arrivals, duration + max(t.budget_s for t in base.tasks))


def periodic_trace(inputs: List[str], frames: int, interval_s: float
                   ) -> List[Tuple[float, str]]:
    """Every input gets one frame every interval_s, frames times."""
    return [(index * interval_s, name) for index in range(frames) for name in inputs]


def compare_overload(config, frames: int, interval_ms: float = 10.0) -> dict:
    """
    Run FIFO and the orchestrator on the same periodic trace under the virtual clock.

    Arrivals stop after `frames` per input; the run goes on without arrivals for the largest
    latency budget, then stops; what is left is reported as queued or in flight.
    """
    base = load_config(config)
    interval = interval_ms / 1000.0
    trace = periodic_trace(list(base.inputs), frames, interval)
    until = (frames - 1) * interval + max(t.latency_budget_ms for t in base.tasks) / 1000.0
    out = {'scenario': {'config': base.name, 'frames': frames, 'interval_ms': interval_ms,
                        'duration_s': until, 'inputs': list(base.inputs)},
           'modes': {}, 'end_to_end_samples_ms': {}}
    for mode in ('fifo', 'priority'):
        data = base.to_dict()
        data['orchestrator']['mode'] = mode
        simulation = Simulation(data, keep_samples=True)
        report = simulation.run(trace, until)
        final = Snapshot.from_dict(report['final'])
        tasks = {}
        for name, task in final.tasks.items():
            run = task.run_latency['end_to_end']
            tasks[name] = {
                'routed': task.routed, 'executed': task.executed,
                'completed_within_budget': task.completed_within_budget,
                'failed': task.failed, 'dropped': task.dropped,
                'dropped_by_reason': task.dropped_by_reason, 'queued': task.queued,
                'in_flight': task.in_flight, 'held_for_priority': task.held_for_priority,
                'p50_ms': run.p50_ms, 'p95_ms': run.p95_ms, 'p99_ms': run.p99_ms,
                'max_ms': run.max_ms,
            }
        out['modes'][mode] = {'tasks': tasks,
                              'decisions': report['final']['decisions'],
                              'invariant_violations': report['invariant_violations']}
        out['end_to_end_samples_ms'][mode] = {
            name: [round(v * 1000.0, 6) for v in values]
            for name, values in simulation.results.items()}
    return out
