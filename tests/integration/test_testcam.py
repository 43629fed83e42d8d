"""The test camera stands in for a UVC webcam: unmodified v4l2-ctl, ffmpeg, OpenCV and GStreamer's v4l2src
accept it as they would /dev/video0 with uvcvideo (formats, frame intervals, controls with uvc's clamping and
inactive flag, MMAP streaming at the asked rate with numbered frames), several processes see one camera
(controls set by one are read by another; a second streamer gets EBUSY), and unplug/replug behave as the
kernel does (ENOENT on open, ENODEV for open handles, controls back at their defaults)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.testcam import CameraRig, wait_frames

CV2_READ = """
import sys, time, cv2, numpy as np
from cuecast.testcam.picture import read_number
fourcc, w, h, fps, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
c = cv2.VideoCapture(sys.argv[6] if len(sys.argv) > 6 else "/dev/video0", cv2.CAP_V4L2)
assert c.isOpened(), "not opened"
c.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc)); c.set(3, w); c.set(4, h); c.set(5, fps)
ok, f = c.read()
t0 = time.monotonic(); nums = []; means = []
for _ in range(n):
    ok, f = c.read()
    assert ok, "read failed"
    nums.append(read_number(f)); means.append(float(f[200:, :].mean()))
print(f.shape[1], f.shape[0], n / (time.monotonic() - t0), " ".join(map(str, nums)), np.mean(means))
"""


@pytest.fixture
def cam(tmp_path: Path) -> Iterator[CameraRig]:
    with CameraRig(tmp_path) as c:
        yield c


def ctl(cam: CameraRig, *args: str) -> subprocess.CompletedProcess[str]:
    return cam.run("v4l2-ctl", "-d", "/dev/video0", *args)


def cv2_read(cam: CameraRig, fourcc: str, w: int, h: int, fps: int, n: int) -> tuple[int, int, float, list, float]:
    r = cam.run(sys.executable, "-c", CV2_READ, fourcc, str(w), str(h), str(fps), str(n))
    assert r.returncode == 0, r.stderr
    fields = r.stdout.split()
    width, height, rate = int(fields[0]), int(fields[1]), float(fields[2])
    nums = [None if x == "None" else int(x) for x in fields[3:-1]]
    return width, height, rate, nums, float(fields[-1])


def test_v4l2_ctl_sees_a_uvc_camera(cam: CameraRig) -> None:
    a = ctl(cam, "--all")
    assert a.returncode == 0, a.stderr
    for needle in ("Driver name      : uvcvideo", "Card type        : USB Fisheye Camera", "Video Capture",
                   "Streaming", "Pixel Format      : 'MJPG'", "Frames per second: 30.000",
                   "exposure_time_absolute 0x009a0902 (int)", "flags=inactive"):
        assert needle in a.stdout, (needle, a.stdout)
    f = ctl(cam, "--list-formats-ext").stdout
    assert "'MJPG' (Motion-JPEG, compressed)" in f and "'YUYV' (YUYV 4:2:2)" in f
    assert "Size: Discrete 1280x720\n\t\t\tInterval: Discrete 0.017s (60.000 fps)" in f, f
    m = ctl(cam, "--list-ctrls-menus").stdout
    assert "power_line_frequency 0x00980918 (menu)" in m and "1: 50 Hz" in m
    # The by-id name resolves to the same camera.
    assert cam.run("v4l2-ctl", "-d", "/dev/v4l/by-id/usb-Cuecast_Test_Camera_0001-video-index0",
                   "--info").returncode == 0


def test_controls_behave_like_uvcvideo_across_processes(cam: CameraRig) -> None:
    assert ctl(cam, "--set-ctrl", "brightness=1000").returncode == 0
    assert ctl(cam, "--get-ctrl", "brightness").stdout.strip() == "brightness: 64"  # clamped to max
    assert ctl(cam, "--set-ctrl", "brightness=-65").returncode == 0
    assert ctl(cam, "--get-ctrl", "brightness").stdout.strip() == "brightness: -64"
    r = ctl(cam, "--set-ctrl", "white_balance_temperature=5000")  # inactive while the automatic is on
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    assert ctl(cam, "--set-ctrl", "white_balance_automatic=0").returncode == 0
    assert "flags=inactive" not in ctl(cam, "--list-ctrls").stdout.split("white_balance_temperature")[1].split("\n")[0]
    assert ctl(cam, "--set-ctrl", "white_balance_temperature=5005").returncode == 0
    assert ctl(cam, "--get-ctrl", "white_balance_temperature").stdout.strip() == "white_balance_temperature: 5010"
    r = ctl(cam, "--set-ctrl", "power_line_frequency=7")
    assert r.returncode != 0 and "Numerical result out of range" in r.stderr, r
    r = ctl(cam, "--set-ctrl", "auto_exposure=2")  # inside the range, not an entry of the menu
    assert r.returncode != 0 and "Invalid argument" in r.stderr, r


def test_streaming_at_the_asked_size_and_rate_with_numbered_frames(cam: CameraRig) -> None:
    # The camera's rate from the frame numbers (what it sent, frames the reader missed included), and what the
    # reader got: measured twice before failing, a busy 2-core machine can slow the reader down.
    tries = []
    for _ in range(2):
        w, h, rate, nums, _ = cv2_read(cam, "MJPG", 1280, 720, 60, 120)
        assert (w, h) == (1280, 1280 * 9 // 16)
        assert None not in nums, nums
        steps = [b - a for a, b in zip(nums, nums[1:], strict=False)]
        assert all(s >= 1 for s in steps), nums  # in order, never repeated
        sent_rate = rate * (nums[-1] - nums[0]) / (len(nums) - 1)
        tries.append((sent_rate, sum(s == 1 for s in steps) / len(steps)))
        if 57 <= sent_rate <= 62 and tries[-1][1] >= 0.9:
            break
    assert any(57 <= r <= 62 and got >= 0.9 for r, got in tries), f"(camera fps, share read) at 1280x720@60: {tries}"
    w, h, rate, nums, _ = cv2_read(cam, "YUYV", 1920, 1080, 5, 6)  # 1080p only at 5 fps raw, as USB 2 allows
    assert (w, h) == (1920, 1080) and 4.5 <= rate <= 6.2, rate  # 6 frames: one interval of slack
    r = cam.run("ffmpeg", "-hide_banner", "-nostdin", "-f", "v4l2", "-input_format", "mjpeg", "-video_size",
                "1920x1080", "-framerate", "30", "-i", "/dev/video0", "-frames:v", "30", "-f", "null", "-")
    assert r.returncode == 0 and "1920x1080" in r.stderr and "frame=   30" in r.stderr, r.stderr[-800:]
    r = cam.run("gst-launch-1.0", "-q", "v4l2src", "device=/dev/v4l/by-id/usb-Cuecast_Test_Camera_0001-video-index0",
                "num-buffers=20", "!", "image/jpeg,width=1920,height=1080,framerate=30/1", "!", "jpegdec", "!",
                "fakesink")
    assert r.returncode == 0, r.stderr


def test_the_picture_follows_the_controls_and_a_long_exposure_lowers_the_rate(cam: CameraRig) -> None:
    *_, dark = cv2_read(cam, "MJPG", 640, 480, 30, 5)
    assert ctl(cam, "--set-ctrl", "gain=100").returncode == 0
    *_, bright = cv2_read(cam, "MJPG", 640, 480, 30, 5)
    assert bright > dark * 1.3, (dark, bright)
    # Manual exposure of 66.6 ms (units of 100 us) at 30 fps: the camera can only deliver 15 frames a second.
    assert ctl(cam, "--set-ctrl", "auto_exposure=1").returncode == 0
    assert ctl(cam, "--set-ctrl", "exposure_time_absolute=666").returncode == 0
    _, _, rate, _, _ = cv2_read(cam, "MJPG", 640, 480, 30, 20)
    assert 13.5 <= rate <= 16, rate


def test_busy_unplug_and_replug(cam: CameraRig) -> None:
    cam.admin("busy", "/dev/video0")
    r = ctl(cam, "--set-fmt-video", "width=640,height=480,pixelformat=MJPG")
    assert r.returncode != 0 and "Device or resource busy" in r.stdout + r.stderr, r
    cam.admin("free", "/dev/video0")
    assert ctl(cam, "--set-fmt-video", "width=640,height=480,pixelformat=MJPG").returncode == 0

    assert ctl(cam, "--set-ctrl", "brightness=20").returncode == 0
    reader = subprocess.Popen(["ffmpeg", "-hide_banner", "-nostdin", "-f", "v4l2", "-i", "/dev/video0", "-t", "20",
                               "-f", "null", "-"], env=cam.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    time.sleep(2)
    cam.admin("unplug", "/dev/video0")
    try:
        reader.wait(10)  # the stream ends: the open handle gets errors, as after a real unplug
    except subprocess.TimeoutExpired:
        reader.kill()
        pytest.fail("a program streaming from the camera did not notice the unplug")
    finally:
        assert reader.stderr is not None
        reader.stderr.close()
    r = ctl(cam, "--info")
    assert r.returncode != 0 and "Cannot open device /dev/video0" in r.stderr, r  # stat: ENOENT
    assert cam.run("test", "-e", "/dev/video0").returncode != 0
    cam.admin("replug", "/dev/video0")
    assert ctl(cam, "--get-ctrl", "brightness").stdout.strip() == "brightness: 0"  # back at its default
    w, h, rate, nums, _ = cv2_read(cam, "MJPG", 640, 480, 30, 10)
    assert (w, h) == (640, 480) and None not in nums


def test_the_service_streams_from_the_test_camera_and_survives_a_replug(cam: CameraRig, tmp_path: Path) -> None:
    """The plan's camera path end to end: `cuecast serve --source v4l2:///dev/video0` at 1920x1080@30 MJPEG with
    the correction on, the backend at the camera's rate, a browser's MJPEG stream; unplugged, every output
    shows NO SIGNAL; plugged back, real frames again within 2 s."""
    import httpx

    from cuecast.consumer import GStreamerFrameConsumer
    from cuecast.media.demo import demo_calibration_path
    from tests.helpers.mjpeg_client import MjpegReader
    from tests.helpers.service import ServiceProcess, http_env, wait_http

    env, ports = http_env(CUECAST_RTSP__ENABLED="false")
    sock = tmp_path / "sock"
    svc_env = {**cam.own_env, **env}
    svc = ServiceProcess(["--source", "v4l2:///dev/video0", "--calibration", str(demo_calibration_path()),
                          "--shm-socket", str(sock)], tmp_path / "svc.log", env=svc_env)
    api = f"http://127.0.0.1:{ports['api']}"
    reader = None
    try:
        wait_http(f"{api}/healthz")
        reader = MjpegReader(ports["medium"])
        source = httpx.get(f"{api}/api/status", timeout=5).json()["source"]
        assert source["kind"] == "v4l2" and "image/jpeg" in source["device_format"], source
        assert (source["width"], source["height"]) == (1920, 1080), source
        reader.start()
        with GStreamerFrameConsumer(sock) as c:
            t0, n = time.monotonic(), 0
            while time.monotonic() - t0 < 4:
                got = c.read(timeout=1.0, copy=False)
                if got is not None and not got[1].placeholder:
                    n += 1
            fps = n / (time.monotonic() - t0)
            assert fps >= 28, f"backend {fps:.1f} fps from the 30 fps camera"
            assert reader.frames_between(t0, time.monotonic()) >= 4 * 25, "the browser's stream lags"

            for attempt in range(2):  # two replugs: each must bring frames back within 2 s
                cam.admin("unplug", "/dev/video0")
                wait_frames(c, False, 10, "after the unplug")
                time.sleep(1)
                cam.admin("replug", "/dev/video0")
                back = wait_frames(c, True, 15, f"after the replug:\n{svc.log()[-2000:]}")
                print(f"replug {attempt}: frames back after {back:.2f} s")
                assert back <= 2.0, f"camera frames back {back:.2f} s after the replug"
        assert reader.is_alive(), "the browser's stream was closed by the unplug"
        assert svc.proc.poll() is None
    finally:
        if reader is not None:
            reader.close()
        svc.terminate()
        svc.close()


def test_v4l2_compliance_format_and_control_query_tests_pass(cam: CameraRig) -> None:
    """v4l2-compliance (v4l-utils 1.22): its format tests and control enumeration pass. Known differences
    (listed in the README): S_CTRL of an inactive control gives EACCES as uvcvideo does since Linux 6.3,
    which this older v4l2-compliance counts as a failure; no priorities, control events or Request API."""
    r = cam.run("v4l2-compliance", "-d", "/dev/video0", timeout=120)
    for test in ("VIDIOC_QUERYCAP", "second /dev/video0 open", "VIDIOC_G/S/ENUMINPUT",
                 "VIDIOC_QUERY_EXT_CTRL/QUERYMENU", "VIDIOC_QUERYCTRL", "VIDIOC_ENUM_FMT/FRAMESIZES/FRAMEINTERVALS",
                 "VIDIOC_G/S_PARM", "VIDIOC_G_FMT", "VIDIOC_TRY_FMT", "VIDIOC_S_FMT"):
        assert f"test {test}: OK" in r.stdout, (test, r.stdout[-3000:])


def test_camera_controls_through_the_api_stick_across_replug_and_restart(cam: CameraRig, tmp_path: Path) -> None:
    """GET /api/camera reads the device; PUT sets controls live in dependency order, refuses what the camera
    would not take with the fix named, saves them; a replug (controls back at the camera's defaults) and a
    service restart find them applied again."""
    import httpx

    from tests.helpers.service import ServiceProcess, http_env, wait_http

    cfg = tmp_path / "cuecast.yaml"
    cfg.write_text("source:\n  uri: v4l2:///dev/video0\n  width: 640\n  height: 480\n")
    env, ports = http_env(CUECAST_RTSP__ENABLED="false")
    svc_env = {**cam.own_env, **env}
    api = f"http://127.0.0.1:{ports['api']}"

    def start() -> ServiceProcess:
        svc = ServiceProcess(["--config", str(cfg), "--shm-socket", str(tmp_path / "sock")], tmp_path / "svc.log",
                             env=svc_env)
        wait_http(f"{api}/healthz")
        return svc

    def device(name: str) -> str:
        return ctl(cam, "--get-ctrl", name).stdout.strip()

    svc = start()
    try:
        got = httpx.get(f"{api}/api/camera", timeout=10).json()
        assert got["card"] == "USB Fisheye Camera" and got["driver"] == "uvcvideo", got
        assert got["by_id"] == "/dev/v4l/by-id/usb-Cuecast_Test_Camera_0001-video-index0"
        assert {"format": "MJPG", "width": 1280, "height": 720, "fps": [60.0, 30.0]} in got["modes"]
        exposure = next(c for c in got["controls"] if c["name"] == "exposure_time_absolute")
        assert "inactive" in exposure["flags"] and exposure["active_when"] == {"auto_exposure": 1}, exposure
        plf = next(c for c in got["controls"] if c["name"] == "power_line_frequency")
        assert plf["menu"] == {"0": "Disabled", "1": "50 Hz", "2": "60 Hz"} and plf["value"] == 1

        r = httpx.put(f"{api}/api/camera", json={"controls": {"exposure_time_absolute": 80}}, timeout=10)
        assert r.status_code == 409 and "auto_exposure=1" in r.json()["detail"], r.text
        r = httpx.put(f"{api}/api/camera", json={"controls": {"shutter": 1}}, timeout=10)
        assert r.status_code == 422 and "exposure_time_absolute" in r.json()["detail"], r.text  # lists the names
        r = httpx.put(f"{api}/api/camera", json={"controls": {"gain": 500}}, timeout=10)
        assert r.status_code == 422 and "0..100" in r.json()["detail"], r.text
        r = httpx.put(f"{api}/api/camera", json={"controls": {"power_line_frequency": 3}}, timeout=10)
        assert r.status_code == 422 and "60 Hz" in r.json()["detail"], r.text
        # The manual value and the mode that allows it in one request, in any order: the mode goes first.
        r = httpx.put(f"{api}/api/camera", json={"controls": {"exposure_time_absolute": 80, "auto_exposure": 1,
                                                               "power_line_frequency": 2}}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["controls"] == {"auto_exposure": 1, "exposure_time_absolute": 80, "power_line_frequency": 2}
        assert r.json()["persisted_to"] == str(cfg)
        assert device("exposure_time_absolute") == "exposure_time_absolute: 80"
        assert "power_line_frequency: 2" in cfg.read_text()

        cam.admin("unplug", "/dev/video0")
        time.sleep(0.5)
        cam.admin("replug", "/dev/video0")  # the camera comes back at its defaults
        deadline = time.monotonic() + 10
        while device("exposure_time_absolute") != "exposure_time_absolute: 80":
            assert time.monotonic() < deadline, f"not applied again after the replug: {svc.log()[-1500:]}"
            time.sleep(0.2)
        assert device("power_line_frequency").startswith("power_line_frequency: 2")
    finally:
        svc.terminate()
        svc.close()

    # A reboot: the camera powers up at its defaults, the service applies the saved values before streaming.
    cam.admin("unplug", "/dev/video0")
    cam.admin("replug", "/dev/video0")
    assert device("exposure_time_absolute") == "exposure_time_absolute: 156"
    svc = start()
    try:
        assert device("exposure_time_absolute") == "exposure_time_absolute: 80"
        assert device("auto_exposure") == "auto_exposure: 1 (Manual Mode)"
        assert "camera controls applied" in svc.log()
    finally:
        svc.terminate()
        svc.close()


def test_corrupt_frames_are_dropped_and_counted_and_a_busy_camera_is_named(cam: CameraRig, tmp_path: Path) -> None:
    """Truncated, garbled JPEGs (as some cameras send): dropped and counted, the stream goes on without a
    restart. A camera another program streams from: a clear error, NO SIGNAL meanwhile, frames once free."""
    import httpx

    from tests.helpers.service import ServiceProcess, http_env, wait_http

    env, ports = http_env(CUECAST_RTSP__ENABLED="false")
    svc_env = {**cam.own_env, **env}
    api = f"http://127.0.0.1:{ports['api']}"
    svc = ServiceProcess(["--source", "v4l2:///dev/video0", "--width", "640", "--height", "480", "--shm-socket",
                          str(tmp_path / "sock")], tmp_path / "svc.log", env=svc_env)

    def source() -> dict:
        return httpx.get(f"{api}/api/status", timeout=5).json()["source"]

    try:
        wait_http(f"{api}/healthz")
        before = source()
        cam.admin("corrupt", "/dev/video0", "3")
        deadline = time.monotonic() + 10
        while source()["corrupt_frames"] < 3:
            assert time.monotonic() < deadline, f"corrupt frames not counted: {source()}\n{svc.log()[-1500:]}"
            time.sleep(0.2)
        time.sleep(1)
        after = source()
        assert after["attempts"] == before["attempts"] and after["state"] == "playing", after  # no restart
        assert after["frames"] > before["frames"] + 20
        assert "cuecast_source_corrupt_frames_total 3.0" in httpx.get(f"{api}/metrics", timeout=5).text
    finally:
        svc.terminate()
        svc.close()

    cam.admin("busy", "/dev/video0")
    svc = ServiceProcess(["--source", "v4l2:///dev/video0", "--width", "640", "--height", "480", "--shm-socket",
                          str(tmp_path / "sock2")], tmp_path / "svc2.log", env=svc_env)
    try:
        deadline = time.monotonic() + 20
        while "is busy: another program holds it" not in svc.log():
            assert time.monotonic() < deadline, svc.log()[-2000:]
            time.sleep(0.2)
        cam.admin("free", "/dev/video0")
        wait_http(f"{api}/healthz")  # frames (not NO SIGNAL) once the other program let go
    finally:
        svc.terminate()
        svc.close()


def test_no_mode_at_the_asked_size_and_rate_says_what_the_camera_offers(tmp_path: Path) -> None:
    """A camera whose 1080p is raw at 5 fps only: asked for 1920x1080@30 the service says which modes the
    camera has (with their rates) and keeps retrying (another camera may be plugged in); asked for a mode it
    has, the best format is chosen (MJPG 1280x720@30, not YUYV at 10 fps)."""
    import httpx

    from tests.helpers.service import ServiceProcess, http_env, wait_http

    with CameraRig(tmp_path, Path(__file__).parents[1] / "data" / "testcam-yuyv1080.yaml") as cam:
        env, ports = http_env(CUECAST_RTSP__ENABLED="false")
        svc_env = {**cam.own_env, **env}
        svc = ServiceProcess(["--source", "v4l2:///dev/video0", "--shm-socket", str(tmp_path / "a")],
                             tmp_path / "a.log", env=svc_env)
        try:
            svc.wait_for_log("the camera offers no mode 1920x1080@30", timeout=20)
            assert "YUYV 1920x1080@5" in svc.log() and "MJPG 1280x720@30" in svc.log(), svc.log()[-1500:]
        finally:
            svc.terminate()
            svc.close()
        svc = ServiceProcess(["--source", "v4l2:///dev/video0", "--width", "1280", "--height", "720",
                              "--shm-socket", str(tmp_path / "b")], tmp_path / "b.log", env=svc_env)
        try:
            wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
            source = httpx.get(f"http://127.0.0.1:{ports['api']}/api/status", timeout=5).json()["source"]
            assert source["device_format"].startswith("image/jpeg") and source["fps"] == 30.0, source
        finally:
            svc.terminate()
            svc.close()


def test_camera_cli_and_doctor_on_the_test_camera(cam: CameraRig) -> None:
    """`cuecast camera` sets and reads the device's controls (no service running: straight at the device);
    `cuecast doctor` warns about what costs a billiards trainer: long exposures, flicker, colour drift."""
    cuecast = [sys.executable, "-m", "cuecast"]
    r = cam.run(*cuecast, "camera", "set", "auto_exposure=1", "exposure_time_absolute=400", "power_line_frequency=0")
    assert r.returncode == 0 and "exposure_time_absolute=400" in r.stdout, r.stderr
    assert cam.run(*cuecast, "camera", "get", "exposure_time_absolute").stdout.strip() == "exposure_time_absolute=400"
    r = cam.run(*cuecast, "camera", "set", "white_balance_temperature=5000")
    assert r.returncode == 1 and "white_balance_automatic=0" in r.stderr, r.stderr
    assert "MJPG 1280x720 @ 60, 30 fps" in cam.run(*cuecast, "camera", "modes").stdout
    doctor = cam.run(*cuecast, "doctor", timeout=120).stdout
    assert "exposure 40.0 ms is longer than the frame interval 33.3 ms" in doctor, doctor
    assert "power-line frequency filter disabled" in doctor and "automatic white balance is on" in doctor
    assert "/dev/video0: YUYV 1920x1080@5" in doctor and "MJPG 1920x1080@30" in doctor  # found, with its modes


def test_the_capture_time_is_the_drivers_buffer_timestamp(tmp_path: Path) -> None:
    """The frame trailer's capture time is the V4L2 buffer's timestamp (when the camera took the frame), not
    when the frame reached user space: for each frame the backend gets, it equals the time the test camera
    sent that frame number, to within a millisecond."""
    import numpy as np

    from cuecast.consumer import GStreamerFrameConsumer
    from cuecast.testcam.lenscode import LensCode, read_code
    from tests.helpers.service import ServiceProcess, http_env, wait_http

    log = tmp_path / "sent"
    with CameraRig(tmp_path, extra=("--send-log", str(log))) as cam:
        env, ports = http_env(CUECAST_RTSP__ENABLED="false")
        sock = tmp_path / "sock"
        svc = ServiceProcess(["--source", "v4l2:///dev/video0", "--no-fisheye", "--shm-socket", str(sock)],
                             tmp_path / "svc.log", env={**cam.own_env, **env})
        try:
            wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
            sent = np.memmap(log, np.int64, mode="r")
            lens = LensCode(1920, 1080)
            diffs: list[float] = []
            with GStreamerFrameConsumer(sock) as c:
                deadline = time.monotonic() + 10
                while len(diffs) < 30 and time.monotonic() < deadline:
                    got = c.read(timeout=1.0)
                    if got is None or got[1].placeholder:
                        continue
                    frame, info = got
                    number = read_code(frame, lens.raw_centres)
                    if number is not None:
                        diffs.append((info.capture_ns - int(sent[number % len(sent)])) / 1e6)
            assert len(diffs) >= 30, f"{len(diffs)} numbered frames read"
            assert max(abs(d) for d in diffs) < 1.0, f"capture stamp - camera's send time (ms): {diffs}"
        finally:
            svc.terminate()
            svc.close()
