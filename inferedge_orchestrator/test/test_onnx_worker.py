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

"""The onnxruntime worker on small models generated with the onnx helper API."""

import threading

from inferedge_orchestrator.config.loader import load_config
from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import WorkerLoadError
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.frames.frame import Frame
from inferedge_orchestrator.telemetry.invariants import check_invariants
from inferedge_orchestrator.workers import preprocess
from inferedge_orchestrator.workers.onnx import OnnxWorker
import numpy as np
import pytest

from .onnx_models import (channel_sum_model, identity_model, raising_model, require_onnx,
                          two_input_model)


@pytest.fixture(autouse=True)
def ort():
    """Skip each test of this module by name when onnx or onnxruntime is missing."""
    return require_onnx()


def make_worker(model_path, slots=1, **options):
    options = OnnxWorker.validate_options(dict({'model_path': model_path}, **options), 'w')
    return OnnxWorker('task', options, slots)


def frame(image, encoding='rgb8', seq=1):
    return Frame('camera', seq, 0.0, 0.0, image=image, encoding=encoding)


def test_static_nchw_model_gets_the_preprocessed_image(tmp_path):
    worker = make_worker(identity_model(tmp_path, [1, 3, 8, 8]), warmup=2, scale=1.0,
                         intra_op_threads=1)
    worker.load()
    worker.warmup(2)
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = worker.infer(frame(image, 'bgr8'))
    assert list(out.outputs) == ['y']
    assert np.array_equal(out.outputs['y'][0], image[:, :, ::-1].transpose(2, 0, 1))
    assert out.inference_s > 0 and out.preprocess_s > 0
    assert worker.expected_latency_s() > 0
    worker.close()
    assert worker.session is None


def test_static_nhwc_model_with_resize(tmp_path):
    worker = make_worker(identity_model(tmp_path, [1, 16, 16, 3]), scale=1.0)
    worker.load()
    assert worker.preprocess.layout == 'NHWC'
    out = worker.infer(frame(np.full((40, 30, 3), 77, np.uint8)))
    assert out.outputs['y'].shape == (1, 16, 16, 3) and (out.outputs['y'] == 77).all()


def test_dynamic_shapes_follow_the_image_or_the_config(tmp_path):
    path = channel_sum_model(tmp_path)
    worker = make_worker(path, scale=1.0, size_multiple=16)
    worker.load()
    out = worker.infer(frame(np.ones((30, 50, 3), np.uint8)))
    assert out.outputs['y'].shape == (1, 1, 32, 64)
    assert out.outputs['y'][0, 0, 0, 0] == pytest.approx(3.0)
    fixed = make_worker(path, input_size=[48, 320])
    fixed.load()
    assert fixed.infer(frame(np.ones((480, 640, 3), np.uint8))).outputs['y'].shape == \
        (1, 1, 48, 320)


def test_multi_input_model_takes_constants_from_the_config(tmp_path):
    worker = make_worker(two_input_model(tmp_path), scale=1.0, outputs=['y'],
                         extra_inputs={'gain': [1.0, 2.0, 3.0], 'bias': 0.5})
    worker.load()
    out = worker.infer(frame(np.full((4, 4, 3), 10, np.uint8)))
    assert list(out.outputs) == ['y']
    assert out.outputs['y'][0, :, 0, 0].tolist() == [10.5, 20.5, 30.5]


def test_multi_input_model_without_its_constants_fails_to_load(tmp_path):
    path = two_input_model(tmp_path)
    with pytest.raises(ValueError, match='need a value: set extra_inputs'):
        make_worker(path, extra_inputs={'gain': 1.0}).load()
    with pytest.raises(ValueError, match="extra_inputs: 'offset' is not an input"):
        make_worker(path, extra_inputs={'offset': 1.0}).load()
    with pytest.raises(ValueError, match='outputs: z not outputs'):
        make_worker(path, outputs=['z'], extra_inputs={'gain': 1.0, 'bias': 0.0}).load()
    with pytest.raises(ValueError, match="input 'bias': shape .1. is not an image input"):
        make_worker(path, input='bias', extra_inputs={'gain': 1.0}).load()


