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
The core's layers import one way: down.

Bottom up: contracts and config; frames, telemetry and draws; scheduling, decoders and
workers; engine; tools and the package's face (its __init__ and __main__). Read two ways: every
import statement of the sources (module level or not) with the AST, and, in a fresh
interpreter per layer, what importing all of a layer's modules loads. Both checks are shown
to catch a planted upward import, on a temporary module.
"""

import ast
import os
import subprocess
import sys
import textwrap

import inferedge_orchestrator
from inferedge_orchestrator.contracts.kinds import DECODERS, WORKERS

PACKAGE = 'inferedge_orchestrator'
ROOT = os.path.dirname(os.path.abspath(inferedge_orchestrator.__file__))
LAYERS = {'contracts': 1, 'config': 1,
          'frames': 2, 'telemetry': 2, 'draws': 2,
          'scheduling': 3, 'decoders': 3, 'workers': 3,
          'engine': 4,
          'tools': 5, '__init__': 5, '__main__': 5}


def layer_of(module: str) -> int:
    """Return the layer of a dotted module name of the package (the package itself: the face)."""
    parts = module.split('.')
    return LAYERS[parts[1] if len(parts) > 1 else '__init__']


def module_of(path: str) -> str:
    """Return the dotted name of a source file under the package's folder."""
    relative = os.path.relpath(path, ROOT)[:-len('.py')].replace(os.sep, '.')
    if relative.endswith('__init__') and relative != '__init__':
        relative = relative[:-len('.__init__')]
    return PACKAGE if relative == '__init__' else f'{PACKAGE}.{relative}'


def imported(source: str, module: str) -> list:
    """Return the package's modules that the source of module imports, anywhere in it."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = module.split('.')[:-node.level] if not module == PACKAGE else [PACKAGE]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            names.append(target)
            names += [f'{target}.{alias.name}' for alias in node.names
                      if f'{target}.{alias.name}'.count('.') == 1]  # from pkg import sub
    return [name for name in names if name == PACKAGE or name.startswith(PACKAGE + '.')]


def upward_imports(source: str, module: str) -> list:
    """Return (imported module, its layer) for each import of a higher layer than module's."""
    mine = layer_of(module)
    return [(name, layer_of(name)) for name in imported(source, module)
            if name != PACKAGE and layer_of(name) > mine]


def sources():
    for folder, _, files in os.walk(ROOT):
        for name in sorted(files):
            if name.endswith('.py'):
                yield os.path.join(folder, name)


def test_every_top_level_part_has_a_layer():
    parts = {name[:-3] if name.endswith('.py') else name for name in os.listdir(ROOT)
             if not name.startswith(('.', '_')) or name in ('__init__.py', '__main__.py')}
    parts.discard('__pycache__')
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_no_import_goes_up_a_layer():
    found = []
    for path in sources():
        with open(path, encoding='utf-8') as stream:
            source = stream.read()
        module = module_of(path)
        found += [(module, name, layer) for name, layer in upward_imports(source, module)]
    assert found == []


def test_the_source_check_catches_a_planted_upward_import():
    planted = textwrap.dedent("""
        def late():
            from inferedge_orchestrator.engine.engine import Engine
            return Engine
    """)
    assert upward_imports(planted, 'inferedge_orchestrator.config.planted') == [
        ('inferedge_orchestrator.engine.engine', 4)]
    assert upward_imports(planted, 'inferedge_orchestrator.tools.planted') == []


LOADED = textwrap.dedent("""
    import importlib, json, sys
    for name in sys.argv[1:]:
        importlib.import_module(name)
    print(json.dumps(sorted(m for m in sys.modules if m.startswith('inferedge_orchestrator'))))
""")


def loaded_by(modules: list, path: str = '') -> list:
    """Return the package's modules that importing modules loads, in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [p for p in (path, os.path.dirname(ROOT), os.environ.get('PYTHONPATH', '')) if p]))
    output = subprocess.run([sys.executable, '-c', LOADED] + modules, env=env, check=True,
                            capture_output=True, text=True).stdout
    import json
    return json.loads(output)


def higher_than(layer: int, modules: list) -> list:
    return [m for m in modules if m != PACKAGE and layer_of(m) > layer]


def test_importing_a_layer_loads_no_higher_layer():
    by_layer = {}
    for path in sources():
        module = module_of(path)
        if module != PACKAGE and not module.endswith('__main__'):
            by_layer.setdefault(layer_of(module), []).append(module)
    for layer, modules in sorted(by_layer.items()):
        assert higher_than(layer, loaded_by(modules)) == [], layer


def test_the_run_time_check_catches_a_planted_upward_import(tmp_path):
    (tmp_path / 'planted_low.py').write_text(
        'import inferedge_orchestrator.config.model\n'
        'import inferedge_orchestrator.engine.engine\n')
    loaded = loaded_by(['planted_low'], str(tmp_path))
    assert 'inferedge_orchestrator.engine.engine' in higher_than(1, loaded)


def test_a_fresh_interpreter_validates_a_task_of_every_kind():
    """No validation runs against a registry still waiting for its modules."""
    script = textwrap.dedent("""
        import sys
        from inferedge_orchestrator.config.loader import load_config
        workers, decoders = sys.argv[1].split(','), sys.argv[2].split(',')
        tasks = []
        for index, kind in enumerate(workers):
            options = {'dummy': {'latency_ms': 1.0},
                       'onnxruntime': {'model_path': '/nonexistent/model.onnx'},
                       'tensorrt': {'engine_path': '/nonexistent/model.engine'},
                       'triton': {'url': '127.0.0.1:8001', 'model_name': 'm'}}[kind]
            tasks.append({'name': f'w{index}', 'worker': kind, 'worker_options': options,
                          'pool': 'server' if kind == 'triton' else 'cpu'})
        for index, kind in enumerate(decoders):
            tasks.append({'name': f'd{index}', 'decoder': kind})
        config = load_config({'orchestrator': {'pools': {'cpu': {'slots': 1},
                                                         'server': {'slots': 1}}},
                              'tasks': tasks})
        print(len(config.tasks))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(ROOT), os.environ.get('PYTHONPATH', '')]))
    done = subprocess.run([sys.executable, '-c', script, ','.join(WORKERS.names),
                           ','.join(DECODERS.names)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(WORKERS.names) + len(DECODERS.names)


def test_the_public_api_names_resolve_and_the_face_loads_nothing_before_use():
    assert loaded_by([PACKAGE]) == [PACKAGE]
    for name in inferedge_orchestrator.__all__:
        assert getattr(inferedge_orchestrator, name) is not None, name
    assert set(inferedge_orchestrator.__all__) <= set(dir(inferedge_orchestrator))


MAX_CLASS_LINES, MAX_FUNCTION_LINES = 400, 60


def test_no_class_over_400_lines_and_no_function_over_60():
    """A part a reader takes in at once (issue 23): sizes by the AST, docstrings included."""
    too_long = []
    for folder, _, files in os.walk(ROOT):
        for name in sorted(files):
            if not name.endswith('.py'):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding='utf-8') as stream:
                tree = ast.parse(stream.read(), path)
            for node in ast.walk(tree):
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else \
                    MAX_FUNCTION_LINES if isinstance(
                        node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
                lines = node.end_lineno - node.lineno + 1 if limit else 0
                if limit and lines > limit:
                    too_long.append(f'{os.path.relpath(path, ROOT)}: {node.name} {lines}')
    assert too_long == []
