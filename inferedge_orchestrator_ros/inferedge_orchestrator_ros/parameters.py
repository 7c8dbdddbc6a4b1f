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
The node's parameters: declared from the schema, checked on set, applied after the set.

The schema and its mapping to the core config are parameter_schema.py's (no rclpy there).
"""

import array
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from inferedge_orchestrator import ConfigError, load_config, OrchestratorConfig
from inferedge_orchestrator_ros.conversion import AUTO
from inferedge_orchestrator_ros.parameter_schema import (ANY, ARRAYS, check_names,
                                                         config_from_parameters, default_topic,
                                                         DOUBLE, GLOBAL_PARAMS, INPUT_PARAMS,
                                                         INTEGER, OPTION_BLOCKS,
                                                         option_params, Param, POOL_PARAMS,
                                                         TASK,
                                                         task_parameter_values, TASK_PARAMS)
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import ParameterNotDeclaredException
from rclpy.parameter import Parameter


class NodeParameters:
    """
    The node's parameters: declared from the schema, checked on set, applied after the set.

    It owns which parameters are the node's (their Param) and the block that declared each.
    Live changes are applied once the whole set is accepted: after it where rclpy has a
    post-set callback (Iron and later), else in the on-set callback once every change is valid
    (Humble). A task's go to the engine (update_task); the node's own to on_node_change(name,
    value).
    """

    def __init__(self, node, on_node_change: Callable[[str, Any], None]):
        self.engine = None  # the node's engine while configured: task changes go there
        self._node = node
        self._on_node_change = on_node_change
        self._before: Dict[str, Any] = {}  # the node settings a set is changing, before it
        self._specs: Dict[str, Param] = {}
        self._blocks: Dict[str, Set[str]] = {}  # block name -> full names of its parameters
        for spec in GLOBAL_PARAMS:
            self._declare(spec.name, spec)
        node.add_on_set_parameters_callback(self._on_set)
        self._post_set = hasattr(node, 'add_post_set_parameters_callback')
        if self._post_set:
            node.add_post_set_parameters_callback(self._apply)

    def get(self, name: str) -> Any:
        value = self._node.get_parameter(name).value
        # rclpy holds integer and double arrays as array.array: the core takes lists.
        return value.tolist() if isinstance(value, array.array) else value

    def configuration(self) -> Tuple[OrchestratorConfig, List[str]]:
        """
        Declare the blocks the parameters name and return the config and the input names.

        Blocks of removed tasks and options of another worker or decoder kind are undeclared.
        """
        config_file, task_names = self.get('config_file'), self.get('tasks') or []
        if config_file and task_names:
            raise ConfigError('config_file and tasks are both given; allowed: one of them '
                              '(config_file names a core config with its own task list)')
        if not config_file and not task_names:
            raise ConfigError('no tasks: set the tasks parameter (with one parameter block '
                              'per task) or config_file')
        taken: Dict[str, str] = {}
        if config_file:
            config = load_config(config_file)
            check_names('tasks', [t.name for t in config.tasks], taken)
            input_names = check_names('inputs', list(config.inputs), taken)
            for task in config.tasks:
                self.declare_block(task.name, TASK_PARAMS, task_parameter_values(task))
        else:
            pools = check_names('pools', self.get('pools') or [], taken)
            for pool in pools:
                self.declare_block(pool, POOL_PARAMS)
            check_names('tasks', task_names, taken)
            input_names = list(self.get('inputs') or [])
            for task in task_names:
                self.declare_block(task, TASK_PARAMS)
                for block, kind_field in OPTION_BLOCKS.items():
                    self.declare_block(task, option_params(block,
                                                           self.get(f'{task}.{kind_field}')))
                for name in self.get(f'{task}.inputs') or []:
                    if name not in input_names:
                        input_names.append(name)
            check_names('inputs', input_names, taken)
        for name in input_names:
            self.declare_block(name, INPUT_PARAMS)
        self._undeclare_except({name for block in taken for name in self._blocks.get(block, ())
                                if self._wanted(name)})
        if not config_file:
            config = load_config(config_from_parameters(self.get, input_names, task_names,
                                                        pools))
        return config, input_names

    def input_settings(self, name: str) -> Dict[str, Any]:
        """Return an input's block as a dict, the default topic filled in."""
        settings = {spec.name: self.get(f'{name}.{spec.name}') for spec in INPUT_PARAMS}
        settings['topic'] = settings['topic'] or default_topic(name)
        if settings['message_type'] != 'image' and settings['convert_to'] != AUTO:
            raise ConfigError(
                f'{name}.convert_to: {settings["convert_to"]!r} is not allowed with '
                f'message_type {settings["message_type"]}; allowed: auto (decoded JPEG/PNG '
                'images are bgr8; convert_to applies to raw images)')
        return settings

    def declare_block(self, block: str, specs, values: Optional[Dict[str, Any]] = None
                      ) -> None:
        """Declare (or, with values, overwrite) the parameters `<block>.<name>`."""
        names = self._blocks.setdefault(block, set())
        for spec in specs:
            full = f'{block}.{spec.name}'
            names.add(full)
            value = None if values is None else values[spec.name]
            if self._node.has_parameter(full):
                self._specs[full] = spec
                if values is not None and self.get(full) != value:
                    result = self._node.set_parameters([Parameter(full, value=value)])[0]
                    if not result.successful:
                        raise ConfigError(result.reason)
                continue
            try:
                self._declare(full, spec, value, ignore_override=values is not None)
            except Exception as error:  # noqa: B902 - rclpy raises several exception types
                raise ConfigError(f'{full}: {error}') from None

    def _declare(self, name: str, spec: Param, value: Any = None,
                 ignore_override: bool = False) -> None:
        self._specs[name] = spec
        default = spec.default if value is None else value
        described = descriptor(spec)
        if described.dynamic_typing and isinstance(default, list) and not default:
            default = None  # an empty list has no ROS type; None reads as []
        self._node.declare_parameter(name, default, described, ignore_override=ignore_override)

    def _undeclare_except(self, keep: Set[str]) -> None:
        """Undeclare the block parameters that are not in keep (removed tasks, old options)."""
        for block, names in list(self._blocks.items()):
            for name in sorted(names - keep):
                if self._node.has_parameter(name):
                    self._node.undeclare_parameter(name)
                self._specs.pop(name, None)
            names &= keep
            if not names:
                del self._blocks[block]

    def _wanted(self, name: str) -> bool:
        """Whether a declared block parameter belongs to the configuration being built."""
        block, _, key = name.partition('.')
        for options_block, kind_field in OPTION_BLOCKS.items():
            if key.startswith(options_block + '.'):
                if self.get('config_file'):
                    return False
                kind = self.get(f'{block}.{kind_field}')
                return key in {p.name for p in option_params(options_block, kind)}
        return True

    def set_atomically(self, parameters: List[Parameter],
                       set_: Callable[[List[Parameter]], SetParametersResult]
                       ) -> SetParametersResult:
        """
        Set parameters with set_ (rclpy's set_parameters_atomically); refusals name them.

        The node's parameter services come here (OrchestratorNode.set_parameters_atomically).
        rclpy (Jazzy) checks the declared types before any on-set callback and its refusals
        name neither the parameter nor what it allows ("Wrong parameter type, expected
        'Type.INTEGER' got 'Type.STRING'", "Static parameter cannot be undeclared"); its
        list of undeclared names loses the first one (a generator read twice: "Invalid
        access to undeclared parameter(s): []"). This refuses what those checks refuse, for
        every parameter of the node, with the name and what is allowed; undeclared names
        raise ParameterNotDeclaredException with every one of them, as rclpy means to.
        """
        unknown = [p.name for p in parameters if not self._node.has_parameter(p.name)]
        if not unknown:  # rclpy refuses undeclared names before it looks at types
            for param in parameters:
                refusal = self._type_refusal(param)
                if refusal:
                    return SetParametersResult(successful=False, reason=refusal)
        try:
            return set_(parameters)
        except ParameterNotDeclaredException:
            raise ParameterNotDeclaredException(unknown) from None

    def _type_refusal(self, param: Parameter) -> Optional[str]:
        """Return why a declared parameter of a static type refuses param's type, or None."""
        described = self._node.describe_parameter(param.name)
        if described.dynamic_typing or described.read_only:
            return None  # the on-set callback checks the value; rclpy names a read-only one
        expected = Parameter.Type(described.type)
        if param.type_ == Parameter.Type.NOT_SET:
            why = 'cannot be unset (rclpy would undeclare it)'
        elif param.type_ != expected:
            why = f'{param.value!r} is of type {_type_name(param.type_)}'
        else:
            return None
        spec = self._specs.get(param.name)
        allowed = spec.range_text() if spec is not None else ''
        return f'{param.name}: {why}; allowed: {_type_name(expected)}' + \
            (f' ({allowed})' if allowed else '')

    def _on_set(self, parameters: List[Parameter]) -> SetParametersResult:
        """Validate every change; refuse structural ones while configured."""
        for param in parameters:
            spec = self._specs.get(param.name)
            if spec is None:
                continue  # not ours (use_sim_time, diagnostic_updater.period, ...)
            if param.type_ == Parameter.Type.NOT_SET and self.engine is not None:
                # rclpy undeclares an unset parameter: the engine would keep the old value of
                # a live one, and later sets of it would fail as undeclared.
                return SetParametersResult(
                    successful=False,
                    reason=f'{param.name}: cannot be unset while the node is '
                           f'{self._node.state_label} (rclpy would undeclare it); allowed: a '
                           'value' + (' ([] empties a list)' if spec.kind in ARRAYS else ''))
            if param.type_ == Parameter.Type.NOT_SET:
                if spec.kind == ANY or spec.kind in ARRAYS:
                    continue
                return SetParametersResult(successful=False,
                                           reason=f'{param.name}: a value is required')
            problem = spec.check(param.name, _value(spec, param))
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            if self.engine is not None and not spec.live:
                return SetParametersResult(
                    successful=False,
                    reason=f'{param.name} cannot change while the node is '
                           f'{self._node.state_label}: it is read at configure; deactivate '
                           'and cleanup first')
        task_changes, node_changes = self._live_changes(parameters)
        # Every task's merged settings are valid, so that a refusal changes nothing.
        try:
            for task, changes in task_changes.items():
                self.engine.validate_task_update(task, **changes)
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        # The node's own settings as they are before the set, for the PARAM_CHANGE decision.
        self._before = {name: self.get(name) for name in node_changes}
        if not self._post_set:
            self._apply(parameters)
        return SetParametersResult(successful=True)

    def _live_changes(self, parameters: List[Parameter]):
        """Return the changes of a configured node: (task -> {key: value}, name -> value)."""
        task_changes: Dict[str, Dict[str, Any]] = {}
        node_changes: Dict[str, Any] = {}
        if self.engine is None:
            return task_changes, node_changes
        for param in parameters:
            spec = self._specs.get(param.name)
            if spec is None or param.type_ == Parameter.Type.NOT_SET:
                continue
            block, _, key = param.name.rpartition('.')
            if block in self.engine.tasks and key in TASK:
                task_changes.setdefault(block, {})[key] = _value(spec, param)
            else:
                node_changes[param.name] = _value(spec, param)
        return task_changes, node_changes

    def _apply(self, parameters: List[Parameter]) -> None:
        """Apply validated live changes to the engine and the node."""
        task_changes, node_changes = self._live_changes(parameters)
        for task, changes in task_changes.items():
            decision = self.engine.update_task(task, **changes)
            self._node.get_logger().info(f'task {task}: {decision.detail}')
        for name, value in node_changes.items():
            self._on_node_change(name, value)
            before = self._before.get(name)
            if before != value:
                self.engine.announce_setting(f'{name}: {before!r} -> {value!r}')


