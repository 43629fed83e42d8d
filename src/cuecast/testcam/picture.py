"""What the test camera's sensor sees, and its frames in each format: a base picture (the demo table through
the demo lens, a test pattern, a video file's first frame, or a checkerboard held in one pose after another
through a known fisheye lens: `board`, or `board:LENS.yaml` for another lens), the picture level its controls
set (brightness, gain and exposure change it, as on a real sensor), and each frame's number painted as blocks
at the top left (`read_number` reads it back), so a test can tell which frame it holds. Frames are made once
per (format, size, level, number, pose) and reused: the camera costs little while the picture does not change."""

from __future__ import annotations

import threading
from collections import OrderedDict

import cv2
import numpy as np

from cuecast.testcam.lenscode import LensCode

BITS, CHECK_BITS, BLOCK, X0, Y0 = 16, 8, 12, 8, 8
JPEG_QUALITY = 85
CACHE_FRAMES = 1300  # every number the camera paints (daemon.NUMBERS, 600) at two picture levels: after
# the first cycle nothing is encoded again (1080p: about 63 KiB a frame, 80 MiB in all)


def paint_number(img: np.ndarray, n: int) -> None:
    value = n % (1 << BITS)
    bits = [(value >> i) & 1 for i in range(BITS)] + [((value % 251) >> i) & 1 for i in range(CHECK_BITS)]
    for i, bit in enumerate(bits):
        x = X0 + i * BLOCK
        img[Y0:Y0 + BLOCK, x:x + BLOCK] = 255 if bit else 0


