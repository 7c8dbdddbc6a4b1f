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

"""Shared fixtures of the core test suite."""

import copy
import glob
import logging
import multiprocessing
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'examples')


@pytest.fixture
def example_path():
    """Return a function giving the path of a file under the package's examples/ folder."""
    def path(*parts):
        full = os.path.abspath(os.path.join(EXAMPLES, *parts))
        assert os.path.exists(full), f'{full} is missing from the repository'
        return full
    return path


def shared_memory_segments():
    """Return this process's segments (workers name theirs inferedge_<pid>_...)."""
    return set(glob.glob(f'/dev/shm/inferedge_{os.getpid()}_*'))


@pytest.fixture(scope='session', autouse=True)
def nothing_left_behind():
    """Fail the session if a test left a child process or a shared-memory segment behind."""
    before = shared_memory_segments()
    yield
    children = multiprocessing.active_children()
    assert children == [], f'child processes left after the suite: {children}'
    left = shared_memory_segments() - before
    assert not left, f'shared-memory segments left after the suite: {sorted(left)}'


@pytest.fixture
def core_log():
    """
    Return the records the core's logger emits during the test, WARNING and above.

    A handler of its own: launch_testing's pytest plugin reconfigures logging under colcon
    (the logger is disabled there, and caplog sees nothing).
    """
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger('inferedge_orchestrator')
    disabled, logger.disabled = logger.disabled, False
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.disabled = disabled


@pytest.fixture(params=['thread', 'process'])
def isolation(request):
    """Run the test once per pool back-end (engine/backends.py): threads, child processes."""
    return request.param


def isolated(config, isolation):
    """Return a copy of config in which every pool runs on the given back-end."""
    config = copy.deepcopy(config)
    orchestrator = config.setdefault('orchestrator', {})
    for pool in orchestrator.setdefault('pools', {'cpu': {'slots': 1}}).values():
        pool['isolation'] = isolation
    return config


def two_tasks(detector_budget=80.0, **orchestrator):
    """Return the prototype's phase3 overload scenario in the native format."""
    return {
        'orchestrator': dict({'pools': {'cpu': {'slots': 1}},
                              'shedding': {'backlog_threshold': 8}}, **orchestrator),
        'tasks': [
            {'name': 'detector', 'priority': 100, 'latency_budget_ms': detector_budget,
             'queue_size': 24, 'worker_options': {'latency_ms': 8.0}},
            {'name': 'classifier', 'priority': 20, 'latency_budget_ms': 250.0,
             'queue_size': 24, 'worker_options': {'latency_ms': 45.0}},
        ],
    }
