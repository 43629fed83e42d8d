"""Source descriptions: parse a `source.uri` and turn it into a GStreamer launch fragment.

Owns the accepted source syntaxes (v4l2, files, rtsp/http cameras, test patterns, the demo), the checks
that give a clear error before GStreamer does (missing file or device, no permission), and v4l2 device
probing. Parsing and fragment building are pure; only `probe_v4l2` touches GStreamer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

SourceKind = Literal["v4l2", "file", "rtsp", "http", "test", "demo", "ring"]  # ring: internal only

DEFAULT_DEVICE = "/dev/video0"
DEMO_PATTERN = "pool-table"

# videotestsrc pattern nicks (GStreamer 1.22).
TEST_PATTERNS = (
    "smpte", "snow", "black", "white", "red", "green", "blue", "checkers-1", "checkers-2", "checkers-4",
    "checkers-8", "circular", "blink", "smpte75", "zone-plate", "gamut", "chroma-zone-plate", "solid-color",
    "ball", "smpte100", "bar", "pinwheel", "spokes", "gradient", "colors", "smpte-rp-219",
)

# A network camera's RTSP jitter buffer: small, we want the newest picture.
RTSP_LATENCY_MS = 100


class SourceError(Exception):
    """A source that cannot be used; the message names it and what to check."""


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    location: str  # device path, file path, URL or pattern name
    fell_back: bool = False  # True when `auto` found no camera and chose the demo

    def describe(self) -> str:
        return f"{self.kind}:{self.location}"


def parse_source(uri: str, *, device_exists: bool | None = None) -> SourceSpec:
    """Turn a `source.uri` into a SourceSpec. `auto` picks /dev/video0 when present, else the demo."""
    uri = uri.strip()
    if not uri:
        raise SourceError("source.uri is empty; use auto, demo, test:PATTERN, v4l2:///dev/video0, a file or a URL")
    if uri == "auto":
        exists = os.path.exists(DEFAULT_DEVICE) if device_exists is None else device_exists
        if exists:
            return SourceSpec("v4l2", DEFAULT_DEVICE)
        return SourceSpec("demo", DEMO_PATTERN, fell_back=True)
    if uri == "demo":
        return SourceSpec("demo", DEMO_PATTERN)
    if uri.startswith("test:"):
        pattern = uri[len("test:"):] or "smpte"
        if pattern not in TEST_PATTERNS:
            raise SourceError(f"unknown test pattern {pattern!r}; choose one of: {', '.join(TEST_PATTERNS)}")
        return SourceSpec("test", pattern)
    if uri.startswith("v4l2:"):
        parsed = urlparse(uri)
        device = parsed.path or DEFAULT_DEVICE
        if not device.startswith("/dev/"):
            raise SourceError(f"v4l2 source {uri!r}: expected v4l2:///dev/videoN")
        return SourceSpec("v4l2", device)
    if uri.startswith("/dev/video") or uri.startswith("/dev/v4l/"):
        return SourceSpec("v4l2", uri)  # /dev/v4l/by-id/NAME: the same camera after a replug, whatever its N
    if uri.startswith("usb-") and "video-index" in uri:
        return SourceSpec("v4l2", f"/dev/v4l/by-id/{uri}")  # a by-id name alone
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return SourceSpec("rtsp", uri)
    if scheme in ("http", "https"):
        return SourceSpec("http", uri)
    if scheme == "file":
        return SourceSpec("file", unquote(urlparse(uri).path))
    if scheme and len(scheme) > 1:
        raise SourceError(
            f"source {uri!r}: unsupported scheme {scheme!r}; use v4l2://, file://, rtsp://, http(s)://, test:"
        )
    return SourceSpec("file", uri)


def check_source(spec: SourceSpec) -> None:
    """Fail early, with the fix, for problems GStreamer would report obscurely."""
    if spec.kind == "file":
        path = Path(spec.location)
        if not path.exists():
            raise SourceError(f"video file {path} does not exist; check the path in source.uri")
        if not path.is_file():
            raise SourceError(f"video file {path} is not a regular file")
        if not os.access(path, os.R_OK):
            raise SourceError(f"video file {path} is not readable by this user (check its permissions)")
        if path.stat().st_size == 0:
            raise SourceError(f"video file {path} is empty")
    elif spec.kind == "v4l2":
        dev = spec.location
        if not os.path.exists(dev):
            raise SourceError(
                f"camera {dev} not found: check the cable and `ls /dev/video*` / `v4l2-ctl --list-devices`, "
                "or use source.uri: demo"
            )
        if not os.access(dev, os.R_OK | os.W_OK):
            raise SourceError(
                f"no permission to open camera {dev}: add this user to the 'video' group "
                "(sudo usermod -aG video $USER) and log in again"
            )


def _q(value: str) -> str:
    """Quote a property value for gst_parse_launch."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def v4l2_caps(fmt: str, width: int, height: int, fps: int) -> tuple[str, str]:
    """(caps after v4l2src, decoder fragment) for a requested device format."""
    size = f"width={width},height={height},framerate={fps}/1"
    if fmt == "MJPG":
        return f"image/jpeg,{size}", "jpegdec"
    if fmt == "YUYV":
        return f"video/x-raw,format=YUY2,{size}", "identity"
    return f"video/x-raw,{size}", "identity"


