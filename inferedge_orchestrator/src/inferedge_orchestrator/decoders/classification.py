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

"""The classification decoder: class scores (logits or probabilities) to the top k classes."""

from typing import Dict

from inferedge_orchestrator.config import checkers as opt
from inferedge_orchestrator.config.schema import setting, table
from inferedge_orchestrator.contracts.errors import PostprocessError
from inferedge_orchestrator.contracts.inference import ClassScore, Decoded, ModelInfo
from inferedge_orchestrator.decoders.base import Decoder, finite, output
from inferedge_orchestrator.decoders.labels import check_labels, resolve_labels
import numpy as np

SOFTMAX = ('auto', 'yes', 'no')


class ClassificationDecoder(Decoder):
    """
    One output of C scores ([1, C], [C] or [1, C, 1, 1]) to the top_k classes.

    softmax auto applies it unless the scores already are probabilities (each in 0..1,
    summing to 1 within 1e-3).
    """

    kind = 'classification'
    produces = 'classes'
    OPTIONS = table(
        opt.custom('output', '', 'the output to decode (empty: the first)', opt.optional_text,
                   'an output name, or empty'),
        opt.custom('labels', (), 'class labels: a list, a file (one per line, or YAML/JSON) or '
                   'metadata:KEY of the model', check_labels,
                   'a list of labels, a file path or metadata:KEY'),
        setting('softmax', 'auto', 'turn logits into probabilities (auto: unless they are)',
                choices=SOFTMAX),
        setting('top_k', 5, 'the classes reported, best first', low=1, high=100000),
        setting('score_threshold', 0.0, 'classes scoring below this are left out', low=0.0,
                high=1.0),
    )

    def bind(self, info: ModelInfo) -> None:
        self.labels = resolve_labels(self.options['labels'], info.metadata)
        name = self.options['output'] or next(iter(info.outputs), '')
        shape = info.outputs.get(name)
        classes = _classes(shape) if shape is not None else None
        if self.labels and isinstance(classes, int) and classes != len(self.labels):
            raise ValueError(f'labels: {len(self.labels)} labels for a model of {classes} '
                             'classes')

    def decode(self, outputs: Dict[str, np.ndarray], geometry) -> Decoded:
        raw = output(outputs, self.options['output'])
        scores = finite('classification output', raw.reshape(-1) if _is_vector(raw) else raw)
        if scores.ndim != 1:
            raise PostprocessError(f'a classification output has C scores ([1, C]); got '
                                   f'{list(raw.shape)}')
        if self.labels and len(scores) != len(self.labels):
            raise PostprocessError(f'{len(scores)} scores for {len(self.labels)} labels')
        mode = self.options['softmax']
        probabilities = (mode == 'auto' and np.all(scores >= 0.0) and np.all(scores <= 1.0)
                         and abs(float(scores.sum()) - 1.0) <= 1e-3)
        if mode == 'yes' or (mode == 'auto' and not probabilities):
            shifted = np.exp(scores - scores.max())
            scores = shifted / shifted.sum()
        order = np.argsort(-scores, kind='stable')[:self.options['top_k']]
        classes = [ClassScore(int(i), self.label(int(i)), float(scores[i])) for i in order
                   if scores[i] >= self.options['score_threshold']]
        return Decoded(classes=classes)


def _is_vector(raw: np.ndarray) -> bool:
    return sum(1 for d in raw.shape if d != 1) <= 1


def _classes(shape):
    dims = [d for d in shape if d != 1]
    return dims[0] if len(dims) == 1 else None
