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
The tensorrt worker's control flow, with fake tensorrt and pycuda modules.

Nothing here runs TensorRT or CUDA: the fakes check what the worker asks of them (one
execution context and stream per slot, pinned buffers, the CUDA context pushed and popped on
the calling thread, the name-based tensor API) and compute a channel sum on the host.
"""

import collections
import ctypes
import json
import sys
import threading
import types

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import WorkerRuntimeMissing
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.workers import tensorrt as tensorrt_worker
from inferedge_orchestrator.workers.tensorrt import TensorRTWorker
import numpy as np
import pytest


class FakeCuda(types.ModuleType):
    """pycuda.driver: a device memory dict, per-thread context stacks, an event log."""

    def __init__(self):
        super().__init__('pycuda.driver')
        self.memory = {}
        self.next_pointer = 4096
        self.pinned = []
        self.allocations = []
        self.streams = []
        self.execution_streams = set()  # the stream handles execute_async_v3 was given
        self.local = threading.local()
        self.log = []
        self.lock = threading.Lock()
        self.initialised = False
        fake = self

        class Context:

            def __init__(self):
                self.detached = False

            def push(self):
                fake.stack().append(self)
                fake.record('push')

            def pop(self):
                assert fake.stack(), 'pop without push'
                fake.stack().pop()
                fake.record('pop')

            def detach(self):
                self.detached = True

        class Device:

            def __init__(self, index):
                self.index = index
                fake.device_index = index

            def retain_primary_context(self):
                fake.context = Context()
                return fake.context

        class Stream:

            def __init__(self):
                self.handle = 1000 + len(fake.streams)
                self.synchronized = 0
                fake.streams.append(self)

            def synchronize(self):
                fake.check_current()
                self.synchronized += 1

        class Allocation:

            def __init__(self, nbytes):
                with fake.lock:
                    self.pointer = fake.next_pointer
                    fake.next_pointer += max(256, nbytes)
                fake.memory[self.pointer] = bytearray(nbytes)
                self.freed = False

            def __int__(self):
                return self.pointer

            def free(self):
                fake.check_current()
                self.freed = True
                del fake.memory[self.pointer]

        self.Device = Device
        self.Stream = Stream
        self.Allocation = Allocation

    def stack(self):
        if not hasattr(self.local, 'stack'):
            self.local.stack = []
        return self.local.stack

    def record(self, event):
        with self.lock:
            self.log.append((threading.current_thread().name, event))

    def check_current(self):
        assert self.stack() and self.stack()[-1] is self.context, \
            'CUDA call without the context current on this thread'

    def init(self):
        self.initialised = True

    def pagelocked_empty(self, shape, dtype):
        array = np.empty(shape, dtype=dtype)
        self.pinned.append(array)
        return array

    def mem_alloc(self, nbytes):
        self.check_current()
        allocation = self.Allocation(nbytes)
        self.allocations.append(allocation)
        return allocation

    def is_pinned(self, array):
        base = array
        while base.base is not None and not any(base is p for p in self.pinned):
            base = base.base
        return any(base is p for p in self.pinned)

    def memcpy_htod_async(self, device, host, stream):
        self.check_current()
        assert self.is_pinned(host), 'pageable host buffer'
        data = np.ascontiguousarray(host).tobytes()
        self.memory[int(device)][:len(data)] = data

    def memcpy_dtoh_async(self, host, device, stream):
        self.check_current()
        assert self.is_pinned(host), 'pageable host buffer'
        raw = bytes(self.memory[int(device)][:host.nbytes])
        host[...] = np.frombuffer(raw, dtype=host.dtype).reshape(host.shape)


class FakeDriver:
    """libcuda through ctypes: stream priorities and async copies on FakeCuda's memory."""

    def __init__(self, cuda, least=0, greatest=-5):
        self.cuda = cuda
        self.range = (least, greatest)  # CUDA's: lower numbers run first
        self.priorities = {}  # stream handle -> priority
        self.synchronized = collections.Counter()
        self.destroyed = []

    def cuCtxGetStreamPriorityRange(self, least, greatest):
        self.cuda.check_current()
        least._obj.value, greatest._obj.value = self.range
        return 0

    def cuStreamCreateWithPriority(self, handle, flags, priority):
        self.cuda.check_current()
        handle._obj.value = 5000 + len(self.priorities)
        self.priorities[handle._obj.value] = priority
        return 0

    def pinned(self, address, size):
        return any(p.ctypes.data <= address and address + size <= p.ctypes.data + p.nbytes
                   for p in self.cuda.pinned)

    def cuMemcpyHtoDAsync_v2(self, device, host, size, stream):
        self.cuda.check_current()
        assert stream.value in self.priorities and self.pinned(host.value, size.value)
        self.cuda.memory[device.value][:size.value] = ctypes.string_at(host.value, size.value)
        return 0

    def cuMemcpyDtoHAsync_v2(self, host, device, size, stream):
        self.cuda.check_current()
        assert stream.value in self.priorities and self.pinned(host.value, size.value)
        ctypes.memmove(host.value, bytes(self.cuda.memory[device.value][:size.value]),
                       size.value)
        return 0

    def cuStreamSynchronize(self, stream):
        self.cuda.check_current()
        self.synchronized[stream.value] += 1
        return 0

    def cuStreamDestroy_v2(self, stream):
        self.cuda.check_current()
        self.destroyed.append(stream.value)
        return 0


