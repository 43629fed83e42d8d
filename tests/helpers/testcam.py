"""The test camera for tests: `cuecast-testcam run` holding its cameras open, the environment a program needs
to see them (LD_PRELOAD and the daemon's socket), and the admin commands (unplug, replug, busy, ...)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "data" / "testcam-uvc.yaml"
TESTCAM = [sys.executable, "-m", "cuecast.testcam.cli"]
_SHOW_ENV = ("import json, os, sys, time; print(json.dumps({k: v for k, v in os.environ.items() "
             "if k == 'LD_PRELOAD' or k.startswith('CUECAST_TESTCAM_')}), flush=True); sys.stdin.read()")


class CameraRig:
    """`with CameraRig(tmp_path) as cam:` cameras of SPEC visible to programs started with `cam.env`."""

    def __init__(self, tmp: Path, spec: Path = SPEC, extra: tuple[str, ...] = ()) -> None:
        self.socket = tmp / "testcam.sock"
        self.proc = subprocess.Popen([*TESTCAM, "run", "--spec", str(spec), "--socket", str(self.socket), *extra, "--",
                                      sys.executable, "-c", _SHOW_ENV], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("cuecast-testcam run did not start")
        self.own_env: dict[str, str] = json.loads(line)  # LD_PRELOAD and the daemon's socket
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("CUECAST_")}, **self.own_env}

    def admin(self, *words: str) -> str:
        r = subprocess.run([*TESTCAM, *words, "--socket", str(self.socket)], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a program that sees the cameras."""
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the holder exits, so does `run` (with its status)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> CameraRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_frames(consumer: Any, real: bool, timeout: float, what: str = "") -> float:
    """Read the backend's frames until a camera frame (`real`) or a NO SIGNAL placeholder (not `real`) comes;
    the seconds it took. Fails naming `what` after `timeout` seconds."""
    t0 = time.monotonic()
    while True:
        got = consumer.read(timeout=1.0, copy=False)
        if got is not None and got[1].placeholder != real:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"no {'camera' if real else 'NO SIGNAL'} frame {what}"


def serve_camera(cam: CameraRig, tmp: Path, width: int, height: int, fps: int = 30, calibrated: bool = True,
                 **env: str) -> tuple[Any, str, Path, dict[str, int]]:
    """`cuecast serve` on the rig's /dev/video0 at width x height @ fps with the demo lens corrected (the camera
    paints its numbers through that lens; `calibrated=False`: no correction); (service, API URL, shared-memory
    socket, ports) once it answers."""
    import time

    from cuecast.media.demo import demo_calibration_path
    from tests.helpers.service import ServiceProcess, http_env, wait_http

    full, ports = http_env(**env)
    sock = tmp / "sock"
    args = ["--source", "v4l2:///dev/video0", "--width", str(width), "--height", str(height), "--fps", str(fps),
            *(["--calibration", str(demo_calibration_path())] if calibrated else []), "--shm-socket", str(sock)]
    svc = ServiceProcess(args, tmp / f"svc-{time.monotonic_ns()}.log", env={**cam.own_env, **full})
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
    except BaseException:
        svc.close()
        raise
    return svc, api, sock, ports
