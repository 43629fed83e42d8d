"""Fisheye correction through the real service: the example backend finds the demo balls where they truly
are, a bad calibration is a clear start-up error, and no calibration means no correction element."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from examples.find_balls import detect_balls

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.media.demo import STATIC_BALLS, true_corrected_positions
from tests.helpers.service import ServiceProcess
from tests.integration.test_spine import real_frame


def _balls_through_service(tmp_path: Path, *args: str) -> tuple[dict[str, tuple[float, float]], dict]:
    import httpx

    from tests.helpers.service import http_env, wait_http

    env, ports = http_env()
    sock = tmp_path / "sock"
    svc = ServiceProcess(["--source", "demo", "--shm-socket", str(sock), *args], tmp_path / "svc.log", env=env)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        status = httpx.get(f"http://127.0.0.1:{ports['api']}/api/status", timeout=5).json()
        with GStreamerFrameConsumer(sock) as c:
            frame = real_frame(c, 15)
            assert frame is not None, svc.log()
            return detect_balls(frame), status
    finally:
        svc.close()


def test_example_backend_finds_balls_at_their_true_positions(tmp_path: Path) -> None:
    """Through the real service: corrected frames put every ball within 2 px of the truth; raw ones do not."""
    found, status = _balls_through_service(tmp_path)
    assert status["fisheye"]["active"] and status["fisheye"]["calibration"] == "built-in demo lens"
    P = np.array(status["fisheye"]["camera_matrix"])
    truth = true_corrected_positions(P)
    assert set(found) == {b.name for b in STATIC_BALLS}, found
    errors = {n: float(np.hypot(found[n][0] - truth[n][0], found[n][1] - truth[n][1])) for n in truth}
    assert max(errors.values()) <= 2.0, errors

    raw, _ = _balls_through_service(tmp_path, "--no-fisheye")
    raw_errors = {n: float(np.hypot(raw[n][0] - truth[n][0], raw[n][1] - truth[n][1])) for n in raw}
    assert max(raw_errors.values()) > 20, raw_errors  # the uncorrected lens puts the corner balls far off


def test_example_script_runs_against_the_service(tmp_path: Path) -> None:
    from tests.helpers.service import http_env, wait_http

    env, ports = http_env()
    sock = tmp_path / "sock"
    svc = ServiceProcess(["--source", "demo", "--shm-socket", str(sock)], tmp_path / "svc.log", env=env)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        r = subprocess.run([sys.executable, "examples/find_balls.py", "--socket", str(sock), "--frames", "5"],
                           capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
        assert r.returncode == 0, r.stderr
        assert "yellow=(" in r.stdout and "red=(" in r.stdout
    finally:
        svc.close()


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (None, "fisheye.calibration: calibration file"),
        ("K: [[1,0,0],[0,1,0],[0,0,1]]\nD: [0,0,0,0]\nimage_size: [640, 480]\n", "calibrate at this aspect ratio"),
        ("K: 5\nD: [0,0,0,0]\nimage_size: [1920, 1080]\n", "K must have 9 numbers"),
    ],
)
def test_bad_calibration_is_a_clear_startup_error(tmp_path: Path, yaml_text: str | None, expected: str) -> None:
    cal = tmp_path / "camera.yaml"
    if yaml_text is not None:
        cal.write_text(yaml_text)
    svc = ServiceProcess(["--source", "test:ball", "--shm-socket", str(tmp_path / "s")], tmp_path / "l",
                         env={"CUECAST_FISHEYE__CALIBRATION": str(cal)})
    try:
        assert svc.proc.wait(timeout=30) == 2
        assert expected in svc.log() and str(cal) in svc.log() and "Traceback" not in svc.log()
    finally:
        svc.close()


def test_no_calibration_means_no_element(tmp_path: Path) -> None:
    import httpx

    from tests.helpers.service import http_env, wait_http

    env, ports = http_env()
    svc = ServiceProcess(["--source", "test:ball", "--shm-socket", str(tmp_path / "s")], tmp_path / "l", env=env)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/api/status", timeout=5).json()["fisheye"]["active"] is False
    finally:
        svc.close()
