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

"""The closed lists of telemetry/reasons.py are the ones the messages and the docs name."""

import os
import re

from inferedge_orchestrator.contracts import reasons
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')


def read(*parts):
    path = os.path.join(ROOT, *parts)
    if not os.path.exists(path):
        pytest.skip(f'{os.path.join(*parts)} is not beside the package (an installed copy)')
    with open(path, encoding='utf-8') as stream:
        return stream.read()


def line_of(text, start):
    """Return the line of text that starts with start, and its comment lines that follow."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(start))
    block = [lines[index]]
    for line in lines[index + 1:]:
        if not line.startswith('#'):
            break
        block.append(line)
    return '\n'.join(block)


def names_in(text):
    return set(re.findall(r'\w+', text))


def test_every_event_is_a_constant_of_the_decision_message_and_in_the_engine_docs():
    message = read('inferedge_orchestrator_msgs', 'msg', 'SchedulerDecision.msg')
    constants = set(re.findall(r'^string ([A-Z_]+)=\1', message, re.MULTILINE))
    assert constants == set(reasons.EVENTS)
    docs = read('docs', 'engine_api.md')
    listed = docs.split('### Decisions', 1)[1].split('`reason`', 1)[0]
    assert {event for event in reasons.EVENTS if f'`{event}`' in listed} == set(reasons.EVENTS)


def test_every_reason_is_in_the_message_comments_and_the_result_docs():
    decision = read('inferedge_orchestrator_msgs', 'msg', 'SchedulerDecision.msg')
    assert set(reasons.DECISION_REASONS) <= names_in(line_of(decision, '# reason:'))
    stats = read('inferedge_orchestrator_msgs', 'msg', 'TaskStats.msg')
    assert set(reasons.FAILURE_REASONS) <= names_in(line_of(stats, 'ReasonCount[] failed_'))
    assert set(reasons.DROP_REASONS) <= names_in(line_of(stats, 'ReasonCount[] dropped_'))
    result = read('inferedge_orchestrator_msgs', 'msg', 'InferenceResult.msg')
    assert set(reasons.FAILURE_REASONS) <= names_in(line_of(result, 'string reason'))
    docs = read('docs', 'engine_api.md')
    listed = docs.split('### Results', 1)[1].split('`detail`', 1)[0]
    assert {r for r in reasons.FAILURE_REASONS if f'`{r}`' in listed} == \
        set(reasons.FAILURE_REASONS)
