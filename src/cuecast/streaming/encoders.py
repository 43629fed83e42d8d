"""H.264 encoder selection: what this machine has, what `auto` picks and why, and the launch fragment.

Owns the candidate list (hardware first: Raspberry Pi v4l2, VA-API, NVENC; then software), probing an
encoder for real (a 2-frame encode, because a plugin can be installed without the hardware), and the
Debian package to name when a configured encoder is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cuecast.core.gst import Gst

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5


@dataclass(frozen=True)
class EncoderKind:
    name: str  # config value
    element: str
    package: str
    hardware: bool
    template: str  # format() with kbps, bps, gop

    def fragment(self, kbps: int, gop: int) -> str:
        return self.template.format(kbps=kbps, bps=kbps * 1000, gop=gop)


# Probe order for `auto`: the hardware a user may have, then software.
ENCODERS: tuple[EncoderKind, ...] = (
    EncoderKind("v4l2", "v4l2h264enc", "gstreamer1.0-plugins-good (and a V4L2 M2M encoder, e.g. Raspberry Pi)",
                True, 'v4l2h264enc extra-controls="controls,video_bitrate={bps},h264_i_frame_period={gop}" '
                      "! video/x-h264,level=(string)4"),
    EncoderKind("vaapi", "vah264enc", "gstreamer1.0-plugins-bad (and a VA-API driver, e.g. intel-media-va-driver)",
                True, "vah264enc bitrate={kbps} key-int-max={gop}"),
    EncoderKind("vaapi-legacy", "vaapih264enc", "gstreamer1.0-vaapi", True,
                "vaapih264enc bitrate={kbps} keyframe-period={gop}"),
    EncoderKind("nvenc", "nvh264enc", "gstreamer1.0-plugins-bad (and the NVIDIA driver)", True,
                "nvh264enc bitrate={kbps} gop-size={gop} zerolatency=true"),
    EncoderKind("x264", "x264enc", "gstreamer1.0-plugins-ugly", False,
                # ultrafast+zerolatency holds 1080p30 on two cores (veryfast does not, measured); the caps
                # keep the profile one every browser's WebRTC stack decodes.
                "x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} byte-stream=true "
                "! video/x-h264,profile=constrained-baseline"),
    EncoderKind("openh264", "openh264enc", "gstreamer1.0-plugins-bad", False,
                "openh264enc bitrate={bps} gop-size={gop} complexity=low"),
)
BY_NAME = {e.name: e for e in ENCODERS}
AUTO_ORDER = ("v4l2", "vaapi", "vaapi-legacy", "nvenc", "x264", "openh264")


class EncoderError(Exception):
    """A configured encoder cannot be used; the message names the package to install."""


@dataclass(frozen=True)
class Probe:
    kind: EncoderKind
    installed: bool
    works: bool
    detail: str


def probe(kind: EncoderKind) -> Probe:
    """Installed (element exists) and works (encodes two small frames) on this machine?"""
    if Gst.ElementFactory.find(kind.element) is None:
        return Probe(kind, False, False, f"not installed (package {kind.package})")
    desc = (f"videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 "
            f"! {kind.fragment(500, 30)} ! fakesink")
    try:
        pipeline = Gst.parse_launch(desc)
    except Exception as e:  # noqa: BLE001 - GLib.Error and friends: report, do not crash the probe
        return Probe(kind, True, False, f"cannot build: {e}")
    try:
        pipeline.set_state(Gst.State.PLAYING)
        msg = pipeline.get_bus().timed_pop_filtered(PROBE_TIMEOUT_S * Gst.SECOND,
                                                    Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if msg is None:
            return Probe(kind, True, False, "no output within the probe time")
        if msg.type == Gst.MessageType.ERROR:
            err, _dbg = msg.parse_error()
            return Probe(kind, True, False, f"installed but unusable here: {err.message}")
        return Probe(kind, True, True, "works")
    finally:
        pipeline.set_state(Gst.State.NULL)


def choose(configured: str) -> tuple[EncoderKind, str]:
    """(encoder, why) for a config value; raises EncoderError for a configured encoder that is missing."""
    if configured != "auto":
        names = ["vaapi", "vaapi-legacy"] if configured == "vaapi" else [configured]
        reasons = []
        for name in names:
            p = probe(BY_NAME[name])
            if p.works:
                return p.kind, f"configured h264.encoder={configured}"
            reasons.append(f"{p.kind.element}: {p.detail}")
        raise EncoderError(
            f"h264.encoder={configured} is not available: {'; '.join(reasons)}. Install "
            f"{BY_NAME[names[0]].package}, or set h264.encoder: auto"
        )
    skipped = []
    for name in AUTO_ORDER:
        p = probe(BY_NAME[name])
        if p.works:
            why = "auto: " + (f"first working hardware encoder ({p.kind.element})" if p.kind.hardware
                              else f"no hardware encoder found, software {p.kind.element}")
            return p.kind, why
        skipped.append(f"{p.kind.element} {p.detail}")
    raise EncoderError("no H.264 encoder works here: " + "; ".join(skipped)
                       + ". Install gstreamer1.0-plugins-ugly for x264enc")


def report() -> tuple[list[Probe], str]:
    """Every candidate's probe, and what auto would pick."""
    probes = [probe(k) for k in ENCODERS]
    try:
        kind, why = choose("auto")
        pick = f"{kind.name} ({kind.element}): {why}"
    except EncoderError as e:
        pick = str(e)
    return probes, pick
