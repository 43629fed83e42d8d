"""Synthetic ground truth for the table view: a 9ft table (felt, cushions, rails, pockets, diamonds, balls at
known mm positions) seen by a tilted camera through the demo fisheye lens.

Each camera pixel's ray (the lens model) is followed to the table plane (z = 0, mm, x along the long side from
the playing surface's top-left corner) and samples a fine top-down drawing of the table. The balls are drawn
flat on the cloth: their centres are then exactly their table positions (a real ball's centre stands 28.6 mm
above the cloth and shifts with the viewing angle)."""

from __future__ import annotations

import cv2
import numpy as np

from cuecast.lens.maps import output_matrix
from cuecast.lens.model import FisheyeModel
from cuecast.media.demo import demo_model

SIZE_MM = (2540.0, 1270.0)
CUSHION_MM = 50.0
RAIL_MM = 110.0
CANVAS_PX_PER_MM = 2.0
FELT = (30, 140, 40)
CUSHION = (20, 95, 25)
RAIL = (40, 80, 150)
FLOOR = (70, 70, 75)
BALL_RADIUS_MM = 28.6
# Spread over the whole surface, against the cushions and in the corners (the side pockets' mouths stay clear:
# a ball there would merge with the pocket's edge in any detector).
BALLS_MM = [(x, y) for x in (60.0, 500.0, 1270.0, 2000.0, 2480.0) for y in (60.0, 635.0, 1210.0)] + [
    (900.0, 300.0), (1650.0, 950.0), (300.0, 1000.0)]
BALLS_MM = [(x, 110.0 if (x, y) == (1270.0, 60.0) else 1160.0 if (x, y) == (1270.0, 1210.0) else y)
            for x, y in BALLS_MM]
BALL_COLOURS = [(0, 215, 255), (200, 70, 0), (40, 30, 220), (140, 30, 120), (0, 130, 255), (235, 235, 235)]


def pose(tilt_deg: float = 9.0, roll_deg: float = 2.0, height_mm: float = 1500.0) -> tuple[np.ndarray, np.ndarray]:
    """(R, t): world -> camera. The world is the table's: mm, x along the long side, y along the short side
    (down in the picture), z into the cloth. The camera hangs `height_mm` above the cloth, tilted about the
    long axis and rolled a little, its optical axis through the table's centre."""
    tilt, roll = np.radians(tilt_deg), np.radians(roll_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    R = rz @ rx
    axis = R.T @ np.array([0.0, 0.0, 1.0])  # the optical axis in the world
    target = np.array([SIZE_MM[0] / 2, SIZE_MM[1] / 2, 0.0])
    C = target - axis * (height_mm / axis[2])
    return R, -R @ C


def draw_table(px_per_mm: float = CANVAS_PX_PER_MM) -> tuple[np.ndarray, float]:
    """The top-down drawing and the mm of its top-left pixel (negative: it starts outside the playing area)."""
    border = CUSHION_MM + RAIL_MM + 150
    w = int((SIZE_MM[0] + 2 * border) * px_per_mm)
    h = int((SIZE_MM[1] + 2 * border) * px_per_mm)
    img = np.full((h, w, 3), FLOOR, np.uint8)
    shift = 4  # sub-pixel drawing

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round((x + border) * px_per_mm * (1 << shift))), int(round((y + border) * px_per_mm * (1 << shift)))

    def rect(x0: float, y0: float, x1: float, y1: float, colour: tuple[int, int, int]) -> None:
        pts = np.array([p(x0, y0), p(x1, y0), p(x1, y1), p(x0, y1)], np.int32)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, shift)

    c, r = CUSHION_MM, RAIL_MM
    rect(-c - r, -c - r, SIZE_MM[0] + c + r, SIZE_MM[1] + c + r, RAIL)
    rect(-c, -c, SIZE_MM[0] + c, SIZE_MM[1] + c, CUSHION)
    rect(0, 0, SIZE_MM[0], SIZE_MM[1], FELT)
    for x in (0.0, SIZE_MM[0] / 2, SIZE_MM[0]):
        for y in (0.0, SIZE_MM[1]):
            off = 30.0 if x in (0.0, SIZE_MM[0]) else 0.0
            cx = x - off if x == 0.0 else (x + off if x == SIZE_MM[0] else x)
            cy = y - (30.0 if y == 0.0 else -30.0)
            cv2.circle(img, p(cx, cy), int(60 * px_per_mm * (1 << shift)), (10, 10, 10), -1, cv2.LINE_AA, shift)
    for k in range(1, 8):
        for y in (-c - r / 2, SIZE_MM[1] + c + r / 2):
            cv2.circle(img, p(k * SIZE_MM[0] / 8, y), int(10 * px_per_mm * (1 << shift)), (220, 220, 220), -1,
                       cv2.LINE_AA, shift)
    for i, (x, y) in enumerate(BALLS_MM):
        cv2.circle(img, p(x, y), int(BALL_RADIUS_MM * px_per_mm * (1 << shift)), BALL_COLOURS[i % 6], -1,
                   cv2.LINE_AA, shift)
    return img, -border


def render(width: int = 1920, height: int = 1080, model: FisheyeModel | None = None,
           R: np.ndarray | None = None, t: np.ndarray | None = None) -> np.ndarray:
    """The raw (distorted) camera picture, BGR."""
    m = (model or demo_model()).scaled_to(width, height)
    if R is None or t is None:
        R, t = pose()
    us, vs = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pts = np.stack([us.ravel(), vs.ravel()], 1).reshape(-1, 1, 2)
    rays = cv2.fisheye.undistortPoints(pts, m.K, m.D).reshape(-1, 2)
    d = np.hstack([rays, np.ones((len(rays), 1))]) @ R  # R^T applied to column vectors
    c = -R.T @ t
    lam = -c[2] / d[:, 2]
    world = c[None, :] + lam[:, None] * d
    canvas, origin = draw_table()
    mx = ((world[:, 0] - origin) * CANVAS_PX_PER_MM - 0.5).reshape(height, width).astype(np.float32)
    my = ((world[:, 1] - origin) * CANVAS_PX_PER_MM - 0.5).reshape(height, width).astype(np.float32)
    # Each camera pixel covers ~1.6 canvas pixels: a light blur first keeps edges unbiased and free of aliasing.
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.8)
    return cv2.remap(canvas, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=FLOOR)


def corrected_px(x_mm: float, y_mm: float, model: FisheyeModel | None = None, size: tuple[int, int] = (1920, 1080),
                 R: np.ndarray | None = None, t: np.ndarray | None = None) -> tuple[float, float]:
    """Where a point of the cloth appears in the corrected picture (camera matrix: the service's default)."""
    m = (model or demo_model()).scaled_to(*size)
    if R is None or t is None:
        R, t = pose()
    P = output_matrix(m)
    cam = R @ np.array([x_mm, y_mm, 0.0]) + t
    p = P @ (cam / cam[2])
    return float(p[0] / p[2]), float(p[1] / p[2])


def true_corners(**kw: object) -> list[tuple[float, float]]:
    w, h = SIZE_MM
    return [corrected_px(x, y, **kw) for x, y in ((0, 0), (w, 0), (w, h), (0, h))]  # type: ignore[arg-type]
