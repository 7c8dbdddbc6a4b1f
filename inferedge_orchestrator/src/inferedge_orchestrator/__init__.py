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
Keep several DNN inference tasks responsive on one robot computer.

The ROS-agnostic core: config/ (the field schema and loading), engine/ (admission, slot pools),
scheduling/ (task state, the next job, expiry, shedding, queues), telemetry/ (counters,
statistics, decisions, reasons, traces), frames/, workers/, tools/ (CLI, runner, simulation).
It imports no ROS; the ROS 2 node is the inferedge_orchestrator_ros package.
"""

__version__ = '0.1.0'
