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
The onnxruntime worker: one InferenceSession per task, created in load().

The session is shared by the task's slots (InferenceSession.run is thread-safe and releases the
GIL); each slot thread preprocesses into its own preallocated buffer. onnxruntime is imported
in load() only, so configs validate without it. See docs/workers.md.
"""

import logging
import os
import time
from typing import Any, Dict, List, Tuple

from inferedge_orchestrator.config import checkers as opt
from inferedge_orchestrator.config.schema import CUSTOM, REQUIRED, setting, table
from inferedge_orchestrator.contracts.errors import ConfigError, WorkerRuntimeMissing
from inferedge_orchestrator.contracts.inference import InferenceOutput, ModelInfo
from inferedge_orchestrator.workers.base import Worker
from inferedge_orchestrator.workers.binding import (batch_limit, BatchWarmUps, bind_model,
                                                    split_batch, TensorSpec, WarmUpTimes)
from inferedge_orchestrator.workers.preprocess import PREPROCESS_OPTIONS, static_dims
import numpy as np

LOGGER = logging.getLogger('inferedge_orchestrator')

# Short names accepted in `providers`.
PROVIDER_NAMES = {
    'cpu': 'CPUExecutionProvider',
    'cuda': 'CUDAExecutionProvider',
    'tensorrt': 'TensorrtExecutionProvider',
}
GRAPH_OPTIMIZATION = ('disabled', 'basic', 'extended', 'all')
# onnxruntime's tensor type strings -> numpy dtypes.
ORT_TYPES = {
    'tensor(float)': np.float32, 'tensor(float16)': np.float16, 'tensor(double)': np.float64,
    'tensor(uint8)': np.uint8, 'tensor(int8)': np.int8, 'tensor(uint16)': np.uint16,
    'tensor(int16)': np.int16, 'tensor(int32)': np.int32, 'tensor(int64)': np.int64,
    'tensor(uint32)': np.uint32, 'tensor(uint64)': np.uint64, 'tensor(bool)': np.bool_,
}


def providers(where: str, value: Any) -> Tuple[str, ...]:
    """Check execution providers: short names (cpu, cuda, tensorrt) or full EP names."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f'{where}: {value!r} is not allowed; allowed: a non-empty list of '
                          f'{", ".join(PROVIDER_NAMES)} or onnxruntime execution provider names')
    names = []
    for item in value:
        if isinstance(item, str) and item.lower() in PROVIDER_NAMES:
            names.append(PROVIDER_NAMES[item.lower()])
        elif isinstance(item, str) and item.endswith('ExecutionProvider'):
            names.append(item)
        else:
            raise ConfigError(f'{where}: {item!r} is not allowed; allowed: '
                              f'{", ".join(PROVIDER_NAMES)} or a name ending in '
                              'ExecutionProvider')
    return tuple(dict.fromkeys(names))


def import_onnxruntime():
    """Import onnxruntime or raise WorkerRuntimeMissing with the install hint."""
    try:
        import onnxruntime
    except ImportError:
        raise WorkerRuntimeMissing(
            'the onnxruntime worker needs onnxruntime: pip install onnxruntime (or '
            'onnxruntime-gpu for CUDA; Python 3.10 needs onnxruntime<=1.23)') from None
    return onnxruntime