class FakeTensorRT(types.ModuleType):
    """Tensorrt with the name-based API; an engine file is a JSON description."""

    def __init__(self, cuda, version='10.3.0'):
        super().__init__('tensorrt')
        self.__version__ = version
        self.cuda = cuda
        self.contexts = []
        trt = self

        class Logger:
            WARNING = 2

            def __init__(self, severity):
                self.severity = severity

        class TensorIOMode:
            INPUT = 'input'
            OUTPUT = 'output'

        class Runtime:

            def __init__(self, logger):
                self.logger = logger

            def deserialize_cuda_engine(self, data):
                cuda.check_current()
                spec = json.loads(data.decode())
                return None if spec.get('corrupt') else Engine(spec)

        class Engine:

            def __init__(self, spec):
                self.spec = spec
                self.names = list(spec['inputs']) + list(spec['outputs'])
                self.num_io_tensors = len(self.names)
                self.num_optimization_profiles = spec.get('profiles', 1)

            def get_tensor_name(self, index):
                return self.names[index]

            def get_tensor_mode(self, name):
                return TensorIOMode.INPUT if name in self.spec['inputs'] else \
                    TensorIOMode.OUTPUT

            def get_tensor_dtype(self, name):
                return self.spec.get('dtypes', {}).get(name, 'float32')

            def get_tensor_shape(self, name):
                tensors = dict(self.spec['inputs'], **self.spec['outputs'])
                return list(tensors[name])

            def get_tensor_profile_shape(self, name, profile):
                low, high = self.spec['profile'][name]
                return [low, high, high]

            def create_execution_context(self):
                cuda.check_current()
                if len(trt.contexts) >= self.spec.get('max_contexts', 64):
                    return None  # what TensorRT returns when device memory runs out
                context = ExecutionContext(self)
                trt.contexts.append(context)
                return context

        class ExecutionContext:

            def __init__(self, engine):
                self.engine = engine
                self.addresses = {}
                self.shapes = {name: tuple(engine.get_tensor_shape(name))
                               for name in engine.spec['inputs']}
                self.profile = None
                self.threads = set()
                self.active = 0
                self.executions = 0
                self.shape_calls = []

            def set_optimization_profile_async(self, index, stream_handle):
                self.profile = index
                return True

            def set_input_shape(self, name, shape):
                shape = tuple(shape)
                low, high = self.engine.spec['profile'][name]
                if any(s < a or s > b for s, a, b in zip(shape, low, high)):
                    return False
                self.shape_calls.append((name, shape))
                self.shapes[name] = shape
                return True

            def set_tensor_address(self, name, pointer):
                self.addresses[name] = pointer

            def get_tensor_shape(self, name):
                if name in self.shapes:
                    return list(self.shapes[name])
                n, _, h, w = self.shapes['images']
                return [n, 1, h, w]

            def execute_async_v3(self, stream_handle):
                cuda.check_current()
                self.active += 1
                try:
                    assert self.active == 1, 'one context used by two threads at once'
                    self.threads.add(threading.current_thread().name)
                    cuda.execution_streams.add(stream_handle)
                    self.executions += 1
                    if self.engine.spec.get('fail'):
                        return False
                    shape = self.shapes['images']
                    size = int(np.prod(shape))
                    raw = bytes(cuda.memory[self.addresses['images']][:size * 4])
                    images = np.frombuffer(raw, dtype=np.float32).reshape(shape)
                    result = images.sum(axis=1, keepdims=True)
                    if 'offset' in self.addresses:
                        offset = np.frombuffer(bytes(cuda.memory[self.addresses['offset']][:4]),
                                               dtype=np.float32)
                        result = result + offset[0]
                    data = result.astype(np.float32).tobytes()
                    cuda.memory[self.addresses['sum']][:len(data)] = data
                    return True
                finally:
                    self.active -= 1

        self.Logger = Logger
        self.TensorIOMode = TensorIOMode
        self.Runtime = Runtime

    def nptype(self, dtype):
        return np.dtype(dtype).type

    def init_libnvinfer_plugins(self, logger, namespace):
        self.plugins_initialised = True


