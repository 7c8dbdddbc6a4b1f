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

"""Frames: one image shared by every task that consumes it, decoded at most once."""

import threading
import time
from typing import Any, Optional

from inferedge_orchestrator.contracts.errors import DecodeError
from inferedge_orchestrator.frames.compressed import decode_image
import numpy as np


class Frame:
    """
    An accepted input frame: a decoded HxWxC array or encoded bytes decoded lazily, once.

    arrival is the engine clock's time at submit(); age is the caller's stamp age at arrival
    (0 for a fallback); meta is opaque caller data (the ROS node keeps the image header there).
    """

    __slots__ = ('input', 'seq', 'arrival', 'age', 'submitted', 'encoding', 'meta', 'decode_s',
                 'decode_error_counted', '_image', '_encoded', '_decode_lock', '_decode_error')

    def __init__(self, input_name: str, seq: int, arrival: float, age: float,
                 image: Optional[np.ndarray] = None, encoded: Optional[bytes] = None,
                 encoding: str = 'rgb8', meta: Any = None):
        self.input = input_name
        self.seq = seq
        self.arrival = arrival
        self.age = age
        self.submitted = arrival  # set again when submit() returns
        self.encoding = encoding
        self.meta = meta
        self.decode_s = 0.0
        self.decode_error_counted = False  # the engine counts a decode error once per frame
        self._image = image
        self._encoded = encoded
        self._decode_lock = threading.Lock() if encoded is not None else None
        self._decode_error: Optional[str] = None

    @property
    def image(self) -> np.ndarray:
        """Return the HxWxC image, decoding encoded bytes on first use (thread-safe)."""
        image = self._image
        if image is not None:
            return image
        with self._decode_lock:
            if self._image is None:
                if self._decode_error is not None:
                    raise DecodeError(self._decode_error)
                start = time.perf_counter()
                try:
                    self._image, self.encoding = decode_image(self._encoded)
                except DecodeError as error:
                    self._decode_error = str(error)
                    raise
                finally:
                    self.decode_s = time.perf_counter() - start
                self._encoded = None  # the bytes are no longer needed
        return self._image
