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
The field schema: every setting's type, default, range or choices, unit and meaning, once.

A config dataclass declares each of its settings with spec(); schema(cls) returns them as
Fields. The same Fields validate YAML and dicts (config/loader.py), the workers' options, the
ROS node's parameters and their descriptors, the live-retune check (Field.live), and write the
docs' tables (docs/config.md; a test keeps them in step). Every error names the field, the
value and what is allowed, in one line.
"""

import copy
import dataclasses
from dataclasses import dataclass
import math
import re
from typing import Any, Callable, Dict, Optional, Tuple

from inferedge_orchestrator.contracts.errors import ConfigError

NAME_PATTERN = re.compile(r'^[A-Za-z][A-Za-z0-9_]*$')
BOOL, INT, FLOAT, STR, NAME, CHOICE, MAPPING, STR_LIST, INT_LIST, FLOAT_LIST, CUSTOM = (
    'bool', 'int', 'float', 'str', 'name', 'choice', 'mapping', 'str_list', 'int_list',
    'float_list', 'custom')
# A list of numbers: each element is checked as the scalar kind, with the field's range.
ELEMENT_KINDS = {INT_LIST: INT, FLOAT_LIST: FLOAT}


class _Required:
    """Marks a field without a default: it must be given."""

    def __repr__(self):
        return 'REQUIRED'


REQUIRED = _Required()


@dataclass(frozen=True)
class Field:
    """
    One setting.

    kind: BOOL, INT, FLOAT (ints accepted), STR, NAME (a letter, then letters, digits or
    underscores), CHOICE (one of choices), MAPPING, STR_LIST, INT_LIST and FLOAT_LIST (each
    element as INT or FLOAT, with low and high), or CUSTOM (checker decides;
    allowed_text says what it allows). low and high bound numbers (inclusive). live: it may
    change while the engine runs (Engine.update_task, `ros2 param set`).
    """

    name: str
    kind: str
    default: Any
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Tuple[str, ...] = ()
    unit: str = ''
    live: bool = False
    checker: Optional[Callable[[str, Any], Any]] = None
    allowed_text: str = ''

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def default_value(self) -> Any:
        """Return a fresh copy of the default (defaults may be mutable)."""
        return copy.deepcopy(self.default)

    def allowed(self) -> str:
        """Say what the field allows, as error messages and docs print it."""
        if self.allowed_text:
            return self.allowed_text
        if self.kind == BOOL:
            return 'true, false'
        if self.kind in (CHOICE,) or self.choices:
            return ', '.join(self.choices)
        if self.kind == INT:
            return f'{_g(self.low)}..{_g(self.high)}'
        if self.kind == FLOAT:
            if self.high is None or math.isinf(self.high):
                return f'a number >= {_g(self.low)}'
            return f'a number >= {_g(self.low)} and <= {_g(self.high)}'
        if self.kind == NAME:
            return 'a letter followed by letters, digits or underscores'
        if self.kind == MAPPING:
            return 'a mapping'
        if self.kind == STR_LIST:
            return 'a list of strings'
        if self.kind in ELEMENT_KINDS:
            element = dataclasses.replace(self, kind=ELEMENT_KINDS[self.kind]).allowed()
            return f'a list of {"integers" if self.kind == INT_LIST else "numbers"} ({element})'
        return 'a string'

    def check(self, where: str, value: Any) -> Any:
        """Return the value as the field holds it; ConfigError names where, value, allowed."""
        kind = self.kind
        if self.checker is not None:
            return self.checker(where, value)
        if kind == BOOL:
            if not isinstance(value, bool):
                raise ConfigError(f'{where}: {value!r} is not a boolean; allowed: true, false')
            return value
        if kind == INT:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f'{where}: {value!r} is not an integer; allowed: '
                                  f'{self.allowed()}')
            self._check_range(where, value)
            return int(value)
        if kind == FLOAT:
            # YAML and `ros2 param set` give 80 and 80.0 alike: ints are accepted for floats.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    math.isnan(value):
                raise ConfigError(f'{where}: {value!r} is not a number; allowed: '
                                  f'{self.allowed()}')
            self._check_range(where, value)
            return float(value)
        if kind == CHOICE:
            if value not in self.choices:
                raise ConfigError(f'{where}: {value!r} is not allowed; allowed: '
                                  f'{self.allowed()}')
            return value
        if kind == NAME:
            if not isinstance(value, str) or not NAME_PATTERN.match(value):
                raise ConfigError(f'{where}: {value!r} is not a valid name; allowed: '
                                  f'{self.allowed()}')
            return value
        if kind == MAPPING:
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise ConfigError(f'{where}: expected a mapping, got {type(value).__name__} '
                                  f'{value!r}')
            return copy.deepcopy(value)
        if kind == STR_LIST:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str)
                                                               for v in value):
                raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a list of '
                                  'strings')
            return list(value)
        if kind in ELEMENT_KINDS:
            if value is None:  # unset (an empty ROS array parameter reads so): none
                return []
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f'{where}: {value!r} is not a list; allowed: '
                                  f'{self.allowed()}')
            element = dataclasses.replace(self, kind=ELEMENT_KINDS[kind])
            return [element.check(f'{where}[{index}]', item) for index, item in enumerate(value)]
        if not isinstance(value, str):
            raise ConfigError(f'{where}: {value!r} is not a string')
        return value

    def _check_range(self, where: str, value: float) -> None:
        if self.low is not None and value < self.low or \
                self.high is not None and value > self.high:
            raise ConfigError(f'{where}: {value!r} is out of range; allowed: {self.allowed()}')


def _g(value: Optional[float]) -> str:
    return '-inf' if value is None else f'{value:g}'


def setting(name: str, default: Any, description: str, kind: Optional[str] = None,
            **settings: Any) -> Field:
    """
    Return a Field; its kind is taken from the default when not given.

    bool, int, float or str defaults give BOOL, INT, FLOAT or STR; choices give CHOICE.
    """
    if kind is None:
        if settings.get('choices'):
            kind = CHOICE
        elif isinstance(default, bool):
            kind = BOOL
        elif isinstance(default, int):
            kind = INT
        elif isinstance(default, float):
            kind = FLOAT
        else:
            kind = STR
    return Field(name, kind, default, description, **settings)


def table(*fields: Field) -> Dict[str, Field]:
    """Return fields keyed by name (the options of a worker, say)."""
    return {field.name: field for field in fields}


def spec(default: Any, description: str, kind: Optional[str] = None, **settings: Any):
    """Declare a setting of a config dataclass: its dataclasses.field, carrying its Field."""
    metadata = {'field': setting('', default, description, kind, **settings)}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default),
                                 metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_SCHEMAS: Dict[type, Dict[str, Field]] = {}


def schema(cls: type) -> Dict[str, Field]:
    """Return the Fields a config dataclass declares with spec(), in declaration order."""
    if cls not in _SCHEMAS:
        _SCHEMAS[cls] = {f.name: dataclasses.replace(f.metadata['field'], name=f.name)
                         for f in dataclasses.fields(cls) if 'field' in f.metadata}
    return _SCHEMAS[cls]


def check_keys(where: str, data: Any, known) -> None:
    """Refuse a value that is not a mapping, and keys that are not known."""
    if not isinstance(data, dict):
        raise ConfigError(f'{where}: expected a mapping, got {type(data).__name__} {data!r}')
    for key in data:
        if key not in known:
            raise ConfigError(f'{where}: unknown key {key!r}; known keys: {", ".join(known)}')


def parse_fields(where: str, data: Any, fields: Dict[str, Field],
                 name_of_key=lambda key: key) -> Dict[str, Any]:
    """
    Check a mapping against fields; return every field's value, defaults filled in.

    A missing REQUIRED field is an error naming it.
    """
    data = {} if data is None else data
    check_keys(where, data, list(fields))
    values = {}
    for key, field in fields.items():
        if key in data:
            values[key] = field.check(f'{where}.{name_of_key(key)}', data[key])
        elif field.required:
            raise ConfigError(f'{where}: missing required key {key!r}')
        else:
            values[key] = field.default_value()
    return values


def parse_section(where: str, data: Any, cls: type, **fixed: Any) -> Any:
    """Return an instance of a config dataclass from a mapping of its schema's fields."""
    return cls(**fixed, **parse_fields(where, data, schema(cls)))