class OnnxWorker(Worker):
    """
    Run an ONNX model with onnxruntime on the frame's image (see docs/workers.md).

    slots x intra_op_threads should not exceed the CPU cores: more threads than cores make
    every session slower, and allow_spinning makes idle threads burn the cores that other
    tasks need.
    """

    kind = 'onnxruntime'
    OPTIONS = dict(table(
        setting('model_path', REQUIRED, 'the .onnx model', kind=CUSTOM, checker=opt.text,
                allowed_text='a file path'),
        opt.custom('providers', ('CPUExecutionProvider',), 'execution providers, in order',
                   providers, 'cpu, cuda, tensorrt or onnxruntime execution provider names'),
        setting('device_id', 0, 'the GPU of the CUDA and TensorRT providers', low=0, high=64),
        setting('intra_op_threads', 0, 'threads inside an operator (0: onnxruntime decides)',
                low=0, high=1024),
        setting('inter_op_threads', 0, 'threads across operators (0: onnxruntime decides)',
                low=0, high=1024),
        setting('allow_spinning', False, 'let idle intra-op threads spin'),
        setting('graph_optimization', 'all', 'graph optimisation level',
                choices=GRAPH_OPTIMIZATION),
        setting('warmup', 3, 'runs on a synthetic image at load', low=0, high=10000),
    ), **PREPROCESS_OPTIONS)

    def __init__(self, task_name, options, slots=1):
        super().__init__(task_name, options, slots)
        self.session = None
        self.input_name = ''
        self.output_names: List[str] = []
        self.preprocess = None
        self._extra: Dict[str, np.ndarray] = {}
        self._warmup = WarmUpTimes()
        self._batch_warmup = BatchWarmUps()
        self._batch_run_options = None  # load(): the run options of a batch (arena shrinkage)

    # -- lifecycle --------------------------------------------------------------------------

    def load(self) -> None:
        """Create the InferenceSession with the configured providers and threads."""
        ort = import_onnxruntime()
        options = self.options
        wanted = list(options['providers'])
        available = ort.get_available_providers()
        missing = [name for name in wanted if name not in available]
        if missing:
            raise RuntimeError(
                f'execution provider(s) {", ".join(missing)} not available in this '
                f'onnxruntime {ort.__version__} build; available: {", ".join(available)} '
                '(CUDA needs onnxruntime-gpu and CUDA/cuDNN libraries; TensorRT also needs '
                'TensorRT libraries)')
        path = options['model_path']
        if not os.path.isfile(path):
            raise FileNotFoundError(f'model_path {path!r}: no such file')
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options['intra_op_threads']
        session_options.inter_op_num_threads = options['inter_op_threads']
        spinning = '1' if options['allow_spinning'] else '0'
        session_options.add_session_config_entry('session.intra_op.allow_spinning', spinning)
        session_options.add_session_config_entry('session.inter_op.allow_spinning', spinning)
        session_options.graph_optimization_level = {
            'disabled': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[options['graph_optimization']]
        provider_list = [(name, {'device_id': str(options['device_id'])})
                         if name in ('CUDAExecutionProvider', 'TensorrtExecutionProvider')
                         else name for name in wanted]
        session = ort.InferenceSession(path, sess_options=session_options,
                                       providers=provider_list)
        self._bind(session)
        # A batch's tensors grow the CPU arena to the batch's size, and the arena keeps what
        # it grew (about 300 MB after a batch of 4 at 640x480 for the rapidocr detector): a
        # batch run hands back what it took once it ends; single-frame runs keep the arena.
        self._batch_run_options = ort.RunOptions()
        self._batch_run_options.add_run_config_entry('memory.enable_memory_arena_shrinkage',
                                                     'cpu:0')
        self.session = session
        threads = options['intra_op_threads']
        cores = os.cpu_count() or 1
        if 'CPUExecutionProvider' == wanted[0] and threads and self.slots * threads > cores:
            LOGGER.warning('task %s: %d slot(s) x %d intra-op threads > %d cores: sessions '
                           'will compete for the cores', self.task_name, self.slots, threads,
                           cores)

    def _bind(self, session) -> None:
        """Pick the image input, build the preprocessor and the constant inputs."""
        binding = bind_model(
            [TensorSpec(meta.name, meta.shape, _numpy_type(meta.type))
             for meta in session.get_inputs()],
            [meta.name for meta in session.get_outputs()], self.options, 'model')
        self.input_name, self.preprocess = binding.input_name, binding.preprocess
        self._extra, self.output_names = binding.extra, binding.output_names

    def warmup(self, runs: int) -> None:
        """Run the whole path (preprocessing included) runs times on a synthetic image."""
        if self.session is None or runs <= 0:
            return
        image, encoding = self.preprocess.warmup_image()
        self._warmup = WarmUpTimes()
        for _ in range(runs):
            self._warmup.add(self._run(image, encoding))

    def expected_latency_s(self) -> float:
        return self._warmup.expected_s()

    def fast_latency_s(self) -> float:
        return self._warmup.fast_s()

    def infer(self, frame) -> InferenceOutput:
        session = self.session
        if session is None:
            raise RuntimeError(f'task {self.task_name}: infer() before load()')
        return self._run(frame.image, frame.encoding)

    # -- batches ----------------------------------------------------------------------------

    def batch_limit(self) -> int:
        return batch_limit(self.preprocess.batch_dim)

    def warmup_batches(self, sizes, runs: int) -> None:
        """Run the whole path runs times at each size on copies of a synthetic image."""
        image, encoding = self.preprocess.warmup_image()
        for size in sizes:
            for _ in range(runs):
                self._batch_warmup.add(self._run_batch([(image, encoding)] * size))

    def expected_batch_latency_s(self, size: int) -> float:
        return self._batch_warmup.expected_s(size)

    def fast_batch_latency_s(self, size: int) -> float:
        return self._batch_warmup.fast_s(size)

    def infer_batch(self, frames) -> List[InferenceOutput]:
        if self.session is None:
            raise RuntimeError(f'task {self.task_name}: infer_batch() before load()')
        return self._run_batch([(frame.image, frame.encoding) for frame in frames])

    def _run_batch(self, images) -> List[InferenceOutput]:
        """Preprocess images into one batch tensor, run it, and split the outputs per frame."""
        preprocess = self.preprocess
        start = time.perf_counter()
        feeds = dict(self._extra)
        feeds[self.input_name] = preprocess.batch(images, preprocess.batch_dim or len(images))
        begin = time.perf_counter()
        values = self.session.run(self.output_names, feeds,
                                  self._batch_run_options if len(images) > 1 else None)
        end = time.perf_counter()
        return split_batch(dict(zip(self.output_names, values)), len(images), begin - start,
                           end - begin, [preprocess.geometry(image.shape[0], image.shape[1])
                                         for image, _ in images])

    def _run(self, image: np.ndarray, encoding: str) -> InferenceOutput:
        if self.preprocess.batch_dim not in (None, 1):  # a fixed batch: one frame in its rows
            return self._run_batch([(image, encoding)])[0]
        start = time.perf_counter()
        feeds = dict(self._extra)
        feeds[self.input_name] = self.preprocess(image, encoding)
        begin = time.perf_counter()
        values = self.session.run(self.output_names, feeds)
        end = time.perf_counter()
        return InferenceOutput(dict(zip(self.output_names, values)), begin - start, end - begin,
                               self.preprocess.geometry(image.shape[0], image.shape[1]))

    def model_info(self) -> ModelInfo:
        """Return the output shapes (None: dynamic dimensions) and the model's metadata."""
        session = self.session
        if session is None:
            return ModelInfo()
        outputs = {meta.name: static_dims(meta.shape)
                   for meta in session.get_outputs() if meta.name in self.output_names}
        return ModelInfo(outputs, dict(session.get_modelmeta().custom_metadata_map))

    def close(self) -> None:
        self.session = None


def _numpy_type(type_string: str):
    try:
        return ORT_TYPES[type_string]
    except KeyError:
        raise ValueError(f'input type {type_string} is not supported; supported: '
                         f'{", ".join(ORT_TYPES)}') from None
