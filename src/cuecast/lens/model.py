"""The fisheye camera model file (camera.yaml): OpenCV's Kannala-Brandt model as plain YAML.

Owns reading and writing camera.yaml (K, D, image_size, rms, created, balance, fov_scale), reading OpenCV
FileStorage YAML from other tools (camera_matrix / distortion_coefficients), scaling a calibration to
another resolution of the same aspect ratio, and errors that name the file and the field. Pure numpy/yaml.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ASPECT_TOLERANCE = 0.01


class CalibrationError(Exception):
    """A calibration file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class FisheyeModel:
    K: np.ndarray  # 3x3 camera matrix
    D: np.ndarray  # (4,) k1..k4
    image_size: tuple[int, int]  # (width, height) it was calibrated at
    rms: float | None = None
    created: str | None = None
    balance: float = 0.0
    fov_scale: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. per-view reports from `solve`

    def scaled_to(self, width: int, height: int) -> FisheyeModel:
        """The model for another resolution of the same aspect ratio (K scales, D does not)."""
        w0, h0 = self.image_size
        if (width, height) == (w0, h0):
            return self
        if abs(width / height - w0 / h0) > ASPECT_TOLERANCE * (w0 / h0):
            raise CalibrationError(
                f"calibration was made at {w0}x{h0} (aspect {w0 / h0:.3f}) but the frames are {width}x{height} "
                f"(aspect {width / height:.3f}); calibrate at this aspect ratio or change source.width/height"
            )
        sx, sy = width / w0, height / h0
        K = self.K.astype(np.float64).copy()
        # Pixel centres: x' + 0.5 = (x + 0.5) * s
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 1] *= sx
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return replace(self, K=K, image_size=(width, height))

    def to_yaml(self) -> str:
        doc: dict[str, Any] = {
            "K": [[float(v) for v in row] for row in self.K],
            "D": [float(v) for v in np.ravel(self.D)],
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
            "rms": None if self.rms is None else float(self.rms),
            "created": self.created or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "balance": float(self.balance),
            "fov_scale": None if self.fov_scale is None else float(self.fov_scale),
        }
        doc.update(self.extra)
        head = "# OpenCV fisheye (Kannala-Brandt) camera model, written by cuecast\n"
        return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)

    def save(self, path: Path) -> None:
        path.write_text(self.to_yaml())


def _matrix(value: Any, name: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}: {name} must be numbers, got {value!r}") from None
    if arr.size != math.prod(shape):
        raise CalibrationError(f"{where}: {name} must have {math.prod(shape)} numbers {shape}, got {arr.size}")
    arr = arr.reshape(shape)
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{where}: {name} contains a non-finite number")
    return arr


def _opencv_matrix(node: Any, name: str, where: str) -> np.ndarray:
    """An `!!opencv-matrix` node (rows, cols, dt, data) as loaded by our YAML loader."""
    if not isinstance(node, dict) or "data" not in node:
        raise CalibrationError(f"{where}: {name} is not an OpenCV matrix (rows, cols, data)")
    rows, cols = int(node.get("rows", 0)), int(node.get("cols", 0))
    return _matrix(node["data"], name, (rows, cols), where)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads OpenCV FileStorage files (%YAML:1.0 header, !!opencv-matrix tags)."""


_Loader.add_constructor("tag:yaml.org,2002:opencv-matrix", lambda loader, node: loader.construct_mapping(node))


def load_model(path: Path | str) -> FisheyeModel:
    """Read camera.yaml (ours) or an OpenCV FileStorage YAML; CalibrationError names what is wrong."""
    path = Path(path)
    where = f"calibration file {path}"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CalibrationError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{where} cannot be read: {e}") from None
    if text.startswith("%YAML:1.0") or text.startswith("%YAML 1.0"):
        text = "\n".join(text.splitlines()[1:])  # OpenCV writes a YAML 1.0 directive PyYAML refuses
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise CalibrationError(f"{where} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise CalibrationError(f"{where} must be a mapping with K, D and image_size")

    if "K" in doc:
        for key in ("D", "image_size"):
            if key not in doc:
                raise CalibrationError(f"{where}: missing field {key}")
        K = _matrix(doc["K"], "K", (3, 3), where)
        D = _matrix(doc["D"], "D", (4,), where)
        size = doc["image_size"]
    elif "camera_matrix" in doc:
        K = _opencv_matrix(doc["camera_matrix"], "camera_matrix", where).reshape(3, 3)
        dist_key = next((k for k in ("distortion_coefficients", "dist_coeffs", "D") if k in doc), None)
        if dist_key is None:
            raise CalibrationError(f"{where}: missing field distortion_coefficients")
        D = _opencv_matrix(doc[dist_key], dist_key, where).ravel()
        if D.size != 4:
            raise CalibrationError(f"{where}: {dist_key} has {D.size} numbers; a fisheye model has 4 (k1..k4)")
        if "image_width" in doc and "image_height" in doc:
            size = [doc["image_width"], doc["image_height"]]
        elif "image_size" in doc:
            size = doc["image_size"]
        else:
            raise CalibrationError(f"{where}: missing field image_width/image_height")
    else:
        raise CalibrationError(f"{where}: missing field K (or camera_matrix for OpenCV FileStorage files)")

    try:
        w, h = (int(v) for v in (size["data"] if isinstance(size, dict) else size))
    except (TypeError, ValueError, KeyError):
        raise CalibrationError(f"{where}: image_size must be [width, height], got {size!r}") from None
    if w <= 0 or h <= 0:
        raise CalibrationError(f"{where}: image_size must be positive, got {w}x{h}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(f"{where}: K has a non-positive focal length")
    balance = float(doc.get("balance", 0.0) or 0.0)
    if not 0.0 <= balance <= 1.0:
        raise CalibrationError(f"{where}: balance must be within 0..1, got {balance}")
    fov = doc.get("fov_scale")
    if fov is not None and not (0.1 <= float(fov) <= 10):
        raise CalibrationError(f"{where}: fov_scale must be within 0.1..10, got {fov}")
    rms = doc.get("rms")
    return FisheyeModel(K, D, (w, h), None if rms is None else float(rms), doc.get("created"), balance,
                        None if fov is None else float(fov))
