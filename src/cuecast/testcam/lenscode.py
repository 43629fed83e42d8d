"""A number painted *through the demo fisheye lens*: corrected with that lens (cuecast `--calibration` = the
demo lens) the code is a straight row of blocks at `corrected_centres`; in the raw picture the same blocks
are at `raw_centres`. The test camera paints each frame's number this way on the demo picture, and the
benches read it back from raw or corrected frames (`read_code`) to know which frame they hold."""

from __future__ import annotations

import cv2
import numpy as np

BITS, CHECK_BITS = 40, 8
MOD = 2**BITS
LENS_BLOCK = 24
LENS_BITS = BITS + CHECK_BITS


def read_code(img: np.ndarray, centres: np.ndarray) -> int | None:
    """The number painted at `centres` (x, y per block, in this picture's pixels), None if unreadable."""
    xs = np.clip(np.rint(centres[:, 0]).astype(int), 0, img.shape[1] - 1)
    ys = np.clip(np.rint(centres[:, 1]).astype(int), 0, img.shape[0] - 1)
    grey = img[ys, xs].astype(int).sum(axis=1) if img.ndim == 3 else img[ys, xs].astype(int) * 3
    bits = (grey > 3 * 128).astype(int)
    value = int(sum(int(b) << i for i, b in enumerate(bits[:BITS])))
    check = int(sum(int(b) << i for i, b in enumerate(bits[BITS:])))
    return value if value % 251 == check else None


class LensCode:
    """Where a number painted *through the demo fisheye lens* lands: corrected with that lens (cuecast
    `--calibration` = the demo lens) the code is a straight row of blocks at `corrected_centres`; in the raw
    picture the same blocks are at `raw_centres`. `paint` draws a number into a raw (lens) picture, `read_code`
    reads it back from either. Geometry only: the bench's camera process (bench/camera.py) and its readers
    (bench/shm_reader.py) both use it."""

    def __init__(self, width: int = 1920, height: int = 1080) -> None:
        from cuecast.lens.maps import output_matrix
        from cuecast.media.demo import demo_model

        m = demo_model().scaled_to(width, height)
        P = output_matrix(m)
        b = min(LENS_BLOCK, max(4, width // (LENS_BITS + 8)))  # fits smaller pictures too
        x0, y0 = (width - LENS_BITS * b) // 2, height // 2 - 4 * b
        centres = np.array([(x0 + k * b + b / 2, y0 + b / 2) for k in range(LENS_BITS)], np.float32)
        self.corrected_centres = centres
        mx, my = cv2.fisheye.initUndistortRectifyMap(m.K, m.D, np.eye(3), P, (width, height), cv2.CV_32FC1)
        iy, ix = np.rint(centres[:, 1]).astype(int), np.rint(centres[:, 0]).astype(int)
        self.raw_centres = np.stack([mx[iy, ix], my[iy, ix]], axis=1)
        # Which block each camera pixel near the code shows: undistort every pixel of the code's bounding box.
        corners = np.array([(x0, y0), (x0 + LENS_BITS * b, y0), (x0, y0 + b), (x0 + LENS_BITS * b, y0 + b)])
        raw = np.stack([mx[np.clip(corners[:, 1], 0, height - 1), np.clip(corners[:, 0], 0, width - 1)],
                        my[np.clip(corners[:, 1], 0, height - 1), np.clip(corners[:, 0], 0, width - 1)]], 1)
        bx0, by0 = (int(v) - 2 * b for v in raw.min(axis=0))
        bx1, by1 = (int(v) + 2 * b for v in raw.max(axis=0))
        bx0, by0, bx1, by1 = max(0, bx0), max(0, by0), min(width, bx1), min(height, by1)
        gx, gy = np.meshgrid(np.arange(bx0, bx1, dtype=np.float32), np.arange(by0, by1, dtype=np.float32))
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1).reshape(-1, 1, 2)
        und = cv2.fisheye.undistortPoints(pts, m.K, m.D, R=np.eye(3), P=P).reshape(gy.shape + (2,))
        col = np.floor((und[..., 0] - x0) / b).astype(int)
        inside = (und[..., 1] >= y0) & (und[..., 1] < y0 + b) & (col >= 0) & (col < LENS_BITS)
        self._box = (bx0, by0, bx1, by1)
        self._mask = inside
        self._index = col[inside]

    def paint(self, img: np.ndarray, value: int) -> None:
        """Draw `value` (mod 2^40, with its check bits) into the raw picture `img`, through the lens."""
        value %= MOD
        bits = np.array([(value >> i) & 1 for i in range(BITS)] + [((value % 251) >> i) & 1 for i in range(CHECK_BITS)])
        bx0, by0, bx1, by1 = self._box
        region = img[by0:by1, bx0:bx1]
        region[self._mask] = (bits[self._index] * 255).astype(np.uint8)[:, None]


