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
The orchestrator: a lifecycle node that runs the core engine on ROS 2 image topics.

configure builds the engine from the parameters (or config_file) and loads and warms up the
workers; activate starts the engine, the subscriptions and the publishers; deactivate stops
taking frames, finishes what is queued within deactivate_timeout_s and drops the rest (reason
deactivated); cleanup releases the workers; shutdown works from any state. The image callback
only turns the message into an array (a view, or one conversion for the camera encodings of
conversion.py, shared by every task of the frame) and calls submit(); inference runs on the
engine's slot threads, which publish the results themselves. See docs/node.md.
"""

from dataclasses import asdict
import json
import logging
import math
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from diagnostic_msgs.msg import DiagnosticStatus
import diagnostic_updater
from inferedge_orchestrator import (ConfigError, DECODERS, Engine,
                                    LatencySummary as LatencySummaryData, LatencyWindow,
                                    load_config, LogHistogram, reasons, Snapshot, TraceRecorder,
                                    WorkerLoadError)
from inferedge_orchestrator_msgs.msg import (InferenceResult, InputStats, OrchestratorTelemetry,
                                             SchedulerDecision)
from inferedge_orchestrator_ros import messages, parameters as params
from inferedge_orchestrator_ros.annotation import Annotator
from inferedge_orchestrator_ros.conversion import AUTO, Converter, resolve_target
from inferedge_orchestrator_ros.diagnostics import Diagnostics, InputState
from inferedge_orchestrator_ros.images import image_to_array, ZERO_COPY
from inferedge_orchestrator_ros.publishing import (publish_unless_shut_down,
                                                   spin_once_unless_shut_down)
from inferedge_orchestrator_ros.signals import exit_if_threads_stuck, GracefulSignals
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Classification, Detection2DArray

try:  # Iron and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

NODE_NAME = 'inferedge_orchestrator'


class FrameMeta:
    """What the node keeps with a frame: its header and the callback's timestamps."""

    __slots__ = ('header', 'entry', 'submitted', 'transport_s', 'convert_s')

    def __init__(self, header, entry: float, transport_s: Optional[float],
                 convert_s: Optional[float] = None):
        self.header = header
        self.entry = entry          # time.monotonic() at the callback's entry
        self.submitted = None       # time.monotonic() when submit() returned
        self.transport_s = transport_s
        self.convert_s = convert_s  # the conversion's time (None: the zero-copy path)


def stamp_age(clock, header) -> Optional[float]:
    """Return now - header.stamp by the node clock (s); None for a zero stamp."""
    stamp = header.stamp
    stamp_ns = stamp.sec * 1000000000 + stamp.nanosec
    return (clock.now().nanoseconds - stamp_ns) * 1e-9 if stamp_ns else None


class NodeLatency:
    """Transport, conversion and node overhead per task: live windows, whole-run histograms."""

    def __init__(self, tasks: List[str], window_s: float, samples: int):
        self._lock = threading.Lock()
        self._windows = {(t, s): LatencyWindow(window_s, samples)
                         for t in tasks for s in messages.NODE_SERIES}
        self._histograms = {(t, s): LogHistogram() for t in tasks for s in messages.NODE_SERIES}

    def record(self, task: str, now: float, transport_s: Optional[float],
               convert_s: Optional[float], overhead_s: float) -> None:
        with self._lock:
            self._windows[(task, 'node_overhead')].add(now, overhead_s)
            self._histograms[(task, 'node_overhead')].add(overhead_s)
            if transport_s is not None:
                self._windows[(task, 'transport')].add(now, transport_s)
                self._histograms[(task, 'transport')].add(max(transport_s, 0.0))
            if convert_s is not None:
                self._windows[(task, 'convert')].add(now, convert_s)
                self._histograms[(task, 'convert')].add(convert_s)

    def live(self, task: str, now: float) -> Dict[str, LatencySummaryData]:
        with self._lock:
            return {s: LatencySummaryData.from_seconds(self._windows[(task, s)].summary(now))
                    for s in messages.NODE_SERIES}

    def run(self, task: str) -> Dict[str, dict]:
        with self._lock:
            return {s: asdict(LatencySummaryData.from_seconds(
                self._histograms[(task, s)].summary())) for s in messages.NODE_SERIES}


