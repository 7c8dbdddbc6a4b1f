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


"""Publishing and spinning while Ctrl-C may end the context at any moment."""

from rclpy.executors import ExternalShutdownException


def publish_unless_shut_down(node, publisher, msg) -> bool:
    """
    Publish msg; return False when the node's context has ended (Ctrl-C) and nothing was sent.

    rclpy's signal handler shuts the context down between any two lines of a callback or a
    worker thread; a publish then raises RCLError, which is not an error of the node's.
    """
    try:
        publisher.publish(msg)
    except Exception:  # noqa: B902 - rclpy's RCLError is not public
        if node.context.ok():
            raise
        return False
    return True


def spin_once_unless_shut_down(node, executor, timeout_sec: float) -> bool:
    """
    Spin once; return False when Ctrl-C (or a shutdown) ended the node's context.

    The signal handler may end the context while the executor builds its wait set; rclpy then
    raises RCLError ("the given context is not valid"), which is the shutdown, not an error.
    """
    try:
        executor.spin_once(timeout_sec=timeout_sec)
    except (KeyboardInterrupt, ExternalShutdownException):
        return False
    except Exception:  # noqa: B902 - rclpy's RCLError is not public
        if node.context.ok():
            raise
        return False
    return node.context.ok()
