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

import os

from ament_pep257.main import main
import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
# The core package beside it in a checkout of the repository: linted alike.
CORE = os.path.join(PACKAGE, '..', 'inferedge_orchestrator')
LINTED = [PACKAGE] + ([CORE] if os.path.isdir(CORE) else [])


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    rc = main(argv=LINTED)
    assert rc == 0, 'Found code style errors / warnings'