def descriptor(spec: Param) -> ParameterDescriptor:
    """Return a parameter's descriptor: description, unit, range, choices, when it may change."""
    field = spec.field
    result = ParameterDescriptor(
        description=spec.description + (f' ({field.unit})' if field.unit else ''),
        dynamic_typing=spec.kind in (DOUBLE, ANY) + ARRAYS,
        additional_constraints=('can change while active' if spec.live else
                                'can change only while unconfigured') +
        (f'; one of: {", ".join(field.choices)}' if field.choices else ''))
    if spec.kind == INTEGER and field.low is not None:
        result.integer_range = [IntegerRange(
            from_value=int(field.low), to_value=int(field.high), step=1)]
    elif spec.kind == DOUBLE and field.low is not None:
        result.floating_point_range = [FloatingPointRange(
            from_value=float(field.low), to_value=float(field.high), step=0.0)]
    return result


def _type_name(kind: Parameter.Type) -> str:
    """Return a ROS parameter type as ros2 param names it (integer, string_array, ...)."""
    return kind.name.lower()


def _value(spec: Param, param: Parameter) -> Any:
    """Return a parameter's value (arrays as lists)."""
    value = param.value
    if spec.kind in ARRAYS and isinstance(value, (list, tuple, array.array)):
        return list(value)
    return value
