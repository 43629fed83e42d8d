"""Camera controls through the service on the test camera (a UVC stand-in), as a venue lives with them: a change
reaches the backend's frames within two frames while every viewer stays; the driver's dropped frames and its
frame timing show in /api/status and /metrics; named profiles; and twenty unplug/replug cycles, each with the
frames back within 2 s and every saved value read back from the device, then a restart that keeps them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np

from cuecast.consumer import GStreamerFrameConsumer
from tests.helpers.mjpeg_client import MjpegReader
from tests.helpers.service import ServiceProcess, http_env, wait_http
from tests.helpers.testcam import CameraRig, wait_frames

CONFIG = """\
source:
  uri: v4l2:///dev/video0
  width: 640
  height: 480
camera:
  controls: {power_line_frequency: 2}
  profiles:
    evening: {gain: 80}
    daylight: {gain: 30}
"""


def device(cam: CameraRig, name: str) -> int:
    r = cam.run("v4l2-ctl", "-d", "/dev/video0", "--get-ctrl", name)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split(":", 1)[1].split()[0])


def start(cam: CameraRig, tmp: Path, cfg: Path) -> tuple[ServiceProcess, str, dict[str, int]]:
    env, ports = http_env(CUECAST_RTSP__ENABLED="false")
    svc = ServiceProcess(["--config", str(cfg), "--shm-socket", str(tmp / "sock")], tmp / "svc.log",
                         env={**cam.own_env, **env})
    api = f"http://127.0.0.1:{ports['api']}"
    wait_http(f"{api}/healthz")
    return svc, api, ports


def level_change_lag(c: GStreamerFrameConsumer, api: str) -> tuple[int, float]:
    """Set gain 50 -> 100 (the picture's level doubles) and return how many backend frames captured after the
    PUT was answered still show the old level, and the longest gap between the backend's frames meanwhile."""
    def frames(seconds: float) -> list[tuple[int, float]]:
        out, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            got = c.read(timeout=1.0)
            if got is not None and not got[1].placeholder:
                out.append((got[1].capture_ns, float(np.mean(got[0]))))
        return out

    assert httpx.put(f"{api}/api/camera", json={"controls": {"gain": 50}}, timeout=10).status_code == 200
    before = frames(1.0)
    old = float(np.median([m for _, m in before[-15:]]))
    r = httpx.put(f"{api}/api/camera", json={"controls": {"gain": 100}}, timeout=10)
    answered = time.monotonic_ns()
    assert r.status_code == 200 and r.json()["controls"] == {"gain": 100}, r.text
    after = frames(1.5)
    new = float(np.median([m for _, m in after[-15:]]))
    assert new > 1.5 * old, f"the picture's level did not follow the gain: {old:.1f} -> {new:.1f}"
    late = sum(1 for t, m in after if t > answered and m < (old + new) / 2)
    stamps = [t for t, _ in before + after]
    return late, max(np.diff(stamps)) / 1e6


def test_a_control_change_reaches_the_backend_within_two_frames_and_drops_show(tmp_path: Path) -> None:
    with CameraRig(tmp_path) as cam:
        cfg = tmp_path / "cuecast.yaml"
        cfg.write_text(CONFIG)
        svc, api, ports = start(cam, tmp_path, cfg)
        reader = MjpegReader(ports["medium"])
        try:
            reader.start()
            with GStreamerFrameConsumer(tmp_path / "sock") as c:
                # A busy machine can hold one frame back: measure twice before failing.
                late, gap = level_change_lag(c, api)
                if late > 2:
                    late, gap = level_change_lag(c, api)
                assert late <= 2, f"{late} frames after the change still showed the old gain"
                assert gap < 250, f"the backend's frames stopped for {gap:.0f} ms while the control changed"
            assert reader.is_alive(), "the browser's stream was closed by a control change"
            t = time.monotonic()
            assert reader.frames_between(t - 2.5, t) >= 2.5 * 20, "the browser's stream stalled"

            # Profiles: switching applies the profile's values; the choice is kept in the config file.
            r = httpx.put(f"{api}/api/camera/profile", json={"profile": "evening"}, timeout=10)
            assert r.status_code == 200 and r.json()["controls"] == {"gain": 80}, r.text
            assert device(cam, "gain") == 80 and "profile: evening" in cfg.read_text()
            r = httpx.put(f"{api}/api/camera/profile", json={"profile": "night"}, timeout=10)
            assert r.status_code == 422 and "daylight, evening" in r.json()["detail"], r.text

            # The driver's timing: about 33 ms between frames, then a reader that stops for 0.6 s (as a
            # starved process would) makes the driver drop frames: its sequence numbers show the gap.
            # (The start of a stream may cost a frame or two while the pipeline warms up: counted too.)
            source = httpx.get(f"{api}/api/status", timeout=5).json()["source"]
            assert 30 < source["frame_interval_ms"] < 37 and source["frame_interval_jitter_ms"] < 10, source
            before = source["camera_drops"]
            capture = svc.child("capture").pid
            os.kill(capture, signal.SIGSTOP)
            time.sleep(0.6)
            os.kill(capture, signal.SIGCONT)
            deadline = time.monotonic() + 10
            while (drops := httpx.get(f"{api}/api/status", timeout=5).json()["source"]["camera_drops"]) < before + 5:
                assert time.monotonic() < deadline, f"{drops - before} camera drops counted after a 0.6 s stall"
                time.sleep(0.2)
            assert drops - before <= 20, f"{drops - before} drops for a 0.6 s stall of a 30 fps camera"
            metrics = httpx.get(f"{api}/metrics", timeout=5).text
            counted = [float(line.split()[1]) for line in metrics.splitlines()
                       if line.startswith("cuecast_camera_drops_total ")]
            assert counted and counted[0] >= drops, metrics
            assert "cuecast_camera_frame_interval_seconds" in metrics
            assert 'cuecast_camera_control{control="gain"} 80.0' in metrics, metrics
        finally:
            reader.close()
            svc.terminate()
            svc.close()


def test_twenty_replugs_each_back_within_two_seconds_with_every_saved_value(tmp_path: Path) -> None:
    with CameraRig(tmp_path) as cam:
        cfg = tmp_path / "cuecast.yaml"
        cfg.write_text(CONFIG + "  profile: evening\n")
        svc, api, _ = start(cam, tmp_path, cfg)
        try:
            r = httpx.put(f"{api}/api/camera", json={"controls": {"brightness": -20, "auto_exposure": 1,
                                                                   "exposure_time_absolute": 200}}, timeout=10)
            assert r.status_code == 200, r.text
            saved = {"power_line_frequency": 2, "gain": 80, "brightness": -20, "auto_exposure": 1,
                     "exposure_time_absolute": 200}
            backs = []
            with GStreamerFrameConsumer(tmp_path / "sock") as c:
                for cycle in range(20):
                    cam.admin("unplug", "/dev/video0")
                    wait_frames(c, False, 10, f"after unplug {cycle}")
                    cam.admin("replug", "/dev/video0")  # back at the camera's defaults
                    backs.append(wait_frames(c, True, 10, f"after replug {cycle}:\n{svc.log()[-2000:]}"))
                    values = {name: device(cam, name) for name in saved}
                    assert values == saved, f"cycle {cycle}: the device has {values} after the replug"
            print("frames back after each replug (s):", " ".join(f"{b:.2f}" for b in backs))
            assert max(backs) <= 2.0, f"frames back after {max(backs):.2f} s (each: {backs})"
            assert svc.proc.poll() is None
        finally:
            svc.terminate()
            svc.close()

        # A reboot: the camera at its defaults, the saved values (profile included) applied before streaming.
        cam.admin("unplug", "/dev/video0")
        cam.admin("replug", "/dev/video0")
        assert device(cam, "gain") == 50
        svc, api, _ = start(cam, tmp_path, cfg)
        try:
            assert {name: device(cam, name) for name in saved} == saved
            assert httpx.get(f"{api}/api/camera", timeout=10).json()["profile"] == "evening"
        finally:
            svc.terminate()
            svc.close()


def test_a_camera_back_under_another_number_is_found_by_its_by_id_name(tmp_path: Path) -> None:
    """`source.uri` as the camera's by-id name: plugged back in as /dev/video2 (another camera took video0, or
    the kernel gave it the next number), it is found again, frames within 2 s, its saved controls set again."""
    with CameraRig(tmp_path) as cam:
        cfg = tmp_path / "cuecast.yaml"
        cfg.write_text(CONFIG.replace("v4l2:///dev/video0", "usb-Cuecast_Test_Camera_0001-video-index0"))
        svc, api, _ = start(cam, tmp_path, cfg)
        try:
            with GStreamerFrameConsumer(tmp_path / "sock") as c:
                got = c.read(timeout=10.0, copy=False)
                assert got is not None and not got[1].placeholder, svc.log()[-2000:]
                cam.admin("unplug", "/dev/video0")
                time.sleep(1.0)
                cam.admin("replug", "/dev/video0", "--as", "/dev/video2")
                back = wait_frames(c, True, 10, f"after the replug:\n{svc.log()[-2000:]}")
                assert back <= 2.0, f"frames back {back:.2f} s after the replug as /dev/video2"
            r = cam.run("v4l2-ctl", "-d", "/dev/video2", "--get-ctrl", "power_line_frequency")
            assert r.returncode == 0 and r.stdout.split(":")[1].split()[0] == "2", r.stdout + r.stderr
            assert cam.run("v4l2-ctl", "-d", "/dev/video0", "--all").returncode != 0  # the old number is gone
            got = httpx.get(f"{api}/api/camera", timeout=10).json()
            assert got["path"] == "/dev/v4l/by-id/usb-Cuecast_Test_Camera_0001-video-index0", got["path"]
        finally:
            svc.terminate()
            svc.close()
