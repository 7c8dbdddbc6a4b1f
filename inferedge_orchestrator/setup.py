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

from setuptools import find_packages, setup

package_name = 'inferedge_orchestrator'

OPTIONAL = {
    'onnx': ['onnxruntime', 'onnx'],
    'opencv': ['opencv-python-headless<5'],
    'plots': ['matplotlib'],
    # The Prometheus endpoint (metrics_port, run --metrics-port); start_http_server returns
    # its server from 0.17 on, so that it can be stopped.
    'metrics': ['prometheus_client>=0.17'],
    'resources': ['psutil'],
    # The triton worker's client; a server is not part of it (docs/workers.md).
    'triton': ['tritonclient[grpc,http]'],
}
# test: what the whole suite and the README's demo need, the optional extras included; only
# the Triton server (its own venv) and ROS 2 stay outside, and their tests say so.
EXTRAS = dict(OPTIONAL, test=['pytest', 'hypothesis'] + sorted(
    {package for packages in OPTIONAL.values() for package in packages}),
    # On a Jetson, TensorRT and pycuda come with JetPack instead.
    tensorrt=['tensorrt', 'pycuda'])

setup(
    name=package_name,
    version='0.1.0',
    package_dir={'': 'src'},
    packages=find_packages('src'),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    python_requires='>=3.10',
    install_requires=['setuptools', 'numpy', 'PyYAML'],
    extras_require=EXTRAS,
    zip_safe=True,
    maintainer='The inferedge_orchestrator_ros Authors',
    maintainer_email='maintainers@users.noreply.r-seed-4e8594ca.example',
    description='Keeps several DNN inference tasks on one robot computer responsive under '
                'contention: bounded queues, priority and deadline scheduling, load shedding '
                '(the ROS-agnostic core).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'inferedge-orchestrator = inferedge_orchestrator.tools.cli:main',
        ],
    },
)
