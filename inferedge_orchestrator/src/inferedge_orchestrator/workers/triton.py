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
The triton worker: a task whose model runs on a Triton Inference Server (KServe v2 protocol).

Its pool is a server pool (engine/backends.py, ServerBackend): each slot is a request in
flight. The frame is preprocessed here (the shared preprocessing) and sent over gRPC or HTTP
with the frame's remaining budget as the request's timeout and the task's priority rank mapped
onto the model's priority levels, so that Triton's own queue drops what the engine would drop.
The tensors' names, shapes and datatypes come from the server's model metadata and config. Each
slot thread has a channel of its own: a client (an HTTP client must stay on its thread) and,
with shared_memory, system shared-memory regions for the input and outputs, registered with the
server. What a request's failure means to the engine (workers/base.py):

- ServerUnavailable: the server cannot be reached (reason server_unavailable; the pool's
  breaker opens);
- RequestDropped: the server's queue expired the request (expired) or was full
  (queue_overflow);
- RequestTimedOut: no answer within client_timeout_ms (TIMED_OUT);
- anything else the server answered (model not loaded, a shape mismatch): worker_error, with
  its message.

tritonclient is imported in load() only (extra [triton]). See docs/workers.md.
"""

import http.client
import itertools
import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from inferedge_orchestrator.config import checkers as opt
from inferedge_orchestrator.config.schema import REQUIRED, setting, table
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import (ConfigError, RequestDropped, RequestTimedOut,
                                                     ServerUnavailable, WorkerRuntimeMissing)
from inferedge_orchestrator.contracts.inference import InferenceOutput, ModelInfo
from inferedge_orchestrator.workers.base import Worker
from inferedge_orchestrator.workers.binding import (BatchWarmUps, bind_model, split_batch,
                                                    TensorSpec, WarmUpTimes)
from inferedge_orchestrator.workers.preprocess import int_list, PREPROCESS_OPTIONS, static_dims
import numpy as np

LOGGER = logging.getLogger('inferedge_orchestrator')

PROTOCOLS = ('grpc', 'http')
TLS_FILES = ('root_certificates', 'private_key', 'certificate_chain')
PROBE_TIMEOUT_S = 2.0  # a health probe that takes longer counts as failed
READY_BACKOFF_S = (0.1, 2.0)  # wait_ready_s: the first wait between checks, and the longest
NO_TIMEOUT_S = 365 * 24 * 3600.0  # client_timeout_ms 0 (HTTP needs a number)
# What Triton's queue answers when its policy drops a request (any protocol).
SERVER_DROPS = (('Request timeout expired', reasons.EXPIRED),
                ('Exceeds maximum queue size', reasons.QUEUE_OVERFLOW))
# Answers of a server that is up although gRPC calls them UNAVAILABLE: not an outage.
SERVER_REFUSALS = ('is restricted, expecting header',)
_REGION_SERIAL = itertools.count()


def headers(where: str, value: Any) -> Dict[str, str]:
    """Check a mapping of header names to strings (or its JSON text); names are lowercased."""
    value = opt.mapping(where, value, 'a mapping of header names to strings')
    if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a mapping of header '
                          'names to strings')
    return {key.lower(): text for key, text in value.items()}  # gRPC metadata is lowercase


def import_tritonclient(protocol: str):
    """Return (tritonclient.grpc or .http, InferenceServerException) or raise with the hint."""
    try:
        if protocol == 'grpc':
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
        from tritonclient.utils import InferenceServerException
    except ImportError:
        raise WorkerRuntimeMissing(
            "the triton worker needs tritonclient: pip install 'tritonclient[grpc,http]' (the "
            "core's extra: pip install 'inferedge_orchestrator[triton]')") from None
    return client, InferenceServerException


def queue_policy(config: Dict[str, Any]) -> Tuple[int, bool, List[str]]:
    """
    Return a model config's priority levels, whether it takes a request timeout, what it lacks.

    Triton applies request timeouts and priorities in its dynamic batcher only.
    """
    batching = config.get('dynamic_batching')
    priority_levels = int((batching or {}).get('priority_levels', 0) or 0)
    policy = (batching or {}).get('default_queue_policy') or {}
    # Triton only ever lowers the default timeout: 0 (no timeout) cannot be lowered.
    sends_timeout = bool(policy.get('allow_timeout_override')) and \
        int(policy.get('default_timeout_microseconds', 0) or 0) > 0
    missing = []
    if batching is None:
        missing.append('dynamic_batching (Triton applies request timeouts and priorities '
                       'in its dynamic batcher only)')
    else:
        if not priority_levels:
            missing.append('dynamic_batching.priority_levels')
        if not sends_timeout:
            missing.append('dynamic_batching.default_queue_policy with '
                           'allow_timeout_override: true and a '
                           'default_timeout_microseconds > 0')
    return priority_levels, sends_timeout, missing


class TritonWorker(Worker):
    """Run a task's model on a Triton Inference Server (see the module's text)."""

    kind = 'triton'
    remote = True
    OPTIONS = dict(table(
        opt.custom('url', REQUIRED, 'the server, host:port (Triton listens on 8001 for gRPC, '
                   '8000 for HTTP)', opt.text, 'host:port'),
        setting('protocol', 'grpc', 'the KServe v2 binding', choices=PROTOCOLS),
        opt.custom('model_name', REQUIRED, 'the model on the server', opt.text, 'a model name'),
        opt.custom('model_version', '', "the model's version (empty: the server's policy)",
                   opt.optional_text, 'a version number, or empty'),
        opt.custom('input_shape', (), "the image input's shape instead of the server's "
                   '(-1: dynamic; empty: from the model metadata)', int_list(low=-1),
                   '[] or a list of integers >= -1'),
        setting('client_timeout_ms', 10000.0, 'the transport timeout of a request: no answer '
                'by then is TIMED_OUT (0: none)', low=0.0, high=1e9),
        setting('wait_ready_s', 0.0, 'load: wait up to this long for the server and the model '
                'to be ready, checking with a backoff (0: check once)', low=0.0, high=3600.0),
        setting('shared_memory', False, 'inputs and outputs in system shared memory (the '
                'server on the same host)'),
        setting('shm_output_bytes', 0, 'shared memory: the size of each output region (0: '
                "from the model's output shape, or the first answer's when it is dynamic)",
                low=0, high=2 ** 40),
        setting('ssl', False, 'gRPC over TLS'),
        opt.custom('root_certificates', '', 'TLS: the PEM file of the root certificates that '
                   "sign the server's (empty: the system's)", opt.optional_text,
                   'a file path, or empty'),
        opt.custom('private_key', '', "mutual TLS: the PEM file of the client's private key",
                   opt.optional_text, 'a file path, or empty'),
        opt.custom('certificate_chain', '', "mutual TLS: the PEM file of the client's "
                   'certificate chain', opt.optional_text, 'a file path, or empty'),
        # None: none (a ROS parameter cannot default to {})
        opt.custom('headers', None, 'extra request headers, e.g. an access token', headers,
                   'a mapping of header names to strings, or its JSON text'),
        setting('warmup', 3, 'requests on a synthetic image at load', low=0, high=10000),
    ), **PREPROCESS_OPTIONS)

    @classmethod
    def validate_options(cls, options: Dict[str, Any], where: str) -> Dict[str, Any]:
        checked = super().validate_options(options, where)
        tls = [name for name in TLS_FILES if checked[name]]
        if checked['protocol'] == 'http' and (checked['ssl'] or tls):
            raise ConfigError(f'{where}.ssl: TLS is supported with protocol grpc only; '
                              'allowed: protocol grpc, or no TLS options')
        if tls and not checked['ssl']:
            raise ConfigError(f'{where}.{tls[0]}: is set but ssl is false; allowed: ssl: '
                              'true, or no TLS files')
        if bool(checked['private_key']) != bool(checked['certificate_chain']):
            raise ConfigError(f'{where}.private_key: mutual TLS needs both private_key and '
                              'certificate_chain; allowed: both or neither')
        return checked

    @classmethod
    def server(cls, options: Dict[str, Any]) -> str:
        """Return the server that options name: the tasks of one server pool share it."""
        return f'{options["protocol"]}://{options["url"]}'

    def __init__(self, task_name: str, options: Dict[str, Any], slots: int = 1):
        super().__init__(task_name, options, slots)
        self.url = options['url']
        self.model = options['model_name']
        self._client = None  # tritonclient.grpc or .http, after load()
        self._server_error = Exception
        self._lock = threading.Lock()
        self._channels: Dict[int, _Channel] = {}  # thread id -> its channel
        self._epoch = 0  # grows when the server was lost: channels register their regions anew
        self.input_name = ''
        self.datatype = ''
        self.preprocess = None
        self._extra: Dict[str, Tuple[str, np.ndarray]] = {}  # name -> (datatype, constant)
        self.output_names: List[str] = []
        self._output_shapes: Dict[str, List[Optional[int]]] = {}
        self._output_bytes: Dict[str, int] = {}  # shared memory: each output region's size
        self.priority_levels = 0  # the model's; 0: priorities are not sent
        self.sends_timeout = False  # the model's queue takes the request's timeout
        self._warmup = WarmUpTimes()
        self._batch_warmup = BatchWarmUps()
        self.max_batch_size = 0  # the model config's (0: no batch dimension)

    # -- lifecycle --------------------------------------------------------------------------

    def load(self) -> None:
        """Check the server and the model, read their metadata and config, bind the tensors."""
        options = self.options
        self._client, self._server_error = import_tritonclient(options['protocol'])
        for name in TLS_FILES:
            if options[name] and not os.path.isfile(options[name]):
                raise FileNotFoundError(f'{name} {options[name]!r}: no such file')
        client = self._new_client(PROBE_TIMEOUT_S)
        try:
            self._wait_ready(client)
            version = options['model_version']
            metadata = client.get_model_metadata(self.model, version,
                                                 **self._call_options(as_json=True))
            config = client.get_model_config(self.model, version,
                                             **self._call_options(as_json=True))
        except self._server_error as error:
            raise RuntimeError(f'triton server {self.url}: model {self.model!r}: '
                               f'{error.message()}') from None
        finally:
            client.close()
        self._bind(metadata, config.get('config', config))

    def _bind(self, metadata: Dict[str, Any], config: Dict[str, Any]) -> None:
        """Bind the task's options to the model's tensors; read its queue settings."""
        from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype
        inputs = {t['name']: t for t in metadata['inputs']}
        specs = [TensorSpec(name, [int(d) for d in t['shape']],
                            triton_to_np_dtype(t['datatype'])) for name, t in inputs.items()]
        outputs = {t['name']: t for t in metadata['outputs']}
        binding = bind_model(specs, list(outputs), self.options,
                             f'model {self.model!r} on {self.url}',
                             list(self.options['input_shape']) or None)
        self.input_name, self.preprocess = binding.input_name, binding.preprocess
        self.datatype = np_to_triton_dtype(self.preprocess.dtype)
        self._extra = {name: (inputs[name]['datatype'], value)
                       for name, value in binding.extra.items()}
        self.output_names = binding.output_names
        # The JSON of gRPC metadata gives the dimensions as strings.
        self._output_shapes = {name: static_dims(int(v) for v in outputs[name]['shape'])
                               for name in self.output_names}
        if self.options['shared_memory']:
            bytes_ = [t for t in self.output_names if outputs[t]['datatype'] == 'BYTES']
            if bytes_:
                raise ValueError(f'shared_memory: output {bytes_[0]!r} is BYTES, which '
                                 'system shared memory cannot hold; allowed: shared_memory '
                                 'false')
            for name in self.output_names:
                shape = self._output_shapes[name]
                fixed = self.options['shm_output_bytes'] or (
                    int(np.prod(shape)) * np.dtype(triton_to_np_dtype(
                        outputs[name]['datatype'])).itemsize if None not in shape else 0)
                if fixed:
                    self._output_bytes[name] = fixed
        self._read_queue_policy(config)
        self.max_batch_size = int(config.get('max_batch_size', 0) or 0)

    def _read_queue_policy(self, config: Dict[str, Any]) -> None:
        """Read what of the budget and the priority the model's queue takes; warn of the rest."""
        self.priority_levels, self.sends_timeout, missing = queue_policy(config)
        if missing:
            LOGGER.warning('task %s: model %r on %s lacks %s: %s', self.task_name, self.model,
                           self.url, ', '.join(missing),
                           'the frame budgets and priorities do not reach its queue, so the '
                           'server runs what the orchestrator would drop')

    def _wait_ready(self, client) -> None:
        """Raise, naming the url and what the server answered, unless it and the model are up."""
        wait_s = self.options['wait_ready_s']
        end = time.monotonic() + wait_s
        backoff = READY_BACKOFF_S[0]
        while True:
            answer = self._readiness(client)
            if not answer:
                return
            left = end - time.monotonic()
            if left <= 0:
                waited = f' after waiting {wait_s:g} s' if wait_s else ''
                raise RuntimeError(f'triton server {self.url} ({self.options["protocol"]}) is '
                                   f'not ready for model {self.model!r}{waited}: {answer}')
            time.sleep(min(backoff, left))
            backoff = min(2.0 * backoff, READY_BACKOFF_S[1])

    def _readiness(self, client) -> str:
        """Return '' when the server is live and the model ready, else what the server said."""
        version = self.options['model_version']
        call = self._call_options()
        try:
            if not client.is_server_live(**call):
                return 'the server is not live'
            if client.is_model_ready(self.model, version, **call):
                return ''
            index = client.get_model_repository_index(**self._call_options(as_json=True))
            models = index.get('models', []) if isinstance(index, dict) else index
            states = [m.get('state', 'not loaded') + (f': {m["reason"]}' if m.get('reason')
                                                      else '')
                      for m in models if m.get('name') == self.model]
            return f'model {self.model!r} is not ready (' + (
                states[0] if states else "not in the server's model repository") + ')'
        except self._server_error as error:
            return f'{error.status() or "error"}: {error.message()}'
        except Exception as error:  # noqa: B902 - a socket error: what the client saw
            return f'{type(error).__name__}: {error}'

    def warmup(self, runs: int) -> None:
        """Send runs requests of a synthetic image on this thread (then close its channel)."""
        if self.preprocess is None or runs <= 0:
            return
        image, encoding = self.preprocess.warmup_image()
        self._warmup = WarmUpTimes()
        try:
            for _ in range(runs):
                self._warmup.add(self._run(image, encoding, None, None))
        finally:
            self._close_channel(threading.get_ident())

    def expected_latency_s(self) -> float:
        return self._warmup.expected_s()

    def fast_latency_s(self) -> float:
        return self._warmup.fast_s()

    def model_info(self) -> ModelInfo:
        return ModelInfo(dict(self._output_shapes), {})

    def probe(self) -> str:
        """Check the server and the model with a fresh client; raise unless both answer."""
        client = self._new_client(PROBE_TIMEOUT_S)
        try:
            answer = self._readiness(client)
        finally:
            client.close()
        if answer:
            raise ServerUnavailable(f'{self.url}: {answer}')
        return f'{self.url}: model {self.model!r} ready'

    def close(self) -> None:
        """Unregister and remove every shared-memory region; close the clients."""
        with self._lock:
            idents = list(self._channels)
        for ident in idents:
            self._close_channel(ident)

    # -- requests ---------------------------------------------------------------------------

    def infer(self, frame, budget_s: Optional[float] = None,
              priority_rank: Optional[int] = None) -> InferenceOutput:
        """
        Send frame; budget_s: the time left to its deadline; priority_rank: 0 = the pool's top.

        The budget goes as the request's timeout (microseconds) and the rank as the priority
        level min(rank + 1, priority_levels), where the model's queue takes them.
        """
        if self.preprocess is None:
            raise RuntimeError(f'task {self.task_name}: infer() before load()')
        return self._run(frame.image, frame.encoding, budget_s, priority_rank)

    def abort(self, thread_id: int) -> bool:
        """
        Stop the job of slot thread thread_id (it timed out); True if a request was cancelled.

        A gRPC request in flight is cancelled (HTTP cannot cancel); one still being prepared
        is not sent.
        """
        with self._lock:
            channel = self._channels.get(thread_id)
            call = None
            if channel is not None:
                channel.aborted = True
                call = channel.call
            if call is not None:
                call.cancel()  # its callback runs here: it only wakes the slot thread
        return call is not None

    def _run(self, image: np.ndarray, encoding: str, budget_s: Optional[float],
             priority_rank: Optional[int]) -> InferenceOutput:
        channel = self._job_channel()
        start = time.perf_counter()
        tensor = self.preprocess(image, encoding, channel.input_buffer(image))
        begin = time.perf_counter()
        outputs = self._send(channel, tensor, budget_s, priority_rank)
        end = time.perf_counter()
        return InferenceOutput(outputs, begin - start, end - begin,
                               self.preprocess.geometry(image.shape[0], image.shape[1]))

    def _job_channel(self) -> '_Channel':
        """Return this thread's channel for a new job: an abort of its previous one is spent."""
        channel = self._channel()
        with self._lock:
            channel.aborted = False
        return channel

    def _send(self, channel: '_Channel', tensor: np.ndarray, budget_s: Optional[float],
              priority_rank: Optional[int]) -> Dict[str, np.ndarray]:
        """Send one request on channel; raise what a failure means to the engine."""
        settings = {}
        if priority_rank is not None and self.priority_levels:
            settings['priority'] = min(priority_rank + 1, self.priority_levels)
        if budget_s is not None and self.sends_timeout:
            settings['timeout'] = max(1, int(budget_s * 1e6))
        try:
            return channel.request(tensor, settings)
        except self._server_error as error:
            raise self._failure(error.message(), error.status(), channel) from None
        except (OSError, http.client.HTTPException) as error:  # HTTP: the connection's own
            kind = 'timeout' if isinstance(error, TimeoutError) else 'connection'
            raise self._failure(f'{type(error).__name__}: {error}', kind, channel) from None

    # -- batches ----------------------------------------------------------------------------

    def batch_limit(self) -> int:
        """Return the model config's max_batch_size; ValueError where batches cannot go."""
        if self.max_batch_size <= 1:
            return 1
        if self.options['shared_memory']:
            raise ValueError('batches are sent without shared memory: set shared_memory false')
        if self._extra:
            raise ValueError('batches cannot send extra_inputs (constants of one frame)')
        return self.max_batch_size

    def warmup_batches(self, sizes, runs: int) -> None:
        """Send runs batches of each size of a synthetic image (then close its channel)."""
        image, encoding = self.preprocess.warmup_image()
        try:
            for size in sizes:
                for _ in range(runs):
                    self._batch_warmup.add(self._run_batch([(image, encoding)] * size, None, None))
        finally:
            self._close_channel(threading.get_ident())

    def expected_batch_latency_s(self, size: int) -> float:
        return self._batch_warmup.expected_s(size)

    def fast_batch_latency_s(self, size: int) -> float:
        return self._batch_warmup.fast_s(size)

    def infer_batch(self, frames, budget_s: Optional[float] = None,
                    priority_rank: Optional[int] = None) -> List[InferenceOutput]:
        """Send frames as one request of a batch; budget_s: the time left to the earliest."""
        if self.preprocess is None:
            raise RuntimeError(f'task {self.task_name}: infer_batch() before load()')
        return self._run_batch([(frame.image, frame.encoding) for frame in frames], budget_s,
                               priority_rank)

    def _run_batch(self, images, budget_s: Optional[float],
                   priority_rank: Optional[int]) -> List[InferenceOutput]:
        channel = self._job_channel()
        preprocess = self.preprocess
        start = time.perf_counter()
        tensor = preprocess.batch(images, len(images))
        begin = time.perf_counter()
        outputs = self._send(channel, tensor, budget_s, priority_rank)
        end = time.perf_counter()
        return split_batch(outputs, len(images), begin - start, end - begin,
                           [preprocess.geometry(image.shape[0], image.shape[1])
                            for image, _ in images])

    def _failure(self, message: str, status: Optional[str], channel: '_Channel'
                 ) -> BaseException:
        """Say what a failed request means to the engine (the module's text)."""
        where = f'{self.url}: model {self.model!r}'
        for text, reason in SERVER_DROPS:
            if text in message:
                return RequestDropped(reason, f'{where}: {message}')
        timeout_ms = self.options['client_timeout_ms']
        if status in ('StatusCode.DEADLINE_EXCEEDED', 'timeout'):
            return RequestTimedOut(f'{where}: no answer within client_timeout_ms '
                                   f'{timeout_ms:g} ({message})')
        refused = any(text in message for text in SERVER_REFUSALS)
        if not refused and status in ('StatusCode.UNAVAILABLE', 'connection'):
            with self._lock:
                self._epoch += 1  # a restarted server has lost the regions
            channel.reconnect()  # a gRPC channel's reconnect backoff would outlast the server's
            return ServerUnavailable(f'{where}: {message}')
        return RuntimeError(f'{where}: {message}')

    # -- channels ---------------------------------------------------------------------------

    def _call_options(self, as_json: bool = False) -> Dict[str, Any]:
        """
        Keyword arguments of a client's health, metadata and shared-memory calls.

        as_json: a gRPC client then answers JSON (an HTTP client always does).
        """
        options = {'headers': self.options['headers'] or None}
        if self.options['protocol'] == 'grpc':  # an HTTP client has its timeouts built in
            options['client_timeout'] = PROBE_TIMEOUT_S
            if as_json:
                options['as_json'] = True
        return options

    def _new_client(self, timeout_s: Optional[float] = None):
        options = self.options
        if options['protocol'] == 'grpc':
            return self._client.InferenceServerClient(
                self.url, ssl=options['ssl'],
                root_certificates=options['root_certificates'] or None,
                private_key=options['private_key'] or None,
                certificate_chain=options['certificate_chain'] or None)
        timeout = timeout_s or options['client_timeout_ms'] / 1000.0 or NO_TIMEOUT_S
        return self._client.InferenceServerClient(self.url, connection_timeout=timeout,
                                                  network_timeout=timeout)

    def _channel(self) -> '_Channel':
        ident = threading.get_ident()
        with self._lock:
            channel = self._channels.get(ident)
            if channel is None:
                channel = self._channels[ident] = _Channel(self)
        return channel

    def _close_channel(self, ident: int) -> None:
        with self._lock:
            channel = self._channels.pop(ident, None)
        if channel is not None:
            channel.close()


