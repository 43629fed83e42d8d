"""The capture spine end to end: the real service process, real shared memory, real consumers."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest

from cuecast.capture.shm import SHM_DIR
from cuecast.consumer import GStreamerFrameConsumer
from tests.helpers.media import make_video
from tests.helpers.mjpeg_client import MjpegReader
from tests.helpers.mjpeg_server import MjpegCamera
from tests.helpers.service import ServiceProcess, http_env

Factory = Callable[..., ServiceProcess]


def count_frames(consumer: GStreamerFrameConsumer, seconds: float) -> int:
    """Frames received over a window, counted by the consumer's own counter."""
    start = consumer.frames_received
    time.sleep(seconds)
    return consumer.frames_received - start


def measured_fps(consumer: GStreamerFrameConsumer, seconds: float = 2.0, tries: int = 2,
                 expect: float | None = None) -> float:
    """fps over a window; measured again once if the first window misses `expect` by >10% (busy machine)."""
    fps = 0.0
    for _ in range(tries):
        fps = count_frames(consumer, seconds) / seconds
        if expect is None or abs(fps - expect) <= 0.1 * expect:
            break
    return fps


def real_frame(c: GStreamerFrameConsumer, timeout: float) -> np.ndarray | None:
    """The first frame from the source itself (not a NO SIGNAL placeholder shown until it starts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = c.read(timeout=1)
        if got is not None and not got[1].placeholder:
            return got[0]
    return None


def segments_of(pid: int) -> list[str]:
    return [n for n in os.listdir(SHM_DIR) if n.startswith("shmpipe.") and n.split(".")[1].strip() == str(pid)]


def test_smpte_arrives_as_bgr_at_size_and_rate(service_factory: Factory, sock: Path) -> None:
    """Colour order, size and rate: the SMPTE bars must arrive as BGR, 640x480, ~30 fps, with metadata."""
    svc = service_factory("--source", "test:smpte", "--width", "640", "--height", "480", "--fps", "30",
                          "--shm-socket", str(sock))
    svc.wait_for_path(sock)
    with GStreamerFrameConsumer(sock) as c:
        frame = real_frame(c, 10)
        assert frame is not None, svc.log()
        assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
        # SMPTE top bars (75%): white, yellow, cyan, green, magenta, red, blue; sample the middle of each.
        row = frame[100]
        bar = 640 // 7
        yellow, cyan, red, blue = (row[bar * i + bar // 2].astype(int) for i in (1, 2, 5, 6))
        assert yellow[0] < 40 and yellow[1] > 150 and yellow[2] > 150, yellow  # B low, G and R high
        assert cyan[0] > 150 and cyan[1] > 150 and cyan[2] < 40, cyan
        assert red[0] < 40 and red[1] < 40 and red[2] > 150, red
        assert blue[0] > 150 and blue[1] < 40 and blue[2] < 40, blue
        info = c.last_info
        assert info is not None and info.width == 640 and info.height == 480 and not info.placeholder
        latency_ms = (c.last_received_ns - info.capture_ns) / 1e6
        assert 0 <= latency_ms < 200, latency_ms
        fps = measured_fps(c, expect=30)
        assert 25 <= fps <= 33, fps


def test_documented_gst_launch_command_reads_1080p(service_factory: Factory, sock: Path) -> None:
    """The exact gst-launch shmsrc command from the issue must work against the default 1080p output."""
    svc = service_factory("--source", "test:ball", "--shm-socket", str(sock))
    svc.wait_for_path(sock)
    cmd = (
        f"gst-launch-1.0 -q shmsrc socket-path={sock} is-live=true num-buffers=45 "
        "! video/x-raw,format=BGR,width=1920,height=1080,framerate=30/1 ! videoconvert ! fakesink"
    )
    t0 = time.monotonic()
    r = subprocess.run(cmd.split(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr + svc.log()
    assert time.monotonic() - t0 < 10  # 45 frames at 30 fps, not a hang


def test_consumer_started_first_then_two_consumers(service_factory: Factory, sock: Path) -> None:
    """A backend that starts before the service connects when it appears; a second one runs alongside."""
    with GStreamerFrameConsumer(sock) as early:
        time.sleep(0.5)
        assert early.get_frame() is None and not early.connected
        svc = service_factory("--source", "test:ball", "--width", "640", "--height", "480", "--shm-socket", str(sock))
        svc.wait_for_path(sock)
        assert early.get_frame(timeout=10) is not None, svc.log()
        with GStreamerFrameConsumer(sock) as second:
            assert second.get_frame(timeout=10) is not None
            a, b = measured_fps(early, expect=30), measured_fps(second, expect=30)
            assert a >= 25 and b >= 25, (a, b)


def test_consumer_resumes_within_1s_after_producer_killed_and_restarted(
    service_factory: Factory, sock: Path
) -> None:
    """kill -9 leaves a stale socket and shm segment; a restart cleans them and the consumer resumes itself."""
    args = ("--source", "test:ball", "--width", "640", "--height", "480", "--shm-socket", str(sock))
    first = service_factory(*args)
    first.wait_for_path(sock)
    first_capture = first.child("capture").pid
    with GStreamerFrameConsumer(sock) as c:
        assert c.get_frame(timeout=10) is not None
        old_seq = c.last_info.seq if c.last_info else 0
        first.kill()
        assert sock.exists()  # kill -9 leaves the socket behind: the restart must cope
        time.sleep(0.5)
        c.get_frame()  # mark the last frame of the dead producer as seen
        received_before = c.frames_received
        second = service_factory(*args)
        second.wait_for_log("removing stale socket")
        # The consumer can only resume once the producer is serving: time from its first frame.
        up = second.wait_for_path(sock)
        got = c.read(timeout=10)
        assert got is not None, second.log()
        resumed = time.monotonic() - up
        print(f"consumer resumed {resumed:.3f} s after the restarted producer's socket appeared")
        assert resumed <= 1.0, f"consumer resumed {resumed:.2f} s after the producer was up"
        assert c.frames_received > received_before and c.reconnects >= 1
        assert got[1].seq < old_seq or got[1].seq < 100  # numbering restarted with the new producer
        assert not segments_of(first_capture), "the dead producer's shm segment was not cleaned"


def test_sigterm_exits_0_within_2s_and_leaves_nothing(service_factory: Factory, sock: Path) -> None:
    """Clean shutdown: exit status 0 within 2 s, no socket, no shm segment, even with a consumer attached, and
    nothing in the log that looks like a fault (the two halves stop together: neither retries the other)."""
    env, ports = http_env()
    svc = service_factory("--source", "test:ball", "--shm-socket", str(sock), env=env)
    svc.wait_for_path(sock)
    pids = [svc.pid, svc.child("capture").pid, svc.child("streaming").pid]
    viewer = MjpegReader(ports["medium"])  # a browser watching: the ring and the control link are busy
    viewer.start()
    try:
        with GStreamerFrameConsumer(sock) as c:
            assert c.get_frame(timeout=10) is not None
            assert any(segments_of(p) for p in pids)
            deadline = time.monotonic() + 10
            while not viewer.times and time.monotonic() < deadline:
                time.sleep(0.1)
            assert viewer.times, "the viewer got no frame"
            time.sleep(1.5)  # a status round of the control link
            rc, took = svc.terminate()
    finally:
        viewer.close()
    assert rc == 0, svc.log()
    assert took <= 2.0, took
    after = svc.log().split("received SIGTERM", 1)[-1]
    faults = [line for line in after.splitlines() if re.search(r"retrying|unreachable|CRITICAL|did not stop", line)]
    assert not faults, "\n".join(faults)
    assert not sock.exists()
    assert not any(segments_of(p) for p in pids)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_file_source_plays_at_native_rate_and_loops(service_factory: Factory, sock: Path, tmp_path: Path) -> None:
    """A 1 s, 10 fps clip: ~10 fps like a camera (not as fast as it decodes), and it keeps going (loops)."""
    clip = make_video(tmp_path / "clip.mp4", seconds=1, fps=10, audio=True)
    svc = service_factory("--source", str(clip), "--width", "320", "--height", "240", "--shm-socket", str(sock))
    svc.wait_for_path(sock)
    with GStreamerFrameConsumer(sock) as c:
        assert c.get_frame(timeout=10) is not None, svc.log()
        time.sleep(1.5)  # past the end of the clip at least once
        fps = measured_fps(c, seconds=3, expect=10)
        assert 8 <= fps <= 12, fps
        frame = c.get_frame()
        assert frame is not None and frame.shape == (240, 320, 3)


def test_http_mjpeg_camera_source(service_factory: Factory, sock: Path) -> None:
    """An HTTP MJPEG IP camera is decoded and scaled to the configured size."""
    cam = MjpegCamera(640, 480, fps=30).start()
    try:
        svc = service_factory("--source", cam.url, "--width", "320", "--height", "240", "--shm-socket", str(sock))
        svc.wait_for_path(sock)
        with GStreamerFrameConsumer(sock) as c:
            frame = real_frame(c, 15)
            assert frame is not None, svc.log()
            assert frame.shape == (240, 320, 3)
            # The camera's green background arrives as green (BGR 40,120,40 before JPEG).
            b, g, r = frame[10, 10].astype(int)
            assert g > 90 and b < 80 and r < 80, (b, g, r)
            assert measured_fps(c, expect=30) >= 20
    finally:
        cam.stop()


def test_unreachable_ip_camera_is_retried_with_backoff(service_factory: Factory, sock: Path) -> None:
    """A camera that is not there is not fatal: each try is logged, the delay grows."""
    svc = service_factory("--source", "http://127.0.0.1:9/none", "--shm-socket", str(sock),
                          env={"CUECAST_SOURCE__RECONNECT__INITIAL_DELAY": "0.2"})
    svc.wait_for_log("retrying in 0.2 s")
    svc.wait_for_log("retrying in 0.4 s")
    assert "unreachable" in svc.log()
    assert svc.proc.poll() is None
    rc, _ = svc.terminate()
    assert rc == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--source", "/nonexistent/clip.mp4"), "video file /nonexistent/clip.mp4 does not exist"),
        (("--source", "v4l2:///dev/video99"), "camera /dev/video99 not found"),
        (("--source", "test:nope"), "unknown test pattern 'nope'"),
        (("--fps", "500"), "source.fps"),
        (("--shm-socket", "/nonexistent-dir/sock"), "directory /nonexistent-dir does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    service_factory: Factory, args: tuple[str, ...], expected: str
) -> None:
    svc = service_factory(*args)
    rc = svc.proc.wait(timeout=20)
    assert rc == 2, svc.log()
    assert expected in svc.log()
    assert "Traceback" not in svc.log()


def test_not_a_video_file_is_refused(service_factory: Factory, sock: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video\n" * 100)
    svc = service_factory("--source", str(bogus), "--shm-socket", str(sock))
    rc = svc.proc.wait(timeout=20)
    assert rc == 2, svc.log()
    assert "not a video file" in svc.log() and str(bogus) in svc.log()


def test_socket_in_use_by_a_live_producer_is_refused(service_factory: Factory, sock: Path) -> None:
    """Two services on one socket would steal each other's consumers: the second one refuses."""
    first = service_factory("--source", "test:ball", "--width", "320", "--height", "240", "--shm-socket", str(sock))
    first.wait_for_path(sock)
    second = service_factory("--source", "test:ball", "--shm-socket", str(sock))
    assert second.proc.wait(timeout=20) == 2
    assert "in use by a running producer" in second.log()
    assert first.proc.poll() is None


def test_zero_copy_view_is_read_only_and_the_default_a_private_copy(service_factory: Factory, sock: Path) -> None:
    """get_frame(copy=False) lends the shared-memory block itself (read-only, valid until the next call);
    the default is the caller's own copy, which it may write into."""
    svc = service_factory("--source", "test:smpte", "--width", "640", "--height", "480", "--shm-socket", str(sock))
    svc.wait_for_path(sock)
    with GStreamerFrameConsumer(sock) as c:
        assert real_frame(c, 10) is not None, svc.log()
        view = c.get_frame(timeout=2, copy=False)
        assert view is not None and view.shape == (480, 640, 3) and not view.flags.writeable
        with pytest.raises(ValueError):
            view[0, 0, 0] = 1
        held = view.copy()
        assert np.array_equal(view, held)  # still valid: no other call yet
        own = c.get_frame(timeout=2)
        assert own is not None and own.flags.writeable
        own[:] = 0  # the caller's copy; the next frame is untouched
        again = c.get_frame(timeout=2)
        assert again is not None and again.any()
