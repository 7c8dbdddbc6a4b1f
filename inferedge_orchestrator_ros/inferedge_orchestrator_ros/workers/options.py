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

"""Option checkers shared by the workers."""

import math
from typing import Any, Tuple

from inferedge_orchestrator_ros.config import ConfigError


def number(low: float = 0.0, high: float = math.inf):
    def check(where: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not low <= value <= high:
            upper = '' if high == math.inf else f' and <= {high:g}'
            raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a number '
                              f'>= {low:g}{upper}')
        return float(value)
    return check


def integer(low: int = 0, high: int = 2 ** 31):
    def check(where: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f'{where}: {value!r} is not allowed; allowed: an integer '
                              f'{low}..{high}')
        return value
    return check


def choice(*allowed: str):
    def check(where: str, value: Any) -> str:
        if value not in allowed:
            raise ConfigError(f'{where}: {value!r} is not allowed; allowed: {", ".join(allowed)}')
        return value
    return check


def boolean(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: true, false')
    return value


def string(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a non-empty string')
    return value


def optional_string(where: str, value: Any) -> str:
    if value in (None, ''):
        return ''
    return string(where, value)


def anything(where: str, value: Any) -> Any:
    return value


def number_list(length: int = 0):
    def check(where: str, value: Any) -> Tuple[float, ...]:
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not ok or (length and len(value) != length):
            size = f'{length} ' if length else ''
            raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a list of '
                              f'{size}numbers')
        return tuple(float(v) for v in value)
    return check
