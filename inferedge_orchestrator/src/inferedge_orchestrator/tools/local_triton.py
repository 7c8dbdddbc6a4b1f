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
A Triton Inference Server on this machine, for tests, benchmarks and trying the triton worker.

It runs the tritonserver binary of the PyPI wheel nvidia-pytriton (x86_64 or aarch64, glibc
2.35 or newer), installed with --no-deps into a virtual environment of its own: Triton's python
backend runs its models with that environment's Python, and it needs numpy < 2 there. The
environment is INFEREDGE_TRITON_VENV, else the repository's .ci/triton-venv (what .ci/run
makes). pytriton is located with importlib.util.find_spec in that environment, never imported.

LocalTriton serves a model repository with HTTP, gRPC and metrics each bound to 127.0.0.1 on a
free port (tritonserver binds to every interface unless told); write_onnx_model() writes a
python-backend model that runs an ONNX file with onnxruntime.
"""

from dataclasses import dataclass
import ipaddress
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple
import urllib.error
import urllib.request

from inferedge_orchestrator.telemetry.process_stats import live_processes_with, SESSION

SERVER_VENV = 'INFEREDGE_TRITON_VENV'
INSTALL_HINT = ("python3 -m venv V && V/bin/pip install 'numpy<2' onnxruntime && "
                'V/bin/pip install --no-deps nvidia-pytriton; then export '
                f'{SERVER_VENV}=V (.ci/run makes .ci/triton-venv)')
ARCHITECTURES = ('x86_64', 'aarch64')  # those nvidia-pytriton has wheels for
MIN_GLIBC = (2, 35)
LOOPBACK = '127.0.0.1'
# onnxruntime's tensor types -> Triton's config data types.
TRITON_TYPES = {'tensor(float)': 'TYPE_FP32', 'tensor(float16)': 'TYPE_FP16',
                'tensor(double)': 'TYPE_FP64', 'tensor(uint8)': 'TYPE_UINT8',
                'tensor(int8)': 'TYPE_INT8', 'tensor(int32)': 'TYPE_INT32',
                'tensor(int64)': 'TYPE_INT64', 'tensor(bool)': 'TYPE_BOOL'}

# The python-backend model write_onnx_model() writes: onnxruntime on model.onnx beside it.
PYTHON_MODEL = '''\
"""Run model.onnx with onnxruntime (written by inferedge_orchestrator.tools.local_triton)."""

import json
import os
import time

import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:

    def initialize(self, args):
        config = json.loads(args['model_config'])
        parameters = {k: v['string_value'] for k, v in config.get('parameters', {}).items()}
        self.delay_s = float(parameters.get('delay_s', 0))
        # A synthetic cost that grows with the batch: delay_s + delay_per_item_s x (n - 1).
        self.delay_per_item_s = float(parameters.get('delay_per_item_s', 0))
        self.batched = int(config.get('max_batch_size', 0)) > 0
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(parameters.get('intra_op_threads', 0))
        # As the onnxruntime worker: idle threads that spin take the cores the server needs.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.add_session_config_entry('session.inter_op.allow_spinning', '0')
        folder = os.path.join(args['model_repository'], args['model_version'])
        self.session = onnxruntime.InferenceSession(
            os.path.join(folder, 'model.onnx'), sess_options=options,
            providers=['CPUExecutionProvider'])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                     for name in self.inputs}
            rows = len(feeds[self.inputs[0]]) if self.batched else 1
            delay = self.delay_s + self.delay_per_item_s * (rows - 1)
            if delay:
                time.sleep(delay)
            values = self.session.run(self.outputs, feeds)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, value) for name, value in zip(self.outputs, values)]))
        return responses
'''


class ServerMissing(RuntimeError):
    """The server's environment is not installed; the message says how to install it."""


def unsupported_reason() -> str:
    """Return why the nvidia-pytriton wheel cannot install here ('' when it can)."""
    machine = platform.machine()
    if sys.platform != 'linux' or machine not in ARCHITECTURES:
        return (f'nvidia-pytriton has no wheel for {sys.platform} {machine} (only Linux '
                f'{", ".join(ARCHITECTURES)})')
    libc, version = platform.libc_ver()
    try:
        found = tuple(int(part) for part in version.split('.')[:2])
    except ValueError:
        found = ()
    if libc != 'glibc' or found < MIN_GLIBC:
        return (f'nvidia-pytriton needs glibc >= {".".join(map(str, MIN_GLIBC))}; this '
                f'machine has {libc or "no glibc"} {version}')
    return ''