@pytest.fixture
def fakes(monkeypatch):
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda)
    pycuda = types.ModuleType('pycuda')
    pycuda.driver = cuda
    monkeypatch.setitem(sys.modules, 'tensorrt', trt)
    monkeypatch.setitem(sys.modules, 'pycuda', pycuda)
    monkeypatch.setitem(sys.modules, 'pycuda.driver', cuda)
    return trt, cuda


STATIC = {'inputs': {'images': [1, 3, 8, 8]}, 'outputs': {'sum': [1, 1, 8, 8]}}
DYNAMIC = {'inputs': {'images': [1, 3, -1, -1]}, 'outputs': {'sum': [1, 1, -1, -1]},
           'profile': {'images': [[1, 3, 16, 16], [1, 3, 64, 64]]}, 'profiles': 2}


def engine_file(tmp_path, spec, name='model.plan'):
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return str(path)


def make_worker(path, slots=1, **options):
    options = TensorRTWorker.validate_options(dict({'engine_path': path, 'scale': 1.0},
                                                   **options), 'w')
    return TensorRTWorker('detector', options, slots)


def frame(image, seq=1):
    return Frame('camera', seq, 0.0, 0.0, image=image, encoding='rgb8')


def test_without_tensorrt_or_pycuda_load_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'tensorrt', None)
    with pytest.raises(WorkerRuntimeMissing, match="needs TensorRT's Python bindings"):
        make_worker(engine_file(tmp_path, STATIC)).load()
    monkeypatch.setitem(sys.modules, 'tensorrt', types.ModuleType('tensorrt'))
    monkeypatch.setitem(sys.modules, 'pycuda', None)
    with pytest.raises(WorkerRuntimeMissing, match='pip install pycuda'):
        make_worker(engine_file(tmp_path, STATIC)).load()


def test_load_makes_one_context_stream_and_pinned_buffer_set_per_slot(fakes, tmp_path):
    trt, cuda = fakes
    worker = make_worker(engine_file(tmp_path, STATIC), slots=2, device_id=1)
    worker.load()
    assert cuda.initialised and cuda.device_index == 1 and trt.plugins_initialised
    assert len(trt.contexts) == 2 and len(cuda.streams) == 2
    assert len(cuda.pinned) == 4 and len(cuda.allocations) == 4  # 2 tensors x 2 slots
    for context in trt.contexts:
        assert set(context.addresses) == {'images', 'sum'}
        assert context.profile is None  # static shapes: no profile switching
    assert cuda.stack() == []  # load pushed and popped the context
    worker.warmup(2)
    assert [c.executions for c in trt.contexts] == [2, 2]  # warm-ups on every context
    assert worker.expected_latency_s() > 0


