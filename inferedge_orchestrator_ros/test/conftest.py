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
The collection of ROS test modules where ROS 2 is not found.

A test module that imports ROS at its top (rclpy, launch, launch_testing, ament linters) is a
ROS test module. Where ROS 2 cannot be imported, each one is reported as skipped with the
reason, without importing it. No test module skips itself at import: launch_testing's pytest
plugin imports every module of the package at collection, so one module-level skip would skip
the whole ROS suite (test_test_modules.py checks this rule).
"""

import ast

import pytest

from .module_rules import ROS_TOP_LEVEL_MODULES, top_level_imports

ROS_NOT_FOUND = 'ROS 2 not found (source /opt/ros/jazzy/setup.bash)'


def _ros_import_error():
    try:
        import rclpy  # noqa: F401
        import launch_testing  # noqa: F401
    except ImportError as error:
        return error
    return None


ROS_IMPORT_ERROR = _ros_import_error()


class _RosModuleWithoutRos(pytest.Module):
    """A ROS test module where ROS 2 is missing: reported as skipped, never imported."""

    def collect(self):
        pytest.skip(f'{self.path.name}: {ROS_NOT_FOUND}: {ROS_IMPORT_ERROR}')


def pytest_pycollect_makemodule(module_path, parent):
    if ROS_IMPORT_ERROR is None:
        return None
    with open(module_path, encoding='utf-8') as stream:
        tree = ast.parse(stream.read(), str(module_path))
    if top_level_imports(tree) & ROS_TOP_LEVEL_MODULES:
        return _RosModuleWithoutRos.from_parent(parent, path=module_path)
    return None
