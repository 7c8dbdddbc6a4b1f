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
No test module skips itself or imports an optional dependency at import (module_rules).

Both test suites are checked: this package's and the core's (inferedge_orchestrator/test).
"""

import ast
import glob
import os

from .module_rules import import_time_problems

HERE = os.path.dirname(os.path.abspath(__file__))
CORE_TESTS = os.path.join(HERE, '..', '..', 'inferedge_orchestrator', 'test')


def test_no_module_skips_or_imports_an_optional_dependency_at_import():
    paths = sorted(glob.glob(os.path.join(HERE, '*.py')) +
                   glob.glob(os.path.join(CORE_TESTS, '*.py')))
    assert len(paths) > 30
    problems = []
    for path in paths:
        with open(path, encoding='utf-8') as stream:
            tree = ast.parse(stream.read(), path)
        problems += [f'{os.path.basename(path)}: {p}' for p in import_time_problems(tree)]
    assert problems == []


def test_the_rule_sees_what_it_forbids():
    bad = ast.parse('import pytest\n'
                    'onnx = pytest.importorskip("onnx")\n'
                    'try:\n    import cv2\nexcept ImportError:\n'
                    '    pytest.skip("no", allow_module_level=True)\n'
                    'def test_a():\n    import matplotlib\n    pytest.skip("fine here")\n')
    problems = import_time_problems(bad)
    assert len(problems) == 3, problems
    assert 'cv2' in problems[-1] and 'matplotlib' not in problems[-1]
