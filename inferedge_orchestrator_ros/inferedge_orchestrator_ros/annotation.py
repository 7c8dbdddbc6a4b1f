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
The annotated images: a task's detections drawn on its source image, off the hot path.

Results offer frames; at most rate_hz per task are taken, the rest pass by (a view for
people, not data). Drawing (OpenCV) and publishing run on a thread of the annotator's own,
never in the engine's lock or on a worker slot.
"""

import queue
import threading
import time

from inferedge_orchestrator import draw_detections
from inferedge_orchestrator_ros.publishing import publish_unless_shut_down
from sensor_msgs.msg import Image


class Annotator:
    """Draws and publishes ~/<task>/annotated for the tasks that decode detections."""

    def __init__(self, node, rate_hz: float):
        self._node = node
        self.rate_hz = rate_hz
        self._last = {}
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._loop, name='annotator', daemon=True)
        self._thread.start()

    def offer(self, key, publisher, result, header) -> None:
        """
        Take a result for drawing when its stream is due (called on a slot thread).

        key: the stream's, rate-limited on its own (a task's camera).
        """
        rate = self.rate_hz
        if not rate or result.image is None:
            return
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < 1.0 / rate:
            return
        try:
            self._queue.put_nowait((publisher, result.image, result.encoding,
                                    result.decoded.detections, header))
        except queue.Full:
            return
        self._last[key] = now

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            publisher, image, encoding, detections, header = item
            try:
                canvas = draw_detections(image, encoding, detections)
            except Exception as error:  # noqa: B902 - a drawing failure must not stop others
                self._node.get_logger().warning(f'annotated image: {error}',
                                                throttle_duration_sec=5.0)
                continue
            msg = Image(header=header, height=canvas.shape[0], width=canvas.shape[1],
                        encoding='rgb8', is_bigendian=0, step=canvas.shape[1] * 3)
            msg.data = canvas.tobytes()
            publish_unless_shut_down(self._node, publisher, msg)
