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
Decoders: a task's model outputs turned into detections or classes, right after inference.

A decoder runs on the thread (or process) that ran the worker, its time the task's
postprocess series. Kinds: none (raw tensors only), yolo, boxes, classification; see
docs/decoders.md. Coordinates come back in source-image pixels through the preprocessing's
Geometry (workers/preprocess.py).
"""
