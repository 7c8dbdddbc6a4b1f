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

"""The engine's records: a job's Result, a Submission, its states and its virtual clock."""

from dataclasses import dataclass, field
import logging
from typing import Any, Dict, Tuple

import numpy as np

LOGGER = logging.getLogger('inferedge_orchestrator')
REPORT_SCHEMA = 'inferedge_orchestrator_ros/report/1'

# Engine states.
CREATED, RUNNING, PAUSED, STOPPING, STOPPED, CLOSED = (
    'created', 'running', 'paused', 'stopping', 'stopped', 'closed')


# Instants closer than this are one instant: the resolution of ROS stamps and
# time.monotonic_ns. The virtual clock's float sums can land an ulp past a deadline a frame
# meets exactly (start + service == stamp + budget), which is no miss.
SAME_INSTANT_S = 1e-9


class VirtualClock:
    """A clock that only moves when the simulation sets `now`."""

    def __init__(self, start: float = 0.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class Result:
    """
    The outcome of one job, delivered by on_result (on the slot thread; timeouts: timer).

    Times are seconds. queue_wait runs from submit() returning to a worker taking the frame;
    end_to_end from the caller's stamp (arrival - age) to the end of inference; finished is the
    engine clock at the end of inference. status is OK, FAILED or TIMED_OUT.
    """

    task: str
    input: str  # noqa: A003 - the input's name, as in the config
    seq: int
    status: str
    reason: str = ''
    detail: str = ''
    outputs: Dict[str, np.ndarray] = field(default_factory=dict)
    queue_wait_s: float = 0.0
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    postprocess_s: float = 0.0
    decode_s: float = 0.0
    service_s: float = 0.0
    batch_size: int = 1  # the frames its job ran in one call (scheduling/batching.py)
    end_to_end_s: float = 0.0
    deadline_met: bool = False
    finished: float = 0.0
    meta: Any = None
    decoded: Any = None  # the decoder's Decoded (decoders/base.py); None without a decoder
    image: Any = None  # with a decoder: the source image (HxWxC) and its encoding, to draw on
    encoding: str = ''
    # From the model call's end to on_result (real time only): the hand-off back.
    handoff_out_s: float = 0.0
    model_span: Tuple[float, float] = (0.0, 0.0)  # time.monotonic() at the call's begin, end


@dataclass
class Submission:
    """
    What submit() returns.

    accepted is False for a malformed frame, with its reason; seq is the frame's number; dropped
    lists the (task, reason) drops of this frame that admission decided at once.
    """

    accepted: bool
    reason: str = ''
    seq: int = -1
    dropped: Tuple[Tuple[str, str], ...] = ()
