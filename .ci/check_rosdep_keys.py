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
Check that every rosdep key of the workspace's package.xml files resolves for one platform.

Offline, from a copy of ros/rosdistro (no rosdep, no network): `--rosdistro` is either a
checkout of it (a folder holding index-v4.yaml) or a bare git directory of it (read at
`--rev`, HEAD by default). A key resolves, as `rosdep install --from-paths src --ignore-src`
would resolve it, when it is:

- a package of the workspace (a package.xml in a folder directly under `--workspace`);
- a key of the rosdep YAML files that rosdep/sources.list.d/20-default.list names for the OS
  (base.yaml, python.yaml, ruby.yaml for ubuntu), with a rule for the OS and version, read
  by rosdep's rules (REP 111, rosdep2/lookup.py `get_rule_for_platform`): an installer key
  first, else a version codename or the '*' wildcard; null means "not available";
- a released package of the distribution's distribution.yaml (a repository's
  release.packages, or the repository's name where it lists none), when the distribution
  releases for the OS and version (release_platforms): apt package ros-<distro>-<name>.

As in rosdep, the first source that defines a key wins: the YAML files in the list's order,
then the distribution. Pip rules resolve but are reported apart (pip, not apt, installs them).
A released package without a release version has no binary: it counts as unresolved. A
format-3 `condition` attribute is evaluated with ROS_VERSION, ROS_DISTRO and
ROS_PYTHON_VERSION of the distribution (or `--condition-var`); a dependency whose condition
is false is listed as skipped.

Prints one line per dependency (package, key, dependency type, resolution), then a summary.
Exit status: 0 when every key resolves, 1 when one does not, 2 on bad input.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import yaml

DEPENDENCY_TAGS = (
    'depend', 'build_depend', 'buildtool_depend', 'build_export_depend',
    'buildtool_export_depend', 'exec_depend', 'run_depend', 'test_depend', 'doc_depend')

# Installer keys in rosdep's order of precedence, and the default one (rosdep2/platforms).
INSTALLERS = {
    'ubuntu': (['apt', 'pip', 'gem', 'npm', 'source'], 'apt'),
    'debian': (['apt', 'pip', 'gem', 'npm', 'source'], 'apt'),
}

# The kinds of resolution; the last ones fail the check.
WORKSPACE, ROS, APT, PIP, OTHER, SKIPPED, UNRELEASED, UNRESOLVED = (
    'workspace', 'ros', 'apt', 'pip', 'other installer', 'skipped', 'unreleased', 'unresolved')
FAILING = (UNRELEASED, UNRESOLVED)

Dependency = collections.namedtuple('Dependency', 'package key tag condition')
Resolution = collections.namedtuple('Resolution', 'kind detail')


class InputError(Exception):
    """Bad input: a missing file, unreadable XML or YAML, an unknown distribution."""


