"""The backend's path stands alone: at the default 1920x1080@30 with the correction on and people watching,
a crash (kill -9) or a stall (SIGSTOP) of the streaming process never stops the backend's frames, the
supervisor brings the streaming side back by itself, and a restart of the capture process keeps every
viewer's connection open. Both halves are reported in /api/status."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.media.demo import demo_calibration_path
from tests.helpers.mjpeg_client import MjpegReader
from tests.helpers.service import ServiceProcess, http_env, wait_http

# The README's promise: a kill -9 of the streaming side leaves the backend a gap of at most 100 ms
# (bench/backend.py measures it too). A busy test machine can spoil one measurement: a kill is measured twice
# before the test fails. A stall (SIGSTOP, the supervisor needs seconds to notice) gets more room.
MAX_KILL_GAP_S = 0.1
MAX_GAP_S = 0.3


class Backend(threading.Thread):
    """A vision backend reading every frame, recording when each arrived."""

    def __init__(self, sock: Path) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.arrivals: list[tuple[float, bool]] = []  # (monotonic time, placeholder)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        with GStreamerFrameConsumer(self.sock) as c:
            while not self.stop_flag.is_set():
                got = c.read(timeout=0.5, copy=False)
                if got is not None:
                    self.arrivals.append((time.monotonic(), got[1].placeholder))

    def max_gap(self, t0: float, t1: float) -> float:
        """The longest wait for a frame in [t0, t1]: from the last frame before t0 on, between frames, and from
        the last frame to t1, so frames that stop for good count as one long gap, not as none."""
        arrivals = [t for t, _ in self.arrivals]
        times = [t for t in arrivals if t < t0][-1:] + [t for t in arrivals if t0 <= t <= t1]
        if not times:
            return float("inf")
        return max([b - a for a, b in zip(times, times[1:], strict=False)] + [t1 - times[-1]])

    def fps(self, t0: float, t1: float) -> float:
        return sum(1 for t, _ in self.arrivals if t0 <= t < t1) / (t1 - t0)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[ServiceProcess, dict[str, int], Backend]]:
    env, ports = http_env()
    sock = tmp_path / "sock"
    svc = ServiceProcess(["--source", "test:ball", "--calibration", str(demo_calibration_path()),
                          "--shm-socket", str(sock)], tmp_path / "service.log", env=env)
    backend = Backend(sock)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        backend.start()
        yield svc, ports, backend
    finally:
        backend.stop_flag.set()
        backend.join(5)
        svc.terminate()
        svc.close()


def status(ports: dict[str, int]) -> dict:
    return httpx.get(f"http://127.0.0.1:{ports['api']}/api/status", timeout=5).json()


def first_jpeg_after(port: int, deadline: float) -> float | None:
    """Seconds until a new MJPEG request on `port` gets its first frame (None if none before the deadline)."""
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        r = MjpegReader(port) if _port_open(port) else None
        if r is None:
            time.sleep(0.05)
            continue
        r.start()
        while time.monotonic() < deadline and not r.times and r.is_alive():
            time.sleep(0.02)
        r.close()
        if r.times:
            return r.times[0] - t0
    return None


def _port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class RtspCounter(threading.Thread):
    """An ffmpeg RTSP player (tcp) reporting its decoded frame count as it goes (-progress)."""

    def __init__(self, port: int, seconds: int) -> None:
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i",
                                      f"rtsp://127.0.0.1:{port}/high", "-t", str(seconds), "-f", "null", "-",
                                      "-progress", "pipe:1", "-stats_period", "0.2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.counts: list[tuple[float, int]] = []

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("frame="):
                self.counts.append((time.monotonic(), int(line.split("=", 1)[1])))

    def frames_at(self, t: float) -> int:
        return max((n for at, n in self.counts if at <= t), default=0)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def rtsp_client(port: int, seconds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ffmpeg", "-nostdin", "-rtsp_transport", "tcp", "-i", f"rtsp://127.0.0.1:{port}/high",
                             "-t", str(seconds), "-f", "null", "-"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill_streaming(ports: dict[str, int], backend: Backend) -> tuple[float, float, float | None, int]:
    """kill -9 the streaming process: (the backend's longest wait from the last frame before the kill to 3 s
    after, its fps after the kill, seconds until MJPEG serves again, the pid killed)."""
    pid = status(ports)["processes"]["streaming"]["pid"]
    t_kill = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    back = first_jpeg_after(ports["medium"], t_kill + 10)
    time.sleep(max(0.0, t_kill + 3 - time.monotonic()))
    t_end = time.monotonic()
    assert not any(p for t, p in backend.arrivals if t >= t_kill)  # real frames all along, no NO SIGNAL
    return backend.max_gap(t_kill, t_end), backend.fps(t_kill + 0.5, t_end), back, pid


def wait_streaming_restarted(ports: dict[str, int], old_pid: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if status(ports)["processes"]["streaming"]["pid"] not in (old_pid, None):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("the streaming process was not started again")


def test_killing_the_streaming_side_under_load_never_stops_the_backend(
    running: tuple[ServiceProcess, dict[str, int], Backend],
) -> None:
    svc, ports, backend = running
    before = status(ports)["processes"]
    readers = [MjpegReader(ports["medium"]) for _ in range(4)] + [MjpegReader(ports["low"])]
    for r in readers:
        r.start()
    rtsp = rtsp_client(ports["rtsp"], 40)
    kills = []
    try:
        time.sleep(4)
        assert backend.fps(time.monotonic() - 2, time.monotonic()) >= 25
        for _ in range(2):  # measured twice before failing: one kill on a busy machine can be off
            gap, fps_after, back, pid = kill_streaming(ports, backend)
            kills.append((gap, fps_after, back))
            print(f"kill -9: backend's longest wait {gap * 1000:.0f} ms, {fps_after:.1f} fps after; "
                  f"MJPEG back after {back} s")
            if gap <= MAX_KILL_GAP_S:
                break
            wait_streaming_restarted(ports, pid)
            time.sleep(3)
    finally:
        for r in readers:
            r.close()
        rtsp.kill()
        rtsp.wait()
    gap, fps_after, back = min(kills)
    assert gap <= MAX_KILL_GAP_S, f"the backend's frames stopped for {[round(k[0] * 1000) for k in kills]} ms"
    assert fps_after >= 27, f"the backend got {fps_after:.1f} fps after the kill (30 sent)"
    assert back is not None and back <= 5, f"MJPEG not serving again within 5 s ({back})"
    after = status(ports)["processes"]
    assert after["capture"]["pid"] == before["capture"]["pid"] and after["capture"]["restarts"] == 0
    assert after["streaming"]["pid"] != before["streaming"]["pid"]
    assert after["streaming"]["restarts"] == len(kills)
    assert "streaming process (pid" in svc.log() and "was killed by SIGKILL; starting it again" in svc.log()


def test_a_stalled_streaming_side_never_stops_the_backend_and_is_restarted(
    running: tuple[ServiceProcess, dict[str, int], Backend],
) -> None:
    """SIGSTOP: the streaming process holds the ring's blocks and answers nothing. The backend keeps its rate
    (the capture process drops the ring frames it cannot hand over); the supervisor notices the missing
    heartbeat and starts a new streaming process."""
    svc, ports, backend = running
    pid = status(ports)["processes"]["streaming"]["pid"]
    reader = MjpegReader(ports["medium"])
    reader.start()
    try:
        time.sleep(2)
        t_stop = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        time.sleep(4)
        t_mid = time.monotonic()
        gap = backend.max_gap(t_stop - 1, t_mid)
        fps = backend.fps(t_stop + 0.5, t_mid)
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            try:
                if status(ports)["processes"]["streaming"]["pid"] != pid:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"the stalled streaming process was not replaced:\n{svc.log()}")
    finally:
        reader.close()
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert gap <= MAX_GAP_S, f"the backend's frames stopped for {gap * 1000:.0f} ms while streaming was stalled"
    assert fps >= 25, fps
    assert "sent no heartbeat" in svc.log()


def test_a_capture_restart_keeps_viewers_connected(
    running: tuple[ServiceProcess, dict[str, int], Backend],
) -> None:
    """kill -9 of the capture process: the supervisor starts a new one, the backend reconnects by itself,
    and a browser's MJPEG connection and an RTSP player stay connected through it (NO SIGNAL frames
    meanwhile), then show the camera again."""
    svc, ports, backend = running
    pid = status(ports)["processes"]["capture"]["pid"]
    reader = MjpegReader(ports["medium"])
    reader.start()
    rtsp = RtspCounter(ports["rtsp"], 60)
    rtsp.start()
    try:
        time.sleep(2)
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            real = [t for t, p in backend.arrivals if t > t_kill + 0.2 and not p]
            if len(real) > 30:
                break
            time.sleep(0.2)
        resumed = next((t for t, p in backend.arrivals if t > t_kill and not p), None)
        time.sleep(1)
        t_end = time.monotonic()
        assert reader.is_alive(), "the MJPEG connection was closed by the capture restart"
        assert reader.frames_between(t_kill, t_end) >= 10 * (t_end - t_kill) / 2  # frames all along
        # The RTSP player is still connected and decoding after the restart.
        deadline = time.monotonic() + 10
        while rtsp.frames_at(time.monotonic()) - rtsp.frames_at(t_end) < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rtsp.proc.poll() is None, "the RTSP player's session ended with the capture restart"
        got = rtsp.frames_at(time.monotonic()) - rtsp.frames_at(t_end)
        assert got >= 30, f"the RTSP player decoded {got} frames after the capture restart"
    finally:
        reader.close()
        rtsp.close()
    assert resumed is not None and resumed - t_kill <= 5, f"backend frames back after {resumed and resumed - t_kill} s"
    st = status(ports)
    assert st["processes"]["capture"]["pid"] != pid and st["processes"]["capture"]["restarts"] == 1
    assert st["healthy"]
