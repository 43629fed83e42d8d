"""The test camera spec (YAML): devices, their formats, sizes and rates, and their controls, checked with
errors that name the entry. Control names and ids are V4L2's (as v4l2-ctl spells them); types, ranges and
defaults come from the spec, as a UVC camera's descriptors would give them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# V4L2 control ids and the names the kernel gives them (include/uapi/linux/v4l2-controls.h,
# drivers/media/v4l2-core/v4l2-ctrls-defs.c); v4l2-ctl prints the name lower-cased, non-alphanumerics as "_".
CONTROLS: dict[str, tuple[int, str]] = {
    "brightness": (0x00980900, "Brightness"),
    "contrast": (0x00980901, "Contrast"),
    "saturation": (0x00980902, "Saturation"),
    "hue": (0x00980903, "Hue"),
    "white_balance_automatic": (0x0098090C, "White Balance, Automatic"),
    "gamma": (0x00980910, "Gamma"),
    "gain": (0x00980913, "Gain"),
    "power_line_frequency": (0x00980918, "Power Line Frequency"),
    "white_balance_temperature": (0x0098091A, "White Balance Temperature"),
    "sharpness": (0x0098091B, "Sharpness"),
    "backlight_compensation": (0x0098091C, "Backlight Compensation"),
    "auto_exposure": (0x009A0901, "Auto Exposure"),
    "exposure_time_absolute": (0x009A0902, "Exposure Time, Absolute"),
    "exposure_dynamic_framerate": (0x009A0903, "Exposure, Dynamic Framerate"),
    "focus_absolute": (0x009A090A, "Focus, Absolute"),
    "focus_automatic_continuous": (0x009A090C, "Focus, Automatic Continuous"),
    "zoom_absolute": (0x009A090D, "Zoom, Absolute"),
}
TYPES = {"int": 1, "bool": 2, "menu": 3}  # V4L2_CTRL_TYPE_INTEGER, _BOOLEAN, _MENU
FOURCCS = {"MJPG": ("Motion-JPEG", True), "YUYV": ("YUYV 4:2:2", False)}
MAX_DEVICES = 8


class SpecError(ValueError):
    """The spec is wrong; the message names the entry and what to write instead."""


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    fps: tuple[int, ...]


@dataclass(frozen=True)
class Format:
    fourcc: str
    sizes: tuple[Size, ...]

    @property
    def compressed(self) -> bool:
        return FOURCCS[self.fourcc][1]

    def sizeimage(self, size: Size) -> int:
        return size.width * size.height * 2  # YUYV exactly; MJPEG's buffer as UVC cameras size it


@dataclass(frozen=True)
class Control:
    name: str
    id: int
    label: str
    type: str
    min: int
    max: int
    step: int
    default: int
    menu: dict[int, str] = field(default_factory=dict)
    active_when: dict[str, int] = field(default_factory=dict)

    def clamp(self, value: int) -> int:
        """uvcvideo's rule: integers to the step from the minimum, then into [min, max]; booleans to 0/1."""
        if self.type == "bool":
            return 1 if value else 0
        if self.type == "int":
            if value > self.min:  # DIV_ROUND_CLOSEST: halves round up
                value = self.min + (value - self.min + self.step // 2) // self.step * self.step
            return max(self.min, min(self.max, value))
        return value


@dataclass(frozen=True)
class Device:
    path: str
    card: str
    by_id: str | None
    picture: str
    formats: tuple[Format, ...]
    controls: tuple[Control, ...]
    minor: int

    def control(self, name_or_id: str | int) -> Control | None:
        for c in self.controls:
            if c.name == name_or_id or c.id == name_or_id:
                return c
        return None


def _int(where: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{where}: expected a whole number, got {v!r}")
    return v


def _control(where: str, c: Any) -> Control:
    if not isinstance(c, dict) or "name" not in c:
        raise SpecError(f"{where}: expected {{name: ..., type: int|bool|menu, ...}}")
    name = str(c["name"])
    if name not in CONTROLS:
        raise SpecError(f"{where}: unknown control {name!r}; known: {', '.join(sorted(CONTROLS))}")
    ctype = c.get("type", "int")
    if ctype not in TYPES:
        raise SpecError(f"{where}: type must be int, bool or menu, not {ctype!r}")
    menu = {int(k): str(v) for k, v in (c.get("menu") or {}).items()}
    if ctype == "menu" and not menu:
        raise SpecError(f"{where}: a menu control needs menu: {{index: name, ...}}")
    lo = _int(f"{where}.min", c.get("min", min(menu) if menu else 0))
    hi = _int(f"{where}.max", c.get("max", max(menu) if menu else 1))
    step = _int(f"{where}.step", c.get("step", 1))
    default = _int(f"{where}.default", c.get("default", lo))
    if lo > hi or step < 1 or not lo <= default <= hi:
        raise SpecError(f"{where}: needs min <= default <= max and step >= 1")
    if ctype == "menu" and default not in menu:
        raise SpecError(f"{where}: default {default} is not one of the menu's entries {sorted(menu)}")
    active = {str(k): int(v) for k, v in (c.get("active_when") or {}).items()}
    cid, label = CONTROLS[name]
    return Control(name, cid, label, ctype, lo, hi, step, default, menu, active)


def parse(doc: Any, origin: str = "spec") -> list[Device]:
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list) or not doc["devices"]:
        raise SpecError(f"{origin}: expected devices: [{{path: /dev/video0, formats: [...], ...}}]")
    out: list[Device] = []
    for i, d in enumerate(doc["devices"][:MAX_DEVICES]):
        where = f"{origin}: devices[{i}]"
        if not isinstance(d, dict):
            raise SpecError(f"{where}: expected a mapping")
        path = str(d.get("path", ""))
        if not path.startswith("/dev/video") or not path[len("/dev/video"):].isdigit():
            raise SpecError(f"{where}.path: expected /dev/videoN, got {path!r}")
        formats = []
        for j, f in enumerate(d.get("formats") or []):
            fw = f"{where}.formats[{j}]"
            fourcc = str(f.get("fourcc", ""))
            if fourcc not in FOURCCS:
                raise SpecError(f"{fw}.fourcc: {fourcc!r} is not offered by the test camera; use MJPG or YUYV")
            sizes = []
            for k, s in enumerate(f.get("sizes") or []):
                sw = f"{fw}.sizes[{k}]"
                w, h = _int(f"{sw}.width", s.get("width")), _int(f"{sw}.height", s.get("height"))
                fps = tuple(_int(f"{sw}.fps", r) for r in s.get("fps") or [])
                if not fps or w % 2 or h % 2 or not (16 <= w <= 4096 and 16 <= h <= 4096):
                    raise SpecError(f"{sw}: needs even width/height in 16..4096 and fps: [..]")
                sizes.append(Size(w, h, fps))
            if not sizes:
                raise SpecError(f"{fw}: needs sizes: [{{width, height, fps: [..]}}]")
            formats.append(Format(fourcc, tuple(sizes)))
        if not formats:
            raise SpecError(f"{where}: needs formats: [{{fourcc: MJPG, sizes: [...]}}]")
        controls = [_control(f"{where}.controls[{k}]", c) for k, c in enumerate(d.get("controls") or [])]
        names = [c.name for c in controls]
        for c in controls:
            for master in c.active_when:
                if master not in names:
                    raise SpecError(f"{where}: {c.name}.active_when names {master!r}, which the device lacks")
        by_id = d.get("by_id")
        out.append(Device(path, str(d.get("card", "USB Camera"))[:31], f"/dev/v4l/by-id/{by_id}" if by_id else None,
                          str(d.get("picture", "demo")), tuple(formats), tuple(controls),
                          int(path[len("/dev/video"):])))
    if len({d.path for d in out}) != len(out):
        raise SpecError(f"{origin}: two devices with the same path")
    return out


def load(path: Path) -> list[Device]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"{path}: cannot read the spec: {e}") from None
    return parse(doc, str(path))
