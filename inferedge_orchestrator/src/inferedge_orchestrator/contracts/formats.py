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

"""The raw image encodings the engine takes, with their channel counts and element types."""

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, 'mono16': 1,
            '16UC1': 1, '32FC1': 1}
# The element type of each encoding's array (numpy dtype names); uint8 for the others.
# 16UC1 and 32FC1 are depth images (millimetres, metres by the ROS convention, REP 118).
DTYPES = {'mono16': 'uint16', '16UC1': 'uint16', '32FC1': 'float32'}


def dtype_of(encoding: str) -> str:
    """Return the numpy dtype name of an encoding's array."""
    return DTYPES.get(encoding, 'uint8')
