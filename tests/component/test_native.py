"""The native plugin against the Python/OpenCV reference, in real pipelines: cuecastremap gives exactly what
cv2.remap gives on the same maps, with the AVX2 path and
with the plain-C path other CPUs use; cuecastpack's BGR is exactly cv2.cvtColor's and its trailer carries the
frame's metadata; a reader that holds every block of the shared area costs the writer a frame, never a wait."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cuecast.core import native
from cuecast.core.gst import GLib, Gst
from cuecast.lens.maps import build_maps, luma_lut, remap_table
from cuecast.media.demo import demo_model
from cuecast.media.pipeline import FLAG_PLACEHOLDER
from cuecast.protocol.frame import FrameInfo, Geometry

native.load()


def run(description: str, frame: bytes, w: int, h: int, setup: object = None, pushes: int = 1,
        buffer_setup: object = None) -> list[bytes]:
    """Push `frame` through `appsrc ! DESCRIPTION ! appsink` and return the output buffers' bytes."""
    p = Gst.parse_launch(f"appsrc name=src format=time caps=video/x-raw,format=I420,width={w},height={h},"
                         f"framerate=30/1 ! {description} ! appsink name=sink sync=false")
    if setup is not None:
        setup(p)  # type: ignore[operator]
    p.set_state(Gst.State.PLAYING)
    src, sink = p.get_by_name("src"), p.get_by_name("sink")
    out = []
    try:
        for i in range(pushes):
            buf = Gst.Buffer.new_wrapped(frame)
            buf.pts = i * Gst.SECOND // 30
            if buffer_setup is not None:
                buffer_setup(buf, i)  # type: ignore[operator]
            src.emit("push-buffer", buf)
            sample = sink.emit("try-pull-sample", 10 * Gst.SECOND)
            assert sample is not None, "no output buffer"
            b = sample.get_buffer()
            ok, mi = b.map(Gst.MapFlags.READ)
            out.append(bytes(mi.data))
            b.unmap(mi)
    finally:
        p.set_state(Gst.State.NULL)
    return out


