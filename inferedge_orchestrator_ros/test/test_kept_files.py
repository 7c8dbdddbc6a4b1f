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

"""KeptFiles: a process never replaces an output file an earlier process wrote."""

import os

from inferedge_orchestrator_ros.kept_files import KeptFiles, next_kept_path


def test_a_file_of_an_earlier_process_is_moved_to_the_next_number(tmp_path):
    path = tmp_path / 'report.json'
    path.write_text('first life')
    (tmp_path / 'report.3.json').write_text('older')  # numbers only grow: 4 is next
    (tmp_path / 'report.x.json').write_text('not ours')
    files = KeptFiles()
    assert files.claim(str(path)) == str(tmp_path / 'report.4.json')
    assert not path.exists()
    assert (tmp_path / 'report.4.json').read_text() == 'first life'
    path.write_text('this life, configuration 1')
    # Its own file: replaced by its later writes (another configure, cleanup), as before.
    assert files.claim(str(path)) is None
    assert path.read_text() == 'this life, configuration 1'
    # The next process (a respawn) keeps it too.
    assert KeptFiles().claim(str(path)) == str(tmp_path / 'report.5.json')
    assert sorted(os.listdir(tmp_path)) == ['report.3.json', 'report.4.json', 'report.5.json',
                                            'report.x.json']


def test_nothing_to_keep_and_a_path_without_extension(tmp_path):
    assert KeptFiles().claim(str(tmp_path / 'absent' / 'report.json')) is None
    assert next_kept_path(str(tmp_path / 'trace')) == str(tmp_path / 'trace.1')