def skip_reason() -> str:
    """
    Return why the triton tests cannot run here ('' : they run).

    No wheel for this machine; or no server environment while INFEREDGE_TRITON_VENV is unset
    (a checkout installed by the README's lines). Where it is set (.ci/run sets it), a missing
    or broken environment is not a reason: the tests fail with find_install()'s message.
    """
    reason = unsupported_reason()
    if reason or os.environ.get(SERVER_VENV):
        return reason
    try:
        find_install()
    except ServerMissing as error:
        return str(error)  # it says how to make one
    return ''


@dataclass(frozen=True)
class ServerInstall:
    """Where the wheel's server is: the environment's Python, pytriton's folder, its version."""

    python: str
    pytriton: str  # the folder of the pytriton package (never imported)
    python_version: str  # e.g. 3.11: the python backend stub must match it

    @property
    def binary(self) -> str:
        return os.path.join(self.pytriton, 'tritonserver', 'bin', 'tritonserver')

    @property
    def libraries(self) -> str:
        return os.path.join(os.path.dirname(self.pytriton), 'nvidia_pytriton.libs')

    @property
    def python_backend(self) -> str:
        return os.path.join(self.pytriton, 'tritonserver', 'backends', 'python')

    @property
    def stub(self) -> str:
        return os.path.join(self.pytriton, 'tritonserver', 'python_backend_stubs',
                            self.python_version, 'triton_python_backend_stub')


def default_venv() -> str:
    """Return INFEREDGE_TRITON_VENV, else the repository's .ci/triton-venv (may not exist)."""
    if os.environ.get(SERVER_VENV):
        return os.environ[SERVER_VENV]
    folder = os.path.dirname(os.path.abspath(__file__))
    while os.path.dirname(folder) != folder:  # a source checkout: up to the repository root
        folder = os.path.dirname(folder)
        if os.path.isfile(os.path.join(folder, '.ci', 'run')):
            return os.path.join(folder, '.ci', 'triton-venv')
    return ''


_FIND = ('import importlib.util, sys; spec = importlib.util.find_spec("pytriton"); '
         'print(spec.submodule_search_locations[0] if spec else ""); '
         'print("%d.%d" % sys.version_info[:2]); '
         'import numpy; print(numpy.__version__)')


def find_install(venv: Optional[str] = None) -> ServerInstall:
    """Locate the server in venv (default_venv()); raise ServerMissing saying what is missing."""
    venv = venv or default_venv()
    python = os.path.join(venv, 'bin', 'python')
    if not venv or not os.path.isfile(python):
        raise ServerMissing(f'no Triton server environment at {venv or "(none)"!r}: '
                            f'{INSTALL_HINT}')
    try:
        found = subprocess.run([python, '-c', _FIND], capture_output=True, text=True,
                               timeout=60, check=True).stdout.split('\n')
    except (OSError, subprocess.SubprocessError) as error:
        raise ServerMissing(f'{python} cannot tell where pytriton and numpy are ({error}): '
                            f'{INSTALL_HINT}') from None
    folder, version, numpy_version = found[:3]
    if not folder:
        raise ServerMissing(f'nvidia-pytriton is not installed in {venv}: {INSTALL_HINT}')
    if int(numpy_version.split('.')[0]) >= 2:
        raise ServerMissing(f'{venv} has numpy {numpy_version}: the python backend of this '
                            f"Triton returns empty outputs with numpy 2; pip install 'numpy<2'")
    install = ServerInstall(python, folder, version)
    for path in (install.binary, install.stub):
        if not os.path.isfile(path):
            raise ServerMissing(f'{path} is missing from nvidia-pytriton in {venv}')
    return install


