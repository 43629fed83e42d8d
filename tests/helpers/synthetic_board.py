"""Synthetic checkerboard views through a known fisheye lens: ground truth for calibration tests.

Every pixel's ray comes from cv2.fisheye.undistortPoints once (same lens for all views); each view then
intersects the rays with the board plane at its pose and shades the checker pattern, 2x supersampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

TRUE_K = np.array([[450.0, 0.0, 479.5], [0.0, 450.0, 269.5], [0.0, 0.0, 1.0]])
TRUE_D = np.array([0.03, -0.012, 0.004, -0.0008])
SIZE = (960, 540)
BOARD = (9, 6)  # inner corners
SQUARE = 0.025  # metres
SUPERSAMPLE = 2


@dataclass(frozen=True)
class Pose:
    rvec: np.ndarray
    tvec: np.ndarray


class BoardRenderer:
    def __init__(self, K: np.ndarray = TRUE_K, D: np.ndarray = TRUE_D, size: tuple[int, int] = SIZE) -> None:
        self.K, self.D, self.size = K, D, size
        w, h = size
        s = SUPERSAMPLE
        xs = (np.arange(w * s) + 0.5) / s - 0.5
        ys = (np.arange(h * s) + 0.5) / s - 0.5
        gx, gy = np.meshgrid(xs, ys)
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1).reshape(-1, 1, 2)
        rays = cv2.fisheye.undistortPoints(pts, K, D).reshape(h * s, w * s, 2)
        self.rays = np.dstack([rays, np.ones(rays.shape[:2])])

    def render(self, pose: Pose) -> np.ndarray:
        R, _ = cv2.Rodrigues(pose.rvec)
        t = pose.tvec.reshape(3)
        n = R[:, 2]
        denom = self.rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
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
        cols, rows = BOARD
        obj = np.zeros((rows * cols, 1, 3))
        obj[:, 0, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * SQUARE
        pts, _ = cv2.fisheye.projectPoints(obj, pose.rvec, pose.tvec, self.K, self.D)
        return pts


def poses(n: int = 24, seed: int = 7, renderer: BoardRenderer | None = None) -> list[Pose]:
    """Varied poses whose whole pattern is in the image: centre, edges and corners, tilted every way."""
    rng = np.random.default_rng(seed)
    cols, rows = BOARD
    centre = np.array([(cols - 1) * SQUARE / 2, (rows - 1) * SQUARE / 2, 0.0])
    K, D = (renderer.K, renderer.D) if renderer else (TRUE_K, TRUE_D)
    w, h = renderer.size if renderer else SIZE
    targets = [(x, y) for y in (-0.5, 0.0, 0.5) for x in (-0.9, -0.45, 0.0, 0.45, 0.9)]
    out: list[Pose] = []
    attempts = 0
    while len(out) < n and attempts < 5000:
        attempts += 1
        tx, ty = targets[len(out) % len(targets)]
        dist = rng.uniform(0.35, 0.6)
        tilt = rng.uniform(-0.6, 0.6, size=3) * np.array([1.0, 1.0, 0.5])
        R, _ = cv2.Rodrigues(tilt)
        c = np.array([tx, ty, 1.0]) / np.linalg.norm([tx, ty, 1.0]) * dist
        t = c - R @ centre
        pose = Pose(tilt.reshape(3, 1), t.reshape(3, 1))
        # Keep it only if the pattern with its white margin is inside the image.
        corners = np.array([[-1.6, -1.6, 0], [cols + 0.6, -1.6, 0], [-1.6, rows + 0.6, 0], [cols + 0.6, rows + 0.6, 0]])
        pts, _ = cv2.fisheye.projectPoints((corners * SQUARE).reshape(-1, 1, 3), pose.rvec, pose.tvec, K, D)
        pts = pts.reshape(-1, 2)
        cam = (R @ (corners * SQUARE).T).T + t
        if (cam[:, 2] > 0.05).all() and (pts[:, 0] > 2).all() and (pts[:, 0] < w - 3).all() \
                and (pts[:, 1] > 2).all() and (pts[:, 1] < h - 3).all():
            out.append(pose)
    return out