def test_load_creates_the_session_and_infer_never_does(tmp_path, monkeypatch, ort):
    created, runs = [], []
    real = ort.InferenceSession

    class Counting(real):

        def __init__(self, *args, **kwargs):
            created.append(kwargs.get('providers'))
            super().__init__(*args, **kwargs)

        def run(self, *args, **kwargs):
            runs.append(threading.current_thread().name)
            return super().run(*args, **kwargs)

    monkeypatch.setattr(ort, 'InferenceSession', Counting)
    worker = make_worker(identity_model(tmp_path, [1, 3, 4, 4]))
    assert created == []
    worker.load()
    assert created == [['CPUExecutionProvider']]
    worker.warmup(3)
    assert len(runs) == 3
    for index in range(4):
        worker.infer(frame(np.zeros((4, 4, 3), np.uint8), seq=index))
    assert len(created) == 1 and len(runs) == 7


def test_session_options_follow_the_config(tmp_path, monkeypatch, ort):
    seen = {}
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None):
        seen['threads'] = (sess_options.intra_op_num_threads, sess_options.inter_op_num_threads)
        seen['spinning'] = sess_options.get_session_config_entry(
            'session.intra_op.allow_spinning')
        seen['level'] = sess_options.graph_optimization_level
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, 'InferenceSession', spy)
    make_worker(identity_model(tmp_path, [1, 3, 4, 4]), intra_op_threads=2,
                inter_op_threads=1, allow_spinning=True, graph_optimization='basic').load()
    assert seen == {'threads': (2, 1), 'spinning': '1',
                    'level': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}


def test_missing_provider_or_model_is_a_clear_error(tmp_path, ort):
    path = identity_model(tmp_path, [1, 3, 4, 4])
    if 'CUDAExecutionProvider' not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match='CUDAExecutionProvider not available .* '
                                               'available: .*CPUExecutionProvider'):
            make_worker(path, providers=['cuda']).load()
    with pytest.raises(FileNotFoundError, match='no such file'):
        make_worker(str(tmp_path / 'absent.onnx')).load()


def test_numpy_fallback_without_opencv(tmp_path, monkeypatch):
    monkeypatch.setattr(preprocess, '_CV2', [None])
    worker = make_worker(identity_model(tmp_path, [1, 3, 6, 6]), resize='letterbox',
                         scale=1.0)
    worker.load()
    out = worker.infer(frame(np.full((3, 6, 3), 50, np.uint8))).outputs['y']
    assert (out[0, :, 1:4] == 50).all() and (out[0, :, 0] == 0).all()


def engine_config(model_path, timeout_ms=0.0, **options):
    return {
        'orchestrator': {'pools': {'cpu': {'slots': 2}}, 'shedding': {'enabled': False},
                         'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'latency_budget_ms': 5000.0, 'queue_size': 8,
                   'worker': 'onnxruntime', 'timeout_ms': timeout_ms,
                   'worker_options': dict({'model_path': model_path, 'warmup': 1,
                                           'intra_op_threads': 1}, **options)}],
    }


def run_engine(config, images):
    results = []
    engine = Engine(config, on_result=results.append)
    engine.start()
    try:
        for image in images:
            engine.submit('camera', image, age_s=0.0)
            assert engine.drain(10.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    return sorted(results, key=lambda r: r.seq), snapshot


def test_engine_runs_the_onnx_worker_on_two_slots(tmp_path):
    images = [np.full((20, 30, 3), v, np.uint8) for v in (1, 2, 3)]
    results, snapshot = run_engine(engine_config(channel_sum_model(tmp_path), scale=1.0),
                                   images)
    assert [r.status for r in results] == [reasons.OK] * 3
    assert [float(r.outputs['y'][0, 0, 0, 0]) for r in results] == [3.0, 6.0, 9.0]
    assert snapshot.tasks['detector'].executed == 3
    assert check_invariants(snapshot) == []


def test_a_model_that_raises_fails_the_frame_and_the_engine_keeps_running(tmp_path):
    images = [np.zeros((5, 5, 3), np.uint8), np.zeros((7, 9, 3), np.uint8),
              np.zeros((5, 5, 3), np.uint8)]
    # No warm-up: it would fail (a 480x640 image), and the task would not load at all.
    results, snapshot = run_engine(engine_config(raising_model(tmp_path), warmup=0), images)
    assert [(r.status, r.reason) for r in results] == [
        (reasons.OK, ''), (reasons.FAILED, reasons.WORKER_ERROR), (reasons.OK, '')]
    assert 'Fail' in results[1].detail or 'Error' in results[1].detail
    assert snapshot.tasks['detector'].failed_by_reason == {reasons.WORKER_ERROR: 1}


def test_the_engine_reports_a_worker_that_cannot_load(tmp_path):
    engine = Engine(engine_config(str(tmp_path / 'absent.onnx')))
    with pytest.raises(WorkerLoadError, match="task 'detector': worker 'onnxruntime' failed "
                                              'to load: FileNotFoundError'):
        engine.load()


# -- batches (scheduling/batching.py) ------------------------------------------------------

def batch_images(count, size=(8, 8)):
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, size + (3,), dtype=np.uint8) for _ in range(count)]