class RosdistroCopy:
    """Files of a ros/rosdistro copy: a checkout folder or a bare git directory."""

    def __init__(self, path, rev):
        """Open the copy at path; rev is the revision read from a git directory."""
        self.path = path
        self.rev = rev
        self.is_checkout = os.path.isfile(os.path.join(path, 'index-v4.yaml'))
        if not self.is_checkout and self._git('rev-parse', '--verify', rev + '^{commit}') is None:
            raise InputError(
                '--rosdistro: %s; allowed: a checkout of ros/rosdistro (holding index-v4.yaml) '
                'or a git directory of it with revision %s' % (path, rev))

    def _git(self, *args):
        """Return a git command's output, or None when it fails."""
        option = '-C' if self.is_checkout else '--git-dir'
        done = subprocess.run(['git', option, self.path] + list(args),
                              capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else None

    def describe(self):
        """Return the path and, where git knows it, the commit read."""
        commit = self._git('rev-parse', 'HEAD' if self.is_checkout else self.rev)
        return '%s (commit %s)' % (self.path, commit.strip()) if commit else self.path

    def read(self, relative_path):
        """Return the text of a file of the copy, or raise InputError."""
        if self.is_checkout:
            try:
                with open(os.path.join(self.path, relative_path), encoding='utf-8') as f:
                    return f.read()
            except OSError as error:
                raise InputError('--rosdistro: %s' % error)
        text = self._git('show', '%s:%s' % (self.rev, relative_path))
        if text is None:
            raise InputError('--rosdistro: no %s at %s in %s' % (
                relative_path, self.rev, self.path))
        return text

    def load_yaml(self, relative_path):
        """Return the parsed YAML of a file of the copy, or raise InputError."""
        loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
        try:
            return yaml.load(self.read(relative_path), Loader=loader)
        except yaml.YAMLError as error:
            raise InputError('%s: %s' % (relative_path, error))


def rosdep_yaml_files(rosdistro, os_name):
    """Return rosdistro-relative paths of the rosdep YAML files rosdep reads for the OS."""
    files = []
    for line in rosdistro.read('rosdep/sources.list.d/20-default.list').splitlines():
        fields = line.split('#', 1)[0].split()
        if len(fields) < 2 or fields[0] != 'yaml':
            continue
        tags = fields[2:]
        marker = '/master/'
        if (tags and os_name not in tags) or marker not in fields[1]:
            continue
        files.append(fields[1].split(marker, 1)[1])
    return files


def distribution_packages(rosdistro, distro):
    """Return ({package: (repository, release version)}, release_platforms, python version)."""
    index = rosdistro.load_yaml('index-v4.yaml')
    entry = index.get('distributions', {}).get(distro)
    if entry is None:
        raise InputError('--distro: %s; allowed: %s' % (
            distro, ', '.join(sorted(index.get('distributions', {})))))
    files = entry['distribution']
    packages = {}
    platforms = {}
    for path in [files] if isinstance(files, str) else files:
        data = rosdistro.load_yaml(path)
        for os_name, versions in (data.get('release_platforms') or {}).items():
            platforms.setdefault(os_name, []).extend(str(v) for v in versions)
        for name, repository in (data.get('repositories') or {}).items():
            release = (repository or {}).get('release')
            if not release:
                continue
            for package in release.get('packages') or [name]:
                packages.setdefault(package, (name, release.get('version')))
    return packages, platforms, str(entry.get('python_version', ''))


def rule_for_platform(definition, os_name, os_version, installer_keys, default_installer):
    """
    Return (installer, rule) of a rosdep definition, or (None, why) where none applies.

    rosdep2/lookup.py's RosdepDefinition.get_rule_for_platform, reporting instead of raising.
    """
    if not isinstance(definition, dict):
        return None, 'definition is not a mapping'
    if os_name not in definition:
        if '*' not in definition:
            return None, 'no rule for OS %s' % os_name
        os_name = '*'
    data = definition[os_name]
    installer = default_installer
    if isinstance(data, dict):
        found = [key for key in installer_keys if key in data]
        if found:
            installer = found[0]
            data = data[installer]
        else:
            if os_version not in data and '*' not in data:
                return None, 'no rule for %s %s (versions: %s)' % (
                    os_name, os_version, ', '.join(sorted(map(str, data))))
            if os_version in data and data[os_version] is None:
                return None, 'not available on %s %s (null)' % (os_name, os_version)
            data = data[os_version if os_version in data else '*']
            if isinstance(data, dict):
                found = [key for key in installer_keys if key in data]
                if found:
                    installer = found[0]
                    data = data[installer]
    if data is None:
        return None, 'not available on %s %s (null)' % (os_name, os_version)
    if not isinstance(data, (dict, list, str)):
        return None, 'rule is neither a mapping, a list nor a string: %r' % (data,)
    return installer, data


def rule_packages(rule):
    """Return the package names of a rule, as rosdep's package-manager installers read it."""
    if isinstance(rule, dict):
        packages = rule.get('packages', [])
        return packages.split() if isinstance(packages, str) else list(packages)
    if isinstance(rule, str):
        return rule.split(' ')
    return list(rule)


class Resolver:
    """Resolves rosdep keys for one distribution, OS and OS version."""

    def __init__(self, rosdistro, distro, os_name, os_version, workspace_packages):
        """Load the rosdep YAML files and the distribution from the rosdistro copy."""
        self.distro = distro
        self.os_name = os_name
        self.os_version = os_version
        self.workspace_packages = workspace_packages
        self.installer_keys, self.default_installer = INSTALLERS[os_name]
        self.yaml_files = rosdep_yaml_files(rosdistro, os_name)
        self.definitions = [(path, rosdistro.load_yaml(path) or {}) for path in self.yaml_files]
        self.ros_packages, self.platforms, self.python_version = distribution_packages(
            rosdistro, distro)

    def resolve(self, key):
        """Return the Resolution of a key: workspace, rosdep YAML files, distribution."""
        if key in self.workspace_packages:
            return Resolution(WORKSPACE, 'package of this workspace')
        for path, definitions in self.definitions:
            if key in definitions:
                return self._from_rule(key, path, definitions[key])
        if key in self.ros_packages:
            return self._from_distribution(key)
        return Resolution(UNRESOLVED, 'no such key in %s or %s/distribution.yaml' % (
            ', '.join(os.path.basename(p) for p in self.yaml_files), self.distro))

    def _from_rule(self, key, path, definition):
        installer, rule = rule_for_platform(
            definition, self.os_name, self.os_version, self.installer_keys,
            self.default_installer)
        source = os.path.basename(path)
        if installer is None:
            return Resolution(UNRESOLVED, '%s: %s' % (source, rule))
        packages = rule_packages(rule)
        names = ' '.join(packages) if packages else '(nothing to install)'
        kind = {'apt': APT, 'pip': PIP}.get(installer, OTHER)
        return Resolution(kind, '%s: %s (%s)' % (installer, names, source))

    def _from_distribution(self, key):
        repository, version = self.ros_packages[key]
        if self.os_version not in self.platforms.get(self.os_name, []):
            return Resolution(UNRESOLVED, 'repository %s; %s does not release for %s %s' % (
                repository, self.distro, self.os_name, self.os_version))
        apt_name = ('ros-%s-%s' % (self.distro, key)).replace('_', '-')
        if not version:
            return Resolution(UNRELEASED, 'repository %s has no release version (%s)' % (
                repository, apt_name))
        return Resolution(ROS, 'apt: %s (repository %s %s)' % (apt_name, repository, version))


def package_name(package_xml):
    """Return the <name> of a package.xml, or raise InputError."""
    try:
        root = ElementTree.parse(package_xml).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise InputError('%s: %s' % (package_xml, error))
    name = root.findtext('name')
    if not name:
        raise InputError('%s: no <name>' % package_xml)
    return name.strip()


def dependencies(package_dir):
    """Return the Dependency entries of a package folder's package.xml."""
    package_xml = os.path.join(package_dir, 'package.xml')
    name = package_name(package_xml)
    root = ElementTree.parse(package_xml).getroot()
    found = []
    for element in root:
        if element.tag in DEPENDENCY_TAGS:
            key = (element.text or '').strip()
            if not key:
                raise InputError('%s: an empty <%s>' % (package_xml, element.tag))
            found.append(Dependency(name, key, element.tag, element.get('condition')))
    return found


def workspace_packages(workspace):
    """Return the names of the packages in the folders directly under the workspace."""
    names = set()
    for entry in sorted(os.listdir(workspace)):
        package_xml = os.path.join(workspace, entry, 'package.xml')
        if os.path.isfile(package_xml):
            names.add(package_name(package_xml))
    return names


CONDITION_TOKEN = re.compile(r'\s*(==|!=|<=|>=|<|>|\(|\)|"[^"]*"|\'[^\']*\'|[^\s()<>=!]+)')


def evaluate_condition(condition, variables):
    """
    Evaluate a format-3 condition (REP 149): $VARIABLES, comparisons, and, or, parentheses.

    Values compare as strings, as catkin_pkg's evaluate_condition does; an unset variable is ''.
    """
    tokens = []
    position = 0
    while condition[position:].strip():
        match = CONDITION_TOKEN.match(condition, position)
        if not match:
            raise InputError('condition %r: cannot read %r' % (condition, condition[position:]))
        tokens.append(match.group(1))
        position = match.end()

    def value(token):
        if token.startswith('$'):
            return variables.get(token[1:], '')
        if token[0] in '"\'':
            return token[1:-1]
        return token

    def parse_or(i):
        result, i = parse_and(i)
        while i < len(tokens) and tokens[i] == 'or':
            right, i = parse_and(i + 1)
            result = result or right
        return result, i

    def parse_and(i):
        result, i = parse_term(i)
        while i < len(tokens) and tokens[i] == 'and':
            right, i = parse_term(i + 1)
            result = result and right
        return result, i

    def parse_term(i):
        if i < len(tokens) and tokens[i] == '(':
            result, i = parse_or(i + 1)
            if i >= len(tokens) or tokens[i] != ')':
                raise InputError('condition %r: a "(" without its ")"' % condition)
            return result, i + 1
        if i + 3 > len(tokens):
            raise InputError('condition %r: expected "value operator value"' % condition)
        left, operator, right = tokens[i:i + 3]
        compare = {'==': str.__eq__, '!=': str.__ne__, '<': str.__lt__, '<=': str.__le__,
                   '>': str.__gt__, '>=': str.__ge__}.get(operator)
        if compare is None:
            raise InputError('condition %r: operator %r; allowed: == != < <= > >=' % (
                condition, operator))
        return compare(value(left), value(right)), i + 3

    result, end = parse_or(0)
    if end != len(tokens):
        raise InputError('condition %r: unexpected %r' % (condition, tokens[end]))
    return result


def parse_arguments(argv):
    """Return the command line's arguments; the default package folders are beside .ci/."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    default_dirs = sorted(
        os.path.join(root, entry) for entry in os.listdir(root)
        if entry.startswith('inferedge_orchestrator')
        and os.path.isfile(os.path.join(root, entry, 'package.xml')))
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        '--rosdistro', required=True,
        help='a checkout of ros/rosdistro (a folder holding index-v4.yaml) or a bare git '
             'directory of it; kept outside this repository')
    parser.add_argument('--rev', default='HEAD',
                        help='revision read from a git directory (default: HEAD)')
    parser.add_argument('--distro', default='jazzy', help='(default: %(default)s)')
    parser.add_argument('--os', default='ubuntu', choices=sorted(INSTALLERS),
                        help='(default: %(default)s)')
    parser.add_argument('--os-version', default='noble', help='codename (default: %(default)s)')
    parser.add_argument('--workspace', default=root,
                        help="folder whose subfolders' packages count as the workspace's "
                             '(default: %(default)s)')
    parser.add_argument('--extra-key', action='append', default=[], metavar='KEY',
                        help='a key to check beside those the package.xml files declare')
    parser.add_argument('--condition-var', action='append', default=[], metavar='NAME=VALUE',
                        help='a variable for format-3 conditions (default: ROS_VERSION=2, '
                             'ROS_DISTRO=<distro>, ROS_PYTHON_VERSION of the distribution)')
    parser.add_argument('package_dirs', nargs='*', default=default_dirs,
                        help='package folders (default: the inferedge_orchestrator* packages '
                             'beside .ci/)')
    arguments = parser.parse_args(argv)
    for assignment in arguments.condition_var:
        if '=' not in assignment:
            parser.error('--condition-var: %r; allowed: NAME=VALUE' % assignment)
    return arguments


def main(argv=None):
    """Resolve every key, print one line per dependency and a summary; return the status."""
    arguments = parse_arguments(argv)
    try:
        rosdistro = RosdistroCopy(arguments.rosdistro, arguments.rev)
        resolver = Resolver(rosdistro, arguments.distro, arguments.os, arguments.os_version,
                            workspace_packages(arguments.workspace))
        found = [d for package_dir in arguments.package_dirs for d in dependencies(package_dir)]
        found += [Dependency('(extra)', key, 'extra-key', None) for key in arguments.extra_key]
        variables = {'ROS_VERSION': '2', 'ROS_DISTRO': arguments.distro,
                     'ROS_PYTHON_VERSION': resolver.python_version}
        variables.update(a.split('=', 1) for a in arguments.condition_var)
        rows = []
        for dependency in found:
            if dependency.condition and not evaluate_condition(dependency.condition, variables):
                resolution = Resolution(SKIPPED, 'condition %r is false' % dependency.condition)
            else:
                resolution = resolver.resolve(dependency.key)
            rows.append((dependency, resolution))
    except InputError as error:
        print('error: %s' % error, file=sys.stderr)
        return 2

    print('rosdistro: %s' % rosdistro.describe())
    print('platform: %s %s, distribution %s; rosdep files: %s' % (
        arguments.os, arguments.os_version, arguments.distro, ', '.join(resolver.yaml_files)))
    widths = [max(len(str(row[0][i])) for row in rows) for i in range(3)] if rows else [0] * 3
    for dependency, resolution in rows:
        print('%-*s  %-*s  %-*s  %-10s %s' % (
            widths[0], dependency.package, widths[1], dependency.key, widths[2],
            dependency.tag, resolution.kind.upper() if resolution.kind in FAILING
            else resolution.kind, resolution.detail))
    kinds = collections.Counter(resolution.kind for _, resolution in rows)
    keys = {dependency.key for dependency, _ in rows}
    failing = sorted({d.key for d, r in rows if r.kind in FAILING})
    print('summary: %d dependencies, %d distinct keys: %s' % (
        len(rows), len(keys), ', '.join('%d %s' % (n, k) for k, n in sorted(kinds.items()))))
    if failing:
        print('FAIL: %d of %d keys do not resolve for %s %s: %s' % (
            len(failing), len(keys), arguments.os, arguments.os_version, ', '.join(failing)))
        return 1
    print('OK: every key resolves for %s %s (%s)' % (
        arguments.os, arguments.os_version, arguments.distro))
    return 0


if __name__ == '__main__':
    sys.exit(main())
