"""The service as `make run` starts it: 1920x1080@30, the demo scene through its lens, corrected. Every output
is read by a real client at once (the backend's shared memory, MJPEG on both ports and through the API, RTSP),
and /metrics reports the same figures as /api/status for every output while they all run."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cuecast.consumer import GStreamerFrameConsumer
from tests.helpers.mjpeg_client import MjpegReader
from tests.helpers.service import ServiceProcess, http_env, wait_http

FIELDS = ("clients", "fps", "frames_sent", "frames_dropped", "bytes_sent")
COUNTERS = ("frames_sent", "frames_dropped", "bytes_sent")
METRIC = re.compile(r'^cuecast_output_(\w+?)(?:_total)?\{output="(\w+)"\} (\S+)$')


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, dict[str, int], Path]]:
    tmp = tmp_path_factory.mktemp("defaults")
    env, ports = http_env()
    sock = tmp / "sock"
    svc = ServiceProcess(["--source", "demo", "--shm-socket", str(sock)], tmp / "service.log", env=env)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        yield svc, ports, sock
    finally:
        svc.terminate()
        svc.close()


def ffprobe(url: str, *extra: str) -> dict:
    r = subprocess.run(["ffprobe", "-v", "error", *extra, "-show_entries", "stream=codec_name,width,height",
                        "-of", "json", url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["streams"][0]


def metrics(api: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in httpx.get(f"{api}/metrics", timeout=5).text.splitlines():
        m = METRIC.match(line)
        if m:
            out[(m.group(2), m.group(1))] = float(m.group(3))
    return out


def test_every_output_at_the_defaults_and_metrics_equal_status(
    defaults: tuple[ServiceProcess, dict[str, int], Path],
) -> None:
    svc, ports, sock = defaults
    api = f"http://127.0.0.1:{ports['api']}"
    # Sizes first, each from a real client.
    assert ffprobe(f"http://127.0.0.1:{ports['medium']}/")[("width")] == 1280
    assert ffprobe(f"http://127.0.0.1:{ports['low']}/")["height"] == 480
    high = ffprobe(f"{api}/stream/video?quality=high")
    assert (high["width"], high["height"]) == (1920, 1080)
    rtsp_url = f"rtsp://127.0.0.1:{ports['rtsp']}/high"
    h264 = ffprobe(rtsp_url, "-rtsp_transport", "tcp")
    assert (h264["codec_name"], h264["width"], h264["height"]) == ("h264", 1920, 1080)

    # Then everything at once: backend, two MJPEG ports, RTSP.
    readers = [MjpegReader(ports["medium"]) for _ in range(3)] + [MjpegReader(ports["low"])]
    rtsp = subprocess.Popen(["ffmpeg", "-nostdin", "-rtsp_transport", "tcp", "-i", rtsp_url, "-t", "14", "-f", "null",
                             "-"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with GStreamerFrameConsumer(sock) as backend:
        for r in readers:
            r.start()
        frame = backend.get_frame(timeout=10)
        assert frame is not None and frame.shape == (1080, 1920, 3)
        time.sleep(5)
        t0, n0 = time.monotonic(), backend.frames_received
        time.sleep(3)
        backend_fps = (backend.frames_received - n0) / (time.monotonic() - t0)
        before = httpx.get(f"{api}/api/status", timeout=5).json()["outputs"]
        got = metrics(api)
        after = httpx.get(f"{api}/api/status", timeout=5).json()["outputs"]
        medium_fps = [r.frames_between(t0, t0 + 3) / 3 for r in readers[:3]]
        low_fps = readers[3].frames_between(t0, t0 + 3) / 3
    for r in readers:
        r.close()
    err = rtsp.communicate(timeout=60)[1]
    rtsp_frames = [int(x) for x in re.findall(r"frame=\s*(\d+)", err)]

    assert backend_fps >= 25, backend_fps
    assert min(medium_fps) >= 25 and low_fps >= 12, (medium_fps, low_fps)
    assert rtsp_frames and rtsp_frames[-1] >= 14 * 25 * 0.8, rtsp_frames[-1:]
    # One schema for every output, in both places.
    for name, entry in before.items():
        assert all(f in entry for f in FIELDS), (name, entry)
        if not entry["enabled"]:
            continue
        for f in FIELDS:
            value = got.get((name, f))
            assert value is not None, f"/metrics has no {f} for {name}"
            lo, hi = sorted((before[name][f], after[name][f]))
            if f in COUNTERS:
                assert lo <= value <= hi, (name, f, lo, value, hi)
            elif f == "fps":
                assert lo - 3 <= value <= hi + 3, (name, f, lo, value, hi)
            else:
                assert value in (lo, hi), (name, f, lo, value, hi)
    # Every output that was watched reports it, with rates and bytes.
    for name in ("shm", "mjpeg_medium", "mjpeg_low", "h264", "rtsp"):
        assert before[name]["clients"] >= 1 and before[name]["fps"] > 10 and before[name]["bytes_sent"] > 0, (
            name, before[name])
    assert before["mjpeg_medium"]["clients"] == 3 and before["shm"]["fps"] >= 25
