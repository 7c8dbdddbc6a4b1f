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

"""What every decoder shares: its results, its error, its options and the kinds by name."""

import time
from typing import Any, Dict, List, Optional, Sequence

from inferedge_orchestrator.config.schema import check_options, Field
from inferedge_orchestrator.config.schema import with_marked_tables
from inferedge_orchestrator.contracts.errors import PostprocessError
from inferedge_orchestrator.contracts.inference import Decoded, Geometry, ModelInfo
from inferedge_orchestrator.contracts.kinds import DECODERS
import numpy as np


class Decoder:
    """Base of the decoders; one instance per task, called from its slots (thread-safe)."""

    kind = 'none'
    produces = ''  # 'detections' or 'classes'
    OPTIONS: Dict[str, Field] = {}

    def __init__(self, task_name: str, options: Dict[str, Any]):
        self.task_name = task_name
        self.options = options
        self.labels: List[str] = []

    @classmethod
    def validate_options(cls, options: Dict[str, Any], where: str) -> Dict[str, Any]:
        """Return the options with defaults filled in; raise ConfigError naming the field."""
        return check_options(where, options, cls.OPTIONS, f'decoder {cls.kind!r}')

    def bind(self, info: ModelInfo) -> None:
        """Check the options against the loaded model (ValueError: a configure error)."""

    def decode(self, outputs: Dict[str, np.ndarray], geometry) -> Decoded:
        raise NotImplementedError

    def decode_into(self, output, image_shape: Sequence[int]) -> None:
        """
        Decode a worker's InferenceOutput in place: its decoded and postprocess_s.

        The geometry is the one the worker reports, or the image itself (image_shape: H, W, ...).
        """
        start = time.perf_counter()
        height, width = image_shape[:2]
        output.decoded = self.decode(output.outputs, output.geometry or
                                     Geometry(height, width, height, width))
        output.postprocess_s = time.perf_counter() - start

    def label(self, index: int) -> str:
        """Return the label of a class index; PostprocessError beyond known labels."""
        if not self.labels:
            return str(index)
        if not 0 <= index < len(self.labels):
            raise PostprocessError(f'class index {index} is beyond the {len(self.labels)} '
                                   'labels')
        return self.labels[index]


# kind -> 'module:Class'; modules are imported when a task uses them
def create_decoder(kind: str, task_name: str, options: Dict[str, Any]) -> Optional[Decoder]:
    """Return the task's decoder, or None for kind none."""
    return None if kind == 'none' else DECODERS.create(kind, task_name, options)


def finite(name: str, values: np.ndarray) -> np.ndarray:
    """Return values as float32; PostprocessError when any is NaN or infinite."""
    values = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise PostprocessError(f'output {name!r} holds NaN or infinite values')
    return values


def output(outputs: Dict[str, np.ndarray], name: str, index: int = 0) -> np.ndarray:
    """Return the output called name (empty: the index-th); PostprocessError when missing."""
    if name:
        if name not in outputs:
            raise PostprocessError(f'output {name!r} is missing; outputs: '
                                   f'{", ".join(outputs) or "none"}')
        return np.asarray(outputs[name])
    if len(outputs) <= index:
        raise PostprocessError(f'the model gave {len(outputs)} output(s); the decoder reads '
                               f'output {index + 1}')
    return np.asarray(list(outputs.values())[index])


def options_table(kind: str) -> str:
    """Return the markdown table of a decoder kind's options, as docs/decoders.md holds it."""
    lines = ['| option | default | allowed | description |', '| --- | --- | --- | --- |']
    for name, option in DECODERS.cls(kind).OPTIONS.items():
        default = option.default
        if isinstance(default, bool):
            text = str(default).lower()
        elif isinstance(default, (str, tuple, list)) and not default:
            text = "''" if isinstance(default, str) else '[]'
        else:
            text = str(default)
        lines.append(f'| `{name}` | {text} | {option.allowed()} | {option.description} |')
    return '\n'.join(lines) + '\n'


def docs_with_tables(text: str) -> str:
    """Return docs/decoders.md's text with each <!-- options: KIND --> table made again."""
    return with_marked_tables(text, {kind: options_table(kind) for kind in DECODERS.names},
                              'options', required=False)