class _RosLogHandler(logging.Handler):
    """Forward the core's Python log records to the node's logger, one per second per kind."""

    LEVELS = ((logging.ERROR, 'error'), (logging.WARNING, 'warning'), (logging.INFO, 'info'),
              (0, 'debug'))

    def __init__(self, logger):
        super().__init__(logging.INFO)
        self._logger = logger
        self._last: Dict[Any, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        key = (record.name, record.msg)
        if now - self._last.get(key, -math.inf) < 1.0:
            return
        self._last[key] = now
        method = next(name for level, name in self.LEVELS if record.levelno >= level)
        try:
            getattr(self._logger, method)(self.format(record))
        except Exception:  # noqa: B902 - logging after shutdown must not raise
            pass


class _Input:
    """ROS-side state of one input: settings, subscription and QoS event counters."""

    def __init__(self, name: str, settings: Dict[str, Any], target: str):
        self.name = name
        self.settings = settings
        self.topic = settings['topic']
        self.target = target  # what camera encodings are converted to (conversion.py)
        self.subscription = None
        self.deadline_missed = 0
        self.incompatible_qos = 0
        self.last_message = None  # time.monotonic() of the last message
        self.resolved_topic = self.topic


class OrchestratorNode(LifecycleNode):
    """The lifecycle node `inferedge_orchestrator` (docs/node.md)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._specs: Dict[str, params.Param] = {}
        self._blocks: Dict[str, set] = {}  # block name -> full names of its parameters
        self._engine: Optional[Engine] = None
        self._trace: Optional[TraceRecorder] = None
        self._inputs: Dict[str, _Input] = {}
        self._result_pubs: Dict[str, Any] = {}
        self._decoded_pubs: Dict[str, Any] = {}  # task -> (publisher, message builder)
        self._annotated_pubs: Dict[str, Any] = {}
        self._annotator: Optional[Annotator] = None
        self._converter: Optional[Converter] = None
        self._telemetry_pub = None
        self._decision_pub = None
        self._telemetry_timer = None
        self._latency: Optional[NodeLatency] = None
        self._state_label = 'unconfigured'
        self._closing = False
        self.finished = False
        self._publish_tensors = False
        self._diag_tasks: List[str] = []
        self._diagnostics = Diagnostics()
        self._diag_snapshot = None
        self._diag_snapshot_time = -math.inf
        self._activated_at = time.monotonic()
        for spec in params.GLOBAL_PARAMS:
            self._declare(spec.name, spec)
        self._publish_tensors = self._get('publish_tensors')
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Iron and later apply after the set (other callbacks may still refuse it); Humble
        # applies in the on-set callback, once every change of the set is valid.
        self._post_set = hasattr(self, 'add_post_set_parameters_callback')
        if self._post_set:
            self.add_post_set_parameters_callback(self._apply_parameters)
        # diagnostic_updater declares its own parameter: one updater per node, never recreated.
        self._updater = diagnostic_updater.Updater(self)
        self._updater.setHardwareID('inferedge_orchestrator')
        self._log_handler = _RosLogHandler(self.get_logger())
        self._core_logger = logging.getLogger('inferedge_orchestrator')
        self._core_logger.addHandler(self._log_handler)
        self._core_logger.setLevel(logging.INFO)
        self._core_logger.propagate = False
        self._autostart_timer = None
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        if self._get('autostart'):
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    @property
    def engine(self) -> Optional[Engine]:
        """Return the engine while configured (None otherwise): snapshot(), drain()."""
        return self._engine

    @property
    def state_label(self) -> str:
        """Return the lifecycle state: unconfigured, inactive, active or finalized."""
        return self._state_label

    # -- parameters -------------------------------------------------------------------------

    def _get(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _declare(self, name: str, spec: params.Param, value: Any = None,
                 ignore_override: bool = False) -> None:
        self._specs[name] = spec
        default = spec.default if value is None else value
        dynamic = spec.kind in (params.DOUBLE, params.ANY, params.STRING_ARRAY)
        field = spec.field
        descriptor = ParameterDescriptor(
            description=spec.description + (f' ({field.unit})' if field.unit else ''),
            dynamic_typing=dynamic,
            additional_constraints=('can change while active' if spec.live else
                                    'can change only while unconfigured') +
            (f'; one of: {", ".join(field.choices)}' if field.choices else ''))
        if spec.kind == params.INTEGER and field.low is not None:
            descriptor.integer_range = [IntegerRange(
                from_value=int(field.low), to_value=int(field.high), step=1)]
        elif spec.kind == params.DOUBLE and field.low is not None:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(field.low), to_value=float(field.high), step=0.0)]
        if dynamic and isinstance(default, list) and not default:
            default = None  # an empty list has no ROS type; None reads as []
        self.declare_parameter(name, default, descriptor, ignore_override=ignore_override)

    def _declare_block(self, block: str, specs, values: Optional[Dict[str, Any]] = None
                       ) -> None:
        """Declare (or, with values, overwrite) the parameters `<block>.<name>`."""
        names = self._blocks.setdefault(block, set())
        for spec in specs:
            full = f'{block}.{spec.name}'
            names.add(full)
            value = None if values is None else values[spec.name]
            if self.has_parameter(full):
                self._specs[full] = spec
                if values is not None and self._get(full) != value:
                    result = self.set_parameters([Parameter(full, value=value)])[0]
                    if not result.successful:
                        raise ConfigError(result.reason)
                continue
            try:
                self._declare(full, spec, value, ignore_override=values is not None)
            except Exception as error:  # noqa: B902 - rclpy raises several exception types
                raise ConfigError(f'{full}: {error}') from None

    def _undeclare_except(self, keep: set) -> None:
        """Undeclare the block parameters that are not in keep (removed tasks, old options)."""
        for block, names in list(self._blocks.items()):
            for name in sorted(names - keep):
                if self.has_parameter(name):
                    self.undeclare_parameter(name)
                self._specs.pop(name, None)
            names &= keep
            if not names:
                del self._blocks[block]

    def _on_set_parameters(self, parameters: List[Parameter]) -> SetParametersResult:
        """
        Validate every change; refuse structural ones while configured.

        Live changes are applied by _apply_parameters: after the set, where rclpy has a
        post-set callback (Iron and later), else here once every change is valid (Humble).
        """
        configured = self._engine is not None
        for param in parameters:
            spec = self._specs.get(param.name)
            if spec is None:
                continue  # not ours (use_sim_time, diagnostic_updater.period, ...)
            if param.type_ == Parameter.Type.NOT_SET:
                if spec.kind == params.ANY or spec.kind == params.STRING_ARRAY:
                    continue
                return SetParametersResult(successful=False,
                                           reason=f'{param.name}: a value is required')
            problem = spec.check(param.name, _value(spec, param))
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            if configured and not spec.live:
                return SetParametersResult(
                    successful=False,
                    reason=f'{param.name} cannot change while the node is {self._state_label}: '
                           'it is read at configure; deactivate and cleanup first')
        task_changes, _ = self._live_changes(parameters)
        # Every task's merged settings are valid, so that a refusal changes nothing.
        try:
            for task, changes in task_changes.items():
                self._engine.validate_task_update(task, **changes)
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if not self._post_set:
            self._apply_parameters(parameters)
        return SetParametersResult(successful=True)

    def _live_changes(self, parameters: List[Parameter]):
        """Return the changes of a configured node: (task -> {key: value}, name -> value)."""
        task_changes: Dict[str, Dict[str, Any]] = {}
        node_changes: Dict[str, Any] = {}
        if self._engine is None:
            return task_changes, node_changes
        for param in parameters:
            spec = self._specs.get(param.name)
            if spec is None or param.type_ == Parameter.Type.NOT_SET:
                continue
            block, _, key = param.name.rpartition('.')
            if block in self._engine.tasks and key in params.TASK:
                task_changes.setdefault(block, {})[key] = _value(spec, param)
            else:
                node_changes[param.name] = _value(spec, param)
        return task_changes, node_changes

    def _apply_parameters(self, parameters: List[Parameter]) -> None:
        """Apply validated live changes to the engine and the node."""
        task_changes, node_changes = self._live_changes(parameters)
        for task, changes in task_changes.items():
            decision = self._engine.update_task(task, **changes)
            self.get_logger().info(f'task {task}: {decision.detail}')
        if 'publish_tensors' in node_changes:
            self._publish_tensors = node_changes['publish_tensors']
        if 'annotate_rate_hz' in node_changes and self._annotator is not None:
            self._annotator.rate_hz = node_changes['annotate_rate_hz']

    # -- lifecycle ---------------------------------------------------------------------------

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        self._autostart_timer = None
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (ConfigError, WorkerLoadError) as error:
            self.get_logger().error(f'configure failed: {error}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        except Exception as error:  # noqa: B902 - report anything else, stay unconfigured
            self.get_logger().error(f'configure failed: {type(error).__name__}: {error}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._state_label = 'inactive'
        engine = self._engine
        self.get_logger().info(
            f'configured: {len(engine.tasks)} tasks ({", ".join(engine.tasks)}) on '
            f'{len(self._inputs)} inputs; mode {engine.config.mode}')
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        config_file = self._get('config_file')
        task_names = self._get('tasks') or []
        if config_file and task_names:
            raise ConfigError('config_file and tasks are both given; allowed: one of them '
                              '(config_file names a core config with its own task list)')
        if not config_file and not task_names:
            raise ConfigError('no tasks: set the tasks parameter (with one parameter block '
                              'per task) or config_file')
        taken: Dict[str, str] = {}
        if config_file:
            config = load_config(config_file)
            params.check_names('tasks', [t.name for t in config.tasks], taken)
            input_names = params.check_names('inputs', list(config.inputs), taken)
            for task in config.tasks:
                self._declare_block(task.name, params.TASK_PARAMS,
                                    params.task_parameter_values(task))
        else:
            pools = params.check_names('pools', self._get('pools') or [], taken)
            for pool in pools:
                self._declare_block(pool, params.POOL_PARAMS)
            params.check_names('tasks', task_names, taken)
            input_names = list(self._get('inputs') or [])
            for task in task_names:
                self._declare_block(task, params.TASK_PARAMS)
                for block, kind_field in params.OPTION_BLOCKS.items():
                    kind = self._get(f'{task}.{kind_field}')
                    self._declare_block(task, params.option_params(block, kind))
                if self._get(f'{task}.input') not in input_names:
                    input_names.append(self._get(f'{task}.input'))
            params.check_names('inputs', input_names, taken)
        for name in input_names:
            self._declare_block(name, params.INPUT_PARAMS)
        keep = set()
        for block in taken:
            keep |= {n for n in self._blocks.get(block, ()) if self._block_param_wanted(n)}
        self._undeclare_except(keep)
        if not config_file:
            config = load_config(params.config_from_parameters(
                self._get, input_names, task_names, pools))
        for name in input_names:
            settings = {spec.name: self._get(f'{name}.{spec.name}')
                        for spec in params.INPUT_PARAMS}
            settings['topic'] = settings['topic'] or params.default_topic(name)
            if settings['message_type'] != 'image' and settings['convert_to'] != AUTO:
                raise ConfigError(
                    f'{name}.convert_to: {settings["convert_to"]!r} is not allowed with '
                    f'message_type {settings["message_type"]}; allowed: auto (decoded JPEG/PNG '
                    'images are bgr8; convert_to applies to raw images)')
            self._inputs[name] = _Input(name, settings,
                                        resolve_target(settings['convert_to'], config, name))
        if self._converter is None and any(i.settings['message_type'] == 'image'
                                           for i in self._inputs.values()):
            # Once per node: the imports are tried (and a missing one warned about) once.
            self._converter = Converter(lambda text: self.get_logger().warning(text))
        self._publish_tensors = self._get('publish_tensors')
        trace_path = self._get('trace_path')
        trace = None
        if trace_path:
            try:
                trace = TraceRecorder(trace_path)
            except OSError as error:
                raise ConfigError(f'trace_path: {trace_path}: cannot write: '
                                  f'{error.strerror}') from None
        engine = Engine(config, on_result=self._on_result, on_decision=self._on_decision,
                        trace=trace)
        self._trace = trace  # _release() closes it, also when load() fails
        engine.load()
        task_list = list(engine.tasks)
        self._latency = NodeLatency(task_list, config.telemetry.window_s,
                                    config.telemetry.window_samples)
        results_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for task in task_list:
            self._result_pubs[task] = self.create_lifecycle_publisher(
                InferenceResult, f'~/{task}/result', results_qos)
            produces = DECODERS.cls(config.task(task).decoder).produces
            if produces == 'detections':
                self._decoded_pubs[task] = (self.create_lifecycle_publisher(
                    Detection2DArray, f'~/{task}/detections', results_qos),
                    messages.detections_message)
                self._annotated_pubs[task] = self.create_lifecycle_publisher(
                    Image, f'~/{task}/annotated', results_qos)
            elif produces == 'classes':
                self._decoded_pubs[task] = (self.create_lifecycle_publisher(
                    Classification, f'~/{task}/classification', results_qos),
                    messages.classification_message)
        if self._annotated_pubs:
            self._annotator = Annotator(self, self._get('annotate_rate_hz'))
        self._telemetry_pub = self.create_lifecycle_publisher(
            OrchestratorTelemetry, '~/telemetry',
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._decision_pub = self.create_lifecycle_publisher(
            SchedulerDecision, '~/decisions',
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self._engine = engine
        self._closing = False
        self._diagnostics.reset()
        for task in task_list:
            self._add_diagnostic(f'task {task}', self.diagnose_task, task)
        for name in input_names:
            self._add_diagnostic(f'input {name}', self.diagnose_input, name)

    def _block_param_wanted(self, name: str) -> bool:
        """Whether a declared block parameter belongs to the configuration being built."""
        block, _, key = name.partition('.')
        for options_block, kind_field in params.OPTION_BLOCKS.items():
            if key.startswith(options_block + '.'):
                if self._get('config_file'):
                    return False
                kind = self._get(f'{block}.{kind_field}')
                return key in {p.name for p in params.option_params(options_block, kind)}
        return True

    def on_activate(self, state) -> TransitionCallbackReturn:
        super().on_activate(state)  # enables the lifecycle publishers
        try:
            self._engine.start()
            for item in self._inputs.values():
                self._subscribe(item)
        except Exception as error:  # noqa: B902 - any failure leaves the node inactive
            self.get_logger().error(f'activate failed: {type(error).__name__}: {error}')
            self._stop_inputs()
            self._engine.stop(1.0, reasons.DEACTIVATED)
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        self._activated_at = time.monotonic()
        # The steady clock: telemetry reports the node's operation, also under use_sim_time
        # (a replay that has not started, or runs at another rate, must not stop or speed it).
        self._telemetry_timer = self.create_timer(self._get('telemetry_period_s'),
                                                  self.publish_telemetry, clock=self._steady)
        self._state_label = 'active'
        self.get_logger().info('active: ' + ', '.join(
            f'{i.name} <- {i.resolved_topic} ({i.settings["reliability"]}, depth '
            f'{i.settings["depth"]})' for i in self._inputs.values()))
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._stop_engine(reasons.DEACTIVATED)
        self._state_label = 'inactive'
        self.publish_telemetry()  # the final counters, before the publishers are disabled
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        self._state_label = 'unconfigured'
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.close()
        self._state_label = 'finalized'
        self.finished = True
        return super().on_shutdown(state)

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error('an error occurred in a transition; releasing the engine')
        self.close()
        self._state_label = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def close(self, drain: bool = True) -> None:
        """
        Stop taking frames, stop and join the engine, write the report, release workers.

        drain: finish queued frames first (within deactivate_timeout_s); False (a signal):
        drop them with reason shutdown and only let the jobs in flight finish. Safe in any
        state and more than once; destroy_node() calls it first.
        """
        if not self.context.ok():
            self._closing = True  # the context is shut down: nothing can be published
        self._stop_inputs()
        if self._engine is not None and self._engine.state in ('running', 'paused'):
            self._stop_engine(reasons.SHUTDOWN, drain)
        self._release()

    def shutdown_grace_s(self) -> float:
        """
        Return how long a graceful shutdown may take: a later signal then exits at once.

        The engine waits up to deactivate_timeout_s for the jobs in flight and as long again
        to join its threads and close the workers; 1 s more for the report and the publishers.
        """
        return 2.0 * self._get('deactivate_timeout_s') + 1.0

    def write_report_now(self) -> None:
        """Write the report if the engine answers within 0.5 s (a forced exit)."""
        if self._engine is not None:
            self._write_report(self._engine, lock_timeout=0.5)

    def _stop_inputs(self) -> None:
        if self._telemetry_timer is not None:
            self.destroy_timer(self._telemetry_timer)
            self._telemetry_timer = None
        for item in self._inputs.values():
            if item.subscription is not None:
                self.destroy_subscription(item.subscription)
                item.subscription = None

    def _stop_engine(self, reason: str, drain: bool = True) -> None:
        """Finish queued frames within deactivate_timeout_s (drain); drop the rest with reason."""
        engine = self._engine
        if engine is None:
            return
        timeout = self._get('deactivate_timeout_s')
        end = time.monotonic() + timeout
        finished = engine.drain(timeout) if drain else True
        engine.stop(max(0.5, end - time.monotonic()), reason)
        if not finished:
            self.get_logger().warning(
                f'frames still queued after deactivate_timeout_s {timeout:g} s were dropped '
                f'(reason {reason})')

    def _release(self) -> None:
        """Close the engine and write the report; destroy publishers and diagnostics."""
        engine, self._engine = self._engine, None
        if engine is not None:
            self._closing = True
            engine.close(timeout=max(0.5, self._get('deactivate_timeout_s')))
            self._write_report(engine)
        self._close_trace()
        annotator, self._annotator = self._annotator, None
        if annotator is not None:
            annotator.close()
        publishers = list(self._result_pubs.values()) + list(self._annotated_pubs.values())
        publishers += [publisher for publisher, _ in self._decoded_pubs.values()]
        for publisher in publishers + [self._telemetry_pub, self._decision_pub]:
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
        for pubs in (self._result_pubs, self._decoded_pubs, self._annotated_pubs):
            pubs.clear()
        self._telemetry_pub = self._decision_pub = None
        self._inputs.clear()
        for name in self._diag_tasks:
            self._updater.removeByName(name)
        self._diag_tasks.clear()

    def _close_trace(self) -> None:
        trace, self._trace = self._trace, None
        if trace is not None:
            trace.close()
            self.get_logger().info(f'wrote {trace.records} job records to {trace.path}')

    def _write_report(self, engine: Engine, lock_timeout: float = -1) -> None:
        path = self._get('report_path')
        if not path:
            return
        try:
            report = engine.report(lock_timeout)
        except TimeoutError as error:
            self.get_logger().error(f'no report written to {path}: {error}')
            return
        report['node'] = {
            'name': self.get_fully_qualified_name(),
            'tasks': {task: self._latency.run(task) for task in engine.tasks},
            'inputs': {i.name: {'topic': i.resolved_topic, 'deadline_missed': i.deadline_missed,
                                'incompatible_qos': i.incompatible_qos}
                       for i in self._inputs.values()},
        }
        try:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            with open(path, 'w', encoding='utf-8') as stream:
                json.dump(report, stream, indent=2, sort_keys=True, default=str)
                stream.write('\n')
            self.get_logger().info(f'report written to {path}')
        except (OSError, ValueError) as error:
            self.get_logger().error(f'cannot write the report to {path}: {error}')

    def destroy_node(self) -> None:
        self.close()
        self._core_logger.removeHandler(self._log_handler)
        super().destroy_node()

    # -- input -------------------------------------------------------------------------------

    def _subscribe(self, item: _Input) -> None:
        settings = item.settings
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=settings['depth'],
            reliability=(ReliabilityPolicy.RELIABLE if settings['reliability'] == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=(DurabilityPolicy.TRANSIENT_LOCAL
                        if settings['durability'] == 'transient_local'
                        else DurabilityPolicy.VOLATILE))
        if settings['deadline_ms'] > 0:
            qos.deadline = Duration(nanoseconds=int(settings['deadline_ms'] * 1e6))
        events = SubscriptionEventCallbacks(
            deadline=lambda info, item=item: self._on_deadline(item, info),
            incompatible_qos=lambda info, item=item: self._on_incompatible(item, info))
        if settings['message_type'] == 'compressed_image':
            callback = self._compressed_callback(item)
            msg_type = CompressedImage
        else:
            callback = self._image_callback(item)
            msg_type = Image
        item.subscription = self.create_subscription(msg_type, item.topic, callback, qos,
                                                     event_callbacks=events)
        item.resolved_topic = item.subscription.topic_name
        item.last_message = None

    def _image_callback(self, item: _Input):
        engine = self._engine
        clock = self.get_clock()
        name = item.name
        max_pixels = engine.config.max_image_pixels
        monotonic = time.monotonic
        convert = self._converter.convert
        target = item.target

        def on_image(msg: Image) -> None:
            entry = monotonic()
            item.last_message = entry
            age = stamp_age(clock, msg.header)
            encoding = ZERO_COPY.get(msg.encoding)
            convert_s = None
            if encoding is not None:
                image, reason = image_to_array(encoding, msg.height, msg.width, msg.step,
                                               msg.is_bigendian, msg.data, max_pixels)
            else:
                start = monotonic()
                image, encoding, reason = convert(msg.encoding, msg.height, msg.width,
                                                  msg.step, msg.is_bigendian, msg.data,
                                                  max_pixels, target)
                convert_s = monotonic() - start
            if reason:
                engine.submit(name, malformed=reason)
                self._log_malformed(name, reason, msg)
                return
            meta = FrameMeta(msg.header, entry, age, convert_s)
            submission = engine.submit(name, image, _age_at(age, entry, monotonic()),
                                       encoding, meta)
            meta.submitted = monotonic()
            if not submission.accepted:
                self._log_malformed(name, submission.reason, msg)

        return on_image

    def _compressed_callback(self, item: _Input):
        engine = self._engine
        clock = self.get_clock()
        name = item.name
        monotonic = time.monotonic

        def on_compressed(msg: CompressedImage) -> None:
            entry = monotonic()
            item.last_message = entry
            age = stamp_age(clock, msg.header)
            meta = FrameMeta(msg.header, entry, age)
            submission = engine.submit(name, memoryview(msg.data),
                                       _age_at(age, entry, monotonic()), None, meta)
            meta.submitted = monotonic()
            if not submission.accepted:
                self._log_malformed(name, submission.reason, msg)

        return on_compressed

    def _log_malformed(self, name: str, reason: str, msg) -> None:
        if isinstance(msg, Image):
            what = (f'{msg.width}x{msg.height} {msg.encoding!r}, step {msg.step}, '
                    f'{len(msg.data)} bytes')
        else:
            what = f'format {msg.format!r}, {len(msg.data)} bytes'
        self.get_logger().warning(f'input {name}: malformed image dropped ({reason}): {what}',
                                  throttle_duration_sec=1.0)

    def _on_deadline(self, item: _Input, info) -> None:
        item.deadline_missed = info.total_count
        self.get_logger().warning(
            f'input {item.name}: QoS deadline {item.settings["deadline_ms"]:g} ms missed on '
            f'{item.resolved_topic} (counted in the telemetry)', once=True)

    def _on_incompatible(self, item: _Input, info) -> None:
        item.incompatible_qos = info.total_count
        self.get_logger().warning(
            f'input {item.name}: a publisher on {item.resolved_topic} offers QoS incompatible '
            f'with this subscription ({item.settings["reliability"]}, '
            f'{item.settings["durability"]}): no messages flow from it; last policy id '
            f'{info.last_policy_kind}', once=True)

    # -- output ------------------------------------------------------------------------------

    def _on_result(self, result) -> None:
        """Publish one result; called on the slot thread that ran the job."""
        publisher = self._result_pubs.get(result.task)
        if publisher is None or self._closing:
            return
        meta = result.meta
        msg = messages.result_message(result, meta.header, meta.transport_s,
                                      self._publish_tensors, meta.convert_s)
        submitted = meta.submitted
        if submitted is None:  # the result overtook the callback: the engine's own record
            submitted = result.finished - result.service_s - result.queue_wait_s
        now = time.monotonic()
        # The conversion is a series of its own, not node overhead.
        overhead = (submitted - meta.entry - (meta.convert_s or 0.0)) + (now - result.finished)
        msg.node_overhead_ms = overhead * 1000.0
        self._publish(publisher, msg)
        self._latency.record(result.task, now, meta.transport_s, meta.convert_s, overhead)
        decoded = result.decoded
        if decoded is None:
            return
        if result.task in self._decoded_pubs:
            decoded_pub, build = self._decoded_pubs[result.task]
            self._publish(decoded_pub, build(decoded, meta.header))
        annotated_pub, annotator = self._annotated_pubs.get(result.task), self._annotator
        if annotated_pub is not None and annotator is not None:
            annotator.offer(result.task, annotated_pub, result, meta.header)

    def _on_decision(self, decision) -> None:
        """Publish one decision; called on the engine's timer thread (or a transition)."""
        publisher = self._decision_pub
        if publisher is None or self._closing:
            return
        msg = messages.decision_message(decision, self.get_clock().now().to_msg())
        self._publish(publisher, msg)

    def publish_telemetry(self) -> None:
        """Publish the engine's snapshot on ~/telemetry (the timer; also at deactivate)."""
        engine = self._engine
        if engine is None or self._telemetry_pub is None:
            return
        snapshot = engine.snapshot()
        self._publish(self._telemetry_pub, self.telemetry_message(snapshot))

    def _publish(self, publisher, msg) -> None:
        publish_unless_shut_down(self, publisher, msg)

    def telemetry_message(self, snapshot: Snapshot) -> OrchestratorTelemetry:
        now = time.monotonic()

        def input_stats(name: str) -> InputStats:
            stats = InputStats()
            item = self._inputs.get(name)
            if item is not None:
                stats.topic = item.resolved_topic
                stats.type = (params.COMPRESSED_TYPE if item.settings['message_type'] ==
                              'compressed_image' else params.IMAGE_TYPE)
                stats.deadline_missed = item.deadline_missed
                stats.incompatible_qos = item.incompatible_qos
            return stats

        def node_latency(task: str) -> dict:
            return {} if self._latency is None else self._latency.live(task, now)
        return messages.telemetry_message(snapshot, self.get_clock().now().to_msg(),
                                          self._state_label, input_stats, node_latency)

    # -- diagnostics -------------------------------------------------------------------------

    def _add_diagnostic(self, label: str, function, name: str) -> None:
        self._updater.add(label, lambda stat: function(stat, name))
        self._diag_tasks.append(label)

    def _diagnostic_snapshot(self) -> Optional[Snapshot]:
        engine = self._engine
        if engine is None:
            return None
        now = time.monotonic()
        if now - self._diag_snapshot_time > 0.1:
            self._diag_snapshot = engine.snapshot()
            self._diag_snapshot_time = now
        return self._diag_snapshot

    def diagnose_task(self, stat, task: str):
        """Fill the /diagnostics status of a task (the updater's callback)."""
        snapshot = self._diagnostic_snapshot()
        if snapshot is None or task not in snapshot.tasks:
            stat.summary(DiagnosticStatus.OK, 'not configured')
            return stat
        return self._diagnostics.task_status(stat, task, snapshot, self._state_label)

    def diagnose_input(self, stat, name: str):
        """Fill the /diagnostics status of an input (the updater's callback)."""
        snapshot = self._diagnostic_snapshot()
        item = self._inputs.get(name)
        if snapshot is None or item is None:
            stat.summary(DiagnosticStatus.OK, 'not configured')
            return stat
        last = item.last_message if item.last_message is not None else self._activated_at
        return self._diagnostics.input_status(
            stat, name, snapshot.inputs[name], self._state_label,
            InputState(item.resolved_topic, item.deadline_missed, item.incompatible_qos,
                       time.monotonic() - last, self._get(f'{name}.stale_after_s'),
                       self._get(f'{name}.expected_rate_hz')))


def _age_at(age: Optional[float], entry: float, now: float) -> Optional[float]:
    """
    Return a frame's age at submit(): its stamp age at the callback's entry plus the time since.

    So the engine's end-to-end (stamp -> inference end) holds the callback's time before
    submit(), the conversion included.
    """
    return None if age is None else age + (now - entry)


def _value(spec: params.Param, param: Parameter) -> Any:
    """Return a parameter's value (an empty string array as an empty list)."""
    value = param.value
    if spec.kind == params.STRING_ARRAY and isinstance(value, (list, tuple)) and not value:
        return []
    return value


def main(args=None) -> int:
    # Our handlers, not rclpy's: a second Ctrl-C must not interrupt the shutdown (signals.py).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None

    def log(text: str) -> None:
        if node is not None:
            node.get_logger().warning(text)
        else:
            print(text, file=sys.stderr)
    signals = GracefulSignals(lambda: node.shutdown_grace_s() if node is not None else 5.0,
                              log, lambda: node.write_report_now() if node is not None else None)
    signals.install()
    try:
        node = OrchestratorNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not node.finished and not signals.requested.is_set() and \
                spin_once_unless_shut_down(node, executor, 0.25):
            pass
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            if signals.requested.is_set():
                node.get_logger().info('signal: shutting down (queued frames dropped with '
                                       'reason shutdown, jobs in flight finish)')
                node.close(drain=False)
            node.destroy_node()  # stops and joins the engine, writes the report
        rclpy.try_shutdown()
    exit_if_threads_stuck(0, lambda text: print(text, file=sys.stderr))
    return 0


if __name__ == '__main__':
    main()
