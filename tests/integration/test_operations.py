"""Operations: doctor's verdicts on this machine, the systemd unit, sd_notify READY, SIGHUP reload."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from cuecast.supervisor.systemd import render_unit
from tests.helpers.service import ServiceProcess, http_env, run_cli, wait_http


def test_doctor_on_this_machine_warns_about_the_camera_and_fails_on_a_taken_port() -> None:
    env, ports = http_env()
    r = run_cli("doctor", env=env)
    assert "WARN no camera found" in r.stdout and "demo source will stream" in r.stdout, r.stdout
    assert "OK   GStreamer" in r.stdout and "H.264 encoder x264enc" in r.stdout
    if not os.path.exists("/dev/video0"):
        assert r.returncode == 0, r.stdout
    holder = socket.socket()
    holder.bind(("127.0.0.1", ports["medium"]))
    holder.listen()
    try:
        r = run_cli("doctor", env=env)
    finally:
        holder.close()
    assert r.returncode == 1
    assert f"FAIL mjpeg.medium.port: port {ports['medium']} is already in use by PID {os.getpid()}" in r.stdout
    assert "fix:" in r.stdout


def test_headroom_is_measured_by_doctor_and_by_a_running_service(tmp_path: Path) -> None:
    """Without a service, doctor times the correction here; with one, /api/status and doctor show each
    process's measured headroom: the backend's path against its frame budget, CPU waits, the idle box."""
    from cuecast.consumer import GStreamerFrameConsumer
    from tests.helpers.wait import wait_until

    env, ports = http_env()
    r = run_cli("doctor", env=env)
    assert "headroom, measured here: the correction takes" in r.stdout and "of a frame at 30 fps" in r.stdout, r.stdout
    sock = tmp_path / "sock"
    svc = ServiceProcess(["--source", "demo", "--shm-socket", str(sock)], tmp_path / "svc.log", env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
        with GStreamerFrameConsumer(sock) as c:
            assert c.get_frame(timeout=10) is not None

            def measured() -> bool:
                cap = httpx.get(f"{api}/api/status", timeout=5).json()["processes"]["capture"]["headroom"]
                return bool(cap.get("correction_ms")) and bool(cap.get("pack_ms"))

            assert wait_until(measured, 10), httpx.get(f"{api}/api/status", timeout=5).json()["processes"]
            st = httpx.get(f"{api}/api/status", timeout=5).json()
            cap, stream = st["processes"]["capture"]["headroom"], st["processes"]["streaming"]["headroom"]
            assert cap["frame_budget_ms"] == 33.33
            assert 0 < cap["busy_percent"] < 100
            assert abs(cap["busy_percent"] - 100 * (cap["correction_ms"] + cap["pack_ms"]) / 33.33) < 1
            assert cap["waiting_for_cpu_s_per_s"] >= 0 and stream["waiting_for_cpu_s_per_s"] >= 0
            assert stream["degrading"] is False
            assert st["box"]["cores"] == os.cpu_count() and 0 <= st["box"]["idle_percent"] <= 100
            r = run_cli("doctor", env=env)
            assert "headroom: the backend's path uses" in r.stdout and "33.33 ms frame" in r.stdout, r.stdout
    finally:
        svc.terminate()
        svc.close()


def test_doctor_fails_on_a_bad_calibration(tmp_path: Path) -> None:
    bad = tmp_path / "camera.yaml"
    bad.write_text("K: 1\n")
    env, _ = http_env(CUECAST_FISHEYE__CALIBRATION=str(bad))
    r = run_cli("doctor", env=env)
    assert r.returncode == 1 and f"FAIL calibration file {bad}" in r.stdout


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = tmp_path / "cuecast"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "cuecast.service"
    unit.write_text(render_unit(str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in r.stderr.splitlines() if "cuecast.service" in line and "Unknown user" not in line
                and "network-online" not in line]
    assert r.returncode == 0 or not problems, r.stderr
    text = unit.read_text()
    for needle in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=cuecast", "SupplementaryGroups=video",
                   "RuntimeDirectory=cuecast", "ExecReload="):
        assert needle in text


def test_sd_notify_ready_and_sighup_reload(tmp_path: Path) -> None:
    """Started like systemd does (NOTIFY_SOCKET): READY=1 arrives; SIGHUP applies new controls live."""
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(30)
    cfg = tmp_path / "cuecast.yaml"
    cfg.write_text("controls:\n  brightness: 0.0\nmjpeg:\n  low:\n    quality: 80\n")
    env, ports = http_env(NOTIFY_SOCKET=str(notify_path))
    svc = ServiceProcess(["--config", str(cfg), "--source", "test:ball", "--width", "640", "--height", "480",
                          "--shm-socket", str(tmp_path / "s")], tmp_path / "svc.log", env=env)
    try:
        msg = listener.recv(4096).decode()
        assert "READY=1" in msg
        api = f"http://127.0.0.1:{ports['api']}"
        wait_http(f"{api}/healthz")
        cfg.write_text("controls:\n  brightness: 0.3\nmjpeg:\n  low:\n    quality: 50\nsource:\n  fps: 25\n")
        svc.proc.send_signal(signal.SIGHUP)
        svc.wait_for_log("SIGHUP: reloaded")
        log = svc.log()
        assert "applied live: controls, mjpeg.low.quality" in log and "needs a restart: source.fps" in log, log
        assert httpx.get(f"{api}/api/controls", timeout=5).json()["brightness"] == 0.3
        cfg.write_text("controls:\n  brightness: 9\n")
        svc.proc.send_signal(signal.SIGHUP)
        svc.wait_for_log("config not reloaded, it is invalid")
        assert httpx.get(f"{api}/api/controls", timeout=5).json()["brightness"] == 0.3
        rc, _ = svc.terminate()
        assert rc == 0
        time.sleep(0.2)
        leftovers = []
        listener.settimeout(0.5)
        try:
            while True:
                leftovers.append(listener.recv(4096).decode())
        except TimeoutError:
            pass
        assert any("STOPPING=1" in m for m in leftovers)
    finally:
        svc.close()
        listener.close()
