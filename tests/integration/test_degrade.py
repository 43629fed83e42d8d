"""Graceful degradation on a box slower than this one: the service is confined to one core shared with
busy loops. The policy lowers the MJPEG rates (lowest priority) and leaves shared memory alone, says so in
/api/status with the reason, and gives the rates back once the box has room again."""

from __future__ import annotations

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

    def consume() -> None:
        with GStreamerFrameConsumer(sock) as consumer:
            while not stop.is_set():
                consumer.get_frame(timeout=1.0)

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
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(svc.pid)], check=True, capture_output=True)
        hogs = [subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", HOG]) for _ in range(2)]
        deadline = time.monotonic() + 40
        while not (st := status(api))["degradation"]["degrading"]:
            assert time.monotonic() < deadline, f"no degradation under overload: {st['degradation']}"
            time.sleep(0.5)
        d = st["degradation"]
        assert "delivered" in d["reason"] or "dropped" in d["reason"], d
        assert d["outputs"]["mjpeg medium"]["fps_target"] < 30, d  # lowest priority goes first
        assert d["outputs"]["shm"]["fps_target"] == 30, d  # the top priority is never lowered
        assert st["outputs"]["mjpeg_medium"]["fps_target"] < 30
        assert "degrading:" in svc.log()
        time.sleep(12)  # the overload goes on: the policy keeps the outputs lowered (it may go further)
        d = status(api)["degradation"]
        assert d["degrading"] and d["outputs"]["shm"]["fps_target"] == 30, d
        assert d["outputs"]["mjpeg medium"]["fps_target"] < 30, d

        # Room again: every rate comes back.
        for h in hogs:
            h.kill()
        subprocess.run(["taskset", "-a", "-p", "-c", "0-1023", str(svc.pid)], check=True, capture_output=True)
        deadline = time.monotonic() + 90
        while (st := status(api))["degradation"]["degrading"]:
            assert time.monotonic() < deadline, f"rates not restored: {st['degradation']}"
            time.sleep(0.5)
        assert st["degradation"]["outputs"]["mjpeg medium"]["fps_target"] == 30
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
    """shm (top priority) at the normal niceness, H.264 at +5, MJPEG at +10: under contention the
    scheduler serves the backend first. Set before the encoders start their own threads."""
    env, ports = http_env()
    svc = ServiceProcess(["--source", "test:ball", "--width", "640", "--height", "360",
                          "--shm-socket", str(tmp_path / "sock")], tmp_path / "service.log", env=env)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        deadline = time.monotonic() + 10
        while True:
            nice = thread_nice(svc.pid)
            if all(n in nice for n in ("q_shm:src", "q_h264:src", "q_mjpeg_medium:")):
                break
            assert time.monotonic() < deadline, sorted(nice)
            time.sleep(0.2)
        time.sleep(1)
        nice = thread_nice(svc.pid)
        assert nice["q_shm:src"] == {0}
        assert nice["q_h264:src"] == {5}
        assert nice["q_mjpeg_medium:"] == {10} and nice["q_mjpeg_low:src"] == {10}
    finally:
        svc.terminate()
        svc.close()