def test_infer_on_worker_threads_uses_one_context_per_slot_and_no_new_allocations(fakes,
                                                                                  tmp_path):
    trt, cuda = fakes
    worker = make_worker(engine_file(tmp_path, STATIC), slots=2)
    worker.load()
    allocations, pinned, streams = len(cuda.allocations), len(cuda.pinned), len(cuda.streams)
    outputs, errors = [], []
    barrier = threading.Barrier(2)

    def slot(value):
        try:
            barrier.wait()
            for _ in range(20):
                image = np.full((8, 8, 3), value, dtype=np.uint8)
                out = worker.infer(frame(image))
                outputs.append((value, out.outputs['sum']))
        except Exception as error:  # noqa: B902 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=slot, args=(v,), name=f'slot-{v}') for v in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(outputs) == 40
    for value, output in outputs:
        assert output.shape == (1, 1, 8, 8) and (output == 3 * value).all()
    # No session, context, stream or buffer is created in infer().
    assert (len(cuda.allocations), len(cuda.pinned), len(cuda.streams)) == (
        allocations, pinned, streams)
    assert len(trt.contexts) == 2 and sum(c.executions for c in trt.contexts) == 40
    # The CUDA context was pushed and popped on each worker thread, balanced.
    for name in ('slot-1', 'slot-2'):
        events = [event for thread, event in cuda.log if thread == name]
        assert events == ['push', 'pop'] * 20
    # Outputs are copies, not views of the reused pinned buffers.
    assert not any(cuda.is_pinned(output) for _, output in outputs)


def test_dynamic_shapes_use_one_profile_per_context_and_set_input_shape(fakes, tmp_path):
    trt, cuda = fakes
    worker = make_worker(engine_file(tmp_path, DYNAMIC), slots=2, size_multiple=8)
    worker.load()
    assert [c.profile for c in trt.contexts] == [0, 1]
    # Buffers are sized for the profile's maximum shape.
    assert cuda.pinned[0].size == 1 * 3 * 64 * 64
    out = worker.infer(frame(np.ones((20, 30, 3), np.uint8)))
    assert out.outputs['sum'].shape == (1, 1, 24, 32) and (out.outputs['sum'] == 3).all()
    context = trt.contexts[0]  # an idle worker hands out the first slot's context
    assert context.shape_calls[-1] == ('images', (1, 3, 24, 32))
    calls = len(context.shape_calls)
    worker.infer(frame(np.ones((20, 30, 3), np.uint8)))
    assert len(context.shape_calls) == calls  # same shape: not set again
    with pytest.raises(ValueError, match='exceeds the buffer'):
        worker.infer(frame(np.ones((100, 100, 3), np.uint8)))
    with pytest.raises(ValueError, match='outside the engine.s optimization profile'):
        worker.infer(frame(np.ones((2, 2, 3), np.uint8)))
    assert cuda.stack() == []  # popped after the failure too


def test_dynamic_engine_needs_a_profile_per_slot(fakes, tmp_path):
    path = engine_file(tmp_path, dict(DYNAMIC, profiles=1))
    with pytest.raises(ValueError, match='1 optimization profile.s. for 2 slot'):
        make_worker(path, slots=2).load()
    make_worker(path, slots=1).load()


def test_input_size_fixes_dynamic_buffers_and_constants_are_uploaded_once(fakes, tmp_path):
    trt, cuda = fakes
    spec = {'inputs': {'images': [1, 3, -1, -1], 'offset': [1]},
            'outputs': {'sum': [1, 1, -1, -1]},
            'profile': {'images': [[1, 3, 8, 8], [1, 3, 64, 64]]}}
    worker = make_worker(engine_file(tmp_path, spec), input_size=[16, 16],
                         extra_inputs={'offset': 0.5})
    worker.load()
    assert cuda.pinned[0].size == 3 * 16 * 16
    out = worker.infer(frame(np.ones((50, 50, 3), np.uint8)))
    assert out.outputs['sum'].shape == (1, 1, 16, 16) and (out.outputs['sum'] == 3.5).all()
    with pytest.raises(ValueError, match='need a value'):
        make_worker(engine_file(tmp_path, spec, 'b.plan'), input_size=[16, 16]).load()


def test_engine_errors_are_clear_and_release_the_context(fakes, tmp_path):
    trt, cuda = fakes
    with pytest.raises(FileNotFoundError, match='build it with trtexec'):
        make_worker(str(tmp_path / 'absent.plan')).load()
    with pytest.raises(RuntimeError, match='could not deserialize'):
        make_worker(engine_file(tmp_path, {'corrupt': True})).load()
    assert cuda.context.detached and cuda.stack() == []
    with pytest.raises(RuntimeError, match='infer.. before load'):
        make_worker(engine_file(tmp_path, STATIC)).infer(frame(np.zeros((8, 8, 3), np.uint8)))


