"""Fisheye correction end to end: the correction element (cuecastremap, with the maps the capture process
builds) matches cv2.fisheye, and through the real service the example backend finds the demo balls where
they truly are."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from examples.find_balls import detect_balls

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.core import native
from cuecast.core.gst import GLib, Gst
from cuecast.lens.maps import build_maps, luma_lut, output_matrix, remap_table
from cuecast.media.demo import STATIC_BALLS, DemoScene, demo_model, true_corrected_positions
from tests.helpers.service import ServiceProcess
from tests.integration.test_spine import real_frame

W, H = 960, 540


def run_element(frame: bytes, w: int, h: int, after: str = "",
                luma: tuple[float, float] | None = None, **props: object) -> np.ndarray:
    """Push one I420 frame through appsrc ! cuecastremap (the demo lens's maps, as the capture process
    builds them) [! after] ! appsink and return the output bytes."""
    native.load()
    p = Gst.parse_launch(
        f"appsrc name=src format=time caps=video/x-raw,format=I420,width={w},height={h},framerate=30/1 "
        f"! cuecastremap name=fe {'! ' + after if after else ''} ! appsink name=sink sync=false"
    )
    fe = p.get_by_name("fe")
    fe.set_property("map", GLib.Bytes.new(remap_table(build_maps(demo_model(), w, h, chroma=True), (w, h))))
    lut = luma_lut(*luma) if luma is not None else None
    if lut is not None:
        fe.set_property("luma-lut", GLib.Bytes.new(lut.tobytes()))
    for k, v in props.items():
        fe.set_property(k, v)
    p.set_state(Gst.State.PLAYING)
    src = p.get_by_name("src")
    buf = Gst.Buffer.new_wrapped(frame)
    buf.pts = 0
    src.emit("push-buffer", buf)
    sample = p.get_by_name("sink").emit("try-pull-sample", 10 * Gst.SECOND)
    p.set_state(Gst.State.NULL)
    assert sample is not None
    out = sample.get_buffer()
    ok, mi = out.map(Gst.MapFlags.READ)
    data = np.frombuffer(bytes(mi.data), np.uint8)
    out.unmap(mi)
    return data


def reference(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """cv2.fisheye undistortion of the same frame with float maps: the ground truth."""
    m = demo_model().scaled_to(w, h)
    P = output_matrix(m)
    mx, my = cv2.fisheye.initUndistortRectifyMap(m.K, m.D, np.eye(3), P, (w, h), cv2.CV_32FC1)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@pytest.fixture(scope="module")
def scene() -> DemoScene:
    return DemoScene(W, H)


def test_i420_output_matches_cv2_fisheye_plane_by_plane(scene: DemoScene) -> None:
    i420 = scene.background
    out = run_element(i420.tobytes(), W, H)
    y_out = out[: W * H].reshape(H, W)
    y_ref = reference(i420[:H], W, H)
    diff = np.abs(y_out.astype(int) - y_ref.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 8
    # The whole picture, converted to BGR, matches the BGR reference closely (chroma at half resolution).
    bgr = cv2.cvtColor(out.reshape(H * 3 // 2, W), cv2.COLOR_YUV2BGR_I420)
    ref = reference(scene.background_bgr, W, H)
    assert np.abs(bgr.astype(int) - ref.astype(int)).mean() < 3


def test_brightness_contrast_in_the_pass_match_videobalance(scene: DemoScene) -> None:
    """The luma table in the correction pass gives what a separate videobalance gives, at a fraction of
    the cost (bench/fisheye.py)."""
    i420 = scene.background.tobytes()
    folded = run_element(i420, W, H, luma=(0.1, 1.3))
    separate = run_element(i420, W, H, after="videobalance brightness=0.1 contrast=1.3")
    plain = run_element(i420, W, H)
    y = W * H
    assert np.abs(folded[:y].astype(int) - separate[:y].astype(int)).max() <= 1
    assert np.array_equal(folded[y:], separate[y:])  # chroma untouched by brightness/contrast
    assert np.abs(folded[:y].astype(int) - plain[:y].astype(int)).mean() > 10  # and it did change the picture


def test_disabled_passes_frames_through_untouched(scene: DemoScene) -> None:
    i420 = scene.background
    out = run_element(i420.tobytes(), W, H, enabled=False)
    assert np.array_equal(out, i420.reshape(-1))


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
