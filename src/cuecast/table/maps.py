"""Remap tables for the table view: one pass from the camera's raw frame (the fisheye undistortion composed
with the table's homography), or from the corrected frame (the homography alone). Pure OpenCV/numpy; the
native cuecastremap element applies them like the plain correction's."""

from __future__ import annotations

import cv2
import numpy as np

from cuecast.lens.maps import Maps
from cuecast.lens.model import FisheyeModel
from cuecast.table.model import TableView


def _source(points: np.ndarray, view_to_camera: np.ndarray, model: FisheyeModel | None,
            P: np.ndarray | None) -> np.ndarray:
    """Camera-frame pixel positions (raw frame when `model` is given, else the corrected frame) of table-view
    pixel positions; points (N, 2) float64."""
    h = np.hstack([points, np.ones((len(points), 1))]) @ view_to_camera.T
    cam = h[:, :2] / h[:, 2:3]
    if model is None or P is None:
        return cam
    n = np.hstack([cam, np.ones((len(cam), 1))]) @ np.linalg.inv(P).T
    norm = (n[:, :2] / n[:, 2:3]).reshape(-1, 1, 2)
    return cv2.fisheye.distortPoints(norm, model.K, model.D).reshape(-1, 2)


def _fixed(src: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    mx = src[:, 0].reshape(h, w).astype(np.float32)
    my = src[:, 1].reshape(h, w).astype(np.float32)
    m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
    return m1, m2


def table_maps(view: TableView, camera_size: tuple[int, int], model: FisheyeModel | None = None,
               P: np.ndarray | None = None) -> Maps:
    """Luma and chroma maps rendering `view` from a camera frame of `camera_size`: the raw frame through the
    lens `model` (with `P`, the corrected image's camera matrix the table corners are measured in), or the
    corrected frame when no model is given."""
    geometry = view.geometry.scaled_to(*camera_size)
    to_camera = TableView(geometry, view.px_per_mm, view.margin_mm).view_to_camera()
    lens = None if model is None else model.scaled_to(*camera_size)
    out_w, out_h = view.size
    us, vs = np.meshgrid(np.arange(out_w, dtype=np.float64), np.arange(out_h, dtype=np.float64))
    full = _fixed(_source(np.stack([us.ravel(), vs.ravel()], 1), to_camera, lens, P), out_w, out_h)
    # Chroma: each half-resolution sample sits at the centre of its 2x2 luma block; source positions go back
    # to the chroma grid the same way (x_chroma = (x_luma - 0.5) / 2).
    cw, ch = out_w // 2, out_h // 2
    cu, cv = np.meshgrid(np.arange(cw, dtype=np.float64) * 2 + 0.5, np.arange(ch, dtype=np.float64) * 2 + 0.5)
    src = _source(np.stack([cu.ravel(), cv.ravel()], 1), to_camera, lens, P)
    half = _fixed((src - 0.5) / 2, cw, ch)
    return Maps((out_w, out_h), np.eye(3) if P is None else P, full, half)