def reference_remap(i420: np.ndarray, maps: object, w: int, h: int, lut: np.ndarray | None = None) -> np.ndarray:
    """cv2.remap plane by plane with the fixed-point maps the service builds (luma border 0, chroma 128)."""
    out = np.empty_like(i420)
    cv2.remap(i420[:h], maps.full[0], maps.full[1], cv2.INTER_LINEAR, dst=out[:h],  # type: ignore[attr-defined]
              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if lut is not None:
        out[:h] = cv2.LUT(out[:h], lut)
    flat_in, flat_out = i420.reshape(-1), out.reshape(-1)
    for k in range(2):
        a = w * h + k * (w // 2) * (h // 2)
        plane = flat_in[a:a + (w // 2) * (h // 2)].reshape(h // 2, w // 2)
        flat_out[a:a + (w // 2) * (h // 2)] = cv2.remap(
            plane, maps.half[0], maps.half[1], cv2.INTER_LINEAR,  # type: ignore[attr-defined]
            borderMode=cv2.BORDER_CONSTANT, borderValue=128).reshape(-1)
    return out


def detailed_i420(w: int, h: int, seed: int = 1) -> np.ndarray:
    """High-detail content (noise with edges everywhere), the hard case for rounding differences."""
    rng = np.random.default_rng(seed)
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (3, 3), 0)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)


@pytest.mark.parametrize(("w", "h"), [(1920, 1080), (640, 360)])
def test_remap_is_bit_exact_with_cv2_remap(w: int, h: int) -> None:
    """The default size and a small one, on detailed content: every byte equals cv2.remap's."""
    frame = detailed_i420(w, h)
    maps = build_maps(demo_model(), w, h, chroma=True)

    def setup(p: Gst.Pipeline) -> None:
        p.get_by_name("r").set_property("map", GLib.Bytes.new(remap_table(maps, (w, h))))

    out = np.frombuffer(run("cuecastremap name=r", frame.tobytes(), w, h, setup)[0], np.uint8)
    ref = reference_remap(frame, maps, w, h)
    assert out.size == ref.size
    assert np.array_equal(out.reshape(ref.shape), ref), int(np.abs(out.reshape(ref.shape).astype(int) - ref).max())
    assert np.abs(out.astype(int) - frame.reshape(-1)).mean() > 5  # and it did change the picture


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_any_split_of_the_frame_gives_the_same_bytes(threads: int) -> None:
    """However many threads share a frame's rows (native/workers.c; 181 chroma rows do not split evenly), every
    row is done once, as cv2 does it."""
    w, h = 648, 362
    frame = detailed_i420(w, h, seed=5)
    maps = build_maps(demo_model(), w, h, chroma=True)

    def setup(p: Gst.Pipeline) -> None:
        p.get_by_name("r").set_property("map", GLib.Bytes.new(remap_table(maps, (w, h))))

    outs = run(f"cuecastremap name=r n-threads={threads}", frame.tobytes(), w, h, setup, pushes=3)
    ref = reference_remap(frame, maps, w, h)
    assert all(np.array_equal(np.frombuffer(o, np.uint8).reshape(ref.shape), ref) for o in outs)
    bgr = run(f"cuecastpack n-threads={threads} ! video/x-raw,format=BGR", frame.tobytes(), w, h)[0]
    want = cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_I420)
    assert np.array_equal(np.frombuffer(bgr, np.uint8)[:want.size].reshape(want.shape), want)


def test_luma_lut_is_applied_in_the_same_pass() -> None:
    w, h = 640, 360
    frame = detailed_i420(w, h, seed=2)
    maps = build_maps(demo_model(), w, h, chroma=True)
    lut = luma_lut(0.1, 1.3)
    assert lut is not None

    def setup(p: Gst.Pipeline) -> None:
        r = p.get_by_name("r")
        r.set_property("map", GLib.Bytes.new(remap_table(maps, (w, h))))
        r.set_property("luma-lut", GLib.Bytes.new(lut.tobytes()))

    out = np.frombuffer(run("cuecastremap name=r", frame.tobytes(), w, h, setup)[0], np.uint8)
    assert np.array_equal(out.reshape(frame.shape), reference_remap(frame, maps, w, h, lut))


def test_plain_c_path_gives_the_same_bytes_as_the_vector_path() -> None:
    """The plain-C kernels (what a Raspberry Pi runs) against the AVX2 ones on this machine, chosen per element
    in one process (native/tests/test_kernels.c checks both against a reference, and the plain C on aarch64)."""
    assert digest("plain-c") == digest("auto")


def digest(kernel: str) -> dict[str, str]:
    """Hashes of remap and BGR outputs for a fixed detailed frame with the given kernels."""
    import hashlib

    w, h = 648, 362  # widths that are not a multiple of the vector width exercise the tails
    frame = detailed_i420(w, h, seed=3)
    maps = build_maps(demo_model(), w, h, chroma=True)

    def setup(p: Gst.Pipeline) -> None:
        p.get_by_name("r").set_property("map", GLib.Bytes.new(remap_table(maps, (w, h))))
        assert p.get_by_name("r").get_property("kernel") == native.kernel(kernel)

    remapped = run(f"cuecastremap name=r kernel={kernel}", frame.tobytes(), w, h, setup)[0]
    bgr = run(f"cuecastpack kernel={kernel} ! video/x-raw,format=BGR", frame.tobytes(), w, h)[0]
    return {"remap": hashlib.sha256(remapped).hexdigest(), "bgr": hashlib.sha256(bgr).hexdigest()}


@pytest.mark.parametrize(("w", "h"), [(1920, 1080), (648, 362)])
def test_pack_bgr_is_cvtcolor_and_the_trailer_carries_the_metadata(w: int, h: int) -> None:
    frame = detailed_i420(w, h, seed=4)
    geometry = Geometry("table", 0.75, 60.0, (2540.0, 1270.0), tuple(float(i) for i in range(1, 10)))
    now = time.monotonic_ns()

    def setup(p: Gst.Pipeline) -> None:
        p.get_by_name("pk").set_property("geometry", GLib.Bytes.new(geometry.pack()))

    def stamp(buf: Gst.Buffer, i: int) -> None:
        buf.offset = 41 + i
        buf.offset_end = now
        if i == 1:
            buf.mini_object.flags |= FLAG_PLACEHOLDER

    outs = run("cuecastpack name=pk ! video/x-raw,format=BGR", frame.tobytes(), w, h, setup, pushes=2,
               buffer_setup=stamp)
    for i, data in enumerate(outs):
        info = FrameInfo.unpack(data)
        assert info is not None
        assert (info.width, info.height, info.format, info.seq) == (w, h, "BGR", 41 + i)
        assert info.capture_ns == now and info.placeholder == (i == 1)
        assert abs(info.capture_wall_ns - (time.time_ns() - (time.monotonic_ns() - now))) < 50_000_000
        assert info.geometry == geometry
        img = np.frombuffer(data, np.uint8, count=w * h * 3).reshape(h, w, 3)
        assert np.array_equal(img, cv2.cvtColor(frame, cv2.COLOR_YUV2BGR_I420))


def test_pack_i420_keeps_the_planes() -> None:
    w, h = 640, 360
    frame = detailed_i420(w, h, seed=5)
    data = run("cuecastpack ! video/x-raw,format=I420", frame.tobytes(), w, h)[0]
    info = FrameInfo.unpack(data)
    assert info is not None and info.format == "I420"
    assert data[: info.image_size()] == frame.tobytes()


def test_a_reader_holding_every_block_costs_frames_not_a_wait(tmp_path: Path) -> None:
    """shmsink would wait for a free block; the packer drops the frame instead, so the pipeline (and the
    backend path in it) keeps its rate while a stalled reader sits on the whole area."""
    w, h, fps = 320, 240, 30
    sock = tmp_path / "sock"
    size = w * h * 3 + 128
    p = Gst.parse_launch(
        f"videotestsrc is-live=true ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 "
        f"! tee name=t t. ! queue ! cuecastpack name=pk ! video/x-raw,format=BGR ! shmsink socket-path={sock} "
        f"wait-for-connection=false sync=false async=false shm-size={size * 3} "
        "t. ! queue ! fakesink name=fs sync=false signal-handoffs=true")
    frames = [0]
    p.get_by_name("fs").connect("handoff", lambda *_: frames.__setitem__(0, frames[0] + 1))
    p.set_state(Gst.State.PLAYING)
    # A reader that takes buffers and never gives them back (a stalled backend).
    reader = subprocess.Popen(
        ["gst-launch-1.0", "-q", "shmsrc", f"socket-path={sock}", "is-live=true", "!", "queue",
         "max-size-buffers=1000", "max-size-bytes=0", "max-size-time=0", "!", "fakesink", "sync=true",
         "ts-offset=3600000000000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        n0, t0 = frames[0], time.monotonic()
        time.sleep(2.0)
        rate = (frames[0] - n0) / (time.monotonic() - t0)
        dropped = p.get_by_name("pk").get_property("dropped")
    finally:
        reader.kill()
        reader.wait()
        p.set_state(Gst.State.NULL)
    assert rate >= 0.8 * fps, rate
    assert dropped > 10, dropped
