"""The shared-memory frame format: the image, then a 128-byte trailer (no GStreamer, no numpy needed).

Both ends of the protocol live here: the native `cuecastpack` element writes the trailer's first half
(native/pack.h mirrors `_HEAD`), the service packs the second half (`Geometry`, the view and its
millimetre mapping), and the consumer reads both. Raw-video readers that expect exactly the image size
(`gst-launch shmsrc ! video/x-raw,...`) ignore the tail. The trailer carries a version: a consumer meeting
another version says so (FrameFormatError) instead of misreading frames.

    offset  size  field
    0       8     magic b"CUECASTF"
    8       2     version (2)
    10      2     trailer size (128)
    12      4     width
    16      4     height
    20      4     fourcc: b"BGR3" (packed BGR) or b"I420"
    24      4     flags: 1 = placeholder ("NO SIGNAL", the source is down)
    28      8     seq: the producer's frame counter
    36      8     capture time, CLOCK_MONOTONIC ns (this machine)
    44      8     capture time, wall clock ns
    52      12    zero
    64      64    geometry: view (0 camera, 1 table), px_per_mm, margin_mm, table W and H in mm, and the
                  3x3 homography from camera-view pixels to table millimetres (all zero without a table)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = b"CUECASTF"
VERSION = 2
TRAILER_SIZE = 128
GEOMETRY_SIZE = 64
_HEAD = struct.Struct("<8sHHIIIIQqq")
_GEOMETRY = struct.Struct("<Iffff9f")
LEGACY_MAGIC = b"CUECAST1"  # version 1: a 64-byte trailer starting with this magic
FLAG_PLACEHOLDER = 1
FOURCC = {"BGR": b"BGR3", "I420": b"I420"}
VIEWS = ("camera", "table")

assert _HEAD.size <= TRAILER_SIZE - GEOMETRY_SIZE and _GEOMETRY.size <= GEOMETRY_SIZE


class FrameFormatError(Exception):
    """A cuecast frame of a format version this code does not read; the message says which."""


@dataclass(frozen=True)
class Geometry:
    """How a frame's pixels relate to the table: the view it shows and the millimetre mapping."""

    view: str = "camera"  # "camera": the corrected camera picture; "table": the playing surface top-down
    px_per_mm: float = 0.0  # table view: pixels per millimetre (0: no table calibration)
    margin_mm: float = 0.0  # table view: border around the playing surface
    table_mm: tuple[float, float] = (0.0, 0.0)  # playing surface W x H
    homography: tuple[float, ...] = field(default=(0.0,) * 9)  # camera-view pixels -> table mm (row-major)

    def pack(self) -> bytes:
        return _GEOMETRY.pack(VIEWS.index(self.view), self.px_per_mm, self.margin_mm, *self.table_mm,
                              *self.homography).ljust(GEOMETRY_SIZE, b"\0")

    @classmethod
    def unpack(cls, data: bytes) -> Geometry:
        view, ppm, margin, w, h, *hom = _GEOMETRY.unpack(data[:_GEOMETRY.size])
        return cls(VIEWS[view] if view < len(VIEWS) else "camera", ppm, margin, (w, h), tuple(hom))

    @property
    def calibrated(self) -> bool:
        return self.px_per_mm > 0 and any(self.homography)