def test_a_dynamic_batch_splits_into_each_frames_own_outputs(tmp_path):
    worker = make_worker(identity_model(tmp_path, ['n', 3, 8, 8]), scale=1.0,
                         intra_op_threads=1)
    worker.load()
    assert worker.batch_limit() == 1024  # dynamic: the task's max_batch decides
    images = batch_images(3)
    outputs = worker.infer_batch([frame(image, seq=i) for i, image in enumerate(images)])
    assert len(outputs) == 3
    for image, output in zip(images, outputs):
        assert output.outputs['y'].shape == (1, 3, 8, 8)  # as a one-frame call gives it
        assert np.array_equal(output.outputs['y'][0], image.transpose(2, 0, 1))
        assert np.array_equal(output.outputs['y'], worker.infer(frame(image)).outputs['y'])
    worker.warmup_batches(range(2, 4), 3)
    assert 0 < worker.fast_batch_latency_s(3) <= worker.expected_batch_latency_s(3)


def test_a_batch_run_hands_its_arena_growth_back(tmp_path):
    """Batch runs shrink the CPU arena when they end; single frames keep it (their size)."""
    worker = make_worker(identity_model(tmp_path, ['n', 3, 8, 8]), scale=1.0,
                         intra_op_threads=1)
    worker.load()
    session, run_options = worker.session, []

    class Recording:

        def run(self, names, feeds, options=None):
            run_options.append(options)
            return session.run(names, feeds, options)
    worker.session = Recording()
    images = batch_images(2)
    worker.infer_batch([frame(image) for image in images])
    worker.infer(frame(images[0]))
    assert [options is None for options in run_options] == [False, True]
    assert run_options[0].get_run_config_entry(
        'memory.enable_memory_arena_shrinkage') == 'cpu:0'


def test_a_fixed_batch_is_padded_to_its_rows(tmp_path):
    worker = make_worker(identity_model(tmp_path, [4, 3, 8, 8]), scale=1.0,
                         intra_op_threads=1)
    worker.load()
    assert worker.batch_limit() == 4
    images = batch_images(2)
    outputs = worker.infer_batch([frame(image) for image in images])
    assert [np.array_equal(o.outputs['y'][0], i.transpose(2, 0, 1))
            for o, i in zip(outputs, images)] == [True, True]
    single = worker.infer(frame(images[0]))  # one frame in the model's four rows
    assert np.array_equal(single.outputs['y'][0], images[0].transpose(2, 0, 1))


def test_frames_of_one_batch_must_give_one_input_shape(tmp_path):
    worker = make_worker(channel_sum_model(tmp_path, batch='n'), intra_op_threads=1)
    worker.load()
    with pytest.raises(ValueError, match='a batch needs one: set input_size'):
        worker.infer_batch([frame(np.zeros((8, 8, 3), np.uint8)),
                            frame(np.zeros((16, 8, 3), np.uint8))])


def test_a_task_batches_its_cameras_through_onnxruntime(tmp_path):
    """The engine's batches on a real model: each frame's result is its own."""
    path = identity_model(tmp_path, ['n', 3, 8, 8])
    config = load_config({
        'orchestrator': {'telemetry': {'resources': False}},
        'inputs': {'cam0': {}, 'cam1': {}, 'cam2': {}},
        'tasks': [{'name': 'detector', 'inputs': ['cam0', 'cam1', 'cam2'],
                   'latency_budget_ms': 5000.0, 'max_batch': 3, 'worker': 'onnxruntime',
                   'worker_options': {'model_path': path, 'scale': 1.0, 'warmup': 2,
                                      'intra_op_threads': 1}}]})
    results = []
    engine = Engine(config, on_result=results.append)
    engine.start()
    images = batch_images(7)
    for index, image in enumerate(images):
        engine.submit(f'cam{index % 3}', image, meta=index)
    assert engine.drain(10.0)
    engine.stop()
    assert sorted(r.meta for r in results) == list(range(7))
    for result in results:
        assert result.status == reasons.OK
        assert np.array_equal(result.outputs['y'][0], images[result.meta].transpose(2, 0, 1))
    snapshot = engine.snapshot()
    assert check_invariants(snapshot) == []
    costs = snapshot.tasks['detector'].batch_cost_ms
    assert len(costs) == 3 and all(cost > 0 for cost in costs)  # warmed up at each size
