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
ament_copyright, with the project's notice: `Copyright The inferedge_orchestrator_ros Authors`.

ament_copyright only recognises notices with a year (`Copyright 2024 Name`); this project's
notice has none. So this test walks the files ament_copyright would check (its crawler and
extensions), requires the first comment block to start with the project's notice, and has
ament_copyright identify the license text that follows it (Apache-2.0).
"""

import os

from ament_copyright import SOURCE_FILETYPE
from ament_copyright.crawler import get_files
from ament_copyright.parser import (get_comment_block, scan_past_coding_and_shebang_lines,
                                    scan_past_empty_lines, SourceDescriptor)
import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
# The core package beside it in a checkout of the repository: linted alike.
CORE = os.path.join(PACKAGE, '..', 'inferedge_orchestrator')
LINTED = [PACKAGE] + ([CORE] if os.path.isdir(CORE) else [])
NOTICE = 'Copyright The inferedge_orchestrator_ros Authors'
EXTENSIONS = ['c', 'cc', 'cpp', 'cxx', 'h', 'hh', 'hpp', 'hxx', 'cmake', 'py']


def copyright_problems(paths):
    problems = []
    files = get_files(paths, EXTENSIONS, [], skip_package_level_setup_py=False)
    for path, filetype in sorted(files.items()):
        if filetype != SOURCE_FILETYPE:
            continue
        source = SourceDescriptor(path)
        source.read()
        if not source.content:
            continue
        index = scan_past_empty_lines(source.content,
                                      scan_past_coding_and_shebang_lines(source.content))
        block, _ = get_comment_block(source.content, index)
        if not block or not block.startswith(NOTICE):
            problems.append(f'{path}: the first comment block does not start with {NOTICE!r}')
            continue
        source.identify_license('{copyright}' + block[len(NOTICE):], 'file_headers')
        if source.license_identifier != 'apache2':
            problems.append(f'{path}: no Apache-2.0 header after the notice '
                            f'(found {source.license_identifier})')
    return problems, len(files)


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright():
    problems, checked = copyright_problems(LINTED)
    assert checked > 0
    assert problems == [], '\n'.join(problems)