def free_port() -> int:
    """Return a TCP port of the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class LocalTriton:
    """A tritonserver serving one model repository on loopback (see the module's text)."""

    def __init__(self, repository: str, workdir: str, install: Optional[ServerInstall] = None,
                 args: Sequence[str] = ()):
        self.repository = repository
        self.workdir = workdir
        self.install = install or find_install()
        self.args = list(args)
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.process: Optional[subprocess.Popen] = None
        self.sessions: List[int] = []  # every server started: its stubs may outlive it
        self.log_path = os.path.join(workdir, 'tritonserver.log')

    @property
    def grpc_url(self) -> str:
        return f'{LOOPBACK}:{self.grpc_port}'

    @property
    def http_url(self) -> str:
        return f'{LOOPBACK}:{self.http_port}'

    def command(self) -> List[str]:
        """Return the server's command line (ports chosen on the first call)."""
        if not self.http_port:
            self.http_port, self.grpc_port, self.metrics_port = (free_port(), free_port(),
                                                                 free_port())
        return [self.install.binary, f'--model-repository={self.repository}',
                f'--backend-directory={self._backends()}',
                f'--http-address={LOOPBACK}', f'--http-port={self.http_port}',
                f'--grpc-address={LOOPBACK}', f'--grpc-port={self.grpc_port}',
                f'--metrics-address={LOOPBACK}', f'--metrics-port={self.metrics_port}',
                '--model-control-mode=explicit', '--load-model=*', '--exit-timeout-secs=3',
                '--log-verbose=0'] + self.args

    def environment(self) -> Dict[str, str]:
        """Return the server's environment: the wheel's libraries, the venv's Python first."""
        env = dict(os.environ)
        libraries = self.install.libraries
        env['LD_LIBRARY_PATH'] = ':'.join(filter(None, [libraries,
                                                        env.get('LD_LIBRARY_PATH', '')]))
        env['PATH'] = f'{os.path.dirname(self.install.python)}:{env.get("PATH", "")}'
        return env

    def _backends(self) -> str:
        """Make the backend folder: the wheel's python backend with the stub of its Python."""
        backends = os.path.join(self.workdir, 'backends')
        python = os.path.join(backends, 'python')
        if not os.path.isdir(python):
            os.makedirs(python)
            for name in os.listdir(self.install.python_backend):
                source = os.path.join(self.install.python_backend, name)
                if os.path.isfile(source):
                    shutil.copy(source, python)
            shutil.copy(self.install.stub, python)
        return backends

    def start(self, timeout_s: float = 90.0) -> 'LocalTriton':
        """Start the server (again, on the same ports); wait until it is ready on all three."""
        command = self.command()
        with open(self.log_path, 'ab') as log:
            # A session of its own: stop() can end its python backend stubs with it.
            self.process = subprocess.Popen(command, env=self.environment(), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.sessions.append(self.process.pid)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f'tritonserver exited with code {self.process.returncode}: '
                                   f'{self.log_tail()}')
            ports = {port for _, port in self.listening()}
            if {self.http_port, self.grpc_port, self.metrics_port} <= ports and self.ready():
                return self  # metrics starts last: listening, not only ready
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f'tritonserver not ready after {timeout_s:g} s: {self.log_tail()}')

    def ready(self) -> bool:
        """Whether the server answers its HTTP readiness check (every model loaded)."""
        try:
            with urllib.request.urlopen(f'http://{self.http_url}/v2/health/ready',
                                        timeout=1.0) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """Kill the server process with SIGKILL, as a crash would (its stubs are left)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10.0)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and whatever it left in its session."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(15.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10.0)
        for session in self.sessions:  # python backend stubs of a killed server
            for pid in session_members(session):
                end_stub(pid)
        self.process = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as stream:
                return ' | '.join(stream.read().splitlines()[-lines:])
        except OSError:
            return '(no log)'

    def listening(self) -> List[Tuple[str, int]]:
        """Return the (address, port) of every socket the server's processes listen on."""
        return listening_sockets(session_members(self.process.pid) if self.process else [])

    def __enter__(self) -> 'LocalTriton':
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()


