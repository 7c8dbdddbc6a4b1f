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
A worker brought up, and a job run through it: what the engine and a process child share.

bring_up() loads a worker and warms it up by its own `warmup` option; bound_decoder() makes a
task's decoder and checks it against the loaded model; run_model() calls the model, decodes
its outputs and times the call, on a slot thread of the engine or in a child process alike;
run_batch() does the same for a batch of frames.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from inferedge_orchestrator.contracts.inference import InferenceOutput, ModelInfo
from inferedge_orchestrator.decoders.base import create_decoder, Decoder
from inferedge_orchestrator.workers.base import Worker


def bring_up(worker: Worker) -> None:
    """Load worker (the slow work) and run its model its `warmup` option's number of times."""
    worker.load()
    worker.warmup(int(worker.options.get('warmup', 0) or 0))


def bound_decoder(kind: str, task_name: str, options: Dict[str, Any],
                  info: ModelInfo) -> Optional[Decoder]:
    """Return the task's decoder (None for kind none) checked against the loaded model."""
    decoder = create_decoder(kind, task_name, options)
    if decoder is not None:
        decoder.bind(info)  # ValueError: the options do not fit the model
    return decoder


def run_model(call: Callable[[], InferenceOutput], decoder: Optional[Decoder],
              frame: Any) -> InferenceOutput:
    """
    Run call (the worker's infer on frame) and decode its outputs; return the output.

    Its span is the call's begin and end (time.monotonic(), one clock for every process on
    Linux), unless a child process set its own; a child that decoded leaves nothing to decode.
    """
    entered = time.monotonic()
    output = call()
    if not isinstance(output, InferenceOutput):
        raise TypeError(f'infer() returned {type(output).__name__}, not InferenceOutput')
    if decoder is not None and output.decoded is None:
        decoder.decode_into(output, frame.image.shape)
    if output.span is None:
        output.span = (entered, time.monotonic())
    return output


def run_batch(call: Callable[[], List[InferenceOutput]], decoder: Optional[Decoder],
              frames: Sequence[Any]) -> List[InferenceOutput]:
    """
    Run call (the worker's infer_batch on frames) and decode each frame's outputs.

    The worker returns one InferenceOutput per frame, in order, each with the frame's own
    slice of the batch's outputs; their span is the call's.
    """
    entered = time.monotonic()
    outputs = call()
    if not isinstance(outputs, list) or len(outputs) != len(frames) or not all(
            isinstance(output, InferenceOutput) for output in outputs):
        raise TypeError(f'infer_batch() of {len(frames)} frames returned '
                        f'{type(outputs).__name__}, not one InferenceOutput per frame')
    span = (entered, time.monotonic())
    for frame, output in zip(frames, outputs):
        if decoder is not None and output.decoded is None:
            decoder.decode_into(output, frame.image.shape)
        if output.span is None:
            output.span = span
    return outputs
