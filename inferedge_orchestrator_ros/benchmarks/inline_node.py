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
What users write without an orchestrator: every task's inference inside the image callback.

    python3 benchmarks/inline_node.py --ros-args -p config_file:=tasks.yaml -p topic:=/camera \
        [-p input:=front -r __node:=inline_front]

One rclpy node, one subscription with the default QoS (reliable, keep last 10), a
single-threaded executor; the callback runs each task of the config (the same onnxruntime
worker, preprocessing and thread settings the orchestrator uses) one after the other and
publishes an InferenceResult per task on ~/<task>/result with the image's header and the
input's name, as the orchestrator does, so that one subscriber measures both alike. The
benchmark's baseline; one such node per camera is what yolo_ros users run.
"""

import sys
import time

from inferedge_orchestrator import Frame, load_config, WORKERS
from inferedge_orchestrator_msgs.msg import InferenceResult
from inferedge_orchestrator_ros.images import image_to_array
import rclpy
from rclpy.node import Node
from ros_launch import spin_until_interrupted
from sensor_msgs.msg import Image


class InlineNode(Node):
    """Runs every task in the image callback, in config order."""

    def __init__(self):
        super().__init__('inline_inference')
        config_file = self.declare_parameter('config_file', '').value
        topic = self.declare_parameter('topic', '/camera/image_raw').value
        self._input = self.declare_parameter('input', 'camera').value
        config = load_config(config_file)
        self._workers = []
        for task in config.tasks:
            worker = WORKERS.create(task.worker, task.name, task.worker_options, 1)
            worker.load()
            worker.warmup(int(task.worker_options.get('warmup', 0) or 0))
            publisher = self.create_publisher(InferenceResult, f'~/{task.name}/result', 10)
            self._workers.append((task.name, worker, publisher))
        self._seq = 0
        self.create_subscription(Image, topic, self._on_image, 10)
        self.get_logger().info(f'{len(self._workers)} tasks inline on {topic}')

    def _on_image(self, msg: Image) -> None:
        image, reason = image_to_array(msg.encoding, msg.height, msg.width, msg.step,
                                       msg.is_bigendian, msg.data, 2 ** 40)
        if image is None:
            self.get_logger().warning(f'malformed image: {reason}', throttle_duration_sec=5.0)
            return
        self._seq += 1
        frame = Frame(self._input, self._seq, time.monotonic(), 0.0, image=image,
                      encoding=msg.encoding)
        for name, worker, publisher in self._workers:
            result = InferenceResult()
            result.header = msg.header
            result.task = name
            result.input = self._input
            result.frame_seq = self._seq
            try:
                output = worker.infer(frame)
            except Exception as error:  # noqa: B902 - a failing model fails that result
                result.status = InferenceResult.FAILED
                result.reason = 'worker_error'
                result.detail = f'{type(error).__name__}: {error}'[:2000]
            else:
                result.status = InferenceResult.OK
                result.preprocess_ms = output.preprocess_s * 1000.0
                result.inference_ms = output.inference_s * 1000.0
            publisher.publish(result)

    def destroy_node(self) -> None:
        for _, worker, _ in self._workers:
            worker.close()
        super().destroy_node()


def main(argv=None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    return spin_until_interrupted(InlineNode())


if __name__ == '__main__':
    sys.exit(main())
