"""The table geometry (table.yaml) and the top-down table view it defines. Pure numpy/OpenCV/yaml.

Owns the file (the playing surface's four corners at the cushion noses, in corrected-camera pixels, top-left,
top-right, bottom-right, bottom-left as seen in the image; its size in mm, the long side along the image's x;
the image size; when it was made), the size presets, the homography from camera-view pixels to table
millimetres, and the table view: a frame of (W + 2 margin) x (H + 2 margin) mm at px_per_mm, each side rounded
down to an even number of pixels, the playing surface's top-left corner at (margin, margin) mm, x along W.
A backend turns table-view pixels into mm with two numbers: mm = px / px_per_mm - margin_mm.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from cuecast.protocol.frame import Geometry

# Playing areas (cushion nose to cushion nose), mm.
PRESETS: dict[str, tuple[float, float]] = {"7ft": (1981.0, 991.0), "8ft": (2235.0, 1118.0), "9ft": (2540.0, 1270.0)}
CORNER_NAMES = ("top-left", "top-right", "bottom-right", "bottom-left")


class TableError(Exception):
    """A table geometry that cannot be used; the message names the file, the field and the fix."""


def parse_size(text: str) -> tuple[float, float]:
    """A size preset (7ft, 8ft, 9ft) or WxH in mm ("2540x1270")."""
    t = text.strip().lower()
    if t in PRESETS:
        return PRESETS[t]
    w, sep, h = t.partition("x")
    try:
        size = (float(w), float(h)) if sep else None
    except ValueError:
        size = None
    if size is None or not (100 <= size[0] <= 10_000 and 100 <= size[1] <= 10_000):
        raise TableError(f"table size {text!r}: use 7ft, 8ft, 9ft or WxH in mm (e.g. 2540x1270)")
    if size[0] < size[1]:
        raise TableError(f"table size {text!r}: give the long side first (it runs along the image's x)")
    return size


@dataclass(frozen=True)
class TableGeometry:
    corners: tuple[tuple[float, float], ...]  # TL, TR, BR, BL in corrected-camera pixels
    size_mm: tuple[float, float]  # playing area W (along the image's x) x H
    image_size: tuple[int, int]  # the corrected image the corners are in
    created: str | None = None

    def __post_init__(self) -> None:
        if len(self.corners) != 4:
            raise TableError(f"a table has 4 corners ({', '.join(CORNER_NAMES)}), not {len(self.corners)}")
        quad = np.array(self.corners, np.float32)
        if cv2.contourArea(quad) < 100 or not cv2.isContourConvex(quad):
            raise TableError("the 4 corners do not make a convex shape: give them as top-left, top-right, "
                             "bottom-right, bottom-left as seen in the image")
        a, b = quad[1] - quad[0], quad[3] - quad[0]
        if a[0] * b[1] - a[1] * b[0] <= 0:  # clockwise on screen (y down) is a positive cross product
            raise TableError("the corners run counter-clockwise: give them as top-left, top-right, bottom-right, "
                             "bottom-left as seen in the image")

    def scaled_to(self, width: int, height: int) -> TableGeometry:
        """The same table in a corrected image of another size (pixel centres kept)."""
        w0, h0 = self.image_size
        if (width, height) == (w0, h0):
            return self
        sx, sy = width / w0, height / h0
        corners = tuple(((x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5) for x, y in self.corners)
        return TableGeometry(corners, self.size_mm, (width, height), self.created)

    def homography(self) -> np.ndarray:
        """3x3: corrected-camera pixels -> table mm (0, 0 at the top-left corner, x along the long side)."""
        w, h = self.size_mm
        dst = np.array([(0, 0), (w, 0), (w, h), (0, h)], np.float64)
        return cv2.getPerspectiveTransform(np.array(self.corners, np.float32), dst.astype(np.float32)).astype(
            np.float64)

    def to_yaml(self) -> str:
        doc = {
            "corners": [[round(float(x), 3), round(float(y), 3)] for x, y in self.corners],
            "size_mm": [float(self.size_mm[0]), float(self.size_mm[1])],
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
            "created": self.created or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        head = ("# Table geometry, written by cuecast: the playing surface's corners at the cushion noses in the\n"
                "# corrected image (top-left, top-right, bottom-right, bottom-left as seen), its size in mm\n")
        return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_yaml())
        tmp.replace(path)


def load_table(path: Path) -> TableGeometry:
    """Read table.yaml; TableError naming the file and field for anything unusable."""
    where = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise TableError(f"{where} does not exist; make it with `cuecast calibrate table`") from None
    except OSError as e:
        raise TableError(f"{where} cannot be read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise TableError(f"{where} is not valid YAML: {e}") from None
    return table_from_dict(doc, where)


def table_dict(t: TableGeometry) -> dict[str, Any]:
    """The geometry as plain data (what table_from_dict reads back)."""
    return {"corners": [list(c) for c in t.corners], "size_mm": list(t.size_mm), "image_size": list(t.image_size)}


def table_from_dict(doc: Any, where: str) -> TableGeometry:
    if not isinstance(doc, dict):
        raise TableError(f"{where}: expected a mapping with corners, size_mm and image_size")
    try:
        corners = np.asarray(doc.get("corners"), dtype=np.float64)
    except (TypeError, ValueError):
        raise TableError(f"{where}: corners must be 4 [x, y] pairs") from None
    if corners.shape != (4, 2) or not np.isfinite(corners).all():
        raise TableError(f"{where}: corners must be 4 [x, y] pairs ({', '.join(CORNER_NAMES)})")
    try:
        size = tuple(float(v) for v in doc.get("size_mm") or ())
        image = tuple(int(v) for v in doc.get("image_size") or ())
    except (TypeError, ValueError):
        raise TableError(f"{where}: size_mm must be [W, H] in mm and image_size [width, height]") from None
    if len(size) != 2 or not all(100 <= v <= 10_000 for v in size):
        raise TableError(f"{where}: size_mm must be [W, H], each 100..10000 mm")
    if len(image) != 2 or not all(16 <= v <= 16384 for v in image):
        raise TableError(f"{where}: image_size must be [width, height] in pixels")
    try:
        return TableGeometry(tuple((float(x), float(y)) for x, y in corners), (size[0], size[1]),
                             (image[0], image[1]), doc.get("created"))
    except TableError as e:
        raise TableError(f"{where}: {e}") from None


def even_floor(v: float) -> int:
    return max(2, int(v) // 2 * 2)


@dataclass(frozen=True)
class TableView:
    """The top-down view of a table geometry at px_per_mm with a margin around the playing surface."""

    geometry: TableGeometry
    px_per_mm: float
    margin_mm: float

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.geometry.size_mm
        m, s = self.margin_mm, self.px_per_mm
        return even_floor((w + 2 * m) * s), even_floor((h + 2 * m) * s)

    def mm_of_view(self, u: np.ndarray | float, v: np.ndarray | float) -> tuple[Any, Any]:
        return np.asarray(u) / self.px_per_mm - self.margin_mm, np.asarray(v) / self.px_per_mm - self.margin_mm

    def view_of_mm(self, x: float, y: float) -> tuple[float, float]:
        return (x + self.margin_mm) * self.px_per_mm, (y + self.margin_mm) * self.px_per_mm

    def view_to_camera(self) -> np.ndarray:
        """3x3: table-view pixels -> corrected-camera pixels."""
        s, m = self.px_per_mm, self.margin_mm
        view_to_mm = np.array([[1 / s, 0, -m], [0, 1 / s, -m], [0, 0, 1]], np.float64)
        return np.linalg.inv(self.geometry.homography()) @ view_to_mm

    def frame_geometry(self, view: str) -> Geometry:
        """What goes into a frame's trailer for an output in `view`."""
        h = tuple(float(v) for v in (self.geometry.homography() / self.geometry.homography()[2, 2]).ravel())
        return Geometry(view, self.px_per_mm, self.margin_mm, self.geometry.size_mm, h)
