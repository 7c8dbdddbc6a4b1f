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

from glob import glob

from setuptools import find_packages, setup

package_name = 'inferedge_orchestrator_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],  # and inferedge_orchestrator (package.xml)
    # colcon runs a package's tests with pytest only when its test extra names pytest (else
    # unittest, which cannot run launch tests).
    extras_require={'test': ['pytest']},
    zip_safe=True,
    maintainer='The inferedge_orchestrator_ros Authors',
    maintainer_email='maintainers@users.noreply.r-seed-4e8594ca.example',
    description='The ROS 2 node of inferedge_orchestrator: image topics in, results, telemetry, '
                'decisions and diagnostics out; lifecycle, parameters, launch files.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'orchestrator = inferedge_orchestrator_ros.node:main',
            'synthetic_camera = inferedge_orchestrator_ros.synthetic_camera:main',
            'top = inferedge_orchestrator_ros.top:main',
        ],
    },
)
