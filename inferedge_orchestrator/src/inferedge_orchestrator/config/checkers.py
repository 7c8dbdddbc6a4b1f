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

"""Checkers for worker option values that a Field kind does not cover (config/schema.py)."""

import json
from typing import Any, Dict, List, Tuple

from inferedge_orchestrator.config.schema import CUSTOM, NAME_PATTERN, setting
from inferedge_orchestrator.contracts.errors import ConfigError


def text(where: str, value: Any) -> str:
    """Check a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a non-empty string')
    return value


def optional_text(where: str, value: Any) -> str:
    """Check a string; None or '' is ''."""
    if value in (None, ''):
        return ''
    return text(where, value)


def mapping(where: str, value: Any, allowed: str) -> Dict[Any, Any]:
    """
    Check a mapping, or its JSON text (ROS parameters cannot hold mappings); None or '' is {}.

    allowed says what the mapping holds, for the error when the value is no mapping.
    """
    if value in (None, ''):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a mapping or its '
                              'JSON text') from None
    if not isinstance(value, dict):
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: {allowed}')
    return value


def number_list(where: str, value: Any) -> Tuple[float, ...]:
    """Check a list of numbers."""
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a list of numbers')
    return tuple(float(v) for v in value)


def name_list(where: str, value: Any) -> List[str]:
    """Check a non-empty list of distinct names (each a letter, then letters, digits or _)."""
    ok = isinstance(value, (list, tuple)) and value and len(set(value)) == len(value) and all(
        isinstance(v, str) and NAME_PATTERN.match(v) for v in value)
    if not ok:
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a non-empty list of '
                          'distinct names, each a letter followed by letters, digits or '
                          'underscores')
    return list(value)


def custom(name: str, default: Any, description: str, checker, allowed: str):
    """Return the Field of an option checked by checker (allowed: what it allows, for docs)."""
    return setting(name, default, description, kind=CUSTOM, checker=checker,
                   allowed_text=allowed)
