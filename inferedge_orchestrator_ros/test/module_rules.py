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
What a test module may do at import, read from its source (nothing is imported).

launch_testing's pytest plugin imports every test module of the package at collection: a
skip raised while one module is imported skips the whole ROS suite, and colcon still reports
success. So at module level (outside functions and classes) no module may call pytest.skip or
pytest.importorskip, nor import an optional dependency; tests that need one skip by name.
"""

import ast
from typing import List, Set

# Top-level modules that make a test module a ROS test module.
ROS_TOP_LEVEL_MODULES = {'rclpy', 'launch', 'launch_ros', 'launch_testing', 'launch_testing_ros',
                         'ament_copyright', 'ament_flake8', 'ament_pep257', 'ament_xmllint',
                         'diagnostic_msgs', 'sensor_msgs'}
# Dependencies a machine may lack although the package and its tests are installed.
OPTIONAL_MODULES = {'onnx', 'onnxruntime', 'cv2', 'matplotlib', 'psutil', 'tensorrt', 'pycuda',
                    'tritonclient', 'cv_bridge', 'rich', 'prometheus_client'}


def _module_level(tree: ast.Module):
    """Yield the nodes that run at import: everything outside function and class bodies."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            for decorator in getattr(node, 'decorator_list', ()):
                pending.append(decorator)  # decorators run at import
            continue
        yield node
        pending.extend(ast.iter_child_nodes(node))


def top_level_imports(tree: ast.Module) -> Set[str]:
    """Return the top-level package names a module imports at module level."""
    names = set()
    for node in _module_level(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names


def import_time_problems(tree: ast.Module) -> List[str]:
    """Return what a module does at import that could skip or break the whole suite."""
    problems = []
    for node in _module_level(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ('skip', 'importorskip'):
            problems.append(f'line {node.lineno}: {node.func.attr}() at module level')
    optional = top_level_imports(tree) & OPTIONAL_MODULES
    if optional:
        problems.append(f'imports {", ".join(sorted(optional))} at module level')
    return problems
