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
The demo: a synthetic camera and the orchestrator with three dummy workers, overloaded.

ros2 launch inferedge_orchestrator_ros demo.launch.py [namespace:=robot1]
ros2 topic echo /inferedge_orchestrator/telemetry
ros2 topic echo /inferedge_orchestrator/decisions

params_file defaults to config/demo.yaml; the other arguments are orchestrator.launch.py's.
"""

from inferedge_orchestrator_ros.demo_launch import demo_actions
from launch import LaunchDescription


def generate_launch_description():
    return LaunchDescription(demo_actions('demo.yaml'))
