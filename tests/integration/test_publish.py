"""Scale-out by publishing: cuecast pushes its one H.264 stream to a real nginx-rtmp (re-served as RTMP and
HLS, checked with ffprobe) and to an RTSP RECORD server; a restarted nginx is published to again by
itself, and an unreachable target only logs retries while the other outputs keep their rate."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cuecast.core.ports import free_ports
from tests.helpers.media_servers import Nginx, RtspRecordServer
from tests.helpers.mjpeg_client import MjpegReader
from tests.helpers.service import ServiceProcess, http_env, wait_http


def probe(url: str, timeout: float = 20) -> dict:
    """ffprobe's view of the first video stream ({} if it cannot open the URL)."""
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "stream=codec_name,width,height", "-of", "json", "-rw_timeout", "5000000", url],
                       capture_output=True, text=True, timeout=timeout)
    streams = json.loads(r.stdout or "{}").get("streams", []) if r.returncode == 0 else []
    return streams[0] if streams else {}


def publish_status(api: str) -> list[dict]:
    return httpx.get(f"{api}/api/status", timeout=5).json()["publish"]


def wait_state(api: str, index: int, state: str, timeout: float = 20, min_attempts: int = 1) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = publish_status(api)[index]
        if st["state"] == state and st["attempts"] >= min_attempts:
            return st
        assert time.monotonic() < deadline, f"publish target {index} is {st}, expected {state}"
        time.sleep(0.2)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    rtmp, http = free_ports(2)
    server = Nginx(tmp_path / "nginx", rtmp, http)
    server.start()
    yield server
    server.stop()


def test_publish_to_nginx_rtmp_and_rtsp_record(tmp_path: Path, nginx: Nginx) -> None:
    record_port, dead_port = free_ports(2)
    record = RtspRecordServer(record_port)
    record.start()
    dead = f"rtmp://127.0.0.1:{dead_port}/live/nobody"  # nothing listens there
    cfg = tmp_path / "cuecast.yaml"
    cfg.write_text(f"publish:\n  - url: {nginx.rtmp_url('table')}\n  - url: {record.url()}\n  - url: {dead}\n")
    env, ports = http_env()
    svc = ServiceProcess(["--config", str(cfg), "--source", "test:ball", "--width", "1920", "--height", "1080",
                          "--shm-socket", str(tmp_path / "sock")], tmp_path / "service.log", env=env)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
        wait_state(api, 0, "live")
        wait_state(api, 1, "live")
        # nginx re-serves it over RTMP and HLS, at the full size, as H.264.
        assert probe(nginx.rtmp_url("table")) == {"codec_name": "h264", "width": 1920, "height": 1080}
        deadline = time.monotonic() + 20
        while not (nginx.root / "hls" / "table.m3u8").exists():
            assert time.monotonic() < deadline, "nginx wrote no HLS playlist"
            time.sleep(0.2)
        assert probe(nginx.hls_url("table")) == {"codec_name": "h264", "width": 1920, "height": 1080}
        # The RTSP RECORD server receives frames at the full size.
        t0, n0 = time.monotonic(), record.frames
        time.sleep(2)
        rate = (record.frames - n0) / (time.monotonic() - t0)
        assert rate >= 20, f"RTSP RECORD server got {rate:.1f} frames/s"
        assert record.size() == (1920, 1080)

        # The unreachable target retries with growing delays; the MJPEG output meanwhile keeps its rate.
        st = publish_status(api)[2]
        assert st["state"] in ("retrying", "connecting") and st["failures"] >= 1, st
        assert "Connection refused" in (st["last_error"] or ""), st
        assert f"publish {dead}:" in svc.log() and "retrying in" in svc.log()
        reader = MjpegReader(ports["medium"], "/")
        reader.start()
        time.sleep(1)
        t0 = time.monotonic()
        time.sleep(3)
        fps = reader.frames_between(t0, t0 + 3) / 3
        reader.close()
        assert fps >= 25, f"MJPEG medium at {fps:.1f} fps while a publish target is unreachable"

        # nginx restarts: publishing resumes by itself and nginx re-serves the stream again.
        before = publish_status(api)[0]["attempts"]
        nginx.stop()
        wait_state(api, 0, "retrying", timeout=10)
        time.sleep(1.0)
        nginx.start()
        st = wait_state(api, 0, "live", timeout=20, min_attempts=before + 1)
        assert probe(nginx.rtmp_url("table")) == {"codec_name": "h264", "width": 1920, "height": 1080}, st
        assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200
        metrics = httpx.get(f"{api}/metrics", timeout=5).text
        assert f'cuecast_publish_live{{url="{nginx.rtmp_url("table")}"}} 1.0' in metrics
        assert f'cuecast_publish_live{{url="{dead}"}} 0.0' in metrics
    finally:
        svc.terminate()
        svc.close()
        record.stop()
