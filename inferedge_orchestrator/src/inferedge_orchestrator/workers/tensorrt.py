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
The tensorrt worker: a serialized engine run with TensorRT's name-based tensor API + pycuda.

- The engine is deserialized once per task, in load().
- One IExecutionContext per slot (contexts are not thread-safe), each with its own CUDA stream,
  pinned (page-locked) host buffers and device buffers, all created in load() and reused.
- No pycuda.autoinit: the device's primary CUDA context is retained in load() and pushed and
  popped around every call, on whichever thread makes it.
- set_tensor_address once per slot; set_input_shape for dynamic shapes; execute_async_v3. This
  is the API of TensorRT 8.5+, 8.6 and 10.x (JetPack 6); TensorRT 11 as far as it keeps it.
- A dynamic-shape engine needs one optimization profile per slot (TensorRT lets a profile
  serve one context at a time); buffers are sized for the profile's maximum shapes.

- A stream priority other than 0 (stream_priority, from the pool) makes each slot's stream
  with cuStreamCreateWithPriority through the driver library (pycuda's Stream takes none),
  clamped to the device's range; its copies go through the driver too. The GPU honours it
  when it dispatches thread blocks: a kernel already running is not preempted.

Building engines is out of scope: use trtexec (docs/workers.md). tensorrt and pycuda are
imported in load() only. Unverified on hardware: the tests run this control flow with fakes.
"""

import ctypes
import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from inferedge_orchestrator.config import checkers as opt
from inferedge_orchestrator.config.schema import CUSTOM, REQUIRED, setting, table
from inferedge_orchestrator.contracts.errors import ConfigError, WorkerRuntimeMissing
from inferedge_orchestrator.contracts.inference import InferenceOutput, ModelInfo
from inferedge_orchestrator.workers.base import Worker
from inferedge_orchestrator.workers.binding import (BatchWarmUps, bind_model, split_batch,
                                                    TensorSpec, WarmUpTimes)
from inferedge_orchestrator.workers.preprocess import (PREPROCESS_OPTIONS, Preprocessor,
                                                       static_dims, string_list)
import numpy as np


def import_runtime():
    """Import (tensorrt, pycuda.driver) or raise WorkerRuntimeMissing with the install hint."""
    try:
        import tensorrt
    except ImportError:
        raise WorkerRuntimeMissing(
            "the tensorrt worker needs TensorRT's Python bindings (JetPack ships them as "
            'python3-libnvinfer; on x86: pip install tensorrt)') from None
    try:
        import pycuda.driver as driver
    except ImportError:
        raise WorkerRuntimeMissing('the tensorrt worker needs pycuda: pip install pycuda') \
            from None
    return tensorrt, driver


def _stream_priority(where: str, value: Any) -> Optional[int]:
    """Check a stream priority: an integer -1000..1000, or None (the pool's)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -1000 <= value <= 1000:
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: an integer '
                          '-1000..1000, or unset')
    return value


def load_driver():
    """Return the CUDA driver library (ctypes): the stream priorities' API."""
    return ctypes.CDLL('libcuda.so.1')


class _PycudaStream:
    """A slot's stream of default priority: pycuda's."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.stream = cuda.Stream()
        self.handle = self.stream.handle
        self.priority = 0

    def copy_in(self, device, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(device, host, self.stream)

    def copy_out(self, host: np.ndarray, device) -> None:
        self.cuda.memcpy_dtoh_async(host, device, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.stream = None


class _PriorityStream:
    """A slot's stream made with a priority through the driver API (the context current)."""

    def __init__(self, driver, priority: int):
        self.driver = driver
        least, greatest = ctypes.c_int(0), ctypes.c_int(0)
        self._check('cuCtxGetStreamPriorityRange',
                    driver.cuCtxGetStreamPriorityRange(ctypes.byref(least),
                                                       ctypes.byref(greatest)))
        # Lower numbers run first: greatest <= priority <= least (0, 0: no priorities).
        self.priority = min(max(priority, greatest.value), least.value)
        handle = ctypes.c_void_p()
        self._check('cuStreamCreateWithPriority',
                    driver.cuStreamCreateWithPriority(ctypes.byref(handle), 0, self.priority))
        self.handle = handle.value or 0

    def _check(self, call: str, code: int) -> None:
        if code:
            raise RuntimeError(f'{call} failed: CUDA driver error {code}')

    def copy_in(self, device, host: np.ndarray) -> None:
        self._check('cuMemcpyHtoDAsync', self.driver.cuMemcpyHtoDAsync_v2(
            ctypes.c_uint64(int(device)), ctypes.c_void_p(host.ctypes.data),
            ctypes.c_size_t(host.nbytes), ctypes.c_void_p(self.handle)))

    def copy_out(self, host: np.ndarray, device) -> None:
        self._check('cuMemcpyDtoHAsync', self.driver.cuMemcpyDtoHAsync_v2(
            ctypes.c_void_p(host.ctypes.data), ctypes.c_uint64(int(device)),
            ctypes.c_size_t(host.nbytes), ctypes.c_void_p(self.handle)))

    def synchronize(self) -> None:
        self._check('cuStreamSynchronize',
                    self.driver.cuStreamSynchronize(ctypes.c_void_p(self.handle)))

    def close(self) -> None:
        if self.handle:
            self.driver.cuStreamDestroy_v2(ctypes.c_void_p(self.handle))
            self.handle = 0


class _Tensor:
    __slots__ = ('name', 'is_input', 'dtype', 'shape', 'dynamic')

    def __init__(self, name: str, is_input: bool, dtype, shape: Tuple[int, ...]):
        self.name = name
        self.is_input = is_input
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.dynamic = any(d < 0 for d in shape)


class _SlotState:
    """What one slot owns: an execution context, a stream, pinned host and device buffers."""

    def __init__(self, index: int):
        self.index = index
        self.context = None
        self.stream = None
        self.host: Dict[str, np.ndarray] = {}  # flat pinned buffers of the maximum size
        self.device: Dict[str, Any] = {}
        self.shapes: Dict[str, Tuple[int, ...]] = {}  # input shapes last set on the context


class TensorRTWorker(Worker):
    """
    Run a serialized TensorRT engine (.plan / .engine) on the frame's image.

    Unverified on hardware: see docs/workers.md.
    """

    kind = 'tensorrt'
    OPTIONS = dict(table(
        setting('engine_path', REQUIRED, 'the serialized TensorRT engine (.plan)', kind=CUSTOM,
                checker=opt.text, allowed_text='a file path'),
        setting('device_id', 0, 'the GPU', low=0, high=64),
        opt.custom('plugins', (), 'plugin libraries to load first', string_list,
                   'a list of library paths'),
        setting('warmup', 3, 'runs on a synthetic image per slot at load', low=0, high=10000),
        opt.custom('stream_priority', None, "the CUDA streams' priority, CUDA's convention "
                   "(lower runs first), clamped to the device's range; unset: its pool's "
                   'stream_priority', _stream_priority, 'an integer -1000..1000, or unset'),
    ), **PREPROCESS_OPTIONS)

    def __init__(self, task_name, options, slots=1):
        super().__init__(task_name, options, slots)
        self.trt = None
        self.cuda = None
        self.cuda_context = None
        self.engine = None
        self.tensors: Dict[str, _Tensor] = {}
        self.input_name = ''
        self.output_names: List[str] = []
        self.preprocess: Optional[Preprocessor] = None
        self._extra: Dict[str, np.ndarray] = {}
        self._states: List[_SlotState] = []
        self._free: List[_SlotState] = []
        self._free_lock = threading.Lock()
        self._runtime = None
        self._warmup = WarmUpTimes()
        self._batch_warmup = BatchWarmUps()

    # -- lifecycle --------------------------------------------------------------------------

    def load(self) -> None:
        """Deserialize the engine and create one context, stream and buffer set per slot."""
        trt, cuda = import_runtime()
        path = self.options['engine_path']
        if not os.path.isfile(path):
            raise FileNotFoundError(f'engine_path {path!r}: no such file (build it with '
                                    'trtexec, see docs/workers.md)')
        for plugin in self.options['plugins']:
            ctypes.CDLL(plugin, mode=ctypes.RTLD_GLOBAL)
        self.trt, self.cuda = trt, cuda
        cuda.init()
        self.cuda_context = cuda.Device(self.options['device_id']).retain_primary_context()
        self.cuda_context.push()
        try:
            logger = trt.Logger(trt.Logger.WARNING)
            if hasattr(trt, 'init_libnvinfer_plugins'):
                trt.init_libnvinfer_plugins(logger, '')
            with open(path, 'rb') as stream:
                data = stream.read()
            self._runtime = trt.Runtime(logger)
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise RuntimeError(f'engine_path {path!r}: TensorRT {trt.__version__} could not '
                                   'deserialize it (built by another TensorRT version or for '
                                   'another GPU? rebuild it with trtexec on this device)')
            self._read_tensors()
            self._states = []
            for index in range(self.slots):
                self._states.append(_SlotState(index))  # released on failure, even half-made
                self._create_state(self._states[-1])
            self._free = list(reversed(self._states))
        except BaseException:  # noqa: B902 - release whatever failed, then re-raise it
            self._release()
            self.cuda_context.pop()
            self.cuda_context.detach()
            self.cuda_context = None
            raise
        self.cuda_context.pop()

    def _read_tensors(self) -> None:
        trt, engine = self.trt, self.engine
        if not hasattr(engine, 'num_io_tensors'):
            raise RuntimeError(f'TensorRT {trt.__version__} lacks the name-based tensor API; '
                               'allowed: TensorRT 8.5 or later')
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            try:
                dtype = trt.nptype(engine.get_tensor_dtype(name))
            except TypeError:
                raise ValueError(f'tensor {name!r}: type {engine.get_tensor_dtype(name)} has no '
                                 'numpy equivalent') from None
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            self.tensors[name] = _Tensor(name, is_input, dtype, shape)
        inputs = [t for t in self.tensors.values() if t.is_input]
        binding = bind_model([TensorSpec(t.name, t.shape, t.dtype) for t in inputs],
                             [t.name for t in self.tensors.values() if not t.is_input],
                             self.options, 'engine')
        self.input_name, self.preprocess = binding.input_name, binding.preprocess
        self._extra, self.output_names = binding.extra, binding.output_names
        dynamic = any(t.dynamic for t in inputs)
        profiles = getattr(self.engine, 'num_optimization_profiles', 1)
        if dynamic and profiles < self.slots:
            raise ValueError(f'the engine has dynamic input shapes and {profiles} optimization '
                             f'profile(s) for {self.slots} slot(s): a profile serves one context '
                             'at a time; build it with one profile per slot (trtexec '
                             '--profile=N) or use one slot')

    def _max_input_shape(self, tensor: _Tensor, profile: int) -> Tuple[int, ...]:
        """Return the largest shape of an input: static, the preprocessor's or the profile max."""
        if not tensor.dynamic:
            return tensor.shape
        if tensor.name == self.input_name and self.options['input_size']:
            height, width = self.options['input_size']
            one = self.preprocess.input_shape(height, width)
            if self.preprocess.batch_dim is None:  # room for the profile's largest batch
                return (self._profile_batch(profile),) + one[1:]
            return one
        if tensor.name in self._extra:
            return self._extra[tensor.name].shape
        return tuple(int(d) for d in self.engine.get_tensor_profile_shape(tensor.name,
                                                                          profile)[2])

    def _profile_batch(self, profile: int) -> int:
        """Return the largest batch of the image input in an optimization profile."""
        return int(self.engine.get_tensor_profile_shape(self.input_name, profile)[2][0])

    def _create_state(self, state: _SlotState) -> None:
        cuda = self.cuda
        index = state.index
        state.context = self.engine.create_execution_context()
        if state.context is None:
            raise RuntimeError('could not create an execution context (out of device memory?)')
        if self.options['stream_priority']:
            state.stream = _PriorityStream(load_driver(), self.options['stream_priority'])
        else:
            state.stream = _PycudaStream(cuda)
        dynamic = any(t.dynamic for t in self.tensors.values() if t.is_input)
        if dynamic:
            state.context.set_optimization_profile_async(index, state.stream.handle)
        for tensor in self.tensors.values():
            if tensor.is_input:
                shape = self._max_input_shape(tensor, index if dynamic else 0)
                if tensor.dynamic:
                    state.context.set_input_shape(tensor.name, shape)
                state.shapes[tensor.name] = shape
        for tensor in self.tensors.values():
            shape = state.shapes.get(tensor.name) or tuple(
                int(d) for d in state.context.get_tensor_shape(tensor.name))
            if any(d < 0 for d in shape):
                raise ValueError(f'output {tensor.name!r} has a data-dependent shape {shape}; '
                                 'not supported (it needs an output allocator)')
            size = max(1, int(np.prod(shape)))
            host = cuda.pagelocked_empty(size, tensor.dtype)
            device = cuda.mem_alloc(host.nbytes)
            state.host[tensor.name] = host
            state.device[tensor.name] = device
            state.context.set_tensor_address(tensor.name, int(device))
        for name, value in self._extra.items():
            host = state.host[name][:value.size]
            host[:] = value.reshape(-1)
            state.stream.copy_in(state.device[name], host)
            if self.tensors[name].dynamic:
                state.context.set_input_shape(name, value.shape)
                state.shapes[name] = value.shape
        state.stream.synchronize()

    def warmup(self, runs: int) -> None:
        """Run the whole path runs times on a synthetic image, on every slot's context."""
        if self.engine is None or runs <= 0:
            return
        image, encoding = self.preprocess.warmup_image()
        self._warmup = WarmUpTimes()
        for state in self._states:
            for _ in range(runs):
                self._warmup.add(self._execute(state, [(image, encoding)], False)[0])

    def expected_latency_s(self) -> float:
        return self._warmup.expected_s()

    def fast_latency_s(self) -> float:
        return self._warmup.fast_s()

    def infer(self, frame) -> InferenceOutput:
        if self.engine is None:
            raise RuntimeError(f'task {self.task_name}: infer() before load()')
        return self._on_a_context([(frame.image, frame.encoding)], False)[0]

    # -- batches ----------------------------------------------------------------------------

    def batch_limit(self) -> int:
        """Return the image input's largest batch: its static one, or every profile's maximum."""
        batch_dim = self.preprocess.batch_dim
        if batch_dim is not None:
            return batch_dim
        profiles = getattr(self.engine, 'num_optimization_profiles', 1)
        return min(self._profile_batch(profile) for profile in range(profiles))

    def warmup_batches(self, sizes, runs: int) -> None:
        """Run runs batches of each size of a synthetic image on every slot's context."""
        image, encoding = self.preprocess.warmup_image()
        for size in sizes:
            for state in self._states:
                for _ in range(runs):
                    self._batch_warmup.add(self._execute(state, [(image, encoding)] * size, True))

    def expected_batch_latency_s(self, size: int) -> float:
        return self._batch_warmup.expected_s(size)

    def fast_batch_latency_s(self, size: int) -> float:
        return self._batch_warmup.fast_s(size)

    def infer_batch(self, frames) -> List[InferenceOutput]:
        if self.engine is None:
            raise RuntimeError(f'task {self.task_name}: infer_batch() before load()')
        return self._on_a_context([(frame.image, frame.encoding) for frame in frames], True)

    def _on_a_context(self, images, batch: bool) -> List[InferenceOutput]:
        """Run images on a free execution context (one per slot)."""
        with self._free_lock:
            if not self._free:
                raise RuntimeError(f'task {self.task_name}: more concurrent calls than the '
                                   f'{len(self._states)} execution context(s)')
            state = self._free.pop()
        try:
            return self._execute(state, images, batch)
        finally:
            with self._free_lock:
                self._free.append(state)

    def _execute(self, state: _SlotState, images, batch: bool) -> List[InferenceOutput]:
        """
        Preprocess into the pinned buffer, copy in, run, copy out, on this thread.

        images: (image, encoding) pairs, one row each (batch), or one image as a one-frame
        call gives it; a fixed batch dimension gets all its rows.
        """
        start = time.perf_counter()
        name = self.input_name
        preprocess = self.preprocess
        first = images[0][0]
        one = preprocess.input_shape(first.shape[0], first.shape[1])
        rows = preprocess.batch_dim or len(images)
        shape = (rows,) + one[1:] if batch or rows > 1 else one
        host = state.host[name]
        size = int(np.prod(shape))
        if size > host.size:
            raise ValueError(f'input {name!r}: shape {shape} exceeds the buffer allocated for '
                             f"{state.shapes[name]} (the profile's maximum or input_size)")
        view = host[:size].reshape(shape)
        if batch or rows > 1:
            preprocess.batch(images, rows, out=view)
        else:
            preprocess(first, images[0][1], out=view)
        begin = time.perf_counter()
        self.cuda_context.push()
        try:
            context, stream = state.context, state.stream
            if self.tensors[name].dynamic and state.shapes[name] != shape:
                if not context.set_input_shape(name, shape):
                    raise ValueError(f"input {name!r}: shape {shape} is outside the engine's "
                                     'optimization profile')
                state.shapes[name] = shape
            stream.copy_in(state.device[name], view)
            if not context.execute_async_v3(stream.handle):
                raise RuntimeError('execute_async_v3 failed (see the TensorRT log)')
            views = {}
            for output in self.output_names:
                out_shape = tuple(int(d) for d in context.get_tensor_shape(output))
                out_view = state.host[output][:max(1, int(np.prod(out_shape)))]
                stream.copy_out(out_view, state.device[output])
                views[output] = (out_view, out_shape)
            stream.synchronize()
        finally:
            self.cuda_context.pop()
        outputs = {output: out_view.reshape(out_shape).copy()
                   for output, (out_view, out_shape) in views.items()}
        end = time.perf_counter()
        geometries = [preprocess.geometry(image.shape[0], image.shape[1]) for image, _ in images]
        if batch or rows > 1:
            return split_batch(outputs, len(images), begin - start, end - begin, geometries)
        return [InferenceOutput(outputs, begin - start, end - begin, geometries[0])]

    def model_info(self) -> ModelInfo:
        """Return the output shapes (None: dynamic dimensions); engines carry no metadata."""
        return ModelInfo({name: static_dims(self.tensors[name].shape)
                          for name in self.output_names})

    def _release(self) -> None:
        for state in self._states:
            for device in state.device.values():
                device.free()
            state.device.clear()
            state.host.clear()
            state.context = None
            if state.stream is not None:
                state.stream.close()
                state.stream = None
        self._states = []
        self._free = []
        self.engine = None
        self._runtime = None

    def close(self) -> None:
        """Free the buffers, contexts and engine (with the CUDA context current), detach it."""
        if self.cuda_context is None:
            return
        self.cuda_context.push()
        try:
            self._release()
        finally:
            self.cuda_context.pop()
            self.cuda_context.detach()
            self.cuda_context = None
