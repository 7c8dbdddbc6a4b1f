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

"""What the launch tests share: a listener node in its own context on the test's domain."""

import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

TELEMETRY_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Listener:
    """A node of the test process: subscribes, publishes and spins until a condition holds."""

    def __init__(self, domain_id: int, name: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._subscriptions = {}
        self._clients = {}  # service name -> client (timed_call)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def spin_until(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def subscribe(self, msg_type, topic: str, qos=10) -> list:
        """Return the list that collects the messages of topic (one subscription per topic)."""
        if topic not in self._subscriptions:
            messages = []
            self.node.create_subscription(msg_type, topic, messages.append, qos)
            self._subscriptions[topic] = messages
        return self._subscriptions[topic]

    def telemetry(self, topic: str) -> list:
        from inferedge_orchestrator_msgs.msg import OrchestratorTelemetry
        return self.subscribe(OrchestratorTelemetry, topic, TELEMETRY_QOS)

    def telemetry_after(self, topic: str, uptime_s: float = 0.0, timeout: float = 30.0,
                        predicate=None):
        """Spin until a telemetry message with uptime >= uptime_s (and predicate) arrives."""
        messages = self.telemetry(topic)

        def ready():
            return bool(messages) and messages[-1].uptime_s >= uptime_s and \
                (predicate is None or predicate(messages[-1]))
        assert self.spin_until(ready, timeout), (
            f'no telemetry on {topic} with uptime >= {uptime_s} s within {timeout} s; last: '
            f'{messages[-1] if messages else None}')
        return messages[-1]

    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 30.0) -> None:
        assert self.spin_until(lambda: publisher.get_subscription_count() >= count, timeout), \
            f'no subscriber on {publisher.topic_name} within {timeout} s'

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        """Call a service of another node and return its response."""
        client = self.node.create_client(srv_type, name)
        try:
            assert self.spin_until(client.service_is_ready, timeout), f'{name} is not ready'
            future = client.call_async(request)
            assert self.spin_until(future.done, timeout), f'{name} did not answer'
            return future.result()
        finally:
            self.node.destroy_client(client)

    def timed_call(self, srv_type, name: str, request, timeout: float = 20.0):
        """
        Call a service through a client kept for the next calls; return (response, seconds).

        The seconds run from the request to its answer: the service's answer time, without
        the discovery of a new client that call() waits for.
        """
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.node.create_client(srv_type, name)
        assert self.spin_until(client.service_is_ready, timeout), f'{name} is not ready'
        start = time.monotonic()
        future = client.call_async(request)
        assert self.spin_until(future.done, timeout), f'{name} did not answer'
        return future.result(), time.monotonic() - start

    def lifecycle_state(self, node: str) -> str:
        from lifecycle_msgs.srv import GetState
        return self.call(GetState, f'{node}/get_state', GetState.Request()).current_state.label

    def transition(self, node: str, transition_id: int) -> None:
        from lifecycle_msgs.srv import ChangeState
        request = ChangeState.Request()
        request.transition.id = transition_id
        response = self.call(ChangeState, f'{node}/change_state', request)
        assert response.success, f'transition {transition_id} of {node} failed'

    def set_parameters(self, node: str, values: dict, atomically: bool = False):
        """Set parameters of another node; return the results (one, when atomically)."""
        from rcl_interfaces.srv import SetParameters, SetParametersAtomically
        from rclpy.parameter import Parameter
        parameters = [Parameter(name, value=value).to_parameter_msg()
                      for name, value in values.items()]
        if atomically:
            request = SetParametersAtomically.Request(parameters=parameters)
            return self.call(SetParametersAtomically, f'{node}/set_parameters_atomically',
                             request).result
        request = SetParameters.Request(parameters=parameters)
        return self.call(SetParameters, f'{node}/set_parameters', request).results

    def get_parameters(self, node: str, names: list) -> list:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        response = self.call(GetParameters, f'{node}/get_parameters',
                             GetParameters.Request(names=names))
        return [parameter_value_to_python(value) for value in response.values]

    def declared(self, node: str, names: list) -> list:
        from rcl_interfaces.srv import ListParameters
        response = self.call(ListParameters, f'{node}/list_parameters',
                             ListParameters.Request())
        return [name in response.result.names for name in names]

    def diagnostic_levels(self, task: str, level: int, timeout: float = 30.0) -> dict:
        """Spin until /diagnostics shows `task <task>` at level; return every level seen."""
        from diagnostic_msgs.msg import DiagnosticArray
        arrays = self.subscribe(DiagnosticArray, '/diagnostics')
        seen = {}
        read = [0]  # the messages already looked at

        def reached():
            for message in arrays[read[0]:]:
                for status in message.status:
                    seen.setdefault(status.name.split(': ', 1)[-1], set()).add(status.level)
            read[0] = len(arrays)
            return level in seen.get(f'task {task}', ())
        assert self.spin_until(reached, timeout), f'task {task} never at level {level}: {seen}'
        return seen

    @staticmethod
    def ran_every_frame(first, last, task: str, input_name: str = 'camera') -> bool:
        """Whether task executed every frame its input received between two telemetry messages."""
        def executed(message):
            return next(t.executed for t in message.tasks if t.name == task)

        def received(message):
            return next(i.received for i in message.inputs if i.name == input_name)
        # One frame may still be on its way through the task when the last message was taken.
        return executed(last) - executed(first) >= received(last) - received(first) - 1

    @staticmethod
    def invariant_violations(telemetry) -> list:
        """Return the violations of the core invariants in a telemetry message."""
        from inferedge_orchestrator_ros.messages import telemetry_invariant_violations
        return telemetry_invariant_violations(telemetry)
