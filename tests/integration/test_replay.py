"""Instant replay through the real service: clips made over HTTP from the H.264 already encoded, checked with
curl (Range), ffprobe (h264 at the stream's size, increasing timestamps, the asked duration within one key-frame
interval), kept over a restart, removed by retention, and clear errors for a full disk, an unwritable
directory, a wrong request and a missing token. Once at the defaults (the demo at 1920x1080@30)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.service import ServiceProcess, http_env, wait_http

GOP_S = 1.0  # h264.keyframe_interval 30 at 30 fps


def start(tmp_path: Path, clips: Path, *args: str, name: str = "svc", **env: str) -> tuple[ServiceProcess, str]:
    e, ports = http_env(CUECAST_REPLAY__ENABLED="true", CUECAST_REPLAY__DIR=str(clips), CUECAST_REPLAY__SECONDS="20",
                        CUECAST_MJPEG__LOW__ENABLED="false", **env)
    svc = ServiceProcess(["--shm-socket", str(tmp_path / "sock"), *args], tmp_path / f"{name}.log", env=e)
    api = f"http://127.0.0.1:{ports['api']}"
    wait_http(f"{api}/healthz")
    return svc, api


def wait_held(api: str, seconds: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + seconds + 20
    held = 0.0
    while time.monotonic() < deadline:
        held = httpx.get(f"{api}/api/status", headers=headers).json()["replay"]["seconds_held"]
        if held >= seconds:
            return
        time.sleep(0.25)
    pytest.fail(f"the replay ring holds {held} s, not {seconds} s")


def probe(path: Path) -> tuple[dict[str, Any], list[float]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                          "stream=codec_name,width,height:packet=pts_time", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=30, check=True)
    info = json.loads(out.stdout)
    return info["streams"][0], [float(p["pts_time"]) for p in info["packets"]]


def post(api: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{api}/api/clips", json=body, headers=headers, timeout=90)


def check_clip(api: str, clip: dict[str, Any], asked: float, size: tuple[int, int], tmp_path: Path) -> None:
    """What a user checks: the MP4 is H.264 at the stream's size, plays in order, and lasts what was asked."""
    assert asked - 0.2 <= clip["duration"] <= asked + GOP_S + 0.2, clip
    mp4 = tmp_path / f"{clip['id']}.mp4"
    r = subprocess.run(["curl", "-sS", "-f", "-o", str(mp4), "-w", "%{content_type}", f"{api}{clip['url']}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "video/mp4"
    assert mp4.stat().st_size == clip["bytes"]
    stream, pts = probe(mp4)
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", *size)
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), "timestamps must increase"
    assert abs(pts[-1] - clip["duration"]) < 0.2
    assert mp4.read_bytes()[4:8] == b"ftyp" and b"moov" in mp4.read_bytes()[:4096], "fast start: moov first"


def test_clips_at_the_defaults_range_restart_and_delete(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    svc, api = start(tmp_path, clips, "--source", "demo")
    try:
        wait_held(api, 7)
        t0 = time.monotonic()
        r = post(api, {"seconds": 5, "label": "break shot"})
        assert r.status_code == 201, r.text
        first = r.json()
        took = time.monotonic() - t0
        assert took < 1.0, f"writing a 5 s clip took {took:.2f} s (bench/replay: a 30 s clip in under 0.1 s)"
        assert {"id", "label", "start", "duration", "bytes", "url"} <= first.keys()
        assert first["label"] == "break shot" and first["url"] == f"/api/clips/{first['id']}.mp4"
        check_clip(api, first, 5, (1920, 1080), tmp_path)

        # `after`: keeps recording, answers once the file holds it.
        t0 = time.monotonic()
        r = post(api, {"seconds": 2, "after": 2})
        assert r.status_code == 201, r.text
        assert time.monotonic() - t0 >= 2
        second = r.json()
        check_clip(api, second, 4, (1920, 1080), tmp_path)

        listed = httpx.get(f"{api}/api/clips").json()
        assert [c["id"] for c in listed] == [second["id"], first["id"]], "newest first"
        assert httpx.get(f"{api}/api/clips/{first['id']}").json() == first

        # Range, as a <video> seeking asks for it.
        part = subprocess.run(["curl", "-sS", "-D", "-", "-o", str(tmp_path / "part"), "-r", "100-1099",
                               f"{api}{first['url']}"], capture_output=True, text=True, timeout=30)
        assert " 206 " in part.stdout.splitlines()[0], part.stdout
        assert f"content-range: bytes 100-1099/{first['bytes']}" in part.stdout.lower()
        assert (tmp_path / "part").read_bytes() == (tmp_path / f"{first['id']}.mp4").read_bytes()[100:1100]

        status = httpx.get(f"{api}/api/status").json()["replay"]
        assert status["clips"] == 2 and status["clips_written"] == 2 and status["failures"] == 0
        assert 7 <= status["seconds_held"] <= 20 + GOP_S + 0.5
        metrics = httpx.get(f"{api}/metrics").text
        assert "cuecast_replay_clips_written_total 2.0" in metrics
        assert "cuecast_replay_seconds_held" in metrics

        # Wrong requests: named errors, nothing written.
        for bad in ({"seconds": 601}, {"seconds": 0}, {"seconds": "5"}, {"seconds": 5, "after": 61},
                    {"after": False}, {"seconds": 5, "colour": "red"}, {"label": "x" * 201}):
            r = post(api, bad)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["detail"][0]["loc"][-1] in bad, r.text  # names the field
        assert httpx.get(f"{api}/api/clips/../../etc/passwd").status_code == 404
        assert httpx.get(f"{api}/api/clips/20200101-000000-abcdef").status_code == 404
    finally:
        assert svc.terminate()[0] == 0
        svc.close()

    # A leftover of an interrupted write is never listed; the clips are there after a restart.
    (clips / ".tmp-20200101-000000-abcdef.mp4").write_bytes(b"\0" * 1000)
    (clips / "notes.json").write_text("not a clip")
    svc, api = start(tmp_path, clips, "--source", "test:ball", "--width", "1280", "--height", "720", name="again")
    try:
        listed = httpx.get(f"{api}/api/clips").json()
        assert [c["id"] for c in listed] == [second["id"], first["id"]]
        assert not (clips / ".tmp-20200101-000000-abcdef.mp4").exists()
        r = httpx.delete(f"{api}/api/clips/{first['id']}")
        assert r.status_code == 204
        assert httpx.get(f"{api}/api/clips/{first['id']}").status_code == 404
        assert httpx.get(f"{api}{first['url']}").status_code == 404
        assert not (clips / f"{first['id']}.mp4").exists()
    finally:
        svc.terminate()
        svc.close()


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    svc, api = start(tmp_path, clips, "--source", "test:ball", "--width", "640", "--height", "360",
                     CUECAST_REPLAY__MAX_CLIPS="2")
    try:
        wait_held(api, 2)
        made = []
        for i in range(3):
            r = post(api, {"seconds": 1 if i < 2 else 600, "label": f"shot {i}"})
            assert r.status_code == 201, r.text
            made.append(r.json()["id"])
        assert r.json()["duration"] <= 20 + GOP_S + 0.2, "beyond replay.seconds: what is kept"
        listed = [c["id"] for c in httpx.get(f"{api}/api/clips").json()]
        assert listed == made[:0:-1], "the oldest goes beyond replay.max_clips"
        assert sorted(p.name for p in clips.iterdir()) == sorted(f"{i}{s}" for i in made[1:] for s in (".json", ".mp4"))
        assert "removed (replay.max_clips" in svc.log()
    finally:
        svc.terminate()
        svc.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    """A 64 KiB file system: clips do not fit."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True, timeout=10)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=10)


def test_full_disk_and_unwritable_directory_are_clear_errors(tmp_path: Path, tiny_disk: Path) -> None:
    assert os.geteuid() == 0, "the test suite runs as root (make test)"
    svc, api = start(tmp_path, tiny_disk, "--source", "test:ball", "--width", "1280", "--height", "720")
    try:
        wait_held(api, 3)
        r = post(api, {"seconds": 3})
        assert r.status_code == 507, r.text
        assert "no space left" in r.json()["detail"] and str(tiny_disk) in r.json()["detail"]
        assert httpx.get(f"{api}/api/clips").json() == []
        assert list(tiny_disk.iterdir()) == [], "nothing half-written is left"
        st = httpx.get(f"{api}/api/status").json()
        assert st["replay"]["failures"] == 1 and "no space" in st["replay"]["last_error"]
        assert "cuecast_replay_failures_total 1.0" in httpx.get(f"{api}/metrics").text
        assert st["healthy"] and svc.proc.poll() is None
    finally:
        svc.terminate()
        svc.close()

    (tmp_path / "a-file").write_text("")
    svc, api = start(tmp_path, tmp_path / "a-file" / "clips", "--source", "test:ball", "--width", "640",
                     "--height", "360", name="unwritable")
    try:
        wait_held(api, 1)
        r = post(api, {"seconds": 1})
        assert r.status_code == 503, r.text
        assert "replay.dir" in r.json()["detail"] and "cannot be created" in r.json()["detail"]
        assert "replay.dir" in svc.log()
    finally:
        svc.terminate()
        svc.close()


def test_clips_are_guarded_like_controls_and_streams(tmp_path: Path) -> None:
    token = "s3cret-token-for-tests"
    svc, api = start(tmp_path, tmp_path / "clips", "--source", "test:ball", "--width", "640", "--height", "360",
                     CUECAST_AUTH__TOKEN=token, CUECAST_AUTH__PROTECT_STREAMS="true")
    auth = {"Authorization": f"Bearer {token}"}
    try:
        wait_held(api, 1, auth)
        assert post(api, {"seconds": 1}).status_code == 401
        r = post(api, {"seconds": 1}, auth)
        assert r.status_code == 201, r.text
        clip = r.json()
        assert httpx.get(f"{api}/api/clips").status_code == 401
        assert httpx.get(f"{api}{clip['url']}").status_code == 401
        assert httpx.get(f"{api}{clip['url']}?token={token}").content[4:8] == b"ftyp"  # <video src> carries it so
        assert httpx.delete(f"{api}/api/clips/{clip['id']}").status_code == 401
        assert httpx.delete(f"{api}/api/clips/{clip['id']}", headers=auth).status_code == 204
    finally:
        svc.terminate()
        svc.close()


def test_replay_off_says_how_to_turn_it_on(tmp_path: Path) -> None:
    e, ports = http_env()
    svc = ServiceProcess(["--source", "test:ball", "--width", "640", "--height", "360", "--shm-socket",
                          str(tmp_path / "sock")], tmp_path / "svc.log", env=e)
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        wait_http(f"{api}/healthz")
        r = post(api, {"seconds": 5})
        assert r.status_code == 404 and "replay.enabled" in r.json()["detail"]
        assert httpx.get(f"{api}/api/status").json()["replay"] == {"enabled": False}
    finally:
        svc.terminate()
        svc.close()


def test_clips_that_keep_recording_block_nothing_else(tmp_path: Path) -> None:
    """Eight clips waiting for their `after` seconds, a ninth refused: the API answers meanwhile."""
    import concurrent.futures

    svc, api = start(tmp_path, tmp_path / "clips", "--source", "test:ball", "--width", "640", "--height", "360")
    try:
        wait_held(api, 1)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            waiting = [pool.submit(post, api, {"seconds": 1, "after": 4}) for _ in range(8)]
            time.sleep(1.5)
            r = post(api, {"seconds": 1})
            assert r.status_code == 429 and r.headers["retry-after"], r.text
            t0 = time.monotonic()
            assert httpx.put(f"{api}/api/controls", json={"brightness": 0.1}).status_code == 200
            assert httpx.get(f"{api}/api/table").status_code == 200
            assert httpx.get(f"{api}/api/clips").status_code == 200
            assert time.monotonic() - t0 < 2, "the API waited for the clips"
            done = [f.result() for f in waiting]
        assert [d.status_code for d in done] == [201] * 8
        assert all(4 <= d.json()["duration"] <= 5 + GOP_S + 0.2 for d in done), [d.json() for d in done]
    finally:
        svc.terminate()
        svc.close()
