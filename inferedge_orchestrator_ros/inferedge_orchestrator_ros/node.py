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
deactivated); cleanup releases the workers; shutdown works from any state. The node keeps the
lifecycle and the wiring; its parameters are NodeParameters' (parameters.py), its
subscriptions the Ingress's (ingress.py), its publishers the Outputs' (outputs.py). See
docs/node.md.
"""

import json
import os
import sys
import time
from typing import Optional

from inferedge_orchestrator import (ConfigError, Engine, MetricsConfig, MetricsServer, reasons,
                                    serve_metrics, Snapshot, TraceRecorder, WorkerLoadError)
from inferedge_orchestrator_msgs.msg import InputStats, OrchestratorTelemetry
from inferedge_orchestrator_ros import messages
from inferedge_orchestrator_ros.conversion import Converter, resolve_target
from inferedge_orchestrator_ros.diagnostics import Diagnostics
from inferedge_orchestrator_ros.ingress import Ingress, Input
from inferedge_orchestrator_ros.kept_files import KeptFiles
from inferedge_orchestrator_ros.log_forwarding import RosLogHandler
from inferedge_orchestrator_ros.outputs import Outputs
from inferedge_orchestrator_ros.parameters import NodeParameters
from inferedge_orchestrator_ros.publishing import spin_once_unless_shut_down
from inferedge_orchestrator_ros.signals import exit_if_threads_stuck, GracefulSignals
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

NODE_NAME = 'inferedge_orchestrator'


class OrchestratorNode(LifecycleNode):
    """The lifecycle node `inferedge_orchestrator` (docs/node.md)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._engine: Optional[Engine] = None
        self._trace: Optional[TraceRecorder] = None
        self._ingress: Optional[Ingress] = None
        self._outputs: Optional[Outputs] = None
        self._converter: Optional[Converter] = None  # once per node: imports tried once
        self._metrics: Optional[MetricsServer] = None  # the Prometheus endpoint (metrics_port)
        self._telemetry_timer = None
        self._state_label = 'unconfigured'
        self.finished = False
        self._node_parameters = NodeParameters(self, self._on_node_change)
        self._executor_threads = self._node_parameters.get('executor_threads')
        self._diagnostics = Diagnostics(self, lambda: self._state_label)
        self._log_handler = RosLogHandler(self.get_logger())
        self._log_handler.attach()
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._kept_files = KeptFiles()  # report and trace of an earlier process: moved aside
        self._autostart_timer = None
        if self._node_parameters.get('autostart'):
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    @property
    def engine(self) -> Optional[Engine]:
        """Return the engine while configured (None otherwise): snapshot(), drain()."""
        return self._engine

    @property
    def state_label(self) -> str:
        """Return the lifecycle state: unconfigured, inactive, active or finalized."""
        return self._state_label

    @property
    def executor_threads(self) -> int:
        """Return the threads of the node's executor (1: single-threaded; read once)."""
        return self._executor_threads

    @property
    def converter(self) -> Optional[Converter]:
        """Return what converts camera encodings (None until an input takes raw images)."""
        return self._converter

    def set_parameters_atomically(self, parameter_list):
        """Set parameters (both set services come here); every refusal names its parameter."""
        return self._node_parameters.set_atomically(parameter_list,
                                                    super().set_parameters_atomically)

    def _on_node_change(self, name: str, value) -> None:
        """Apply a live change of a node setting (the others are read where they are used)."""
        if self._outputs is None:
            return
        if name == 'publish_tensors':
            self._outputs.publish_tensors = value
        elif name == 'annotate_rate_hz':
            self._outputs.set_annotate_rate(value)

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
            f'{len(self._ingress.inputs)} inputs; mode {engine.config.mode}')
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        get = self._node_parameters.get
        config, input_names = self._node_parameters.configuration()
        inputs = {}
        for name in input_names:
            settings = self._node_parameters.input_settings(name)
            inputs[name] = Input(name, settings,
                                 resolve_target(settings['convert_to'], config, name))
        if self._converter is None and any(i.settings['message_type'] == 'image'
                                           for i in inputs.values()):
            self._converter = Converter(lambda text: self.get_logger().warning(text))
        trace_path = get('trace_path')
        if trace_path:
            try:
                self._keep_earlier('trace_path', trace_path)
                self._trace = TraceRecorder(trace_path)  # _release() closes it
            except OSError as error:
                raise ConfigError(f'trace_path: {trace_path}: cannot write: '
                                  f'{error.strerror}') from None
        outputs = Outputs(self, config, get('publish_tensors'), get('annotate_rate_hz'),
                          get('publish_queue_depth'))
        self._outputs = outputs  # _release() destroys its publishers, also when load() fails
        engine = Engine(config, on_result=outputs.on_result, on_decision=outputs.on_decision,
                        trace=self._trace, latency_series=messages.NODE_SERIES)
        outputs.engine = engine
        # Served from configure to cleanup, so that the counts stay readable while inactive;
        # before the slow load, so that a port in use fails the transition at once.
        self._metrics = serve_metrics(MetricsConfig(get('metrics_port'),
                                                    get('metrics_address')), engine)
        if self._metrics is not None:
            self.get_logger().info(f'Prometheus metrics at {self._metrics.url}')
        engine.load()
        self._ingress = Ingress(engine, inputs, self._converter, self.get_clock(),
                                self.get_logger())
        self._engine = self._node_parameters.engine = engine
        self._diagnostics.configure(engine, inputs, get, outputs.publish_counts)

    def on_activate(self, state) -> TransitionCallbackReturn:
        super().on_activate(state)  # enables the lifecycle publishers
        self._outputs.start()  # the publisher thread, before the first result
        try:
            self._engine.start()
            self._ingress.subscribe(self, groups=self.executor_threads > 1)
        except Exception as error:  # noqa: B902 - any failure leaves the node inactive
            self.get_logger().error(f'activate failed: {type(error).__name__}: {error}')
            self._stop_inputs()
            self._engine.stop(1.0, reasons.DEACTIVATED)
            self._outputs.stop()
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        self._diagnostics.activated_at = time.monotonic()
        # The steady clock: telemetry reports the node's operation, also under use_sim_time
        # (a replay that has not started, or runs at another rate, must not stop or speed it).
        self._telemetry_timer = self.create_timer(self._node_parameters.get('telemetry_period_s'),
                                                  self.publish_telemetry, clock=self._steady)
        self._state_label = 'active'
        self.get_logger().info('active: ' + ', '.join(
            f'{i.name} <- {i.resolved_topic} ({i.settings["reliability"]}, depth '
            f'{i.settings["depth"]})' for i in self._ingress.inputs.values()))
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._stop_engine(reasons.DEACTIVATED)
        self._state_label = 'inactive'
        self.publish_telemetry()  # the final counters, before the publishers are disabled
        self._outputs.stop()  # publishes what is queued, before the publishers are disabled
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
        if not self.context.ok() and self._outputs is not None:
            self._outputs.closing = True  # the context is shut down: nothing can be published
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
        return 2.0 * self._node_parameters.get('deactivate_timeout_s') + 1.0

    def write_report_now(self) -> None:
        """Write the report if the engine answers within 0.5 s (a forced exit)."""
        if self._engine is not None:
            self._write_report(self._engine, lock_timeout=0.5)

    def destroy_node(self) -> None:
        self.close()
        self._log_handler.detach()
        super().destroy_node()

    def _stop_inputs(self) -> None:
        if self._telemetry_timer is not None:
            self.destroy_timer(self._telemetry_timer)
            self._telemetry_timer = None
        if self._ingress is not None:
            self._ingress.unsubscribe(self)

    def _stop_engine(self, reason: str, drain: bool = True) -> None:
        """Finish queued frames within deactivate_timeout_s (drain); drop the rest with reason."""
        engine = self._engine
        if engine is None:
            return
        timeout = self._node_parameters.get('deactivate_timeout_s')
        end = time.monotonic() + timeout
        finished = engine.drain(timeout) if drain else True
        engine.stop(max(0.5, end - time.monotonic()), reason)
        if not finished:
            self.get_logger().warning(
                f'frames still queued after deactivate_timeout_s {timeout:g} s were dropped '
                f'(reason {reason})')

    def _release(self) -> None:
        """Stop the metrics; close the engine, write the report; release outputs, diagnostics."""
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            metrics.stop()
        engine, self._engine = self._engine, None
        self._node_parameters.engine = None
        outputs, self._outputs = self._outputs, None
        if engine is not None:
            if outputs is not None:
                outputs.closing = True
            engine.close(timeout=max(0.5, self._node_parameters.get('deactivate_timeout_s')))
            self._write_report(engine)
        trace, self._trace = self._trace, None
        if trace is not None:
            trace.close()
            self.get_logger().info(f'wrote {trace.records} job records to {trace.path}')
        if outputs is not None:
            outputs.close()
        self._ingress = None
        self._diagnostics.release()

    def _write_report(self, engine: Engine, lock_timeout: float = -1) -> None:
        path = self._node_parameters.get('report_path')
        if not path:
            return
        try:
            report = engine.report(lock_timeout)
        except TimeoutError as error:
            self.get_logger().error(f'no report written to {path}: {error}')
            return
        inputs = self._ingress.inputs if self._ingress is not None else {}
        report['node'] = {
            'name': self.get_fully_qualified_name(),
            'pid': os.getpid(),  # which process wrote it (launch may respawn the node)
            'tasks': {name: {series: task['run_latency'][series]
                             for series in messages.NODE_SERIES}
                      for name, task in report['final']['tasks'].items()},
            'inputs': {name: item.report() for name, item in inputs.items()},
        }
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._keep_earlier('report_path', path)
            with open(path, 'w', encoding='utf-8') as stream:
                json.dump(report, stream, indent=2, sort_keys=True, default=str)
                stream.write('\n')
            self.get_logger().info(f'report written to {path}')
        except (OSError, ValueError) as error:
            self.get_logger().error(f'cannot write the report to {path}: {error}')

    def _keep_earlier(self, parameter: str, path: str) -> None:
        """Move aside a file an earlier process left at path before this one first writes it."""
        moved = self._kept_files.claim(path)
        if moved is not None:
            self.get_logger().info(f'{parameter}: the earlier {path} was moved to {moved}')

    # -- telemetry and diagnostics -----------------------------------------------------------

    def publish_telemetry(self) -> None:
        """Publish the engine's snapshot on ~/telemetry (the timer; also at deactivate)."""
        engine, outputs = self._engine, self._outputs
        if engine is not None and outputs is not None:
            outputs.publish_telemetry(self.telemetry_message(engine.snapshot()))

    def telemetry_message(self, snapshot: Snapshot) -> OrchestratorTelemetry:
        inputs = self._ingress.inputs if self._ingress is not None else {}

        def input_stats(name: str) -> InputStats:
            stats = InputStats()
            item = inputs.get(name)
            if item is not None:
                stats.topic = item.resolved_topic
                stats.type = item.message_type
                stats.deadline_missed = item.deadline_missed
                stats.incompatible_qos = item.incompatible_qos
            return stats
        return messages.telemetry_message(snapshot, self.get_clock().now().to_msg(),
                                          self._state_label, input_stats)

    def diagnose_task(self, stat, task: str):
        """Fill the /diagnostics status of a task (the updater's callback)."""
        return self._diagnostics.task_status(stat, task)

    def diagnose_input(self, stat, name: str):
        """Fill the /diagnostics status of an input (the updater's callback)."""
        return self._diagnostics.input_status(stat, name)


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
        threads = node.executor_threads
        executor = SingleThreadedExecutor() if threads == 1 else \
            MultiThreadedExecutor(num_threads=threads)
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
