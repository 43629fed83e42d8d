"""What a table calibration looks like: the table view rendered from a corrected camera frame, with the
playing surface's outline and a 100 mm grid, for `cuecast calibrate table` and the viewer. Pure OpenCV."""

from __future__ import annotations

import cv2
import numpy as np

from cuecast.table.model import TableView

GRID_MM = 100


def render_preview(camera_bgr: np.ndarray, view: TableView) -> np.ndarray:
    """The table view of a corrected camera frame, a grid every 100 mm, the playing surface outlined."""
    h, w = camera_bgr.shape[:2]
    tv = TableView(view.geometry.scaled_to(w, h), view.px_per_mm, view.margin_mm)
    out_w, out_h = tv.size
    img = cv2.warpPerspective(camera_bgr, tv.view_to_camera(), (out_w, out_h),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    W, H = tv.geometry.size_mm
    grid = img.copy()
    for x in np.arange(0, W + 0.1, GRID_MM):
        cv2.line(grid, _pt(tv, x, 0), _pt(tv, x, H), (255, 255, 255), 1, cv2.LINE_AA)
    for y in np.arange(0, H + 0.1, GRID_MM):
        cv2.line(grid, _pt(tv, 0, y), _pt(tv, W, y), (255, 255, 255), 1, cv2.LINE_AA)
    img = cv2.addWeighted(grid, 0.45, img, 0.55, 0)
    corners = [_pt(tv, 0, 0), _pt(tv, W, 0), _pt(tv, W, H), _pt(tv, 0, H)]
    cv2.polylines(img, [np.array(corners, np.int32)], True, (0, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(img, f"{W:.0f} x {H:.0f} mm, grid {GRID_MM} mm", (10, out_h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _pt(view: TableView, x: float, y: float) -> tuple[int, int]:
    u, v = view.view_of_mm(x, y)
    return int(round(u)), int(round(v))


def draw_corners(camera_bgr: np.ndarray, corners: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The camera frame with the outline through the four corners, each labelled."""
    img = camera_bgr.copy()
    pts = np.array(corners, np.float64)
    cv2.polylines(img, [np.rint(pts).astype(np.int32)], True, (0, 255, 255), 2, cv2.LINE_AA)
    for (x, y), name in zip(corners, ("TL", "TR", "BR", "BL"), strict=True):
        cv2.circle(img, (int(round(x)), int(round(y))), 6, (0, 0, 255), 2, cv2.LINE_AA)
        cv2.putText(img, name, (int(x) + 8, int(y) - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 255), 2, cv2.LINE_AA)
    return img
