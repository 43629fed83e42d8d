"""Fisheye bench: the correction's cost per 1080p frame. The native cuecastremap (what the service runs)
against a bare cv2.remap of the same frames (same run, same maps); and the whole service's CPU with
correction on vs off."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import (
    cpu_percent,
    free_ports,
    make_mjpeg_clip,
    service_env,
    start_service,
    stop,
    table,
    window,
    write_report,
)
from bench.mjpeg import CLIP, wait_port
from cuecast.consumer import GStreamerFrameConsumer
from cuecast.core import native
from cuecast.core.gst import GLib, Gst
from cuecast.lens.maps import build_maps, remap_table
from cuecast.media.demo import DemoScene, demo_calibration_path, demo_model

W, H = 1920, 1080
FRAMES = int(window(300, 20))
REPEATS = int(window(3, 1))


def bare_remap_ms(frame: np.ndarray) -> float:
    """cv2.remap of an I420 frame plane by plane with the service's fixed-point maps."""
    maps = build_maps(demo_model(), W, H, chroma=True)
    assert maps.half is not None
    out = np.empty_like(frame)
    t0 = time.perf_counter()
    for _ in range(FRAMES):
        cv2.remap(frame[:H], maps.full[0], maps.full[1], cv2.INTER_LINEAR, dst=out[:H])
        for a, b in ((H, H + H // 4), (H + H // 4, H * 3 // 2)):
            src = frame[a:b].reshape(H // 2, W // 2)
            dst = out[a:b].reshape(H // 2, W // 2)
            cv2.remap(src, maps.half[0], maps.half[1], cv2.INTER_LINEAR, dst=dst, borderValue=128)
    return (time.perf_counter() - t0) / FRAMES * 1000


def element_ms(frame: np.ndarray) -> float:
    """The native cuecastremap in a pipeline, wall ms per frame in the steady state."""
    native.load()
    p = Gst.parse_launch(
        f"appsrc name=src format=time block=true max-buffers=4 caps=video/x-raw,format=I420,width={W},height={H},"
        f"framerate=30/1 ! cuecastremap name=fe ! fakesink sync=false name=sink"
    )
    maps = build_maps(demo_model(), W, H, chroma=True)
    p.get_by_name("fe").set_property("map", GLib.Bytes.new(remap_table(maps, (W, H))))
    src = p.get_by_name("src")
    done = threading.Event()
    count = [0]

    def on_buffer(*_a: object) -> None:
        count[0] += 1
        if count[0] == FRAMES:
            done.set()

    sink = p.get_by_name("sink")
    sink.set_property("signal-handoffs", True)
    sink.connect("handoff", on_buffer)
    p.set_state(Gst.State.PLAYING)
    data = frame.tobytes()
    # Warm-up frame builds the maps (once per caps), then time the steady state.
    bufs = [Gst.Buffer.new_wrapped(data) for _ in range(FRAMES + 1)]
    src.emit("push-buffer", bufs[0])
    while count[0] < 1:
        time.sleep(0.001)
    count[0] = 0
    t0 = time.perf_counter()
    for b in bufs[1:]:
        src.emit("push-buffer", b)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    p.set_state(Gst.State.NULL)
    return elapsed / FRAMES * 1000


def videobalance_ms() -> float:
    """videobalance (brightness/contrast set, so not passthrough) on 1080p I420: CPU ms per frame."""
    import resource
    import subprocess

    cmd = ("gst-launch-1.0 -q videotestsrc num-buffers={n} pattern=ball ! video/x-raw,format=I420,width={w},"
           "height={h},framerate=30/1 ! {el} ! fakesink")

    def cpu_of(el: str) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd.format(n=FRAMES, w=W, h=H, el=el).split(), check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    return (cpu_of("videobalance brightness=0.1 contrast=1.2") - cpu_of("identity")) / FRAMES * 1000


def luma_lut_ms(frame: np.ndarray) -> float:
    """The same brightness/contrast as the element applies it: one table lookup on the luma plane."""
    y = frame[:H].copy()
    lut = np.clip(np.rint(16 + (np.arange(256) - 16) * 1.2 + 0.1 * 255), 0, 255).astype(np.uint8)
    t0 = time.process_time()
    for _ in range(FRAMES):
        cv2.LUT(y, lut, dst=y)
    return (time.process_time() - t0) / FRAMES * 1000


def service_cpu(calibrated: bool, tmp: Path) -> float:
    ports = free_ports(3)
    args = ["--source", str(CLIP), "--shm-socket", str(tmp / f"s{calibrated}")]
    if calibrated:
        args += ["--calibration", str(demo_calibration_path())]
    proc = start_service(*args, env_extra=service_env(ports))
    try:
        wait_port(ports[0])
        with GStreamerFrameConsumer(tmp / f"s{calibrated}") as c:
            c.get_frame(timeout=10)
            time.sleep(2)
            cpu, _ = cpu_percent(proc.pid, window(10, 2))
        return cpu
    finally:
        stop(proc)


def main() -> None:
    make_mjpeg_clip(CLIP)
    scene = DemoScene(W, H)
    frame = scene.background
    b = statistics.median(bare_remap_ms(frame) for _ in range(REPEATS))
    n = statistics.median(element_ms(frame) for _ in range(REPEATS))
    rows = [[f"I420: bare cv2.remap (ms/frame, median of {REPEATS})", f"{b:.2f}", ""],
            [f"I420: native cuecastremap (ms/frame, median of {REPEATS})", f"{n:.2f}", ""],
            ["I420: native element / bare remap", f"{n / b:.2f}", "<= 1.10"]]
    vb = sorted(videobalance_ms() for _ in range(REPEATS))
    lut = sorted(luma_lut_ms(frame) for _ in range(REPEATS))
    rows += [["brightness/contrast as a separate videobalance (CPU ms/frame)", f"{statistics.median(vb):.2f}", ""],
             ["the same folded into the correction pass: luma LUT (CPU ms/frame)", f"{statistics.median(lut):.2f}", ""],
             ["folded / separate", f"{statistics.median(lut) / statistics.median(vb):.2f}", ""]]
    with tempfile.TemporaryDirectory() as d:
        off = service_cpu(False, Path(d))
        on = service_cpu(True, Path(d))
    rows += [["service CPU %, 1080p30 MJPEG clip + 1 shm consumer, correction off", f"{off:.1f}", ""],
             ["service CPU %, same, correction on", f"{on:.1f}", ""],
             ["correction cost (% of a core)", f"{on - off:.1f}", ""]]
    body = (f"1920x1080 demo-lens frames; {FRAMES} frames per run. Wall time per frame (OpenCV and the native "
            "element use both cores); the native element runs its own kernels, bit-exact with cv2.remap.\n\n"
            + table(["measure", "value", "target"], rows))
    write_report("fisheye", "Fisheye correction", body)


if __name__ == "__main__":
    main()