@dataclass(frozen=True)
class FrameInfo:
    """What a consumer knows about a frame besides its pixels."""

    seq: int  # producer's frame counter, +1 per frame entering the pipeline
    capture_ns: int  # CLOCK_MONOTONIC ns when the source produced the frame (same machine)
    capture_wall_ns: int  # the same instant as wall-clock (time.time_ns) for logs across machines
    width: int
    height: int
    placeholder: bool = False  # True while the source is down
    format: str = "BGR"  # "BGR" (the backend's frames) or "I420" (the service's internal ring)
    geometry: Geometry = field(default_factory=Geometry)
    # Set by the consumer's frames(): how many frames this reader missed just before this one (not packed).
    dropped_before: int = 0

    @property
    def view(self) -> str:
        return self.geometry.view

    @property
    def capture_time(self) -> float:
        """Capture wall time in seconds (an MJPEG part's X-Timestamp, an event's `time`)."""
        return self.capture_wall_ns / 1e9

    def image_size(self) -> int:
        return image_size(self.format, self.width, self.height)

    def pack(self) -> bytes:
        head = _HEAD.pack(MAGIC, VERSION, TRAILER_SIZE, self.width, self.height, _fourcc(self.format),
                          FLAG_PLACEHOLDER if self.placeholder else 0, self.seq, self.capture_ns,
                          self.capture_wall_ns)
        return head.ljust(TRAILER_SIZE - GEOMETRY_SIZE, b"\0") + self.geometry.pack()

    @classmethod
    def unpack(cls, buf: bytes | memoryview) -> FrameInfo | None:
        """Read the trailer at the end of a buffer; None if it is not a cuecast frame, FrameFormatError if
        it is one of another format version."""
        n = len(buf)
        if n < TRAILER_SIZE:
            return None
        tail = bytes(buf[n - TRAILER_SIZE:])
        magic, version, size, w, h, fourcc, flags, seq, cap, wall = _HEAD.unpack(tail[:_HEAD.size])
        if magic != MAGIC:
            if bytes(buf[n - 64:n - 56]) == LEGACY_MAGIC:
                raise FrameFormatError("the producer writes cuecast frame format 1; this consumer reads format "
                                       f"{VERSION}: run the same cuecast version on both ends")
            return None
        if version != VERSION or size != TRAILER_SIZE:
            raise FrameFormatError(f"the producer writes cuecast frame format {version} ({size}-byte trailer); "
                                   f"this consumer reads format {VERSION}: run the same cuecast version on both ends")
        fmt = next((k for k, v in FOURCC.items() if struct.pack("<I", fourcc) == v), None)
        if fmt is None or n != image_size(fmt, w, h) + TRAILER_SIZE:
            return None
        return cls(seq, cap, wall, w, h, bool(flags & FLAG_PLACEHOLDER), fmt,
                   Geometry.unpack(tail[TRAILER_SIZE - GEOMETRY_SIZE:]))

    # -- millimetres ------------------------------------------------------------------------------------

    def to_mm(self, x: float, y: float) -> tuple[float, float]:
        """A pixel of this frame as a point on the table, in mm from the playing surface's top-left corner."""
        g = self.geometry
        if not g.calibrated:
            raise ValueError("this frame carries no table geometry: calibrate the table (`cuecast calibrate "
                             "table`) and set table.calibration")
        if g.view == "table":
            return x / g.px_per_mm - g.margin_mm, y / g.px_per_mm - g.margin_mm
        return _apply(g.homography, x, y)

    def to_px(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """A point on the table (mm from the playing surface's top-left corner) as a pixel of this frame."""
        g = self.geometry
        if not g.calibrated:
            raise ValueError("this frame carries no table geometry: calibrate the table (`cuecast calibrate "
                             "table`) and set table.calibration")
        if g.view == "table":
            return (x_mm + g.margin_mm) * g.px_per_mm, (y_mm + g.margin_mm) * g.px_per_mm
        return _apply(_inverse(g.homography), x_mm, y_mm)


def _fourcc(fmt: str) -> int:
    return int(struct.unpack("<I", FOURCC[fmt])[0])


def _apply(h: tuple[float, ...], x: float, y: float) -> tuple[float, float]:
    w = h[6] * x + h[7] * y + h[8]
    return (h[0] * x + h[1] * y + h[2]) / w, (h[3] * x + h[4] * y + h[5]) / w


def _inverse(h: tuple[float, ...]) -> tuple[float, ...]:
    a, b, c, d, e, f, g, i, k = h
    co = (e * k - f * i, c * i - b * k, b * f - c * e,
          f * g - d * k, a * k - c * g, c * d - a * f,
          d * i - e * g, b * g - a * i, a * e - b * d)
    det = a * co[0] + b * co[3] + c * co[6]
    return tuple(v / det for v in co)


def image_size(fmt: str, width: int, height: int) -> int:
    """Bytes of the packed image (rows without padding)."""
    if fmt == "BGR":
        return width * height * 3
    return width * height + 2 * ((width // 2) * (height // 2))


def buffer_size(width: int, height: int, fmt: str = "BGR") -> int:
    """Bytes of one shared-memory frame: packed image plus the trailer."""
    return image_size(fmt, width, height) + TRAILER_SIZE
