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
The bottom layer: what every other layer shares, importing nothing else from the core.

errors (the exceptions that cross layers), inference (what a worker returns and a decoder
reads and writes), formats (the raw image encodings), reasons (the closed vocabularies of
results, telemetry and decisions) and kinds (the worker, decoder and distribution names, and
where each kind lives).
"""
