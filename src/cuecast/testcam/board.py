"""A checkerboard seen through a known fisheye lens: the test camera's `picture: board` (a board held in one
pose after another, as a person calibrating does) and the ground truth of the calibration tests.

Every pixel's ray comes from cv2.fisheye.undistortPoints once (one lens for all poses); a pose then
intersects the rays with the board plane and shades the checker pattern (supersampled, then area-averaged).
`tour` is a fixed round of poses that covers the picture and every tilt the calibration guide asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The default lens: a 960x540 fisheye (scaled to other 16:9 sizes as a camera mode would be).
TRUE_K = np.array([[450.0, 0.0, 479.5], [0.0, 450.0, 269.5], [0.0, 0.0, 1.0]])
TRUE_D = np.array([0.03, -0.012, 0.004, -0.0008])
SIZE = (960, 540)
BOARD = (9, 6)  # inner corners
SQUARE = 0.025  # metres
SUPERSAMPLE = 2
KEEP_OUT_TOP = 28  # px at the top the board stays below (the frame number is painted there)


@dataclass(frozen=True)
class Pose:
    rvec: np.ndarray
    tvec: np.ndarray


def scaled_lens(size: tuple[int, int], K: np.ndarray = TRUE_K) -> np.ndarray:
    """K for another size of the same aspect ratio (pixel centres aligned, as FisheyeModel.scaled_to)."""
    sx, sy = size[0] / SIZE[0], size[1] / SIZE[1]
    out = K.astype(np.float64).copy()
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


class BoardRenderer:
    def __init__(self, K: np.ndarray = TRUE_K, D: np.ndarray = TRUE_D, size: tuple[int, int] = SIZE,
                 supersample: int = SUPERSAMPLE, *, pictures: bool = True) -> None:
        """`pictures=False`: the lens's geometry only (where corners land, which poses fit), no rays."""
        self.K, self.D, self.size, self.supersample = K, D, size, supersample
        if not pictures:
            return
        w, h = size
        s = supersample
        xs = (np.arange(w * s) + 0.5) / s - 0.5
        ys = (np.arange(h * s) + 0.5) / s - 0.5
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1).reshape(-1, 1, 2)
        rays = cv2.fisheye.undistortPoints(pts, K, D).reshape(h * s, w * s, 2)
        self.rays = np.dstack([rays, np.ones(rays.shape[:2])])

    def render(self, pose: Pose) -> np.ndarray:
        """The grey picture of the board at `pose`."""
        R, _ = cv2.Rodrigues(pose.rvec)
        t = pose.tvec.reshape(3)
        n = R[:, 2]
        denom = self.rays @ n
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s = (n @ t) / denom
            pts = self.rays * s[..., None]
            board = (pts - t) @ R  # R^T (X - t)
        u, v = board[..., 0] / SQUARE, board[..., 1] / SQUARE
        cols, rows = BOARD
        # Squares: corners at integer positions 0..cols-1; the pattern spans -1..cols (one extra square).
        inside = (u > -1) & (u < cols) & (v > -1) & (v < rows) & (s > 0)
        margin = (u > -1.6) & (u < cols + 0.6) & (v > -1.6) & (v < rows + 0.6) & (s > 0)
        checker = ((np.floor(u) + np.floor(v)) % 2 == 0)
        img = np.full(u.shape, 90, np.float32)  # background
        img[margin] = 235  # white paper around the pattern
        img[inside & checker] = 20
        img[inside & ~checker] = 235
        w, h = self.size
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.uint8)

    def true_corners(self, pose: Pose) -> np.ndarray:
        pts, _ = cv2.fisheye.projectPoints(object_grid(), pose.rvec, pose.tvec, self.K, self.D)
        return pts

    def fits(self, pose: Pose, top: float | None = None) -> bool:
        """The pattern with its white margin is inside the picture (by default below the frame number, or
        `top` px from the top) and in front of the camera."""
        cols, rows = BOARD
        outline = np.array([[-1.6, -1.6, 0], [cols + 0.6, -1.6, 0], [-1.6, rows + 0.6, 0], [cols + 0.6, rows + 0.6, 0]])
        pts, _ = cv2.fisheye.projectPoints((outline * SQUARE).reshape(-1, 1, 3), pose.rvec, pose.tvec, self.K, self.D)
        pts = pts.reshape(-1, 2)
        R, _ = cv2.Rodrigues(pose.rvec)
        cam = (R @ (outline * SQUARE).T).T + pose.tvec.reshape(3)
        w, h = self.size
        return bool((cam[:, 2] > 0.05).all() and (pts[:, 0] > 2).all() and (pts[:, 0] < w - 3).all()
                    and (pts[:, 1] > (KEEP_OUT_TOP * h / 720 if top is None else top)).all()
                    and (pts[:, 1] < h - 3).all())