def source_fragment(spec: SourceSpec, width: int, height: int, fps: int, fmt: str = "auto",
                    http_multipart: bool = True) -> str:
    """A gst-launch fragment producing decoded raw video (any format/size) for this source."""
    if spec.kind == "demo":
        raise SourceError("the demo source is built by capture.SourceRunner (appsrc), not a launch fragment")
    if spec.kind == "test":
        return (
            f"videotestsrc is-live=true pattern={spec.location} "
            f"! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        )
    if spec.kind == "file":
        return f"filesrc location={_q(spec.location)} ! decodebin name=dec dec. ! queue max-size-buffers=4"
    if spec.kind == "rtsp":
        return (
            f"rtspsrc location={_q(spec.location)} latency={RTSP_LATENCY_MS} drop-on-latency=true "
            "! decodebin ! queue max-size-buffers=2 leaky=downstream"
        )
    if spec.kind == "http":
        # MJPEG over HTTP first, with single-stream=true: decodebin alone waits ~10 s (multiqueue overrun) for
        # more streams that never come before it exposes the picture. Other content falls back to decodebin.
        head = f"souphttpsrc location={_q(spec.location)} is-live=true do-timestamp=true timeout=5 "
        if http_multipart:
            head += "! multipartdemux single-stream=true "
        return head + "! decodebin ! queue max-size-buffers=2 leaky=downstream"
    if spec.kind == "v4l2":
        chosen = "MJPG" if fmt == "auto" else fmt
        caps, dec = v4l2_caps(chosen, width, height, fps)
        # do-timestamp=false: v4l2src keeps the driver's buffer timestamp (CLOCK_MONOTONIC, taken at the start of
        # the exposure on UVC), closer to the moment the picture was taken than when it reached user space.
        return f"v4l2src name=cuecast_camera device={_q(spec.location)} do-timestamp=false ! {caps} ! {dec}"
    raise SourceError(f"unknown source kind {spec.kind}")


@dataclass(frozen=True)
class DeviceMode:
    format: str  # MJPG | YUYV | raw:<fourcc>
    width: int
    height: int
    fps: tuple[float, ...]


def probe_v4l2(device: str) -> list[DeviceMode]:
    """What a v4l2 device offers (formats, sizes, rates), read from v4l2src's caps in READY."""
    from cuecast.core.gst import Gst

    src = Gst.ElementFactory.make("v4l2src", None)
    if src is None:
        raise SourceError("v4l2src is missing: install gstreamer1.0-plugins-good")
    src.set_property("device", device)
    try:
        if src.set_state(Gst.State.READY) == Gst.StateChangeReturn.FAILURE:
            raise SourceError(f"camera {device} cannot be opened (missing, busy or no permission)")
        caps = src.get_static_pad("src").query_caps(None)
        return modes_from_caps(caps.to_string())
    finally:
        src.set_state(Gst.State.NULL)


def modes_from_caps(caps_text: str) -> list[DeviceMode]:
    """Parse v4l2src caps text into DeviceModes (pure, so it is testable without a camera)."""
    from cuecast.core.gst import Gst

    caps = Gst.Caps.from_string(caps_text)
    modes: list[DeviceMode] = []
    for i in range(caps.get_size()):
        s = caps.get_structure(i)
        name = s.get_name()
        if name == "image/jpeg":
            fmt = "MJPG"
        elif name == "video/x-raw":
            raw = s.get_string("format") or "?"
            fmt = "YUYV" if raw == "YUY2" else f"raw:{raw}"
        else:
            continue
        ok_w, w = s.get_int("width")
        ok_h, h = s.get_int("height")
        if not (ok_w and ok_h):
            continue
        rates: list[float] = []
        ok, num, den = s.get_fraction("framerate")
        if ok and den:
            rates.append(num / den)
        else:
            # A list of fractions: parse from the text, e.g. framerate={ (fraction)30/1, (fraction)15/1 }
            text = s.to_string()
            start = text.find("framerate=")
            if start >= 0:
                seg = text[start:].split("}", 1)[0]
                for tok in seg.replace("{", " ").replace(",", " ").split():
                    tok = tok.replace("(fraction)", "").strip(";")
                    if "/" in tok and tok.split("/")[0].isdigit():
                        n, d = tok.split("/")
                        if int(d):
                            rates.append(int(n) / int(d))
        modes.append(DeviceMode(fmt, w, h, tuple(sorted(set(rates), reverse=True))))
    return modes


def choose_v4l2_format(modes: list[DeviceMode], width: int, height: int, fps: int) -> str:
    """Prefer MJPG (USB bandwidth), then YUYV, then any raw mode that offers the size and rate."""
    def offers(fmt_prefix: str) -> bool:
        return any(
            m.format.startswith(fmt_prefix) and m.width == width and m.height == height
            and (not m.fps or any(abs(r - fps) < 0.5 for r in m.fps))
            for m in modes
        )
    for fmt in ("MJPG", "YUYV", "raw"):
        if offers(fmt):
            return fmt
    def rates(m: DeviceMode) -> str:
        return "@" + "/".join(f"{r:g}" for r in sorted(m.fps, reverse=True)) if m.fps else ""

    sizes = sorted({f"{m.format} {m.width}x{m.height}{rates(m)}" for m in modes})
    raise SourceError(
        f"the camera offers no mode {width}x{height}@{fps}; it offers: {', '.join(sizes) or 'nothing'}. "
        "Set source.width/height/fps to one of these."
    )
