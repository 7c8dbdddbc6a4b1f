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
Admission: a frame checked, routed to its input's tasks and queued, or dropped with a reason.

A mixin of Engine (engine.py), which holds the state; submit() is its entry point.
"""

from typing import Any, Optional

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.formats import CHANNELS, dtype_of
from inferedge_orchestrator.engine.records import PAUSED, RUNNING, STOPPED, Submission
from inferedge_orchestrator.frames.compressed import encoded_image_size
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.scheduling.policy import TaskState
import numpy as np

# The encoding of a single-channel array submitted without one, by its dtype.
_SINGLE_CHANNEL = {'uint8': 'mono8', 'uint16': 'mono16', 'float32': '32FC1'}


class Admission:
    """Admission of frames: submit(), reject() and the drops they count."""

    def reject(self, input_name: str, reason: str) -> None:
        """Count a frame the caller found malformed before submit() (e.g. a bad image message)."""
        with self._lock:
            inp = self._inputs[input_name]
            inp.received += 1
            inp.malformed[reason] = inp.malformed.get(reason, 0) + 1

    def submit(self, input_name: str, data: Any, age_s: Optional[float] = None,
               encoding: Optional[str] = None, meta: Any = None) -> Submission:
        """
        Route one frame to the tasks of input_name; never runs inference.

        data is an HxWxC (or HxW) uint8 array (uint16 for mono16 and 16UC1, float32 for 32FC1)
        or encoded JPEG/PNG bytes.
        age_s is the frame's age at arrival measured by the caller's clock (now - stamp); None,
        a stamp more than max_stamp_lead_ms in the future or older than max_stamp_age_ms
        count as stamp_fallback and use 0; a stamp less ahead than that uses 0 uncounted.
        """
        now = self._clock()
        with self._lock:
            inp = self._inputs.get(input_name)
            if inp is None:
                self.unknown_input += 1
                return Submission(False, reasons.UNKNOWN_INPUT)
            inp.received += 1
            inp.rate.add(now)
            image, encoded, encoding, malformed = self._check_data(data, encoding)
            if malformed:
                inp.malformed[malformed] = inp.malformed.get(malformed, 0) + 1
                return Submission(False, malformed)
            inp.accepted += 1
            config = self.config
            if age_s is None or age_s * 1000.0 < -config.max_stamp_lead_ms or \
                    age_s * 1000.0 > config.max_stamp_age_ms:
                inp.stamp_fallback += 1
                age_s = 0.0
            elif age_s < 0.0:  # within the clocks' offset or step: it arrived as stamped
                age_s = 0.0
            self._seq += 1
            frame = Frame(input_name, self._seq, now, age_s, image, encoded, encoding, meta)
            dropped = []
            admitting = self._state == RUNNING
            fifo = self._fifo
            for task in self._routes[input_name]:
                telemetry = task.telemetry
                telemetry.routed += 1
                task.note_arrival(now, age_s)
                if not admitting:
                    reason = reasons.DEACTIVATED if self._state in (PAUSED, STOPPED) \
                        else reasons.SHUTDOWN
                elif not task.config.enabled:
                    reason = reasons.DISABLED
                elif not fifo and not task.admit(now):
                    reason = reasons.RATE_LIMITED
                else:
                    pool = task.pool
                    pool.advance(now)
                    deadline = now + task.budget_s - age_s
                    queue_ = task.queue
                    if len(queue_) >= queue_.capacity and not queue_.drop_oldest and \
                            task.drops_late and not fifo:
                        # A full drop_newest queue: its likely late frames make room.
                        self._next_late = min(self._next_late,
                                              self._expire_pool(pool, now, making_room=task))
                    out = queue_.push((deadline, frame, task.lower_busy))
                    depth = len(queue_)
                    if depth > telemetry.max_queue_depth:
                        telemetry.max_queue_depth = depth
                    if deadline - task.fast_s < self._next_late:
                        self._next_late = deadline - task.fast_s
                    if out is None:
                        if deadline - task.fast_s < self._timer_wake:
                            self._cond.notify()
                        continue
                    reason = reasons.QUEUE_OVERFLOW
                    if not fifo:
                        task.risk.loss(reason, pool.lower_running(task.priority))
                    if out[1] is not frame:  # drop_oldest: an older frame made room
                        self._drop_entries(task, [out], reason, now)
                        continue
                self._drop_frame(task, frame, reason, now)
                dropped.append((task.name, reason))
            frame.submitted = self._clock()
            if admitting:
                wake = self._dispatch(frame.submitted)
                if wake < self._timer_wake:
                    self._cond.notify()
        return Submission(True, '', frame.seq, tuple(dropped))

    def _check_data(self, data: Any, encoding: Optional[str]):
        """Return (image, encoded, encoding, malformed reason or '')."""
        if isinstance(data, np.ndarray):
            if data.ndim == 2:
                data = data[:, :, None]
            if data.ndim != 3 or data.dtype not in (np.uint8, np.uint16, np.float32):
                return None, None, None, reasons.BAD_ARRAY
            height, width, channels = data.shape
            if data.size == 0:
                return None, None, None, reasons.ZERO_SIZE
            if height * width > self.config.max_image_pixels:
                return None, None, None, reasons.TOO_MANY_PIXELS
            if encoding is None:
                encoding = {1: _SINGLE_CHANNEL.get(data.dtype.name, 'mono8'),
                            3: 'rgb8', 4: 'rgba8'}.get(channels)
            if CHANNELS.get(encoding) != channels:
                return None, None, None, reasons.UNKNOWN_ENCODING
            if data.dtype.name != dtype_of(encoding):
                return None, None, None, reasons.BAD_ARRAY
            return data, None, encoding, ''
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            if not data:
                return None, None, None, reasons.ZERO_SIZE
            size = encoded_image_size(data)
            if size is not None:
                if size[0] * size[1] == 0:
                    return None, None, None, reasons.ZERO_SIZE
                if size[0] * size[1] > self.config.max_image_pixels:
                    return None, None, None, reasons.TOO_MANY_PIXELS
            return None, data, encoding or 'encoded', ''
        return None, None, None, reasons.BAD_ARRAY

    def _drop_entries(self, task: TaskState, entries: list, reason: str, now: float) -> None:
        """Count queue entries of task that leave without running."""
        if entries:
            task.telemetry.drop(reason, len(entries))
            self.decisions.count_drop(task.name, reason, len(entries))
            if self._trace is not None:
                for entry in entries:
                    self._trace.dropped(task.name, entry[1], reason, now)

    def _drop_frame(self, task: TaskState, frame: Frame, reason: str, now: float,
                    detail: str = '') -> None:
        """
        Count a frame of task that leaves without running: not queued, abandoned, or dropped.

        detail: why, for the DROP decision of the period (a server's message).
        """
        task.telemetry.drop(reason)
        self.decisions.count_drop(task.name, reason, detail=detail)
        if self._trace is not None:
            self._trace.dropped(task.name, frame, reason, now)
