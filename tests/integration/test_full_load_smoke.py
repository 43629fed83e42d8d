"""A 20-second smoke version of the full-load bench (S2): every output busy at once on an MJPEG source with
correction. It asserts the plumbing (each consumer gets frames, nothing dies), not the speed: that is
`make bench`'s job."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.media.demo import demo_calibration_path
from tests.helpers.service import ServiceProcess, http_env, wait_http

SECONDS = 20
ROOT = Path(__file__).parents[2]


def test_every_output_busy_at_once(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=4",
                    "-c:v", "mjpeg", "-q:v", "4", "-pix_fmt", "yuvj420p", str(clip)], check=True, timeout=120)
    env, ports = http_env()
    sock = tmp_path / "sock"
    svc = ServiceProcess(["--source", str(clip), "--width", "1280", "--height", "720", "--calibration",
                          str(demo_calibration_path()), "--shm-socket", str(sock)], tmp_path / "svc.log", env=env)
    try:
        api = f"http://127.0.0.1:{ports['api']}"
        wait_http(f"{api}/healthz")
        rtsp = subprocess.Popen(["ffmpeg", "-nostdin", "-rtsp_transport", "tcp", "-i",
                                 f"rtsp://127.0.0.1:{env['CUECAST_RTSP__PORT']}/high", "-t", str(SECONDS - 5),
                                 "-f", "null", "-"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        readers = subprocess.Popen([sys.executable, str(ROOT / "bench" / "readers.py"), str(SECONDS - 5),
                                    f"{ports['medium']}:3", f"{ports['low']}:2"], stdout=subprocess.PIPE, text=True)
        with GStreamerFrameConsumer(sock) as c:
            time.sleep(3)
            n0 = c.frames_received
            time.sleep(SECONDS - 5)
            shm_frames = c.frames_received - n0
        per_client = json.loads(readers.communicate(timeout=60)[0])
        err = rtsp.communicate(timeout=60)[1]
        status = httpx.get(f"{api}/api/status", timeout=5).json()
        assert svc.proc.poll() is None, svc.log()  # still running under the load
    finally:
        svc.close()
    assert shm_frames > 10 * (SECONDS - 5), shm_frames  # frames flowed the whole time (>= 10 fps)
    assert all(c["fps"] > 5 for c in per_client), per_client
    assert rtsp.returncode == 0 and "frame=" in err, err[-1000:]
    assert status["fisheye"]["active"] and status["pipeline"]["restarts"] == 0