class _Channel:
    """One slot thread's client and, with shared memory, its registered regions."""

    def __init__(self, worker: TritonWorker):
        self.worker = worker
        self.client = worker._new_client()
        module = worker._client
        self.constants = []  # the extra inputs: the same each frame, serialised once
        for name, (datatype, value) in worker._extra.items():
            constant = module.InferInput(name, list(value.shape), datatype)
            constant.set_data_from_numpy(value)
            self.constants.append(constant)
        self.call = None  # the gRPC request in flight (abort cancels it)
        self.aborted = False  # its job timed out: send nothing more
        self.regions: Dict[str, Any] = {}  # 'input' or an output name -> SharedMemory
        self.registered = -1  # the worker's epoch when the regions were registered

    def input_buffer(self, image: np.ndarray) -> Optional[np.ndarray]:
        """Return where image's preprocessing writes: the input region (shared memory) or None."""
        if not self.worker.options['shared_memory']:
            return None
        preprocess = self.worker.preprocess
        shape = preprocess.input_shape(image.shape[0], image.shape[1])
        dtype = preprocess.dtype
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        region = self._region('input', size)
        return np.ndarray(shape, dtype=dtype, buffer=region.buf)

    def request(self, tensor: np.ndarray, settings: Dict[str, Any]) -> Dict[str, np.ndarray]:
        worker = self.worker
        module = worker._client
        options = worker.options
        shared = options['shared_memory']
        image = module.InferInput(worker.input_name, list(tensor.shape), worker.datatype)
        if shared:
            image.set_shared_memory(self._name('input'), tensor.nbytes)
        else:
            image.set_data_from_numpy(tensor)
        inputs = [image] + self.constants
        outputs = []
        for name in worker.output_names:
            output = module.InferRequestedOutput(name)
            size = worker._output_bytes.get(name)
            if shared and size:
                self._region(name, size)
                output.set_shared_memory(self._name(name), size)
            outputs.append(output)
        if shared and self.registered != worker._epoch:
            self._register()  # made or grown above, or the server was lost
        kwargs = dict(model_version=options['model_version'], outputs=outputs,
                      headers=options['headers'] or None, **settings)
        if options['protocol'] == 'grpc':
            result = self._grpc(inputs, kwargs)
        else:
            self._check_aborted()
            result = self.client.infer(worker.model, inputs, **kwargs)
        return {name: self._output(result, name) for name in worker.output_names}

    def _grpc(self, inputs: list, kwargs: Dict[str, Any]):
        """Send on the gRPC client and wait for the answer (abort() may cancel it)."""
        done = threading.Event()
        answer: List[Any] = []

        def callback(result, error):
            answer.append((result, error))
            done.set()
        timeout_ms = self.worker.options['client_timeout_ms']
        with self.worker._lock:  # abort() either finds the call or keeps it from being sent
            self._check_aborted()
            self.call = self.client.async_infer(self.worker.model, inputs, callback,
                                                client_timeout=timeout_ms / 1000.0 or None,
                                                **kwargs)
        try:
            done.wait()
        finally:
            self.call = None
        result, error = answer[0]
        if error is not None:
            raise error
        return result

    def _check_aborted(self) -> None:
        if self.aborted:
            raise RuntimeError('the job timed out before its request was sent: not sent')

    def _output(self, result, name: str) -> np.ndarray:
        worker = self.worker
        region = self.regions.get(name) if worker.options['shared_memory'] else None
        if region is None or name not in worker._output_bytes:
            array = result.as_numpy(name)
            if worker.options['shared_memory']:  # its size is known now: shared memory next
                worker._output_bytes.setdefault(name, array.nbytes)
            return array
        from tritonclient.utils import triton_to_np_dtype
        tensor = result.get_output(name)
        shape, datatype = (tensor['shape'], tensor['datatype']) if isinstance(tensor, dict) \
            else (list(tensor.shape), tensor.datatype)
        # A copy: the region takes the next request's output.
        return np.ndarray(shape, dtype=triton_to_np_dtype(datatype), buffer=region.buf).copy()

    def _name(self, key: str) -> str:
        return self.regions[key].name.lstrip('/')

    def _region(self, key: str, size: int):
        """Return the region of key, of at least size bytes (made or grown: register again)."""
        from multiprocessing import shared_memory
        region = self.regions.get(key)
        if region is not None and region.size >= size:
            return region
        if region is not None:
            self._unregister(region)
            region.close()
            region.unlink()
        name = f'inferedge_{os.getpid()}_{next(_REGION_SERIAL)}'
        self.regions[key] = shared_memory.SharedMemory(name=name, create=True, size=size)
        self.registered = -1
        return self.regions[key]

    def _register(self) -> None:
        """Register every region with the server (again, after the server was lost)."""
        for region in self.regions.values():
            self._unregister(region)
            name = region.name.lstrip('/')
            self.client.register_system_shared_memory(name, '/' + name, region.size,
                                                      **self.worker._call_options())
        self.registered = self.worker._epoch

    def _unregister(self, region) -> None:
        try:
            self.client.unregister_system_shared_memory(region.name.lstrip('/'),
                                                        **self.worker._call_options())
        except Exception:  # noqa: B902 - not registered, or the server is gone: nothing held
            pass

    def reconnect(self) -> None:
        """Replace the client: its connection to a lost server is not reused."""
        try:
            self.client.close()
        except Exception:  # noqa: B902 - the old connection is broken anyway
            pass
        self.client = self.worker._new_client()

    def close(self) -> None:
        for region in self.regions.values():
            self._unregister(region)
            region.close()
            region.unlink()
        self.regions.clear()
        try:
            self.client.close()
        except Exception:  # noqa: B902 - closing must go on for the other channels
            LOGGER.debug('closing a triton client failed', exc_info=True)
