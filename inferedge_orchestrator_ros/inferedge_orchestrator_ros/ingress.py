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
Image ingress: the node's subscriptions and what their callbacks do with a message.

A callback only turns the message into an array (a view, or one conversion for the camera
encodings of conversion.py, shared by every task of the frame) and calls the engine's
submit(); inference runs on the engine's slot threads. The callbacks need no ROS graph:
image_callback(name) and compressed_callback(name) return them for any caller.
"""

import time
from typing import Any, Dict, Optional

from inferedge_orchestrator import Engine
from inferedge_orchestrator_ros import parameter_schema as params
from inferedge_orchestrator_ros.conversion import Converter
from inferedge_orchestrator_ros.images import image_to_array, ZERO_COPY
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_policy_name_from_kind, QoSProfile,
                       ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image

try:  # Iron and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks


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


class Input:
    """One input's subscription side: its settings, subscription and QoS event counts."""

    def __init__(self, name: str, settings: Dict[str, Any], target: str):
        self.name = name
        self.settings = settings
        self.topic = settings['topic']
        self.target = target  # what camera encodings are converted to (conversion.py)
        self.subscription = None
        self.deadline_missed = 0
        self.incompatible_qos = 0
        self.incompatible_policy = ''  # the QoS policy the last incompatible publisher broke
        self.last_message: Optional[float] = None  # time.monotonic() of the last message
        self.resolved_topic = self.topic

    @property
    def message_type(self) -> str:
        """Return the ROS type of its messages (sensor_msgs/msg/Image or CompressedImage)."""
        return (params.COMPRESSED_TYPE if self.settings['message_type'] == 'compressed_image'
                else params.IMAGE_TYPE)

    def qos(self) -> QoSProfile:
        settings = self.settings
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=settings['depth'],
            reliability=(ReliabilityPolicy.RELIABLE if settings['reliability'] == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=(DurabilityPolicy.TRANSIENT_LOCAL
                        if settings['durability'] == 'transient_local'
                        else DurabilityPolicy.VOLATILE))
        if settings['deadline_ms'] > 0:
            qos.deadline = Duration(nanoseconds=int(settings['deadline_ms'] * 1e6))
        return qos

    def qos_conflict(self) -> str:
        """Return what incompatible publishers offered ('' when none came): logs name it."""
        if not self.incompatible_qos:
            return ''
        return (f'{self.incompatible_qos} publisher(s) on {self.resolved_topic} offered QoS '
                f'incompatible with this subscription ({self.settings["reliability"]}, '
                f'{self.settings["durability"]}), the last one on policy '
                f'{self.incompatible_policy}')

    def report(self) -> Dict[str, Any]:
        return {'topic': self.resolved_topic, 'deadline_missed': self.deadline_missed,
                'incompatible_qos': self.incompatible_qos}


def stamp_age(clock, header) -> Optional[float]:
    """Return now - header.stamp by the node clock (s); None for a zero stamp."""
    stamp = header.stamp
    stamp_ns = stamp.sec * 1000000000 + stamp.nanosec
    return (clock.now().nanoseconds - stamp_ns) * 1e-9 if stamp_ns else None


def age_at(age: Optional[float], entry: float, now: float) -> Optional[float]:
    """
    Return a frame's age at submit(): its stamp age at the callback's entry plus the time since.

    So the engine's end-to-end (stamp -> inference end) holds the callback's time before
    submit(), the conversion included.
    """
    return None if age is None else age + (now - entry)


class Ingress:
    """The inputs of one configuration: their subscriptions, callbacks and QoS events."""

    def __init__(self, engine: Engine, inputs: Dict[str, Input], converter: Optional[Converter],
                 clock, logger):
        self.inputs = inputs
        self.converter = converter  # None when no input takes raw images
        self._engine = engine
        self._clock = clock  # the node clock (use_sim_time): frame ages
        self._logger = logger

    def subscribe(self, node, groups: bool = False) -> None:
        """
        Subscribe to every input (activate).

        groups: each input's callbacks in a mutually exclusive callback group of its own, so
        a multi-threaded executor takes different inputs' images at once, never one input's
        two (an input's counters have one writer at a time).
        """
        for item in self.inputs.values():
            events = SubscriptionEventCallbacks(
                deadline=lambda info, item=item: self._on_deadline(item, info),
                incompatible_qos=lambda info, item=item: self._on_incompatible(item, info))
            if item.settings['message_type'] == 'compressed_image':
                callback, msg_type = self.compressed_callback(item.name), CompressedImage
            else:
                callback, msg_type = self.image_callback(item.name), Image
            item.subscription = node.create_subscription(
                msg_type, item.topic, callback, item.qos(), event_callbacks=events,
                callback_group=MutuallyExclusiveCallbackGroup() if groups else None)
            item.resolved_topic = item.subscription.topic_name
            item.last_message = None

    def unsubscribe(self, node) -> None:
        """Destroy the subscriptions (deactivate); safe more than once."""
        for item in self.inputs.values():
            if item.subscription is not None:
                node.destroy_subscription(item.subscription)
                item.subscription = None

    def image_callback(self, name: str):
        """Return the callback of a sensor_msgs/Image input."""
        engine, clock, item = self._engine, self._clock, self.inputs[name]
        max_pixels = engine.config.max_image_pixels
        monotonic = time.monotonic
        convert = self.converter.convert
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
            submission = engine.submit(name, image, age_at(age, entry, monotonic()),
                                       encoding, meta)
            meta.submitted = monotonic()
            if not submission.accepted:
                self._log_malformed(name, submission.reason, msg)

        return on_image

    def compressed_callback(self, name: str):
        """Return the callback of a sensor_msgs/CompressedImage input."""
        engine, clock, item = self._engine, self._clock, self.inputs[name]
        monotonic = time.monotonic

        def on_compressed(msg: CompressedImage) -> None:
            entry = monotonic()
            item.last_message = entry
            age = stamp_age(clock, msg.header)
            meta = FrameMeta(msg.header, entry, age)
            submission = engine.submit(name, memoryview(msg.data),
                                       age_at(age, entry, monotonic()), None, meta)
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
        self._logger.warning(f'input {name}: malformed image dropped ({reason}): {what}',
                             throttle_duration_sec=1.0)

    def _on_deadline(self, item: Input, info) -> None:
        item.deadline_missed = info.total_count
        self._logger.warning(
            f'input {item.name}: QoS deadline {item.settings["deadline_ms"]:g} ms missed on '
            f'{item.resolved_topic} (counted in the telemetry)', once=True)

    def _on_incompatible(self, item: Input, info) -> None:
        item.incompatible_qos = info.total_count
        try:
            item.incompatible_policy = qos_policy_name_from_kind(info.last_policy_kind)
        except ValueError:
            item.incompatible_policy = str(info.last_policy_kind)
        # Each event is a publisher that appeared (a camera restarted with another QoS): rare
        # enough to log every one, for every input (rclpy's once is per line of code).
        self._logger.warning(f'input {item.name}: {item.qos_conflict()}: no messages flow '
                             'from them')
