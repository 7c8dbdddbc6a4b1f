#!/usr/bin/env python3
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
Check that colcon test ran every test each module holds.

For each Python package given: the tests `pytest --collect-only` finds per module (run from
the package folder, in the environment colcon test used) against the test cases of that module
in colcon's junit file (<build-base>/<package>/pytest.xml). Fails when a module failed to
import, or ran fewer tests than it holds; prints the counts and every skipped test by name.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree


def collected(package_dir):
    """Return ({module path: test count}, collection errors) for a package's tests."""
    done = subprocess.run(
        [sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider'],
        cwd=package_dir, capture_output=True, text=True)
    counts = collections.Counter()
    for line in done.stdout.splitlines():
        if '::' in line and not line.startswith(' '):
            counts[line.split('::')[0]] += 1
    errors = re.findall(r'^ERROR collecting (\S+)', done.stdout, re.MULTILINE)
    errors += re.findall(r'^ERROR (\S+\.py)', done.stdout, re.MULTILINE)
    if done.returncode not in (0, 5) and not errors:  # 5: nothing collected
        errors.append(f'pytest --collect-only exited with {done.returncode}:\n{done.stdout}'
                      f'{done.stderr}')
    return counts, sorted(set(errors))


def ran(junit_path, package, modules):
    """Return ({module path: test cases}, [(test, skip message)]) from a junit file."""
    counts = collections.Counter()
    skipped = []
    dotted = {path[:-3].replace('/', '.'): path for path in modules}
    tree = ElementTree.parse(junit_path)
    for case in tree.iter('testcase'):
        classname = case.get('classname', '')
        if classname.startswith(package + '.'):
            classname = classname[len(package) + 1:]
        module = None
        parts = classname.split('.')
        for end in range(len(parts), 0, -1):  # classes sit after the module in classname
            module = dotted.get('.'.join(parts[:end]))
            if module:
                break
        module = module or classname
        counts[module] += 1
        skip = case.find('skipped')
        if skip is not None:
            skipped.append((f'{module}::{case.get("name")}', skip.get('message', '')))
    return counts, skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--build-base', required=True)
    parser.add_argument('packages', nargs='+', help='package folders')
    args = parser.parse_args(argv)
    failures = []
    for folder in args.packages:
        folder = os.path.abspath(folder)
        package = os.path.basename(folder.rstrip('/'))
        junit = os.path.join(args.build_base, package, 'pytest.xml')
        if not os.path.exists(os.path.join(folder, 'setup.py')):
            continue  # not a Python package: its tests are CTest's (colcon test-result)
        expected, errors = collected(folder)
        for error in errors:
            failures.append(f'{package}: {error} failed to import')
        if not os.path.exists(junit):
            failures.append(f'{package}: no junit results at {junit}')
            continue
        got, skipped = ran(junit, package, expected)
        print(f'{package}: {sum(got.values())} test cases ran, '
              f'{sum(expected.values())} collected, {len(skipped)} skipped')
        print(f'  {"module":52} {"collected":>9} {"ran":>5}')
        for module in sorted(set(expected) | set(got)):
            print(f'  {module:52} {expected[module]:>9} {got[module]:>5}')
            if got[module] < expected[module]:
                failures.append(f'{package}: {module} ran {got[module]} of its '
                                f'{expected[module]} tests')
        for name, message in skipped:
            print(f'  skipped: {name}: {message}')
    for failure in failures:
        print(f'error: {failure}', file=sys.stderr)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