def object_grid() -> np.ndarray:
    cols, rows = BOARD
    obj = np.zeros((rows * cols, 1, 3))
    obj[:, 0, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * SQUARE
    return obj


def _pose_at(target: tuple[float, float], dist: float, tilt: np.ndarray, *, facing: bool = False) -> Pose:
    """The board's centre on the ray through `target` (normalised image coordinates) at `dist` metres,
    turned by `tilt` (a rotation vector) from square to the optical axis, or (facing) from square to the ray."""
    cols, rows = BOARD
    centre = np.array([(cols - 1) * SQUARE / 2, (rows - 1) * SQUARE / 2, 0.0])
    ray = np.array([target[0], target[1], 1.0]) / np.linalg.norm([target[0], target[1], 1.0])
    R, _ = cv2.Rodrigues(tilt)
    if facing:  # the rotation taking the optical axis onto the ray, then the tilt in the board's own frame
        axis = np.cross([0.0, 0.0, 1.0], ray)
        angle = float(np.arcsin(min(1.0, float(np.linalg.norm(axis)))))
        face, _ = cv2.Rodrigues(axis / max(np.linalg.norm(axis), 1e-12) * angle)
        R = face @ R
        tilt, _ = cv2.Rodrigues(R)
    return Pose(tilt.reshape(3, 1), (ray * dist - R @ centre).reshape(3, 1))


def poses(n: int = 24, seed: int = 7, renderer: BoardRenderer | None = None) -> list[Pose]:
    """Varied poses whose whole pattern is in the image: centre, edges and corners, tilted every way."""
    rng = np.random.default_rng(seed)
    r = renderer or BoardRenderer(pictures=False)
    targets = [(x, y) for y in (-0.5, 0.0, 0.5) for x in (-0.9, -0.45, 0.0, 0.45, 0.9)]
    out: list[Pose] = []
    attempts = 0
    while len(out) < n and attempts < 5000:
        attempts += 1
        dist = rng.uniform(0.35, 0.6)
        tilt = rng.uniform(-0.6, 0.6, size=3) * np.array([1.0, 1.0, 0.5])
        pose = _pose_at(targets[len(out) % len(targets)], dist, tilt)
        if r.fits(pose, top=2):
            out.append(pose)
    return out


def tour(renderer: BoardRenderer, n: int = 30, seed: int = 11) -> list[Pose]:
    """A round of poses as a person calibrating holds the board: each part of the picture (a 4x3 grid, its
    corners first), tilted one way after another (left, right, up, down), then anywhere."""
    rng = np.random.default_rng(seed)
    cells = [(x, y) for y in (-0.55, 0.0, 0.5) for x in (-0.95, -0.35, 0.35, 0.95)]
    cells = cells[::3] + [c for i, c in enumerate(cells) if i % 3]  # spread the first poses over the picture
    tilts = [np.array([0.0, 0.5, 0.0]), np.array([0.0, -0.5, 0.0]), np.array([-0.5, 0.0, 0.0]),
             np.array([0.5, 0.0, 0.0])]
    out: list[Pose] = []
    attempts = 0
    while len(out) < n and attempts < 20000:
        attempts += 1
        i = len(out)
        if i < len(cells):
            target, base = cells[i], tilts[i % len(tilts)]
        else:  # anywhere, any tilt
            target = (rng.uniform(-0.95, 0.95), rng.uniform(-0.55, 0.5))
            base = rng.uniform(-0.5, 0.5, size=3) * np.array([1, 1, 0.4])
        jitter = rng.normal(0, 0.04, size=2) if attempts > 50 * (i + 1) else np.zeros(2)
        pose = _pose_at((target[0] * rng.uniform(0.8, 1.0) + jitter[0], target[1] * rng.uniform(0.8, 1.0) + jitter[1]),
                        rng.uniform(0.32, 0.55), base + rng.normal(0, 0.05, size=3), facing=True)
        if renderer.fits(pose):
            out.append(pose)
    return out
