"""The built-in demo camera: a top-down pool table as seen through a fisheye lens, rendered once, then looped.

Owns the demo camera (DEMO_MODEL, the same numbers as the bundled data/demo_camera.yaml), the scene (cloth,
wooden rails, pockets, static balls whose true positions are known, two moving balls), rendering the table
once through the lens (cv2.fisheye.undistortPoints gives each fisheye pixel's ray), and the cheap per-frame
step: copy the background, draw the two moving balls; and which table a service uses (`resolve_table`: the
configured table.yaml, else the demo's own). Pure OpenCV/numpy; the source runner wraps it in appsrc.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np

from cuecast.config import Config
from cuecast.lens.maps import output_matrix
from cuecast.lens.model import FisheyeModel, load_model
from cuecast.table.model import TableGeometry, load_table

# The table plane at unit distance, in normalized camera coordinates (x right, y down). 2:1 like a pool table.
TABLE_HALF = (1.05, 0.525)
RAIL = 0.075
BALL_RADIUS = 0.03
CLOTH_BGR = (60, 120, 20)
RAIL_BGR = (30, 60, 110)
FLOOR_BGR = (45, 45, 50)
POCKET_BGR = (10, 10, 10)
CANVAS_PX_PER_UNIT = 1000  # finer than the lens's ~900 px/unit at the centre: no blur from the canvas
LOOP_FRAMES = 300  # moving balls repeat every 10 s at 30 fps


@dataclass(frozen=True)
class Ball:
    name: str
    bgr: tuple[int, int, int]
    x: float  # normalized table coordinates (true, undistorted)
    y: float


# Static balls, some near the rails and corners where the lens bends most.
STATIC_BALLS = (
    Ball("yellow", (0, 215, 255), 0.0, 0.0),
    Ball("blue", (200, 70, 0), -0.85, -0.38),
    Ball("red", (40, 30, 220), 0.86, 0.40),
    Ball("purple", (140, 30, 120), -0.80, 0.38),
    Ball("orange", (0, 130, 255), 0.82, -0.36),
    Ball("maroon", (40, 20, 120), 0.45, 0.05),
)
MOVING_BALLS = (Ball("white", (235, 235, 235), 0.0, 0.0), Ball("black", (25, 25, 25), 0.0, 0.0))


@cache
def demo_model() -> FisheyeModel:
    """The bundled calibration of the demo lens (1920x1080)."""
    return load_model(Path(str(files("cuecast").joinpath("data/demo_camera.yaml"))))


def demo_calibration_path() -> Path:
    return Path(str(files("cuecast").joinpath("data/demo_camera.yaml")))


def moving_position(i: int, n: int) -> tuple[float, float]:
    """Where moving ball i is at frame n (a smooth loop of LOOP_FRAMES frames)."""
    t = 2 * math.pi * (n % LOOP_FRAMES) / LOOP_FRAMES
    a, b = TABLE_HALF[0] - 0.2, TABLE_HALF[1] - 0.15
    if i == 0:
        return a * math.sin(t), b * math.sin(2 * t)
    return 0.6 * a * math.cos(t), b * 0.8 * math.sin(t)


def _draw_table(canvas: np.ndarray, to_px: Callable[[float, float], tuple[int, int]]) -> None:
    hx, hy = TABLE_HALF
    canvas[:] = FLOOR_BGR
    cv2.rectangle(canvas, to_px(-hx - RAIL, -hy - RAIL), to_px(hx + RAIL, hy + RAIL), RAIL_BGR, -1, cv2.LINE_AA)
    cv2.rectangle(canvas, to_px(-hx, -hy), to_px(hx, hy), CLOTH_BGR, -1, cv2.LINE_AA)
    scale = CANVAS_PX_PER_UNIT
    for px in (-hx, 0.0, hx):
        for py in (-hy, hy):
            cv2.circle(canvas, to_px(px, py), int(0.06 * scale), POCKET_BGR, -1, cv2.LINE_AA)
    # Diamonds on the rails: straight rows of dots show straightness at a glance.
    for k in range(1, 8):
        x = -hx + k * 2 * hx / 8
        for y in (-hy - RAIL / 2, hy + RAIL / 2):
            cv2.circle(canvas, to_px(x, y), int(0.01 * scale), (220, 220, 220), -1, cv2.LINE_AA)
    for k in range(1, 4):
        y = -hy + k * 2 * hy / 4
        for x in (-hx - RAIL / 2, hx + RAIL / 2):
            cv2.circle(canvas, to_px(x, y), int(0.01 * scale), (220, 220, 220), -1, cv2.LINE_AA)
    for ball in STATIC_BALLS:
        cv2.circle(canvas, to_px(ball.x, ball.y), int(BALL_RADIUS * scale), ball.bgr, -1, cv2.LINE_AA)


class DemoScene:
    """Renders the table once at (width, height); `frame_i420(n)` is then a copy plus two small circles."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        model = demo_model().scaled_to(width, height)
        self.model = model
        # Each fisheye pixel's ray (normalized coordinates on the table plane).
        us, vs = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        pts = np.stack([us.ravel(), vs.ravel()], axis=1).reshape(-1, 1, 2)
        rays = cv2.fisheye.undistortPoints(pts, model.K, model.D).reshape(height, width, 2)
        self._rays = rays
        ext = float(np.abs(rays).max()) * 1.02
        self._ext = ext
        side = int(2 * ext * CANVAS_PX_PER_UNIT) + 1
        canvas = np.zeros((side, side, 3), np.uint8)
        _draw_table(canvas, self._canvas_px)
        map_x = (rays[..., 0] + ext) * CANVAS_PX_PER_UNIT
        map_y = (rays[..., 1] + ext) * CANVAS_PX_PER_UNIT
        bgr = cv2.remap(canvas, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_AREA)
        self.background_bgr = bgr
        self.background = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # (h*3/2, w) planar

    def _canvas_px(self, x: float, y: float) -> tuple[int, int]:
        return (int(round((x + self._ext) * CANVAS_PX_PER_UNIT)), int(round((y + self._ext) * CANVAS_PX_PER_UNIT)))

    def distorted_px(self, x: float, y: float) -> tuple[float, float]:
        """Where a point of the table plane appears in the fisheye frame."""
        pt = np.array([[[x, y]]], np.float64)
        out = cv2.fisheye.distortPoints(pt, self.model.K, self.model.D)
        return float(out[0, 0, 0]), float(out[0, 0, 1])

    def frame_i420(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame n as I420 (h*3/2, w) uint8: the background plus the moving balls."""
        frame = out if out is not None else np.empty_like(self.background)
        frame[...] = self.background
        w, h = self.width, self.height
        y_plane = frame[:h]
        u_plane = frame[h:h + h // 4].reshape(h // 2, w // 2)
        v_plane = frame[h + h // 4:].reshape(h // 2, w // 2)
        for i, ball in enumerate(MOVING_BALLS):
            x, y = moving_position(i, n)
            u, v = self.distorted_px(x, y)
            # Local lens magnification for the radius (the ball is small: a circle is close enough).
            u2, _ = self.distorted_px(x + BALL_RADIUS, y)
            r = max(2, int(round(abs(u2 - u))))
            yy, uu, vv = cv2.cvtColor(np.array([[ball.bgr]], np.uint8), cv2.COLOR_BGR2YUV)[0, 0]
            # BT.601 full-range from cvtColor is close enough for two drawn balls.
            cv2.circle(y_plane, (int(round(u)), int(round(v))), r, int(yy), -1, cv2.LINE_AA)
            c = (int(round(u / 2)), int(round(v / 2)))
            cv2.circle(u_plane, c, max(1, r // 2), int(uu), -1)
            cv2.circle(v_plane, c, max(1, r // 2), int(vv), -1)
        return frame


def true_corrected_positions(P: np.ndarray) -> dict[str, tuple[float, float]]:
    """Where each static ball's centre belongs in a corrected frame whose camera matrix is P."""
    out = {}
    for b in STATIC_BALLS:
        p = P @ np.array([b.x, b.y, 1.0])
        out[b.name] = (float(p[0] / p[2]), float(p[1] / p[2]))
    return out


# The demo table is a 9ft table: its cloth (the playing surface, cushion nose to cushion nose) is 2540 x 1270 mm.
DEMO_TABLE_MM = (2540.0, 1270.0)
DEMO_MM_PER_UNIT = DEMO_TABLE_MM[0] / (2 * TABLE_HALF[0])


def ball_mm(ball: Ball) -> tuple[float, float]:
    """A demo ball's true position on the table, mm from the playing surface's top-left corner."""
    return (ball.x + TABLE_HALF[0]) * DEMO_MM_PER_UNIT, (ball.y + TABLE_HALF[1]) * DEMO_MM_PER_UNIT


def demo_table_corners(P: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Where the demo cloth's corners are in a corrected frame whose camera matrix is P (TL, TR, BR, BL)."""
    hx, hy = TABLE_HALF
    out = []
    for x, y in ((-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)):
        p = P @ np.array([x, y, 1.0])
        out.append((float(p[0] / p[2]), float(p[1] / p[2])))
    return tuple(out)


def resolve_table(cfg: Config, source_kind: str) -> tuple[TableGeometry | None, str]:
    """(geometry, where it came from): table.calibration, else the demo source's own table, else none."""
    if cfg.table.calibration is not None:
        return load_table(cfg.table.calibration).scaled_to(cfg.source.width, cfg.source.height), str(
            cfg.table.calibration)
    if source_kind == "demo":
        w, h = cfg.source.width, cfg.source.height
        P = output_matrix(demo_model().scaled_to(w, h), cfg.fisheye.balance, cfg.fisheye.fov_scale)
        return TableGeometry(demo_table_corners(P), DEMO_TABLE_MM, (w, h)), "built-in demo table"
    return None, ""
