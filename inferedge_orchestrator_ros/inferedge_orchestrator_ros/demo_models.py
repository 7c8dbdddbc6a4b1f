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

"""The demos' real models: the three PP-OCR models of the rapidocr-onnxruntime pip package."""

import importlib.util
import os
from typing import Dict, Optional

RAPIDOCR_MODELS = {
    'detector': 'ch_PP-OCRv4_det_infer.onnx',
    'classifier': 'ch_ppocr_mobile_v2.0_cls_infer.onnx',
    'recognizer': 'ch_PP-OCRv4_rec_infer.onnx',
}


def models_folder(package: str) -> Optional[str]:
    """Return the models folder of a Python package (without importing it), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], 'models')


def model_paths(given: Dict[str, str]) -> Dict[str, str]:
    """Return a path per task: the given one, else rapidocr's; RuntimeError names what lacks."""
    folder = models_folder('rapidocr_onnxruntime')
    paths = {task: given.get(task) or (os.path.join(folder, RAPIDOCR_MODELS[task])
                                       if folder else '') for task in given}
    missing = [f'{task}_model' for task, path in paths.items() if not path]
    if missing:
        raise RuntimeError(f'no model for {", ".join(missing)}: give the paths as launch '
                           'arguments, or pip install --no-deps rapidocr-onnxruntime')
    return paths
