"""What the supervisor and the capture process promise and nothing else showed: the internal ring runs only
while somebody watches; the capture process runs SCHED_RR where CAP_SYS_NICE is granted (and says so when
it is not); systemd's watchdog is fed only while both halves answer; repeated crashes end the service with
exit 1 (systemd then restarts it); the native kernels in use (AVX2 or plain C) are reported."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.mjpeg_client import MjpegReader
from tests.helpers.service import ServiceProcess, http_env, wait_http

SMALL = ["--source", "test:ball", "--width", "640", "--height", "360"]


def status(api: str) -> dict:
    return httpx.get(f"{api}/api/status", timeout=5).json()


def ring_frames(api: str) -> int:
    return int(status(api)["ring"].get("frames_sent", 0))


def test_the_ring_runs_only_while_somebody_watches(tmp_path: Path) -> None:
    """Nobody on the people-facing side: the capture process copies no frame into the ring. A viewer comes:
    frames flow; the viewer leaves: they stop again (the streaming side costs nothing unwatched)."""
    env, ports = http_env(CUECAST_RTSP__ENABLED="false")
    svc = ServiceProcess([*SMALL, "--shm-socket", str(tmp_path / "sock")], tmp_path / "svc.log", env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
        time.sleep(2)
        a = ring_frames(api)
        time.sleep(2)
        st = status(api)["ring"]
        assert not st["demand"] and st["frames_sent"] == a, f"the ring ran with nobody watching: {st}"
        reader = MjpegReader(ports["medium"])
        reader.start()
        try:
            deadline = time.monotonic() + 10
            while not reader.times and time.monotonic() < deadline:
                time.sleep(0.1)
            assert reader.times, "the viewer got no frame"
            b = ring_frames(api)
            time.sleep(2)
            st = status(api)["ring"]
            assert st["demand"] and st["frames_sent"] - b >= 40, f"the ring did not run for a viewer: {st}"
        finally:
            reader.close()
        deadline = time.monotonic() + 15
        while status(api)["ring"]["demand"]:
            assert time.monotonic() < deadline, "the ring kept running after the viewer left"
            time.sleep(0.3)
        c = ring_frames(api)
        time.sleep(2)
        assert ring_frames(api) - c <= 2, "frames still copied into the ring with nobody watching"
    finally:
        svc.terminate()
        svc.close()


def capture_policy(svc: ServiceProcess) -> int:
    return os.sched_getscheduler(svc.child("capture").pid)


def test_capture_runs_sched_rr_where_cap_sys_nice_is_granted(tmp_path: Path) -> None:
    """priority.realtime: as root (CAP_SYS_NICE, as the systemd unit grants it) the capture process runs
    SCHED_RR and says so; without the capability it runs on at its niceness and the status says why."""
    env, ports = http_env(CUECAST_PRIORITY__REALTIME="true", CUECAST_RTSP__ENABLED="false")
    svc = ServiceProcess([*SMALL, "--shm-socket", str(tmp_path / "a")], tmp_path / "a.log", env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
        assert capture_policy(svc) == os.SCHED_RR
        assert "SCHED_RR" in status(api)["processes"]["capture"]["priority"]
    finally:
        svc.terminate()
        svc.close()

    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is part of Debian's base system"
    env, ports = http_env(CUECAST_PRIORITY__REALTIME="true", CUECAST_RTSP__ENABLED="false")
    log = tmp_path / "b.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CUECAST_")}
    full_env.update(env)
    with open(log, "wb") as out:
        proc = subprocess.Popen([setpriv, "--inh-caps=-sys_nice", "--bounding-set=-sys_nice", sys.executable,
                                 "-m", "cuecast", "serve", *SMALL, "--shm-socket", str(tmp_path / "b")],
                                stdout=out, stderr=subprocess.STDOUT, env=full_env)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
        prio = status(api)["processes"]["capture"]["priority"]
        assert "SCHED_RR refused (needs CAP_SYS_NICE)" in prio, prio
        assert status(api)["healthy"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_watchdog_is_fed_only_while_both_halves_answer(tmp_path: Path) -> None:
    """Under systemd's watchdog (WATCHDOG_USEC): WATCHDOG=1 about every half period while both processes
    answer; a stalled streaming process stops the pings (systemd would restart the service) until the
    supervisor has replaced it, then they resume."""
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(0.2)
    env, ports = http_env(NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="1000000", CUECAST_RTSP__ENABLED="false")
    svc = ServiceProcess([*SMALL, "--shm-socket", str(tmp_path / "s")], tmp_path / "svc.log", env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    pings: list[float] = []

    def collect(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                if "WATCHDOG=1" in listener.recv(4096).decode():
                    pings.append(time.monotonic())
            except TimeoutError:
                pass

    stalled = None
    try:
        wait_http(f"{api}/healthz")
        t0 = time.monotonic()
        collect(3)
        assert len([t for t in pings if t >= t0]) >= 4, f"{len(pings)} pings in 3 s (every 0.5 s expected)"
        stalled = status(api)["processes"]["streaming"]["pid"]
        os.kill(stalled, signal.SIGSTOP)
        collect(4)  # heartbeat silence counts after 3 s: from then on no ping
        t_quiet = time.monotonic()
        collect(3)
        assert not [t for t in pings if t >= t_quiet], "the watchdog was fed while the streaming side was stalled"
        assert "not feeding the watchdog: streaming silent" in svc.log()
        # The supervisor kills the silent process (10 s without a heartbeat) and starts a new one.
        deadline = time.monotonic() + 30
        t_back = None
        while time.monotonic() < deadline and t_back is None:
            collect(1)
            if [t for t in pings if t >= t_quiet]:
                t_back = time.monotonic()
        assert t_back is not None, f"the watchdog was never fed again:\n{svc.log()[-3000:]}"
        assert status(api)["processes"]["streaming"]["pid"] != stalled
    finally:
        if stalled is not None:
            try:
                os.kill(stalled, signal.SIGCONT)
            except ProcessLookupError:
                pass
        svc.terminate()
        svc.close()
        listener.close()


def test_repeated_crashes_end_the_service_with_exit_1(tmp_path: Path) -> None:
    """A worker that keeps dying (five times within a minute) is not restarted forever: the service exits 1
    and says why, so systemd's Restart=on-failure starts it afresh and the failure shows in the journal."""
    env, ports = http_env(CUECAST_RTSP__ENABLED="false")
    svc = ServiceProcess([*SMALL, "--shm-socket", str(tmp_path / "s")], tmp_path / "svc.log", env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
        killed: list[int] = []
        deadline = time.monotonic() + 60
        while svc.proc.poll() is None and time.monotonic() < deadline:
            try:
                pid = svc.child("streaming", timeout=15).pid
            except BaseException:  # noqa: BLE001 - the service exited meanwhile (pytest.fail raises)
                break
            if pid in killed:
                time.sleep(0.05)
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        rc = svc.proc.wait(20)
        assert rc == 1, f"exit {rc} after {len(killed)} kills:\n{svc.log()[-3000:]}"
        assert len(killed) == 5, killed
        assert "5 failures within 60 s: giving up (exit 1)" in svc.log()
        assert not any(p.is_running() for p in _children_left(killed))
    finally:
        svc.close()


def _children_left(pids: list[int]) -> list:
    import psutil

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


@pytest.mark.parametrize("plain_c", [False, True])
def test_the_native_kernels_in_use_are_reported(tmp_path: Path, plain_c: bool) -> None:
    """/api/status says which pixel kernels the correction runs (plain C is the Raspberry Pi's path, chosen
    with fisheye.kernel)."""
    from cuecast.media.demo import demo_calibration_path

    extra = {"CUECAST_FISHEYE__KERNEL": "plain-c"} if plain_c else {}
    env, ports = http_env(CUECAST_RTSP__ENABLED="false", **extra)
    svc = ServiceProcess([*SMALL, "--calibration", str(demo_calibration_path()), "--shm-socket",
                          str(tmp_path / "s")], tmp_path / "svc.log", env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
        with open("/proc/cpuinfo") as f:
            avx2 = " avx2" in f.read()
        expected = "avx2" if avx2 and not plain_c else "plain-c"
        assert status(api)["fisheye"]["kernel"] == expected
        assert f"native pixel kernels: {expected}" in svc.log()
    finally:
        svc.terminate()
        svc.close()
