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
Publishing off the callers' threads, and publishing and spinning while Ctrl-C may end the context.

PublishQueue holds the node's messages for one publisher thread of its own, so that a slot
thread (or the engine's timer thread, or the executor) only appends a message and returns;
a topic whose queue is full drops its oldest message, counted per topic.
"""

from collections import deque
from dataclasses import dataclass
import itertools
import threading
import time
from typing import Dict, List, Optional

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


@dataclass
class TopicCounts:
    """
    What the publish queue did with one topic's messages since configure.

    Invariant: offered == published + dropped + queued.
    """

    topic: str
    offered: int = 0     # messages handed to the queue (or, synchronous, to publish())
    published: int = 0   # messages publish() took
    dropped: int = 0     # not published: the oldest of a full queue, or a publish that failed
    queued: int = 0      # waiting now, or in a publish() that has not returned
    max_queued: int = 0  # the most it has held


class _Topic:
    """One publisher's waiting messages (oldest first, each with its arrival number)."""

    def __init__(self, publisher, topic: str):
        self.publisher = publisher
        self.waiting: deque = deque()
        self.counts = TopicCounts(topic)


class PublishQueue:
    """
    The node's messages waiting for one publisher thread, at most depth per topic.

    Between start() and stop() (the node's activate and deactivate), add() appends and returns
    at once; when the topic already holds depth messages its oldest is dropped (counted). The
    thread publishes in arrival order across topics. Without the thread (depth 0, or not
    started) add() publishes on the caller's thread, as the node did before the queue: a slow
    publish then holds that thread.
    node: gives the context (publish_unless_shut_down) and the logger.
    """

    def __init__(self, node, depth: int, name: str = 'publisher'):
        self.depth = depth
        self._node = node
        self._name = name
        self._topics: Dict[int, _Topic] = {}  # by id(publisher)
        self._order: List[_Topic] = []  # in the order of their first message
        self._arrivals = itertools.count()
        self._cond = threading.Condition()
        self._publishing = 0  # messages taken from a queue and not yet through publish()
        self._thread: Optional[threading.Thread] = None
        self._runs = 0  # stop() ends the thread of the run it counts (start() begins the next)

    def start(self) -> None:
        """Start the publisher thread (depth 0: none)."""
        with self._cond:
            if self.depth == 0 or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, args=(self._runs,),
                                            name=self._name, daemon=True)
            self._thread.start()

    def add(self, publisher, msg) -> None:
        """Queue msg for publisher (without the thread: publish it now, on this thread)."""
        with self._cond:
            topic = self._topic(publisher)
            counts = topic.counts
            counts.offered += 1
            if self._thread is not None and len(topic.waiting) >= self.depth:
                topic.waiting.popleft()
                counts.dropped += 1
            else:
                counts.queued += 1
                counts.max_queued = max(counts.max_queued, counts.queued)
            if self._thread is not None:
                topic.waiting.append((next(self._arrivals), msg))
                self._cond.notify_all()
                return
        self._publish(topic, msg)

    def counts(self) -> List[TopicCounts]:
        """Return a copy of each topic's counts, all from one moment: each holds the invariant."""
        with self._cond:
            return [TopicCounts(**vars(topic.counts)) for topic in self._order]

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued message went through publish(); False after timeout_s."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while self._publishing or any(topic.waiting for topic in self._order):
                left = end - time.monotonic()
                if left <= 0.0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout_s: float) -> int:
        """
        Publish what is queued within timeout_s, then stop the thread.

        Return how many messages were left unpublished (counted as dropped).
        """
        self.flush(timeout_s)
        left = 0
        with self._cond:
            thread, self._thread = self._thread, None
            self._runs += 1
            for topic in self._order:
                left += len(topic.waiting)
                topic.counts.dropped += len(topic.waiting)
                topic.counts.queued -= len(topic.waiting)
                topic.waiting.clear()
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout=0.5)  # it ends at once unless a publish hangs
        return left

    def _topic(self, publisher) -> _Topic:
        topic = self._topics.get(id(publisher))
        if topic is None:
            topic = self._topics[id(publisher)] = _Topic(publisher, publisher.topic_name)
            self._order.append(topic)
        return topic

    def _loop(self, run: int) -> None:
        while True:
            with self._cond:
                while run == self._runs and not any(t.waiting for t in self._order):
                    self._cond.wait()
                if run != self._runs:
                    return
                # The oldest message of all: a few topics, so a scan is cheap beside a publish.
                topic = min((t for t in self._order if t.waiting),
                            key=lambda t: t.waiting[0][0])
                _, msg = topic.waiting.popleft()
                self._publishing += 1
            try:
                self._publish(topic, msg)
            finally:
                with self._cond:
                    self._publishing -= 1
                    self._cond.notify_all()

    def _publish(self, topic: _Topic, msg) -> None:
        try:
            sent = publish_unless_shut_down(self._node, topic.publisher, msg)
        except Exception as error:  # noqa: B902 - one failed publish must not stop the others
            self._node.get_logger().warning(
                f'publish on {topic.counts.topic} failed: {type(error).__name__}: {error}',
                throttle_duration_sec=5.0)
            sent = False
        with self._cond:
            topic.counts.queued -= 1
            if sent:
                topic.counts.published += 1
            else:
                topic.counts.dropped += 1