def read_number(img: np.ndarray) -> int | None:
    """The frame number painted by `paint_number` (mod 2^16) in a BGR or grey picture, None if unreadable."""
    grey = img if img.ndim == 2 else img.mean(axis=2)
    bits = [int(grey[Y0 + BLOCK // 2, X0 + i * BLOCK + BLOCK // 2] > 128) for i in range(BITS + CHECK_BITS)]
    value = sum(b << i for i, b in enumerate(bits[:BITS]))
    check = sum(b << i for i, b in enumerate(bits[BITS:]))
    return value if value % 251 == check else None


HOLD_S = 1.5  # `board`: how long the board stays in each pose


class BoardScenes:
    """`picture: board[:LENS.yaml]`: the board's poses of one size, rendered on first use (about 50 ms each at
    1280x720), through the given lens (its camera.yaml, scaled to the size) or the default one."""

    def __init__(self, picture: str, width: int, height: int) -> None:
        from cuecast.testcam import board

        lens = picture.partition(":")[2]
        if lens:
            from pathlib import Path

            from cuecast.lens.model import CalibrationError, load_model

            try:
                model = load_model(Path(lens)).scaled_to(width, height)
            except CalibrationError as e:
                raise ValueError(f"picture {picture!r}: {e}") from None
            K, D = model.K, model.D
        else:
            if abs(width / height - 16 / 9) > 0.01:
                raise ValueError(f"picture board: the default lens is 16:9, this mode is {width}x{height}; give "
                                 "board:LENS.yaml")
            K, D = board.scaled_lens((width, height)), board.TRUE_D
        self.renderer = board.BoardRenderer(K, D, (width, height), supersample=1)
        self.poses = board.tour(self.renderer)
        self._pictures: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.poses)

    def picture(self, scene: int) -> np.ndarray:
        i = scene % len(self.poses)
        if i not in self._pictures:
            self._pictures[i] = cv2.cvtColor(self.renderer.render(self.poses[i]), cv2.COLOR_GRAY2BGR)
        return self._pictures[i]


def base_picture(picture: str, width: int, height: int) -> np.ndarray:
    if picture == "demo":
        from cuecast.media.demo import DemoScene

        if abs(width / height - 16 / 9) > 0.01:  # the demo lens is 16:9: another mode shows the sensor resized
            w16 = width // 2 * 2
            scene = DemoScene(w16, (w16 * 9 // 16) // 2 * 2).background_bgr
            return cv2.resize(scene, (width, height), interpolation=cv2.INTER_AREA)
        return DemoScene(width, height).background_bgr.copy()
    if picture.startswith("test:"):
        pattern = picture[5:] or "bars"
        img = np.zeros((height, width, 3), np.uint8)
        if pattern == "bars":
            colours = [(192, 192, 192), (0, 192, 192), (192, 192, 0), (0, 192, 0), (192, 0, 192), (0, 0, 192),
                       (192, 0, 0)]
            for i, c in enumerate(colours):
                img[:, i * width // 7:(i + 1) * width // 7] = c
        elif pattern == "grey":
            img[:] = 128
        else:
            raise ValueError(f"picture {picture!r}: test patterns are test:bars and test:grey")
        return img
    cap = cv2.VideoCapture(picture)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise ValueError(f"picture {picture!r}: not demo, test:PATTERN or a readable video file")
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def to_yuyv(bgr: np.ndarray) -> bytes:
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    y = yuv[..., 0]
    u = ((yuv[:, 0::2, 1].astype(np.uint16) + yuv[:, 1::2, 1]) // 2).astype(np.uint8)
    v = ((yuv[:, 0::2, 2].astype(np.uint16) + yuv[:, 1::2, 2]) // 2).astype(np.uint8)
    out = np.empty((bgr.shape[0], bgr.shape[1] * 2), np.uint8)
    out[:, 0::4], out[:, 2::4] = y[:, 0::2], y[:, 1::2]
    out[:, 1::4], out[:, 3::4] = u, v
    return out.tobytes()


class Frames:
    """Encoded frames of one device, made on demand and kept (an LRU of CACHE_FRAMES)."""

    def __init__(self, picture: str) -> None:
        self.picture = picture
        self._bases: dict[tuple[int, int], np.ndarray] = {}
        self._boards: dict[tuple[int, int], BoardScenes] = {}
        self._lens: dict[tuple[int, int], LensCode] = {}
        self._cache: OrderedDict[tuple[str, int, int, int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def scenes(self, width: int, height: int) -> int:
        """How many pictures the sensor shows in turn (the board's poses; 1 for a still picture)."""
        return len(self._board(width, height)) if self._moving else 1

    @property
    def _moving(self) -> bool:
        return self.picture == "board" or self.picture.startswith("board:")

    def _board(self, width: int, height: int) -> BoardScenes:
        with self._lock:
            if (width, height) not in self._boards:
                self._boards[(width, height)] = BoardScenes(self.picture, width, height)
            return self._boards[(width, height)]

    def base(self, width: int, height: int, scene: int = 0) -> np.ndarray:
        if self._moving:
            board = self._board(width, height)
            with self._lock:
                return board.picture(scene)
        with self._lock:
            if (width, height) not in self._bases:
                self._bases[(width, height)] = base_picture(self.picture, width, height)
            return self._bases[(width, height)]

    def lens_code(self, width: int, height: int) -> LensCode | None:
        """On the demo picture, the frame number is also painted through the demo lens (LensCode), so a reader
        of corrected frames finds it in a straight row; None for other pictures or aspect ratios."""
        if self.picture != "demo" or abs(width / height - 16 / 9) > 0.01 or width < 640:
            return None
        with self._lock:
            if (width, height) not in self._lens:
                self._lens[(width, height)] = LensCode(width, height)
            return self._lens[(width, height)]

    def frame(self, fourcc: str, width: int, height: int, level_pct: int, number: int, scene: int = 0) -> bytes:
        key = (fourcc, width, height, level_pct, number, scene)
        with self._lock:
            got = self._cache.get(key)
            if got is not None:
                self._cache.move_to_end(key)
                return got
        img = self.base(width, height, scene)
        if level_pct != 100:
            img = cv2.convertScaleAbs(img, alpha=level_pct / 100.0)
        else:
            img = img.copy()
        paint_number(img, number)
        lens = self.lens_code(width, height)
        if lens is not None:
            lens.paint(img, number)
        if fourcc == "MJPG":
            data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
        else:
            data = to_yuyv(img)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > CACHE_FRAMES:
                self._cache.popitem(last=False)
        return data