def test_a_slot_that_cannot_get_a_context_fails_load_and_frees_the_others(fakes, tmp_path):
    trt, cuda = fakes
    with pytest.raises(RuntimeError, match='could not create an execution context'):
        make_worker(engine_file(tmp_path, dict(STATIC, max_contexts=1)), slots=2).load()
    assert len(cuda.allocations) == 2 and all(a.freed for a in cuda.allocations)
    assert cuda.memory == {} and cuda.context.detached and cuda.stack() == []


def test_close_frees_device_memory_with_the_context_current(fakes, tmp_path):
    trt, cuda = fakes
    worker = make_worker(engine_file(tmp_path, STATIC), slots=2)
    worker.load()
    worker.close()
    assert all(a.freed for a in cuda.allocations) and cuda.memory == {}
    assert cuda.context.detached and cuda.stack() == []
    worker.close()  # twice is harmless


def run_engine(path, frames, slots=2):
    config = {
        'orchestrator': {'pools': {'gpu': {'slots': slots}}, 'shedding': {'enabled': False},
                         'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'pool': 'gpu', 'latency_budget_ms': 5000.0,
                   'queue_size': 8, 'worker': 'tensorrt',
                   'worker_options': {'engine_path': path, 'warmup': 1, 'scale': 1.0}}],
    }
    results = []
    engine = Engine(config, on_result=results.append)
    engine.start()
    try:
        for index in range(frames):
            engine.submit('camera', np.full((8, 8, 3), index, np.uint8), age_s=0.0)
        assert engine.drain(10.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    return sorted(results, key=lambda r: r.seq), snapshot


def test_the_engine_runs_the_tensorrt_worker_on_its_slot_threads(fakes, tmp_path):
    trt, cuda = fakes
    results, snapshot = run_engine(engine_file(tmp_path, STATIC), 6)
    assert [r.status for r in results] == [reasons.OK] * 6
    assert [float(r.outputs['sum'][0, 0, 0, 0]) for r in results] == [0, 3, 6, 9, 12, 15]
    slot_threads = {t for c in trt.contexts for t in c.threads} - {'MainThread'}
    assert slot_threads and all(t.startswith('inferedge-gpu-') for t in slot_threads)
    assert cuda.memory == {}  # closed with the engine
    assert check_invariants(snapshot) == []


def test_a_failing_execution_fails_the_frame_and_the_engine_keeps_running(fakes, tmp_path):
    trt, cuda = fakes
    path = engine_file(tmp_path, dict(STATIC, fail=True))
    worker = make_worker(path)
    worker.load()
    with pytest.raises(RuntimeError, match='execute_async_v3 failed'):
        worker.infer(frame(np.zeros((8, 8, 3), np.uint8)))
    assert cuda.stack() == []
    # Through the engine: the execution fails only after loading (warm-up would fail).
    config_path = engine_file(tmp_path, STATIC, 'engine.plan')
    results = []
    config = {
        'orchestrator': {'shedding': {'enabled': False}, 'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'latency_budget_ms': 5000.0, 'worker': 'tensorrt',
                   'worker_options': {'engine_path': config_path, 'warmup': 0}}],
    }
    engine = Engine(config, on_result=results.append)
    engine.start()
    try:
        engine.tasks['detector'].worker.engine.spec['fail'] = True
        engine.submit('camera', np.zeros((8, 8, 3), np.uint8), age_s=0.0)
        assert engine.drain(5.0)
        engine.tasks['detector'].worker.engine.spec['fail'] = False
        engine.submit('camera', np.zeros((8, 8, 3), np.uint8), age_s=0.0)
        assert engine.drain(5.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    assert [(r.status, r.reason) for r in results] == [
        (reasons.FAILED, reasons.WORKER_ERROR), (reasons.OK, '')]
    assert 'execute_async_v3 failed' in results[0].detail
    assert snapshot.tasks['detector'].failed_by_reason == {reasons.WORKER_ERROR: 1}


@pytest.mark.parametrize('priority, effective', [(-1, -1), (-100, -5), (3, 0)])
def test_the_pools_stream_priority_makes_each_slots_stream_clamped_to_the_device_range(
        fakes, monkeypatch, tmp_path, priority, effective):
    trt, cuda = fakes
    driver = FakeDriver(cuda)
    monkeypatch.setattr(tensorrt_worker, 'load_driver', lambda: driver)
    config = {
        'orchestrator': {'pools': {'gpu': {'slots': 2, 'stream_priority': priority}},
                         'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'pool': 'gpu', 'latency_budget_ms': 5000.0,
                   'queue_size': 8, 'worker': 'tensorrt',
                   'worker_options': {'engine_path': engine_file(tmp_path, STATIC),
                                      'warmup': 1, 'scale': 1.0}}]}
    results = []
    engine = Engine(config, on_result=results.append)
    engine.start()
    try:
        for index in range(4):
            engine.submit('camera', np.full((8, 8, 3), index, np.uint8), age_s=0.0)
        assert engine.drain(10.0)
    finally:
        engine.close()
    # One stream per slot, at the clamped priority, running every copy and execution.
    assert list(driver.priorities.values()) == [effective, effective]
    assert cuda.streams == []  # no pycuda stream
    assert cuda.execution_streams == set(driver.priorities)
    assert sorted(float(r.outputs['sum'][0, 0, 0, 0]) for r in results) == [0, 3, 6, 9]
    assert all(driver.synchronized[h] >= 1 for h in driver.priorities)
    assert sorted(driver.destroyed) == sorted(driver.priorities)  # closed with the engine


