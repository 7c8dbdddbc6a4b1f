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

"""Decoders behind a real onnxruntime worker in the engine (generated constant-output models)."""

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.contracts.errors import WorkerLoadError
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.telemetry.invariants import check_invariants
import numpy as np
import pytest

from .conftest import isolated
from .onnx_models import constant_outputs_model, require_onnx


@pytest.fixture(autouse=True)
def ort():
    """Skip each test of this module by name when onnx or onnxruntime is missing."""
    return require_onnx()


def yolov8_output(rows, candidates=64):
    out = np.zeros((candidates, len(rows[0])), dtype=np.float32)
    out[:len(rows)] = rows
    return out.T[None]  # [1, 4 + C, N]


def config(model_path, decoder, decoder_options=None, **worker_options):
    return {
        'orchestrator': {'pools': {'cpu': {'slots': 1}}, 'telemetry': {'resources': False}},
        'tasks': [{'name': 'detector', 'latency_budget_ms': 5000.0, 'queue_size': 8,
                   'worker': 'onnxruntime', 'decoder': decoder,
                   'decoder_options': decoder_options or {},
                   'worker_options': dict({'model_path': model_path, 'warmup': 1,
                                           'intra_op_threads': 1}, **worker_options)}],
    }


def run(config_data, image, isolation):
    results = []
    engine = Engine(isolated(config_data, isolation), on_result=results.append)
    engine.start()
    try:
        engine.submit('camera', image, age_s=0.0)
        assert engine.drain(10.0)
        snapshot = engine.snapshot()
    finally:
        engine.close()
    return results[0], snapshot


def test_yolo_detections_come_back_in_source_pixels(tmp_path, isolation):
    # A 320x320 letterboxed input of a 480x640 image: scale 0.5, 40 rows of padding on top.
    model = constant_outputs_model(
        tmp_path, [1, 3, 320, 320],
        {'output0': yolov8_output([[160, 160, 80, 40, 0.9, 0.0], [40, 80, 40, 40, 0.0, 0.8]])},
        metadata={'names': "{0: 'cat', 1: 'dog'}"})
    detector = config(model, 'yolo', {'labels': 'metadata:names'}, resize='letterbox')
    result, snapshot = run(detector, np.zeros((480, 640, 3), np.uint8), isolation)
    assert result.status == reasons.OK
    boxes = [(d.label, round(d.x1), round(d.y1), round(d.x2), round(d.y2))
             for d in result.decoded.detections]
    assert boxes == [('cat', 240, 200, 400, 280), ('dog', 40, 40, 120, 120)]
    assert result.postprocess_s > 0.0
    assert snapshot.tasks['detector'].latency['postprocess'].count == 1
    assert check_invariants(snapshot) == []


def test_a_nan_output_fails_the_frame_with_postprocess_error(tmp_path, isolation):
    model = constant_outputs_model(tmp_path, [1, 3, 32, 32],
                                   {'y': np.array([[np.nan, 1.0, 0.0]], np.float32)})
    result, snapshot = run(config(model, 'classification'), np.zeros((32, 32, 3), np.uint8),
                           isolation)
    assert (result.status, result.reason) == (reasons.FAILED, reasons.POSTPROCESS_ERROR)
    assert 'NaN' in result.detail
    assert snapshot.tasks['detector'].failed_by_reason == {reasons.POSTPROCESS_ERROR: 1}
    assert check_invariants(snapshot) == []


def test_an_ambiguous_yolo_output_is_a_configure_error(tmp_path, isolation):
    model = constant_outputs_model(tmp_path, [1, 3, 32, 32],
                                   {'y': np.zeros((1, 8400, 7), np.float32)})
    engine = Engine(isolated(config(model, 'yolo'), isolation))
    with pytest.raises(WorkerLoadError, match="task 'detector': decoder 'yolo': .*set "
                                              'decoder_options.layout'):
        engine.load()
