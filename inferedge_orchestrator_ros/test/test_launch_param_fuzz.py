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
Launch test: parameters changed under load, by hypothesis-generated sequences of calls.

Two dummy tasks of 33 ms share one slot and take every frame of a 30 fps camera: twice what
the slot can run. PARAM_FUZZ_EXAMPLES (default 40) sequences of 1 to 5 calls of the parameter
services (SetParameters with one or several parameters, SetParametersAtomically) mix valid
values of the live parameters (drawn from each one's declared type and range, the schema's),
values out of range, of a wrong type, unset values, unknown names and structural parameters
(refused while the node is active: docs/node.md's live column). Oracle after every call:
each refusal names its parameter and says why (a structural one: it cannot change while the
node is active); each accepted change reads back by get_parameters, all of an atomic call or
none, and a task's is announced as one PARAM_CHANGE decision per set whose detail lists
old -> new, then each changed setting of the node or an input as one with no task; no other
PARAM_CHANGE; the next telemetry message holds both invariants and the
tasks' priority, budget and enabled as set; the node stays active; get_parameters answers
within 1 s (the largest answer times are printed). The explicit examples are the refusals
that named no parameter and the unset values that were accepted while active, before the
fix (NodeParameters.set_atomically). test_launch_retune.py checks that a retune takes effect
in the scheduling.
"""

import math
import os
import tempfile
import time
import unittest

import launch_testing
import launch_testing.asserts
import pytest

from .ros_test_env import camera_node, launch_test_description, NOT_BUILT
from .ros_test_env import orchestrator_node, package_available

BUILT = package_available()
DOMAIN_ID = 39
NODE = '/inferedge_orchestrator'
TOPIC = '/param_fuzz_test/image'
EXAMPLES = int(os.environ.get('PARAM_FUZZ_EXAMPLES', '40'))
TASK_INPUTS = {'detector': ['camera'], 'classifier': ['camera', 'side']}
INPUTS = ['camera', 'side']
POOLS = ['cpu']
TELEMETRY_PERIOD_S = 0.25
ANSWER_LIMIT_S = 1.0  # the bound on a parameter get
REPORT_PATH = os.path.join(tempfile.gettempdir(), 'param_fuzz_test_report.json')
PARAMETERS = {
    'telemetry_period_s': TELEMETRY_PERIOD_S,
    'inputs': INPUTS, 'camera.topic': TOPIC, 'side.topic': '/param_fuzz_test/side',
    'tasks': list(TASK_INPUTS),
    'detector.priority': 100, 'classifier.priority': 50,
    'detector.latency_budget_ms': 200.0, 'classifier.latency_budget_ms': 200.0,
    'classifier.inputs': TASK_INPUTS['classifier'],
    # 2 tasks x 30 fps x 33 ms = 2 s of work a second for the one slot
    'detector.worker_options.latency_ms': 33.0, 'classifier.worker_options.latency_ms': 33.0,
}
STRUCTURAL = 'cannot change while the node is active'
# what a call does: 'one' (SetParameters, one parameter), 'several' (SetParameters, each set
# on its own), 'atomic' (SetParametersAtomically: all or none)
HOWS = ('one', 'several', 'atomic')
CATEGORIES = ('valid', 'valid', 'valid', 'valid', 'out_of_range', 'wrong_type', 'unset',
              'unknown', 'structural')


class Item:
    """One parameter of a call: what kind of change it is, its name and its value."""

    def __init__(self, category: str, name: str, value):
        self.category, self.name, self.value = category, name, value

    def __repr__(self):
        return f'Item({self.category!r}, {self.name!r}, {self.value!r})'


class Call:
    """One call of a parameter service (how: one of HOWS) with its items."""

    def __init__(self, how: str, *items: Item):
        self.how, self.items = how, list(items)

    def __repr__(self):
        return f'Call({self.how!r}, ' + ', '.join(map(repr, self.items)) + ')'


@pytest.mark.launch_test
@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def generate_test_description():
    return launch_test_description(DOMAIN_ID, camera_node(topic=TOPIC, fps=30.0),
                                   orchestrator_node(PARAMETERS))


def catalogue() -> dict:
    """Return the node's own parameters in this configuration: full name -> Param."""
    from inferedge_orchestrator_ros.parameter_schema import (
        DECODER_OPTIONS, GLOBAL_PARAMS, INPUT_PARAMS, option_params, POOL_PARAMS,
        TASK_PARAMS, WORKER_OPTIONS)
    params = {p.name: p for p in GLOBAL_PARAMS}
    for block, specs in [(pool, POOL_PARAMS) for pool in POOLS] + \
            [(name, INPUT_PARAMS) for name in INPUTS] + \
            [(task, TASK_PARAMS + option_params(WORKER_OPTIONS, 'dummy') +
              option_params(DECODER_OPTIONS, 'none')) for task in TASK_INPUTS]:
        params.update({f'{block}.{p.name}': p for p in specs})
    return params


def list_length(name: str) -> int:
    """Return how many values a per-camera list of a task takes (one per input)."""
    return len(TASK_INPUTS[name.split('.')[0]])


def strategies(params: dict, initial: dict, declared: set):
    """Return the strategy of call sequences over params (initial: their values at start)."""
    from hypothesis import strategies as st
    from inferedge_orchestrator_ros import parameter_schema as ps
    live = sorted(name for name, p in params.items() if p.live)
    ranged = [name for name in live if params[name].field.low is not None or
              params[name].field.choices]
    structural = sorted(name for name, p in params.items() if not p.live)

    int64 = st.integers(-2 ** 63, 2 ** 63 - 1)  # what a ROS integer holds

    def floats(low, high):
        return st.floats(low, high) | st.integers(math.ceil(low), math.floor(min(high, 2 ** 53)))

    def valid(name):
        param = params[name]
        field, kind = param.field, param.kind
        if field.choices:
            return st.sampled_from(field.choices)
        if kind == ps.BOOLEAN:
            return st.booleans()
        if kind == ps.INTEGER:
            return st.integers(int(field.low), int(field.high))
        if kind == ps.DOUBLE:
            return floats(field.low, field.high)
        if kind == ps.STRING:
            return st.sampled_from(['', REPORT_PATH])  # report_path, the one free-text live
        element = st.integers(int(field.low), int(field.high)) if kind == ps.INTEGER_ARRAY \
            else st.floats(field.low, field.high)  # one type: a ROS array holds one
        count = list_length(name)
        return st.just([]) | st.lists(element, min_size=count, max_size=count)
    missing = [name for name in live if params[name].kind not in (
        ps.BOOLEAN, ps.INTEGER, ps.DOUBLE, ps.STRING, ps.INTEGER_ARRAY, ps.DOUBLE_ARRAY)]
    assert not missing, f'no strategy for the live parameters {missing}: add one'

    def out_of_range(name):
        param = params[name]
        field, kind = param.field, param.kind
        if field.choices:
            return st.text(max_size=20).filter(lambda text: text not in field.choices)
        low, high = field.low, field.high
        if kind == ps.INTEGER:
            return st.integers(int(high) + 1, int(high) + 10 ** 6) | \
                st.integers(int(low) - 10 ** 6, int(low) - 1)
        if kind == ps.DOUBLE:
            return st.floats(allow_nan=True).filter(lambda v: not low <= v <= high)
        count = list_length(name)
        bad = st.integers(int(high) + 1, int(high) + 10 ** 6) if kind == ps.INTEGER_ARRAY \
            else st.floats().filter(lambda v: not low <= v <= high)
        good = st.integers(int(low), int(high)) if kind == ps.INTEGER_ARRAY \
            else st.floats(low, high)
        one_bad = st.tuples(st.lists(good, min_size=count - 1, max_size=count - 1), bad,
                            st.integers(0, count - 1)).map(
            lambda t: t[0][:t[2]] + [t[1]] + t[0][t[2]:])
        wrong_length = st.integers(1, 5).filter(lambda n: n != count).flatmap(
            lambda n: st.lists(good, min_size=n, max_size=n))
        return one_bad | wrong_length

    def wrong_type(name):
        kind = params[name].kind if name in params else ps.BOOLEAN  # use_sim_time
        text, texts = st.text(max_size=20), st.lists(st.text(max_size=5), min_size=1,
                                                     max_size=3)
        return {ps.BOOLEAN: int64 | text | st.floats(allow_nan=False),
                ps.INTEGER: text | st.floats(allow_nan=False).filter(
                    lambda v: not v.is_integer()) | st.booleans() | st.lists(
                    st.integers(0, 9), min_size=1, max_size=3),
                ps.DOUBLE: text | st.booleans() | texts,
                ps.STRING: int64 | st.floats(allow_nan=False) | st.booleans() | texts,
                ps.INTEGER_ARRAY: text | int64 | texts | st.booleans(),
                ps.DOUBLE_ARRAY: text | st.floats(allow_nan=False) | texts | st.booleans(),
                ps.STRING_ARRAY: text | int64 | st.booleans(),
                }[kind]

    unknown = st.one_of(
        st.from_regex(r'\A[a-z][a-z0-9_]{0,12}(\.[a-z][a-z0-9_]{0,8}){0,2}\Z'),
        st.tuples(st.sampled_from(INPUTS + POOLS + list(TASK_INPUTS)),
                  st.from_regex(r'\A[a-z][a-z0-9_]{0,12}\Z')).map('.'.join),
    ).filter(lambda name: name not in declared)
    anything = int64 | st.text(max_size=10) | st.booleans()

    def structural_value(name):
        value = initial[name]
        return st.just(value if value is not None else 1)

    def item(category):
        if category == 'valid':
            names = st.sampled_from(live)
            values = valid
        elif category == 'out_of_range':
            names, values = st.sampled_from(ranged), out_of_range
        elif category == 'wrong_type':
            names = st.sampled_from([n for n in live + structural if params[n].kind != ps.ANY] +
                                    ['use_sim_time'])
            values = wrong_type
        elif category == 'unset':
            names, values = st.sampled_from(live + structural), lambda name: st.none()
        elif category == 'unknown':
            names, values = unknown, lambda name: anything
        else:
            names, values = st.sampled_from(structural), structural_value
        return names.flatmap(lambda name: values(name).map(
            lambda value: Item(category, name, value)))

    items = st.sampled_from(CATEGORIES).flatmap(item)

    @st.composite
    def call(draw):
        how = draw(st.sampled_from(HOWS))
        size = 1 if how == 'one' else draw(st.integers(1 if how == 'atomic' else 2, 4))
        return Call(how, *draw(st.lists(items, min_size=size, max_size=size,
                                        unique_by=lambda i: i.name)))
    return st.lists(call(), min_size=1, max_size=5)


def normal(values: dict) -> dict:
    """Return parameter values with unset lists as [] (declared unset: an empty list)."""
    from inferedge_orchestrator_ros.parameter_schema import ARRAYS
    params = catalogue()
    return {name: [] if value is None and name in params and params[name].kind in ARRAYS
            else value for name, value in values.items()}


def python_value(value):
    """Return a parameter value as plain Python (arrays as lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return list(value)


class Oracle:
    """The node as the test knows it: the values of its parameters and what a call must do."""

    def __init__(self, params: dict, values: dict):
        self.params, self.values = params, dict(values)

    def typed(self, name: str, value):
        """Return a value as the engine holds it (the PARAM_CHANGE detail prints it so)."""
        return self.params[name].field.check(name, value)

    def fails(self, item: Item, values: dict) -> bool:
        """Whether one item is refused, the other values being values."""
        if item.category != 'valid':
            return True
        block, _, key = item.name.rpartition('.')
        if key in ('min_rate_hz', 'max_rate_hz') and block in TASK_INPUTS:
            low = values[f'{block}.min_rate_hz']
            high = values[f'{block}.max_rate_hz']
            return bool(high) and low > high
        return False

    def refused_names(self, items: list) -> list:
        """Return the names of the items that make a set of them (applied together) refused."""
        merged = dict(self.values, **{i.name: i.value for i in items if i.category == 'valid'})
        return [i.name for i in items if self.fails(i, merged)]

    @staticmethod
    def names_a_field(reason: str, names: list) -> bool:
        """Whether a refusal names one of names (a rule across fields: the task and the key)."""
        for name in names:
            block, _, key = name.rpartition('.')
            if name in reason or \
                    (block in TASK_INPUTS and f'{block}.' in reason and key in reason):
                return True
        return False

    def change_detail(self, items: list) -> tuple:
        """Return the 'key: old -> new' texts of a task's accepted items, and the task."""
        parts = []
        for item in items:
            old, new = self.typed(item.name, self.values[item.name]), \
                self.typed(item.name, item.value)
            if old != new:
                parts.append(f'{item.name.split(".", 1)[1]}: {old!r} -> {new!r}')
        return parts


def task_of(name: str):
    """Return the task whose live setting a parameter is (None: a node or input setting)."""
    block = name.split('.', 1)[0]
    return block if block in TASK_INPUTS else None


class TestParameterFuzz(unittest.TestCase):

    def test_parameters_changed_under_load(self):
        try:
            from hypothesis import example, given, HealthCheck, settings
        except ImportError as error:
            self.skipTest(f'the parameter fuzz test needs hypothesis: {error}')
        from inferedge_orchestrator_msgs.msg import SchedulerDecision
        from lifecycle_msgs.srv import GetState
        from rcl_interfaces.srv import (GetParameters, ListParameters, SetParameters,
                                        SetParametersAtomically)
        from rclpy.parameter import Parameter, parameter_value_to_python
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from .ros_launch_helpers import Listener
        listener = Listener(DOMAIN_ID, 'param_fuzz_test')
        self.addCleanup(listener.close)
        decisions = listener.subscribe(SchedulerDecision, f'{NODE}/decisions', QoSProfile(
            depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        first = listener.telemetry_after(f'{NODE}/telemetry', uptime_s=2.0, timeout=60.0)
        counts = {t.name: (t.routed, t.executed) for t in first.tasks}
        routed, executed = (sum(c[i] for c in counts.values()) for i in (0, 1))
        self.assertLess(executed, 0.75 * routed, f'no overload: (routed, executed) {counts}')
        params = catalogue()
        names = sorted(params)
        declared = set(listener.call(ListParameters, f'{NODE}/list_parameters',
                                     ListParameters.Request()).result.names)
        self.assertLessEqual(set(names), declared)
        figures = {'calls': 0, 'items': 0, 'accepted': 0, 'refused': 0, 'get_s': 0.0,
                   'set_s': 0.0, 'state_s': 0.0, 'param_changes': 0}
        by_category = {}

        def get(keys):
            response, seconds = listener.timed_call(
                GetParameters, f'{NODE}/get_parameters', GetParameters.Request(names=keys))
            figures['get_s'] = max(figures['get_s'], seconds)
            self.assertLess(seconds, ANSWER_LIMIT_S, 'get_parameters answered late')
            return {k: python_value(parameter_value_to_python(v))
                    for k, v in zip(keys, response.values)}

        initial = get(names)

        def set_parameters(call):
            messages = [Parameter(i.name, value=i.value).to_parameter_msg() for i in call.items]
            if call.how == 'atomic':
                response, seconds = listener.timed_call(
                    SetParametersAtomically, f'{NODE}/set_parameters_atomically',
                    SetParametersAtomically.Request(parameters=messages))
                results = [response.result]
            else:
                response, seconds = listener.timed_call(
                    SetParameters, f'{NODE}/set_parameters',
                    SetParameters.Request(parameters=messages))
                results = response.results
            figures['set_s'] = max(figures['set_s'], seconds)
            return results

        def check_call(oracle, call, record=True):
            """Make one call and check what the node did against the oracle."""
            if record:
                figures['calls'] += 1
                figures['items'] += len(call.items)
            decisions_before = len(decisions)
            results = set_parameters(call)
            called = time.time()
            expected_details = []  # per PARAM_CHANGE expected: (task, parts)
            if call.how == 'atomic':
                self.assertEqual(len(results), 1)
                refused = oracle.refused_names(call.items)
                groups = [(call.items, results[0], refused)]
            else:
                self.assertEqual(len(results), len(call.items))
                groups = [([i], r, None) for i, r in zip(call.items, results)]
            for items, result, refused in groups:
                if refused is None:
                    refused = oracle.refused_names(items)
                for item in items if record else ():
                    by_category.setdefault(item.category, [0, 0])[bool(refused)] += 1
                what = f'{call}: {items} -> {result.successful} {result.reason!r}'
                self.assertEqual(result.successful, not refused, what)
                if refused:
                    figures['refused'] += record
                    self.assertTrue(result.reason, what)
                    self.assertTrue(oracle.names_a_field(result.reason, refused), what)
                    if len(items) == 1 and items[0].category == 'structural':
                        self.assertIn(STRUCTURAL, result.reason, what)
                    continue
                figures['accepted'] += record
                for task in dict.fromkeys(task_of(i.name) for i in items if task_of(i.name)):
                    mine = [i for i in items if task_of(i.name) == task]
                    expected_details.append((task, oracle.change_detail(mine)))
                # then each changed setting of the node's own (or an input's), with no task
                for item in items:
                    if not task_of(item.name) and item.name in params and \
                            oracle.values.get(item.name) != python_value(item.value):
                        expected_details.append(('', [f'{item.name}: ']))
                oracle.values.update({i.name: python_value(i.value) for i in items})
            touched = sorted({i.name for i in call.items if i.name in params})
            self.assertEqual(normal(get(touched)), normal(
                {k: oracle.values[k] for k in touched}), call)
            # each accepted set of a task's parameters: one PARAM_CHANGE, old -> new in order

            def announced():
                return [d for d in decisions[decisions_before:]
                        if d.event == SchedulerDecision.PARAM_CHANGE]
            self.assertTrue(listener.spin_until(
                lambda: len(announced()) >= len(expected_details), 10.0),
                f'{call}: PARAM_CHANGE {[d.detail for d in announced()]}, expected '
                f'{expected_details}')
            latest = listener.telemetry_after(
                f'{NODE}/telemetry', timeout=10.0,
                predicate=lambda m: m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 >= called)
            seen = announced()
            self.assertEqual(len(seen), len(expected_details), f'{call}: {seen}')
            for decision, (task, parts) in zip(seen, expected_details):
                self.assertEqual(decision.task, task, call)
                for part in parts:
                    self.assertIn(part, decision.detail, call)
                if not parts:
                    self.assertEqual(decision.detail, 'no change', call)
            figures['param_changes'] += len(seen) if record else 0
            self.assertEqual(listener.invariant_violations(latest), [], call)
            for task in latest.tasks:  # the engine's settings now are the parameters'
                value = oracle.values.get
                levels = value(f'{task.name}.camera_priority') or \
                    [value(f'{task.name}.priority')]
                self.assertIn(task.priority, levels, call)  # the level its queue holds now
                budget = min(value(f'{task.name}.camera_budget_ms') or
                             [value(f'{task.name}.latency_budget_ms')])
                self.assertTrue(math.isclose(task.latency_budget_ms, budget, rel_tol=1e-9),
                                f'{call}: budget {task.latency_budget_ms} != {budget}')
                self.assertEqual(task.enabled, value(f'{task.name}.enabled'), call)
            state, seconds = listener.timed_call(GetState, f'{NODE}/get_state',
                                                 GetState.Request())
            figures['state_s'] = max(figures['state_s'], seconds)
            self.assertEqual(state.current_state.label, 'active', call)

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(strategies(params, initial, declared))
        # what rclpy refused without naming the parameter: a static one unset, a wrong type,
        # an unknown name ("undeclared parameter(s): []")
        @example([Call('one', Item('unset', 'detector.priority', None))])
        @example([Call('several', Item('wrong_type', 'detector.priority', 'high'),
                       Item('wrong_type', 'use_sim_time', 'yes'))])
        @example([Call('one', Item('unknown', 'no_such_parameter', 1)),
                  Call('atomic', Item('valid', 'detector.priority', 7),
                       Item('unknown', 'detector.no_such_key', 1.0))])
        # what was accepted while active and undeclared the parameter: the engine kept the
        # value, later sets failed as undeclared
        @example([Call('atomic', Item('valid', 'detector.expected_latency_ms', 1.0),
                       Item('unset', 'detector.worker_options.fail_every', None))])
        @example([Call('one', Item('valid', 'classifier.camera_priority', [5, 9])),
                  Call('one', Item('unset', 'classifier.camera_priority', None)),
                  Call('one', Item('valid', 'classifier.camera_priority', []))])
        # all or none: a rule across two fields; the structural lists
        @example([Call('atomic', Item('valid', 'detector.max_rate_hz', 3.0),
                       Item('valid', 'detector.min_rate_hz', 5.0)),
                  Call('several', Item('valid', 'detector.max_rate_hz', 3.0),
                       Item('valid', 'detector.min_rate_hz', 5.0)),
                  Call('atomic', Item('valid', 'detector.priority', 9),
                       Item('structural', 'tasks', ['detector']))])
        @example([Call('one', Item('structural', name, value)) for name, value in (
            ('pools', ['gpu']), ('inputs', ['camera']), ('camera.topic', '/other'),
            ('cpu.slots', 2), ('detector.worker', 'onnxruntime'))])
        def run(calls):
            oracle = Oracle(params, normal(get(names)))  # the node's values, whatever came before
            for call in calls:
                check_call(oracle, call)

        run()
        # back to the start: queues of 4, a short deactivate_timeout_s for the shutdown
        restore = Call('atomic', *[Item('valid', n, normal({n: initial[n]})[n]) for n in names
                                   if params[n].live])
        check_call(Oracle(params, normal(get(names))), restore, record=False)
        self.assertEqual(normal(get(names)), normal(initial))
        summary = ', '.join(f'{c} {a}/{r}' for c, (a, r) in sorted(by_category.items()))
        print(f'param fuzz: {figures["calls"]} calls of {figures["items"]} parameters; '
              f'{figures["accepted"]} sets accepted, {figures["refused"]} refused; by category '
              f'(accepted/refused) {summary}; {figures["param_changes"]} PARAM_CHANGE; max '
              f'answer: get_parameters {figures["get_s"] * 1e3:.0f} ms, set '
              f'{figures["set_s"] * 1e3:.0f} ms, get_state {figures["state_s"] * 1e3:.0f} ms')
        final = listener.telemetry_after(f'{NODE}/telemetry', timeout=10.0)
        self.assertEqual(listener.invariant_violations(final), [])
        self.assertTrue(all(t.executed > counts[t.name][1] for t in final.tasks))
        self.assertGreater(figures['accepted'], 0)
        self.assertGreater(figures['refused'], 0)


@launch_testing.post_shutdown_test()
class TestParameterFuzzShutdown(unittest.TestCase):

    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
