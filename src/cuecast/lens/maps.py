"""Undistortion maps for a fisheye model: built once per frame size, fixed-point (CV_16SC2) for cv2.remap.

Owns the output camera matrix (balance, fov_scale), the full-resolution map for BGR and luma, and the
half-resolution chroma maps for I420 computed from the same model at half scale (exact, pixel-centre
aligned), so I420 frames are corrected plane by plane with no colour conversion. Pure OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cuecast.lens.model import FisheyeModel


@dataclass(frozen=True)
class Maps:
    size: tuple[int, int]
    P: np.ndarray  # the corrected image's camera matrix
    full: tuple[np.ndarray, np.ndarray]  # CV_16SC2 map + CV_16UC1 interpolation table
    half: tuple[np.ndarray, np.ndarray] | None  # chroma maps for I420 (None when not built)


def half_scale(K: np.ndarray) -> np.ndarray:
    """A camera matrix for the half-resolution (chroma) grid, pixel centres aligned."""
    Kh = K.astype(np.float64).copy()
    Kh[0, 0] /= 2
    Kh[1, 1] /= 2
    Kh[0, 1] /= 2
    Kh[0, 2] = (K[0, 2] + 0.5) / 2 - 0.5
    Kh[1, 2] = (K[1, 2] + 0.5) / 2 - 0.5
    return Kh


def output_matrix(model: FisheyeModel, balance: float | None = None, fov_scale: float | None = None) -> np.ndarray:
    """Camera matrix of the corrected image (cv2.fisheye.estimateNewCameraMatrixForUndistortRectify)."""
    b = model.balance if balance is None else balance
    f = (model.fov_scale or 1.0) if fov_scale is None else fov_scale
    return cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
        model.K, model.D, model.image_size, np.eye(3), balance=b, fov_scale=f
    )


def _fixed(K: np.ndarray, D: np.ndarray, P: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    mx, my = cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), P, size, cv2.CV_32FC1)
    m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
    return m1, m2


def build_maps(model: FisheyeModel, width: int, height: int, *, chroma: bool,
               balance: float | None = None, fov_scale: float | None = None) -> Maps:
    m = model.scaled_to(width, height)
    P = output_matrix(m, balance, fov_scale)
    full = _fixed(m.K, m.D, P, (width, height))
    half = _fixed(half_scale(m.K), m.D, half_scale(P), (width // 2, height // 2)) if chroma else None
    return Maps((width, height), P, full, half)


def corrected_to_raw(points: np.ndarray, model: FisheyeModel, P: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) of the corrected picture -> where the lens put them in the raw picture."""
    rays = (np.asarray(points, np.float64).reshape(-1, 2) - P[:2, 2]) / np.diag(P)[:2]
    return cv2.fisheye.distortPoints(rays.reshape(-1, 1, 2), model.K, model.D).reshape(-1, 2)


def raw_to_corrected(points: np.ndarray, model: FisheyeModel, P: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) of the raw picture -> the corrected picture's pixels (camera matrix P)."""
    pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
    return cv2.fisheye.undistortPoints(pts, model.K, model.D, P=P).reshape(-1, 2)


REMAP_MAGIC = b"CCREMAP1"  # the native cuecastremap element's `map` layout (native/remap.h)
REMAP_HEADER = 64


def remap_table(maps: Maps, in_size: tuple[int, int]) -> bytes:
    """The maps as the native element's `map` property: a 64-byte header (magic, input and output sizes),
    then luma (x, y) int16 pairs, luma fractions, chroma pairs, chroma fractions."""
    if maps.half is None:
        raise ValueError("the native element needs the chroma maps (build_maps(..., chroma=True))")
    out_w, out_h = maps.size
    head = REMAP_MAGIC + np.array([*in_size, out_w, out_h], "<u4").tobytes()
    parts = [np.ascontiguousarray(a) for a in (*maps.full, *maps.half)]
    expected = [(out_h, out_w, 2), (out_h, out_w), (out_h // 2, out_w // 2, 2), (out_h // 2, out_w // 2)]
    if [p.shape for p in parts] != expected:
        raise ValueError(f"map shapes {[p.shape for p in parts]} do not fit {out_w}x{out_h}")
    return head.ljust(REMAP_HEADER, b"\0") + b"".join(p.astype("<i2" if p.ndim == 3 else "<u2").tobytes()
                                                     for p in parts)


def luma_lut(brightness: float, contrast: float) -> np.ndarray | None:
    """Brightness/contrast as a luma lookup table with videobalance's formula
    (y' = 16 + (y - 16) * contrast + brightness * 255); None at the neutral settings."""
    if brightness == 0.0 and contrast == 1.0:
        return None
    y = 16.0 + (np.arange(256, dtype=np.float64) - 16.0) * contrast + brightness * 255.0
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)