def end_stub(pid: int) -> None:
    """Kill a process left by a killed server; a python backend stub's region goes too."""
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as stream:
            argv = stream.read().split(b'\0')
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return
    # A stub's argv: the stub, its model.py, then its shared-memory region's name.
    if argv[0].endswith(b'triton_python_backend_stub') and len(argv) > 2:
        region = os.path.join('/dev/shm', os.path.basename(argv[2].decode()))
        if os.path.basename(region).startswith('triton_python_backend_shm_region_'):
            try:
                os.unlink(region)
            except FileNotFoundError:
                pass  # it removed its region itself


def session_members(session: int) -> List[int]:
    """Return the processes of a session (the server and its stubs; /proc)."""
    return live_processes_with(SESSION, session)


def listening_sockets(pids: Sequence[int]) -> List[Tuple[str, int]]:
    """Return the (address, port) of the TCP sockets in LISTEN state that pids hold."""
    inodes = set()
    for pid in pids:
        folder = f'/proc/{pid}/fd'
        try:
            fds = os.listdir(folder)
        except OSError:
            continue  # it exited
        for fd in fds:
            try:
                link = os.readlink(os.path.join(folder, fd))
            except OSError:
                continue  # closed meanwhile
            if link.startswith('socket:['):
                inodes.add(link[8:-1])
    found = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        with open(table, encoding='ascii') as stream:
            next(stream)
            for line in stream:
                fields = line.split()
                if fields[3] == '0A' and fields[9] in inodes:  # 0A: LISTEN
                    address, port = fields[1].split(':')
                    found.append((_address(address), int(port, 16)))
    return found


def _address(text: str) -> str:
    """Decode a /proc/net/tcp address: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(text)
    raw = b''.join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def is_loopback(address: str) -> bool:
    """Whether an address is loopback (an IPv4-mapped IPv6 one too)."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, 'ipv4_mapped', None)
    return (mapped or ip).is_loopback


def write_onnx_model(repository: str, name: str, onnx_path: str, max_batch_size: int = 0,
                     dynamic_batching: str = '', delay_s: float = 0.0, instances: int = 1,
                     intra_op_threads: int = 0, delay_per_item_s: float = 0.0) -> str:
    """
    Write a python-backend model that runs onnx_path with onnxruntime; return its folder.

    Its inputs and outputs are the ONNX file's (read with onnxruntime); with max_batch_size > 0
    the first dimension is Triton's batch. dynamic_batching: the body of the config's
    dynamic_batching block ('' : none); delay_s: a sleep before each request (a slow model),
    and delay_per_item_s more for each row of a batch after the first (a synthetic cost that
    grows with the batch, as a GPU's does).
    """
    import onnxruntime
    session = onnxruntime.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    folder = os.path.join(repository, name)
    os.makedirs(os.path.join(folder, '1'), exist_ok=True)
    shutil.copy(onnx_path, os.path.join(folder, '1', 'model.onnx'))
    with open(os.path.join(folder, '1', 'model.py'), 'w', encoding='utf-8') as stream:
        stream.write(PYTHON_MODEL)

    def tensors(metas) -> str:
        blocks = []
        for meta in metas:
            dims = [d if isinstance(d, int) and d > 0 else -1 for d in meta.shape]
            if max_batch_size:
                dims = dims[1:]
            blocks.append(f'{{ name: "{meta.name}" data_type: {TRITON_TYPES[meta.type]} '
                          f'dims: [{", ".join(map(str, dims))}] }}')
        return ',\n  '.join(blocks)
    config = ['backend: "python"', f'max_batch_size: {max_batch_size}',
              f'input [\n  {tensors(session.get_inputs())}\n]',
              f'output [\n  {tensors(session.get_outputs())}\n]',
              f'instance_group [ {{ kind: KIND_CPU count: {instances} }} ]',
              'parameters [ '
              f'{{ key: "delay_s" value {{ string_value: "{delay_s:g}" }} }}, '
              f'{{ key: "delay_per_item_s" value {{ string_value: "{delay_per_item_s:g}" }} }}, '
              f'{{ key: "intra_op_threads" value {{ string_value: "{intra_op_threads}" }} }} ]']
    if dynamic_batching:
        config.append(f'dynamic_batching {{\n  {dynamic_batching}\n}}')
    with open(os.path.join(folder, 'config.pbtxt'), 'w', encoding='utf-8') as stream:
        stream.write('\n'.join(config) + '\n')
    return folder