def check_options(where: str, options: Any, fields: Dict[str, Field], owner: str
                  ) -> Dict[str, Any]:
    """
    Check the options of a worker or decoder kind; return them with defaults filled in.

    owner names the kind in errors ("worker 'dummy'"): unknown keys, missing required ones and
    bad values are ConfigErrors naming the field.
    """
    if not isinstance(options, dict):
        raise ConfigError(f'{where}: expected a mapping, got {options!r}')
    for key in options:
        if key not in fields:
            raise ConfigError(f'{where}: unknown key {key!r} for {owner}; known keys: '
                              f'{", ".join(fields) or "none"}')
    missing = [key for key, field in fields.items() if field.required and key not in options]
    if missing:
        raise ConfigError(f'{where}: missing required key {missing[0]!r} for {owner}')
    return parse_fields(where, options, fields)


def with_marked_tables(text: str, tables: Dict[str, str], kind: str,
                       required: bool = True) -> str:
    """
    Return text (a docs page) with each table written again between its markers.

    A table NAME sits between `<!-- KIND: NAME -->` and `<!-- end KIND -->`; tables maps
    names to their markdown. A name without markers is an error when required.
    """
    end = f'<!-- end {kind} -->'
    for name, table_text in tables.items():
        start = f'<!-- {kind}: {name} -->\n'
        head, found, rest = text.partition(start)
        if not found:
            if required:
                raise ValueError(f'no {start.strip()} marker')
            continue
        _, found, tail = rest.partition(end)
        if not found:
            raise ValueError(f'{start.strip()} has no {end}')
        text = head + start + table_text + end + tail
    return text
