"""A V4L2 camera's identity, modes and controls, read and set with the kernel's ioctls (no GStreamer, no
dependency: ctypes structures of linux/videodev2.h and fcntl.ioctl).

Owns: QUERYCAP (card, driver, bus), the modes (ENUM_FMT / FRAMESIZES / FRAMEINTERVALS), every control
(QUERY_EXT_CTRL with NEXT_CTRL, QUERYMENU, G_CTRL / S_CTRL) with V4L2's names as v4l2-ctl prints them, and
applying a set of values in dependency order (an automatic mode before the manual value it governs). A device
open for this does not disturb a stream running on another handle (controls need no ownership). Errors are
CameraError with a `kind` the API maps to a status: unknown, value, inactive, gone, busy.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
from dataclasses import dataclass, field
from typing import Any

# _IOC encoding (asm-generic/ioctl.h)
_NRSHIFT, _TYPESHIFT, _SIZESHIFT, _DIRSHIFT = 0, 8, 16, 30
_WRITE, _READ = 1, 2


def _iowr(nr: int, size: int) -> int:
    return ((_READ | _WRITE) << _DIRSHIFT) | (ord("V") << _TYPESHIFT) | (nr << _NRSHIFT) | (size << _SIZESHIFT)


def _ior(nr: int, size: int) -> int:
    return (_READ << _DIRSHIFT) | (ord("V") << _TYPESHIFT) | (nr << _NRSHIFT) | (size << _SIZESHIFT)


class Capability(ctypes.Structure):
    _fields_ = [("driver", ctypes.c_char * 16), ("card", ctypes.c_char * 32), ("bus_info", ctypes.c_char * 32),
                ("version", ctypes.c_uint32), ("capabilities", ctypes.c_uint32), ("device_caps", ctypes.c_uint32),
                ("reserved", ctypes.c_uint32 * 3)]


class FmtDesc(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint32), ("type", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("description", ctypes.c_char * 32), ("pixelformat", ctypes.c_uint32),
                ("mbus_code", ctypes.c_uint32), ("reserved", ctypes.c_uint32 * 3)]


class FrmSize(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint32), ("pixel_format", ctypes.c_uint32), ("type", ctypes.c_uint32),
                ("width", ctypes.c_uint32), ("height", ctypes.c_uint32), ("_rest", ctypes.c_uint32 * 4),
                ("reserved", ctypes.c_uint32 * 2)]


class FrmIval(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint32), ("pixel_format", ctypes.c_uint32), ("width", ctypes.c_uint32),
                ("height", ctypes.c_uint32), ("type", ctypes.c_uint32), ("numerator", ctypes.c_uint32),
                ("denominator", ctypes.c_uint32), ("_rest", ctypes.c_uint32 * 4), ("reserved", ctypes.c_uint32 * 2)]


class QueryExtCtrl(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("type", ctypes.c_uint32), ("name", ctypes.c_char * 32),
                ("minimum", ctypes.c_int64), ("maximum", ctypes.c_int64), ("step", ctypes.c_uint64),
                ("default_value", ctypes.c_int64), ("flags", ctypes.c_uint32), ("elem_size", ctypes.c_uint32),
                ("elems", ctypes.c_uint32), ("nr_of_dims", ctypes.c_uint32), ("dims", ctypes.c_uint32 * 4),
                ("reserved", ctypes.c_uint32 * 32)]


class QueryMenu(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("id", ctypes.c_uint32), ("index", ctypes.c_uint32), ("name", ctypes.c_char * 32),
                ("reserved", ctypes.c_uint32)]


class Control(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("value", ctypes.c_int32)]


VIDIOC_QUERYCAP = _ior(0, ctypes.sizeof(Capability))
VIDIOC_ENUM_FMT = _iowr(2, ctypes.sizeof(FmtDesc))
VIDIOC_G_CTRL = _iowr(27, ctypes.sizeof(Control))
VIDIOC_S_CTRL = _iowr(28, ctypes.sizeof(Control))
VIDIOC_QUERYMENU = _iowr(37, ctypes.sizeof(QueryMenu))
VIDIOC_ENUM_FRAMESIZES = _iowr(74, ctypes.sizeof(FrmSize))
VIDIOC_ENUM_FRAMEINTERVALS = _iowr(75, ctypes.sizeof(FrmIval))
VIDIOC_QUERY_EXT_CTRL = _iowr(103, ctypes.sizeof(QueryExtCtrl))
CAPTURE = 1  # V4L2_BUF_TYPE_VIDEO_CAPTURE
NEXT_CTRL = 0x80000000
TYPES = {1: "int", 2: "bool", 3: "menu", 4: "button", 5: "int64", 6: "class", 9: "bitmask", 10: "int_menu"}
FLAGS = {0x0001: "disabled", 0x0004: "read-only", 0x0010: "inactive", 0x0040: "write-only", 0x0100: "volatile"}
FLAG_INACTIVE, FLAG_READ_ONLY, FLAG_DISABLED = 0x0010, 0x0004, 0x0001
# Which setting makes a manual control active (UVC's auto/manual pairs): control -> (master, value).
MASTERS: dict[str, tuple[str, int]] = {
    "exposure_time_absolute": ("auto_exposure", 1),
    "white_balance_temperature": ("white_balance_automatic", 0),
    "focus_absolute": ("focus_automatic_continuous", 0),
    "gain": ("gain_automatic", 0),
}


class CameraError(Exception):
    """`kind`: unknown (no such control), value (out of range / wrong type), inactive, gone, busy."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def ctl_name(label: str) -> str:
    """The name v4l2-ctl prints for a control label ("Exposure Time, Absolute" -> exposure_time_absolute)."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", label.lower())).strip("_")


@dataclass
class ControlInfo:
    name: str
    id: int
    type: str
    min: int
    max: int
    step: int
    default: int
    value: int | None
    flags: list[str]
    menu: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "min": self.min, "max": self.max,
                               "step": self.step, "default": self.default, "value": self.value,
                               "flags": self.flags}
        if self.menu:
            out["menu"] = {str(k): v for k, v in self.menu.items()}
        if "inactive" in self.flags and self.name in MASTERS:
            master, value = MASTERS[self.name]
            out["active_when"] = {master: value}
        return out


def _os_error(e: OSError, path: str) -> CameraError:
    if e.errno in (errno.ENODEV, errno.ENOENT, errno.ENXIO):
        return CameraError("gone", f"camera {path} is not there (unplugged?)")
    if e.errno == errno.EBUSY:
        return CameraError("busy", f"camera {path} is busy")
    return CameraError("value", f"camera {path}: {os.strerror(e.errno or 0)}")


class Camera:
    """`with Camera("/dev/video0") as cam:` a handle for reading and setting controls."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise _os_error(e, path) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ioctl(self, req: int, arg: ctypes.Structure) -> bool:
        """True when answered; False on EINVAL (the end of an enumeration, or no such thing)."""
        try:
            fcntl.ioctl(self.fd, req, arg)
            return True
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOTTY):
                return False
            raise _os_error(e, self.path) from None

    def info(self) -> dict[str, str]:
        cap = Capability()
        self._ioctl(VIDIOC_QUERYCAP, cap)
        return {"card": cap.card.decode(errors="replace"), "driver": cap.driver.decode(errors="replace"),
                "bus": cap.bus_info.decode(errors="replace")}

    def modes(self) -> list[dict[str, Any]]:
        out = []
        for i in range(64):
            fd = FmtDesc(index=i, type=CAPTURE)
            if not self._ioctl(VIDIOC_ENUM_FMT, fd):
                break
            fourcc = fd.pixelformat.to_bytes(4, "little").decode(errors="replace")
            for j in range(64):
                fs = FrmSize(index=j, pixel_format=fd.pixelformat)
                if not self._ioctl(VIDIOC_ENUM_FRAMESIZES, fs) or fs.type != 1:  # discrete sizes only
                    break
                rates = []
                for k in range(32):
                    fi = FrmIval(index=k, pixel_format=fd.pixelformat, width=fs.width, height=fs.height)
                    if not self._ioctl(VIDIOC_ENUM_FRAMEINTERVALS, fi) or fi.type != 1 or not fi.numerator:
                        break
                    rates.append(round(fi.denominator / fi.numerator, 3))
                out.append({"format": fourcc, "width": fs.width, "height": fs.height, "fps": rates})
        return out

    def controls(self, menus: bool = True) -> list[ControlInfo]:
        """Every control with its value; `menus=False` skips the menu entries' names (a quick check)."""
        out = []
        cid = NEXT_CTRL
        while True:
            q = QueryExtCtrl(id=cid)
            if not self._ioctl(VIDIOC_QUERY_EXT_CTRL, q):
                break
            cid = q.id | NEXT_CTRL
            ctype = TYPES.get(q.type, str(q.type))
            if ctype == "class" or q.flags & FLAG_DISABLED:
                continue
            menu = {}
            if ctype == "menu" and menus:
                for idx in range(int(q.minimum), int(q.maximum) + 1):
                    m = QueryMenu(id=q.id, index=idx)
                    if self._ioctl(VIDIOC_QUERYMENU, m):
                        menu[idx] = m.name.decode(errors="replace")
            value = None
            if ctype in ("int", "bool", "menu"):
                c = Control(id=q.id)
                if self._ioctl(VIDIOC_G_CTRL, c):
                    value = int(c.value)
            out.append(ControlInfo(ctl_name(q.name.decode(errors="replace")), q.id, ctype, int(q.minimum),
                                   int(q.maximum), int(q.step), int(q.default_value), value,
                                   [n for bit, n in FLAGS.items() if q.flags & bit], menu))
        return out

    def set(self, info: ControlInfo, value: int) -> int:
        """Set one control; the value the device reports afterwards."""
        c = Control(id=info.id, value=value)
        try:
            fcntl.ioctl(self.fd, VIDIOC_S_CTRL, c)
        except OSError as e:
            if e.errno == errno.EACCES:
                raise CameraError("inactive", inactive_message(info.name)) from None
            if e.errno in (errno.ERANGE, errno.EINVAL):
                raise CameraError("value", f"{info.name}={value}: {range_text(info)}") from None
            raise _os_error(e, self.path) from None
        g = Control(id=info.id)
        self._ioctl(VIDIOC_G_CTRL, g)
        return int(g.value)


