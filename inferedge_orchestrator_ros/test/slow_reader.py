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
A slow consumer for test_slow_consumers.py, run as a process: python slow_reader.py TOPIC...

It subscribes to each topic (its type found on the graph) with KEEP_ALL and reliable QoS,
prints `matched` once every topic has a publisher, and counts what it takes. The test stops
it with SIGSTOP and resumes it with SIGCONT; at SIGTERM it prints the counts as one JSON line.
"""

import json
import signal
import sys
import time

import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosidl_runtime_py.utilities import get_message

KEEP_ALL_RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_ALL,
                               reliability=ReliabilityPolicy.RELIABLE)


def main(topics) -> int:
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('slow_reader')
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    counts = dict.fromkeys(topics, 0)
    subscriptions = {}
    end = time.monotonic() + 60.0
    while len(subscriptions) < len(topics) and time.monotonic() < end and not stop:
        types = dict(node.get_topic_names_and_types())
        for topic in topics:
            if topic not in subscriptions and topic in types:
                def count(_, topic=topic):
                    counts[topic] += 1
                subscriptions[topic] = node.create_subscription(
                    get_message(types[topic][0]), topic, count, KEEP_ALL_RELIABLE)
        rclpy.spin_once(node, timeout_sec=0.1)
    while not stop and not all(s.get_publisher_count() for s in subscriptions.values()):
        rclpy.spin_once(node, timeout_sec=0.1)
    print('matched' if len(subscriptions) == len(topics) else 'unmatched', flush=True)
    while not stop:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(counts), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
