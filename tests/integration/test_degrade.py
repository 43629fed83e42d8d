"""Graceful degradation on a box slower than this one: the service is confined to one core shared with
busy loops. The policy lowers the MJPEG rates (lowest priority) and leaves shared memory alone, says so in
/api/status with the reason, and gives the rates back once the box has room again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from cuecast.consumer import GStreamerFrameConsumer
from tests.helpers.mjpeg_client import MjpegReader
from tests.helpers.service import ServiceProcess, http_env, wait_http

HOG = "while True: pass"


def status(api: str) -> dict:
    return httpx.get(f"{api}/api/status", timeout=10).json()


def test_overload_lowers_mjpeg_first_and_recovers(tmp_path: Path) -> None:
    sock = tmp_path / "sock"
    env, ports = http_env(CUECAST_DEGRADE__RECOVER_AFTER="3")
    svc = ServiceProcess(["--source", "demo", "--shm-socket", str(sock)], tmp_path / "service.log", env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    stop = threading.Event()
    hogs: list[subprocess.Popen[bytes]] = []
    readers: list[MjpegReader] = []

    shm_times: list[float] = []

    def consume() -> None:
        with GStreamerFrameConsumer(sock) as consumer:
            while not stop.is_set():
                if consumer.get_frame(timeout=1.0) is not None:
                    shm_times.append(time.monotonic())

    shm_thread = threading.Thread(target=consume, daemon=True)
    try:
        wait_http(f"{api}/healthz")
        shm_thread.start()
        readers = [MjpegReader(ports["medium"]), MjpegReader(ports["low"])]
        for r in readers:
            r.start()
        time.sleep(6)
        assert not status(api)["degradation"]["degrading"], "degrading before any overload"
        # A slower box: the whole service on one core, two busy loops competing for it.
        for pid in svc.pids():  # the supervisor and both workers
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(pid)], check=True, capture_output=True)
        hogs = [subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", HOG]) for _ in range(2)]
        deadline = time.monotonic() + 40
        while not (st := status(api))["degradation"]["degrading"]:
            assert time.monotonic() < deadline, f"no degradation under overload: {st['degradation']}"
            time.sleep(0.5)
        d = st["degradation"]
        assert "delivered" in d["reason"] or "dropped" in d["reason"], d
        assert d["outputs"]["mjpeg_medium"]["fps_target"] < 30, d  # lowest priority goes first
        assert d["outputs"]["shm"]["fps_target"] == 30, d  # the top priority is never lowered
        assert st["outputs"]["mjpeg_medium"]["fps_target"] < 30
        assert "degrading:" in svc.log()
        t0 = time.monotonic()
        time.sleep(12)  # the overload goes on: the policy keeps the outputs lowered (it may go further)
        t1 = time.monotonic()
        d = status(api)["degradation"]
        assert d["degrading"] and d["outputs"]["shm"]["fps_target"] == 30, d
        assert d["outputs"]["mjpeg_medium"]["fps_target"] < 30, d
        # What the consumers measured in that window: the backend gets more frames than the lowered MJPEG viewer.
        shm_fps = sum(1 for t in shm_times if t0 <= t < t1) / (t1 - t0)
        mjpeg_fps = sum(1 for t in readers[0].times if t0 <= t < t1) / (t1 - t0)
        print(f"overloaded: backend {shm_fps:.1f} fps, MJPEG medium {mjpeg_fps:.1f} fps")
        assert shm_fps > mjpeg_fps, f"backend {shm_fps:.1f} fps, MJPEG {mjpeg_fps:.1f}: priority not kept"

        # Room again: every rate comes back.
        for h in hogs:
            h.kill()
        for pid in svc.pids():
            subprocess.run(["taskset", "-a", "-p", "-c", "0-1023", str(pid)], check=True, capture_output=True)
        freed = time.monotonic()
        deadline = freed + 90
        while (st := status(api))["degradation"]["degrading"]:
            assert time.monotonic() < deadline, f"rates not restored: {st['degradation']}"
            time.sleep(0.5)
        print(f"every rate back {time.monotonic() - freed:.1f} s after the box had room again; during the overload "
              f"the step up waited for: {d['step_up']['waiting_for']}")
        assert st["degradation"]["outputs"]["mjpeg_medium"]["fps_target"] == 30
        assert st["degradation"]["reason"] is None
        assert "recovering:" in svc.log()
    finally:
        stop.set()
        for h in hogs:
            h.kill()
            h.wait()
        for r in readers:
            r.close()
        svc.terminate()
        svc.close()


def thread_nice(pid: int) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for tid in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (tid / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        out.setdefault(name, set()).add(int(stat[stat.rindex(")") + 2:].split()[16]))
    return out


def test_output_threads_run_at_their_priority(tmp_path: Path) -> None:
    """The backend's path first: the capture process (correction, shared memory) at priority.capture_nice
    (-5, where the user may lower niceness, as root), the streaming process 10 above the service, and in it
    H.264 ahead of MJPEG (+5). Under contention the scheduler serves the backend first. Set before the
    encoders start their own threads, which inherit it."""
    env, ports = http_env()
    svc = ServiceProcess(["--source", "test:ball", "--width", "640", "--height", "360",
                          "--shm-socket", str(tmp_path / "sock")], tmp_path / "service.log", env=env)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        capture, streaming = svc.child("capture").pid, svc.child("streaming").pid
        # Consumers on every output so every branch's thread exists.
        readers = [MjpegReader(ports["medium"]), MjpegReader(ports["low"])]
        for r in readers:
            r.start()
        rtsp = subprocess.Popen(["ffmpeg", "-nostdin", "-rtsp_transport", "tcp", "-i",
                                 f"rtsp://127.0.0.1:{ports['rtsp']}/high", "-t", "8", "-f", "null", "-"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            nice = thread_nice(streaming)
            if all(n in nice for n in ("q_h264:src", "q_mjpeg_medium:", "q_mjpeg_low:src")):
                break
            assert time.monotonic() < deadline, sorted(nice)
            time.sleep(0.2)
        time.sleep(1)
        nice = thread_nice(streaming)
        cap = thread_nice(capture)
        rtsp.wait(20)
        for r in readers:
            r.close()
        expected_capture = -5 if os.geteuid() == 0 else 0
        assert cap["cuecast_src:src"] == {expected_capture}, cap  # the correction and the backend's packing
        assert nice["q_h264:src"] == {10}, nice
        assert nice["q_mjpeg_medium:"] == {15} and nice["q_mjpeg_low:src"] == {15}, nice
    finally:
        svc.terminate()
        svc.close()