def inactive_message(name: str) -> str:
    if name in MASTERS:
        master, value = MASTERS[name]
        return f"{name} is inactive: set {master}={value} first (in the same request is fine)"
    return f"{name} is inactive in the camera's current mode"


def range_text(info: ControlInfo) -> str:
    if info.type == "menu":
        return "one of " + ", ".join(f"{k} ({v})" for k, v in sorted(info.menu.items()))
    if info.type == "bool":
        return "0 or 1"
    return f"{info.min}..{info.max} in steps of {info.step}"


def order(values: dict[str, int]) -> list[tuple[str, int]]:
    """Automatic modes before the manual values they govern, then the rest in the given order."""
    masters = {m for m, _ in MASTERS.values()}
    return sorted(values.items(), key=lambda kv: 0 if kv[0] in masters else 1)


def apply(cam: Camera, values: dict[str, int]) -> dict[str, int]:
    """Check every value against what the device offers, then set them in dependency order; the values read
    back. Nothing is set when a value is unknown or out of range (CameraError names it and the fix)."""
    known = {c.name: c for c in cam.controls()}
    for name, value in values.items():
        info = known.get(name)
        if info is None:
            raise CameraError("unknown", f"unknown camera control {name!r}; this camera has: "
                              + ", ".join(sorted(known)))
        if "read-only" in info.flags:
            raise CameraError("value", f"{name} is read-only")
        if isinstance(value, bool) or not isinstance(value, int):
            raise CameraError("value", f"{name} must be a whole number ({range_text(info)})")
        bad = (info.type == "menu" and value not in info.menu) or not info.min <= value <= info.max
        if bad:
            raise CameraError("value", f"{name}={value} is out of range: {range_text(info)}")
    # A manual value whose automatic mode stays on (now and after this request) cannot be set.
    current = {n: c.value for n, c in known.items()}
    for name in values:
        if name in MASTERS:
            master, want = MASTERS[name]
            if master in known and {**current, **values}.get(master) != want:
                raise CameraError("inactive", inactive_message(name))
    return {name: cam.set(known[name], value) for name, value in order(values)}
