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
The camera encodings outside the zero-copy path, converted once per frame (no rclpy here).

YUV 4:2:2 (uyvy / yuv422, yuyv / yuv422_yuy2) and the Bayer patterns (8 and 16 bits) go through
cv_bridge's cvtColor2, which calls OpenCV's cvtColor with cv_bridge's conversion codes; nv21
and nv24, which cv_bridge 3.4 does not know, go through OpenCV directly. The result is one
array in an engine encoding (bgr8, rgb8 or mono8: the input's convert_to), shared by every
task of the frame. The message is read as a step-aware view first (images.samples), not by
CvBridge.imgmsg_to_cv2: in cv_bridge 3.4 that one copies the frame, reads a step that is not
a multiple of the pixel size wrongly, knows neither uyvy, yuyv, nv21 nor nv24, and calls
ndarray.newbyteorder, which numpy 2 removed (big-endian 16-bit images raise).

Plane layouts read here: uyvy / yuyv: one plane of width x 2 bytes per row; nv21: the Y plane
(height rows of step bytes) followed by the interleaved V/U plane (height / 2 rows of step
bytes), as OpenCV's COLOR_YUV2*_NV21 reads it; nv24: the Y plane followed by the interleaved
U/V plane at full resolution (height rows of 2 x step bytes), as libcamera (camera_ros) lays
it out. nv24 is BT.601 limited range, like OpenCV's 4:2:0 conversions: it is expanded to full
range through lookup tables and converted with OpenCV's YCrCb formulas.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from inferedge_orchestrator import plane_fault, PREPROCESS_OPTIONS, reasons, size_fault
from inferedge_orchestrator_ros.images import image_to_array, samples
import numpy as np

TARGETS = ('bgr8', 'rgb8', 'mono8')
PASSTHROUGH = 'passthrough'
AUTO = 'auto'
CONVERT_TO = (AUTO,) + TARGETS + (PASSTHROUGH,)
# The target that a preprocessing channel order wants.
CHANNEL_ORDER_TARGETS = {'rgb': 'rgb8', 'bgr': 'bgr8', 'gray': 'mono8'}
CV_BRIDGE = 'cv_bridge'
OPENCV = 'OpenCV'


@dataclass(frozen=True)
class CameraEncoding:
    """How one camera encoding is read and converted."""

    name: str
    layout: str  # packed422, bayer, nv21 or nv24
    bridge_name: str  # its name in cv_bridge 3.4 (empty: converted with OpenCV directly)
    itemsize: int = 1  # bytes per sample
    raw: str = ''  # the engine encoding it passes through as (empty: it cannot)

    @property
    def needs(self) -> str:
        """Return what converts it: cv_bridge or OpenCV."""
        return CV_BRIDGE if self.bridge_name else OPENCV


def _table() -> Dict[str, CameraEncoding]:
    table = [CameraEncoding('uyvy', 'packed422', 'yuv422'),
             CameraEncoding('yuv422', 'packed422', 'yuv422'),
             CameraEncoding('yuyv', 'packed422', 'yuv422_yuy2'),
             CameraEncoding('yuv422_yuy2', 'packed422', 'yuv422_yuy2'),
             CameraEncoding('nv21', 'nv21', ''),
             CameraEncoding('nv24', 'nv24', '')]
    for pattern in ('rggb', 'bggr', 'gbrg', 'grbg'):
        table.append(CameraEncoding(f'bayer_{pattern}8', 'bayer', f'bayer_{pattern}8', 1,
                                    'mono8'))
        table.append(CameraEncoding(f'bayer_{pattern}16', 'bayer', f'bayer_{pattern}16', 2,
                                    'mono16'))
    return {encoding.name: encoding for encoding in table}


CAMERA_ENCODINGS = _table()


def default_target(config, input_name: str) -> str:
    """
    Return the target an input converts to by default.

    It is what the preprocessing of the first task consuming the input wants (its worker's
    channel_order: rgb8, bgr8 or mono8); a worker without preprocessing (dummy) gets the
    preprocessing's default order.
    """
    default = PREPROCESS_OPTIONS['channel_order'].default
    order = next((task.worker_options.get('channel_order', default) for task in config.tasks
                  if input_name in task.inputs), default)
    return CHANNEL_ORDER_TARGETS[order]


def resolve_target(convert_to: str, config, input_name: str) -> str:
    """Return an input's target: convert_to, or default_target() for auto."""
    return default_target(config, input_name) if convert_to == AUTO else convert_to


def _full_range_tables() -> Tuple[np.ndarray, np.ndarray]:
    """Return the BT.601 limited-to-full-range lookup tables of luma and chroma (uint8)."""
    codes = np.arange(256, dtype=np.float64)
    luma = np.clip(np.rint((codes - 16.0) * 255.0 / 219.0), 0, 255).astype(np.uint8)
    chroma = np.clip(np.rint((codes - 128.0) * 255.0 / 224.0 + 128.0), 0, 255).astype(np.uint8)
    return luma, chroma


_LUMA_FULL, _CHROMA_FULL = _full_range_tables()


def _load_cv_bridge() -> Tuple[Optional[Callable], str]:
    """Return (cvtColor2, '') or (None, why cv_bridge cannot be used)."""
    try:
        import cv_bridge  # noqa: F401 - the package first: its failure names it
        from cv_bridge.boost.cv_bridge_boost import cvtColor2
        # A numpy ABI mismatch (ros-perception/vision_opencv#535) may only show on a call.
        cvtColor2(np.zeros((2, 2), np.uint8), 'bayer_rggb8', 'bgr8')
    except Exception as error:  # noqa: B902 - any failure to load or call it is the same
        return None, f'{type(error).__name__}: {error}'
    return cvtColor2, ''


def _load_opencv() -> Tuple[Any, str]:
    """Return (the cv2 module, '') or (None, why it cannot be imported)."""
    try:
        import cv2
    except Exception as error:  # noqa: B902 - ImportError or a broken binary module
        return None, f'{type(error).__name__}: {error}'
    return cv2, ''


class Converter:
    """
    Converts frames in the camera encodings into an engine encoding (the image callback's).

    warn(text) is called once per missing converter (cv_bridge, OpenCV), at the first frame
    that needs it; such frames are malformed (unsupported_encoding), the others convert.
    """

    def __init__(self, warn: Callable[[str], None] = lambda text: None):
        self._warn = warn
        self._cvt_color2, bridge_error = _load_cv_bridge()
        self._cv2, opencv_error = _load_opencv()
        self.missing = {CV_BRIDGE: bridge_error, OPENCV: opencv_error}
        self._warned = set()
        cv2 = self._cv2
        # target -> OpenCV's conversion code, of nv21 and of nv24's YCrCb.
        self._nv21_codes = {} if cv2 is None else {
            'bgr8': cv2.COLOR_YUV2BGR_NV21, 'rgb8': cv2.COLOR_YUV2RGB_NV21,
            'mono8': cv2.COLOR_YUV2GRAY_NV21}
        self._ycrcb_codes = {} if cv2 is None else {
            'bgr8': cv2.COLOR_YCrCb2BGR, 'rgb8': cv2.COLOR_YCrCb2RGB}

    def available(self, encoding: str) -> bool:
        """Return whether frames in this camera encoding can be converted here."""
        spec = CAMERA_ENCODINGS.get(encoding)
        return spec is not None and not self.missing[spec.needs]

    def convert(self, encoding: str, height: int, width: int, step: int, is_bigendian: int,
                data: Any, max_pixels: int, target: str
                ) -> Tuple[Optional[np.ndarray], str, str]:
        """
        Return (HxWxC image, its engine encoding, '') or (None, '', malformed reason).

        The image is a new array, except with target passthrough (a Bayer mosaic as mono8 or
        mono16, a view like image_to_array's) and nv24 to mono8 (a view on the Y plane).
        """
        spec = CAMERA_ENCODINGS.get(encoding)
        if spec is None:
            return None, '', reasons.UNKNOWN_ENCODING
        fault = size_fault(height, width, max_pixels)
        if fault:
            return None, '', fault
        if target == PASSTHROUGH:
            if not spec.raw:
                return None, '', reasons.UNSUPPORTED_ENCODING
            image, reason = image_to_array(spec.raw, height, width, step, is_bigendian, data,
                                           max_pixels)
            return image, spec.raw if image is not None else '', reason
        reason = _check_layout(spec, height, width, step, data)
        if reason:
            return None, '', reason
        missing = self.missing[spec.needs]
        if missing:
            if spec.needs not in self._warned:
                self._warned.add(spec.needs)
                self._warn(_missing_text(spec.needs, missing, encoding))
            return None, '', reasons.UNSUPPORTED_ENCODING
        try:
            image = self._convert(spec, height, width, step, is_bigendian, data, target)
        except Exception:  # noqa: B902 - cv2.error, RuntimeError: the frame is malformed
            return None, '', reasons.BAD_ARRAY
        if image.ndim == 2:
            image = image[:, :, None]
        return image, target, ''

    def _convert(self, spec: CameraEncoding, height: int, width: int, step: int,
                 is_bigendian: int, data: Any, target: str) -> np.ndarray:
        if spec.layout == 'packed422':
            rows = samples(data, np.dtype(np.uint8), step, height, 0)[:, :width * 2]
            return self._cvt_color2(rows.reshape(height, width, 2), spec.bridge_name, target)
        if spec.layout == 'bayer':
            native = np.dtype(np.uint8 if spec.itemsize == 1 else np.uint16)
            rows = samples(data, native, step, height, is_bigendian)[:, :width]
            return self._cvt_color2(rows, spec.bridge_name, target)
        cv2 = self._cv2
        if spec.layout == 'nv21':
            planes = samples(data, np.dtype(np.uint8), step, height * 3 // 2, 0)[:, :width]
            return cv2.cvtColor(planes, self._nv21_codes[target])
        luma = samples(data, np.dtype(np.uint8), step, height, 0)[:, :width]
        if target == 'mono8':
            return luma  # as OpenCV's 4:2:0 gray conversions: the Y plane as it is
        chroma = np.frombuffer(data, np.uint8, count=2 * step * height, offset=step * height)
        chroma = chroma.reshape(height, 2 * step)[:, :2 * width].reshape(height, width, 2)
        chroma = cv2.LUT(chroma, _CHROMA_FULL)
        ycrcb = cv2.merge([cv2.LUT(luma, _LUMA_FULL), chroma[:, :, 1], chroma[:, :, 0]])
        return cv2.cvtColor(ycrcb, self._ycrcb_codes[target])


def _check_layout(spec: CameraEncoding, height: int, width: int, step: int, data: Any) -> str:
    """Return why a frame's sizes do not fit its encoding's planes ('' when they do)."""
    if spec.layout == 'packed422':
        row, rows, misfit = width * 2, height, width % 2  # a macropixel holds two pixels
    elif spec.layout == 'bayer':
        row, rows, misfit = width * spec.itemsize, height, step % spec.itemsize
    elif spec.layout == 'nv21':  # 4:2:0 chroma covers 2x2 pixels
        row, rows, misfit = width, height * 3 // 2, width % 2 or height % 2
    else:  # nv24: Y rows of step bytes, then U/V rows of 2 x step bytes
        row, rows, misfit = width, height * 3, 0
    return plane_fault(step, row, rows, misfit, data)


def _missing_text(needs: str, error: str, encoding: str) -> str:
    encodings = ', '.join(name for name, spec in CAMERA_ENCODINGS.items()
                          if spec.needs == needs)
    if needs == CV_BRIDGE:
        remedy = ('install cv_bridge built against this numpy (ros-<distro>-cv-bridge; '
                  'a numpy 2 mismatch: ros-perception/vision_opencv#535)')
    else:
        remedy = 'install python3-opencv or pip install opencv-python-headless'
    return (f'{needs} cannot be used ({error}): frames in {encodings} (the first: {encoding}) '
            f'are counted malformed (unsupported_encoding); the other encodings still work; '
            f'{remedy}')