def test_a_task_sets_its_own_stream_priority_and_0_keeps_pycudas_stream(
        fakes, monkeypatch, tmp_path):
    trt, cuda = fakes
    driver = FakeDriver(cuda)
    monkeypatch.setattr(tensorrt_worker, 'load_driver', lambda: driver)
    worker = make_worker(engine_file(tmp_path, STATIC), stream_priority=-2)
    worker.load()
    worker.infer(frame(np.ones((8, 8, 3), np.uint8)))
    worker.close()
    assert list(driver.priorities.values()) == [-2] and cuda.streams == []
    worker = make_worker(engine_file(tmp_path, STATIC))
    worker.load()
    assert len(cuda.streams) == 1 and len(driver.priorities) == 1  # no new driver stream
    worker.close()


BATCHED = {'inputs': {'images': [-1, 3, 8, 8]}, 'outputs': {'sum': [-1, 1, 8, 8]},
           'profile': {'images': [[1, 3, 8, 8], [4, 3, 8, 8]]}}


def test_a_batch_runs_in_one_execution_and_splits_per_frame(fakes, tmp_path):
    """Batches with the fakes only: unverified on a real TensorRT (no GPU here)."""
    trt, cuda = fakes
    worker = make_worker(engine_file(tmp_path, BATCHED))
    worker.load()
    assert worker.batch_limit() == 4  # the profile's largest batch
    assert cuda.pinned[0].size == 4 * 3 * 8 * 8  # room for it, allocated once
    context = trt.contexts[0]
    executions = context.executions
    frames = [frame(np.full((8, 8, 3), value, np.uint8), seq=value) for value in (1, 2, 3)]
    outputs = worker.infer_batch(frames)
    assert context.executions == executions + 1
    assert context.shape_calls[-1] == ('images', (3, 3, 8, 8))
    assert [o.outputs['sum'].shape for o in outputs] == [(1, 1, 8, 8)] * 3
    assert [float(o.outputs['sum'].max()) for o in outputs] == [3.0, 6.0, 9.0]
    single = worker.infer(frame(np.full((8, 8, 3), 5, np.uint8)))
    assert context.shape_calls[-1] == ('images', (1, 3, 8, 8))
    assert single.outputs['sum'].shape == (1, 1, 8, 8) and float(single.outputs['sum'].max()) \
        == 15.0
    worker.warmup_batches([2, 3, 4], 2)
    assert worker.expected_batch_latency_s(4) > 0
    with pytest.raises(ValueError, match='exceeds the buffer'):
        worker.infer_batch(frames * 2)  # 6 > the profile's 4
    assert cuda.stack() == []


def test_an_engine_without_a_batch_range_takes_one_frame(fakes, tmp_path):
    worker = make_worker(engine_file(tmp_path, STATIC))
    worker.load()
    assert worker.batch_limit() == 1
