"""A plain shared-memory reader, as a vision backend would write one: GStreamer shmsrc -> appsink -> numpy.

Not cuecast's consumer library: it only knows the raw BGR frame size (any trailer is ignored, so it reads a
plain gst-launch producer as well). For each frame it measures, when it holds the frame as numpy:
  glass:   now - when the bench camera (bench/camera.py) sent the frame whose number is painted in the picture
           (read at the raw or the corrected spots; the send time from the camera's send log), CLOCK_MONOTONIC
  capture: now (CLOCK_MONOTONIC) - the capture time in cuecast's trailer, if the frame has one
and when each frame arrived (CLOCK_MONOTONIC ms, for gaps). Prints one JSON object at the end.

Usage: python bench/shm_reader.py SOCKET SECONDS WIDTH HEIGHT [raw|corrected|none] [SEND_LOG]
"""

from __future__ import annotations

import json
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.camera import FRAMES, send_log
from cuecast.core.gst import Gst
from cuecast.protocol.frame import LEGACY_MAGIC, FrameFormatError, FrameInfo
from cuecast.testcam.lenscode import LensCode, read_code


def trailer_capture(data: memoryview) -> tuple[int | None, int | None]:
    """(capture time, seq) in a cuecast trailer (this version's, or the 64-byte one of the one-process design
    the bench compares with); (None, None) for a placeholder frame or no trailer."""
    try:
        info = FrameInfo.unpack(data)
    except FrameFormatError:
        info = None
        tail = bytes(data[len(data) - 64:])
        if tail[:8] == LEGACY_MAGIC:  # magic, size, w, h, channels, flags, seq, capture, wall
            _m, _s, _w, _h, _c, flags, seq, cap, _wall = struct.unpack("<8sIIIIIQqq", tail[:52])
            return (None, None) if flags & 1 else (int(cap), int(seq))
    if info is None or info.placeholder:
        return None, None
    return info.capture_ns, info.seq


def main() -> None:
    sock, seconds, w, h = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    mode = sys.argv[5] if len(sys.argv) > 5 else "none"
    centres = None
    sent = send_log(Path(sys.argv[6])) if len(sys.argv) > 6 else None
    if mode != "none":
        lens = LensCode(w, h)  # only where the code is: the camera itself runs in its own process
        centres = lens.raw_centres if mode == "raw" else lens.corrected_centres
    glass: list[float] = []
    capture: list[float] = []
    arrivals: list[float] = []
    last_code = [-1]
    last_seq = [-1]
    missing = [0]  # frames the producer numbered that this reader never got (from the trailer's seq)
    lock = threading.Lock()

    def on_sample(sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        ok, mi = buf.map(Gst.MapFlags.READ)
        if not ok:
            return Gst.FlowReturn.OK
        try:
            now_ns = time.monotonic_ns()
            img = np.frombuffer(mi.data, np.uint8, count=w * h * 3).reshape(h, w, 3)
            code = read_code(img, centres) if centres is not None else None
            capture_ns = seq = None
            if mi.size > w * h * 3:
                capture_ns, seq = trailer_capture(mi.data)
        finally:
            buf.unmap(mi)
        with lock:
            arrivals.append(now_ns / 1e6)
            if code is not None and code != last_code[0] and sent is not None:
                last_code[0] = code
                glass.append((now_ns - int(sent[code % FRAMES])) / 1e6)
            if capture_ns is not None:
                capture.append((now_ns - capture_ns) / 1e6)
            if seq is not None:
                if 0 <= last_seq[0] < seq:
                    missing[0] += seq - last_seq[0] - 1
                last_seq[0] = seq
        return Gst.FlowReturn.OK

    def build() -> Gst.Pipeline:
        p = Gst.parse_launch(f"shmsrc socket-path={sock} is-live=true ! appsink name=sink emit-signals=true "
                             "sync=false max-buffers=1 drop=true enable-last-sample=false")
        p.get_by_name("sink").connect("new-sample", on_sample)
        return p

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # shmsrc does not reconnect: a new pipeline after an error
        p = build()
        if p.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            p.set_state(Gst.State.NULL)
            time.sleep(0.02)
            continue
        bus = p.get_bus()
        while time.monotonic() < deadline:
            msg = bus.timed_pop_filtered(50 * Gst.MSECOND, Gst.MessageType.ERROR | Gst.MessageType.EOS)
            if msg is not None:
                break
        p.set_state(Gst.State.NULL)
    gaps = np.diff(arrivals) if len(arrivals) > 1 else np.array([0.0])
    print(json.dumps({"frames": len(arrivals), "fps": len(arrivals) / seconds, "glass": glass, "capture": capture,
                      "max_gap_ms": float(gaps.max()), "arrivals": arrivals, "missing": missing[0]}))


if __name__ == "__main__":
    main()
