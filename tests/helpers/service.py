"""Start the real `cuecast serve` as a subprocess and stop it by PID (never anything else)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cuecast.core.ports import free_ports

WORKER_COMMANDS = {"capture": "_capture", "streaming": "_stream"}


def start_timeout() -> float:
    return 20.0


class ServiceProcess:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CUECAST_")}
        # Every service gets its own free loopback ports, so services in one test never collide.
        full_env.update(http_env()[0])
        full_env.update(env or {})
        if "CUECAST_REPLAY__DIR" not in full_env:  # events (and clips) land next to the log, never in /var/lib
            full_env.setdefault("CUECAST_EVENTS__DIR", str(log_path.parent / "events"))
        full_env.setdefault("CUECAST_FISHEYE__DIR", str(log_path.parent / "lens"))  # guided calibrations too
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cuecast", "serve", *args], stdout=self._log, stderr=subprocess.STDOUT,
            env=full_env,
        )
        self.pid = self.proc.pid

    def child(self, role: str, timeout: float = 20.0) -> psutil.Process:
        """The service's worker process ("capture" or "streaming"), once it runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for c in psutil.Process(self.pid).children():
                    if WORKER_COMMANDS[role] in c.cmdline():
                        return c
            except psutil.Error:
                pass
            if self.proc.poll() is not None:
                pytest.fail(f"service exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        pytest.fail(f"no {role} process within {timeout} s:\n{self.log()}")

    def pids(self) -> list[int]:
        """The supervisor and its workers."""
        try:
            return [self.pid, *(c.pid for c in psutil.Process(self.pid).children())]
        except psutil.Error:
            return [self.pid]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_path(self, path: Path, timeout: float | None = None) -> float:
        """Wait until `path` exists; returns the monotonic time it appeared."""
        deadline = time.monotonic() + (timeout or start_timeout())
        while time.monotonic() < deadline:
            if path.exists():
                return time.monotonic()
            if self.proc.poll() is not None:
                pytest.fail(f"service exited with {self.proc.returncode} before {path} appeared:\n{self.log()}")
            time.sleep(0.02)
        pytest.fail(f"{path} did not appear within {timeout or start_timeout()} s:\n{self.log()}")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            time.sleep(0.05)
        pytest.fail(f"{text!r} not in the service log within {timeout} s:\n{self.log()}")

    def terminate(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        if self.proc.poll() is not None:
            return self.proc.returncode, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            pytest.fail(f"service did not exit within {timeout} s of SIGTERM:\n{self.log()}")
        return rc, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        self._log.close()


def run_cli(*args: str, timeout: float = 30, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CUECAST_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cuecast", *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )


def http_env(**extra: str) -> tuple[dict[str, str], dict[str, int]]:
    """Environment putting every server (HTTP and RTSP) on a free loopback port; returns (env, ports)."""
    ports = dict(zip(("api", "medium", "low", "rtsp"), free_ports(4), strict=True))
    env = {
        "CUECAST_HTTP__BIND": "127.0.0.1",
        "CUECAST_HTTP__PORT": str(ports["api"]),
        "CUECAST_MJPEG__MEDIUM__PORT": str(ports["medium"]),
        "CUECAST_MJPEG__LOW__PORT": str(ports["low"]),
        "CUECAST_RTSP__PORT": str(ports["rtsp"]),
        "CUECAST_RTSP__BIND": "127.0.0.1",
        "CUECAST_WEBRTC__ADDRESSES": "[127.0.0.1]",  # ICE host candidates on loopback only
    }
    env.update(extra)
    return env, ports


def wait_http(url: str, timeout: float = 20.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not answering 200 within {timeout} s")
