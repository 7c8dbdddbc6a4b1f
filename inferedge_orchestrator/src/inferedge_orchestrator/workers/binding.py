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
What the model workers (onnxruntime, tensorrt) share: binding a model's tensors to a task.

The image input (options['input'] or the first 3-D/4-D input that extra_inputs does not feed),
its preprocessor, the constant extra inputs and the outputs to publish, checked against the
model's tensors with one error message per mistake; and the warm-up run times that give the
engine its first service-time guesses.
"""

from dataclasses import dataclass, field
import statistics
from typing import Any, Dict, List, Optional, Sequence

from inferedge_orchestrator.contracts.inference import InferenceOutput
from inferedge_orchestrator.workers.preprocess import constant_input, Preprocessor
import numpy as np


@dataclass
class TensorSpec:
    """An input tensor as the runtime describes it: name, shape (dims or names), numpy dtype."""

    name: str
    shape: Sequence[Any]
    dtype: Any


@dataclass
class Binding:
    """The image input, its preprocessor, the constant inputs and the outputs of a task."""

    input_name: str
    preprocess: Preprocessor
    extra: Dict[str, np.ndarray]
    output_names: List[str]


def bind_model(inputs: List[TensorSpec], outputs: List[str], options: Dict[str, Any],
               what: str = 'model', image_shape: Optional[List] = None) -> Binding:
    """
    Bind a task's worker options to a model's tensors; ValueError names the mistake.

    image_shape: the image input's shape instead of the model's (a server's override).
    """
    by_name = {spec.name: spec for spec in inputs}
    names = ', '.join(by_name)
    extra = options['extra_inputs'] or {}
    for name in extra:
        if name not in by_name:
            raise ValueError(f'extra_inputs: {name!r} is not an input of the {what}; '
                             f'inputs: {names}')
    image_name = options['input'] or next(
        (spec.name for spec in inputs if spec.name not in extra and len(spec.shape) in (3, 4)),
        '')
    if image_name not in by_name:
        raise ValueError(f'input: {image_name or "(none)"!r} is not an image input of the '
                         f'{what}; inputs: {names}')
    image = by_name[image_name]
    preprocess = Preprocessor(image_name, image_shape or image.shape, image.dtype, options)
    unfed = [name for name in by_name if name != image_name and name not in extra]
    if unfed:
        raise ValueError(f'the {what} input(s) {", ".join(unfed)} need a value: set '
                         'extra_inputs (name: constant)')
    wanted = list(options['outputs']) or list(outputs)
    unknown = [name for name in wanted if name not in outputs]
    if unknown:
        raise ValueError(f'outputs: {", ".join(unknown)} not outputs of the {what}; '
                         f'outputs: {", ".join(outputs)}')
    return Binding(
        image_name, preprocess,
        {name: constant_input(name, value, by_name[name].shape, by_name[name].dtype)
         for name, value in extra.items()},
        wanted)


@dataclass
class WarmUpTimes:
    """A model worker's warm-up run times (preprocessing and inference, s)."""

    times: List[float] = field(default_factory=list)

    def add(self, output: InferenceOutput) -> None:
        self.times.append(output.preprocess_s + output.inference_s)

    def expected_s(self) -> float:
        """Return the median run after the first (0 when there was no warm-up)."""
        times = self.times[1:] or self.times
        return statistics.median(times) if times else 0.0

    def fast_s(self) -> float:
        """Return the fastest run after the first (0 when there were fewer than 2)."""
        times = self.times[1:]
        return min(times) if times else 0.0


class BatchWarmUps:
    """A model worker's warm-up run times at each batch size (s): its guesses per size."""

    def __init__(self):
        self._by_size: Dict[int, WarmUpTimes] = {}

    def add(self, outputs: List[InferenceOutput]) -> None:
        """Add one warm-up batch's time (the outputs of its frames, as split_batch made them)."""
        size = len(outputs)
        self._by_size.setdefault(size, WarmUpTimes()).times.append(
            outputs[0].preprocess_s * size + outputs[0].inference_s)

    def expected_s(self, size: int) -> float:
        times = self._by_size.get(size)
        return times.expected_s() if times else 0.0

    def fast_s(self, size: int) -> float:
        times = self._by_size.get(size)
        return times.fast_s() if times else 0.0


def batch_limit(batch_dim: Optional[int], dynamic_limit: int = 1024) -> int:
    """Return the most frames a model input with this batch dimension takes (None: dynamic)."""
    return dynamic_limit if batch_dim is None else batch_dim


def split_batch(outputs: Dict[str, np.ndarray], frames: int, preprocess_s: float,
                inference_s: float, geometries: Sequence[Any]) -> List[InferenceOutput]:
    """
    Return one InferenceOutput per frame of a batch: row i of every output, kept 4-D.

    Each frame's output keeps a batch dimension of 1, as a one-frame call gives it, so that
    decoders read both alike; rows beyond the frames (a fixed batch dimension) are ignored.
    The preprocessing time is the batch's share per frame; the inference time the call's.
    """
    for name, value in outputs.items():
        if np.ndim(value) == 0 or value.shape[0] < frames:
            raise ValueError(f'output {name!r} of shape {list(np.shape(value))} has no batch '
                             f'dimension of {frames} frames: the model cannot batch')
    share = preprocess_s / frames
    return [InferenceOutput({name: value[row:row + 1] for name, value in outputs.items()},
                            share, inference_s, geometries[row]) for row in range(frames)]
