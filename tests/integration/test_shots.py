"""Shots, as a backend and a coach use them: the test camera paints each frame's number (through the demo
lens, read back after the correction), the backend reads frames (seq -> the number it saw), posts events at
random frames over HTTP and through `consumer.post_event`; each event's clip, decoded by ffmpeg, shows at
frames[k] exactly the picture the backend had for that seq (0 frames off), starts on the asked frame, is ready
within `after` + 1 s, and events and clips survive a restart. The live feed (SSE, read with curl) carries the
events and their clips; bad requests get clear errors."""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.testcam.lenscode import LensCode, read_code
from tests.helpers.service import ServiceProcess
from tests.helpers.testcam import CameraRig, serve_camera

W, H = 1280, 720


def decode(mp4: Path) -> list[np.ndarray]:
    """Every frame ffmpeg shows of `mp4` (it honours the edit list, as Chromium and ffplay do)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp4), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                         capture_output=True, timeout=60, check=True).stdout
    return list(np.frombuffer(out, np.uint8).reshape(-1, H, W, 3))


def start(cam: CameraRig, tmp: Path) -> tuple[ServiceProcess, str, Path]:
    svc, api, sock, _ports = serve_camera(cam, tmp, W, H, CUECAST_REPLAY__ENABLED="true",
                                          CUECAST_REPLAY__DIR=str(tmp / "clips"), CUECAST_REPLAY__SECONDS="20",
                                          CUECAST_RTSP__ENABLED="false", CUECAST_MJPEG__LOW__ENABLED="false",
                                          CUECAST_H264__BITRATE_KBPS="6000")
    return svc, api, sock


def seen_by_backend(sock: Path, seconds: float) -> dict[int, int]:
    """seq -> the number painted in the picture, for every frame the backend got in `seconds`."""
    lens = LensCode(W, H)
    seen: dict[int, int] = {}
    end = time.monotonic() + seconds
    with GStreamerFrameConsumer(sock) as c:
        for frame, info in c.frames(timeout=2.0, copy=False):
            n = read_code(frame, lens.corrected_centres)
            if not info.placeholder and n is not None:
                seen[info.seq] = n
            if time.monotonic() > end:
                break
    return seen


def test_twenty_shots_give_their_exact_frames_and_survive_a_restart(tmp_path: Path) -> None:
    lens = LensCode(W, H)
    with CameraRig(tmp_path) as cam:
        svc, api, sock = start(cam, tmp_path)
        try:
            seen = seen_by_backend(sock, 8.0)
            assert len(seen) > 150, f"the backend read {len(seen)} numbered frames in 8 s"
            seqs = sorted(seen)[30:-10]
            rng = random.Random(21)
            events = []
            for i, seq in enumerate(sorted(rng.sample(seqs, 20))):
                body = {"kind": "shot", "frame": seq, "label": f"shot {i}", "clip": {"before": 0.5, "after": 0.5},
                        "data": {"overlay": {"units": "px", "always": [[[100, 100], [400, 300]]]}}}
                r = httpx.post(f"{api}/api/events", json=body, timeout=10)
                assert r.status_code == 201, r.text
                ev = r.json()
                assert ev["clip"]["status"] == "pending" and ev["clip"]["id"], ev
                assert ev["time"] is not None, "the event's frame is kept: its capture time is known"
                events.append(ev)
            off, checked = [], 0
            for ev in events:
                deadline = time.monotonic() + 30
                while (got := httpx.get(f"{api}/api/events/{ev['id']}", timeout=5).json())["clip"]["status"] == \
                        "pending" and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert got["clip"]["status"] == "ready", got
                clip = httpx.get(f"{api}/api/clips/{got['clip']['id']}", timeout=5).json()
                assert clip["event"] == ev["id"]
                mp4 = tmp_path / f"{clip['id']}.mp4"
                mp4.write_bytes(httpx.get(f"{api}{clip['url']}", timeout=10).content)
                pictures = decode(mp4)
                assert len(pictures) == len(clip["frames"]) == clip["frame_count"], \
                    f"{len(pictures)} frames decoded, {len(clip['frames'])} listed"
                # The first frame shown is the first captured at or after the asked start (0.5 s before).
                first = clip["frames"][0]
                assert ev["time"] - 0.5 <= first["capture_time"] < ev["time"] - 0.5 + 1 / 25, (first, ev["time"])
                k = next(i for i, f in enumerate(clip["frames"]) if f["seq"] == ev["frame"])
                number = read_code(pictures[k], lens.corrected_centres)
                off.append(0 if number == seen[ev["frame"]] else 1)
                checked += 1
                # Each listed frame is the backend's picture of that seq (where it read one).
                wrong = [f["seq"] for f, p in zip(clip["frames"], pictures, strict=True)
                         if f["seq"] in seen and read_code(p, lens.corrected_centres) not in (None, seen[f["seq"]])]
                assert not wrong, f"clip {clip['id']}: frames {wrong} show another picture"
                first_shown = read_code(pictures[0], lens.corrected_centres)
                assert first_shown == seen.get(clip["frames"][0]["seq"], first_shown)
                assert abs(clip["duration"] - 1.0) < 0.15, clip["duration"]
            assert checked == 20 and sum(off) == 0, f"{sum(off)} of 20 clips show another picture at the event's frame"

            # The live feed (as a browser's EventSource gets it) and a clip ready within `after` + 1 s.
            feed = subprocess.Popen(["curl", "-sN", "--max-time", "8", f"{api}/api/events/stream"],
                                    stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)
            with GStreamerFrameConsumer(sock) as c:
                _frame, info = next(iter(c.frames(timeout=2.0)))
                t0 = time.monotonic()
                made = c.post_event("shot", frame=info.seq, before=1, after=2, label="live", api=api, wait=True)
                took = time.monotonic() - t0
            print(f"clip of a live event ready {took:.2f} s after it was posted (after = 2 s)")
            assert made["clip"]["status"] == "ready", made
            assert took <= 2 + 1, f"the clip was ready {took:.2f} s after the event (after = 2 s)"
            out, _ = feed.communicate(timeout=15)
            names = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("event: ")]
            datas = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("data: ")]
            assert names == ["event", "clip"], out
            assert datas[0]["id"] == made["id"] and datas[1]["clip"]["status"] == "ready"

            metrics = httpx.get(f"{api}/metrics", timeout=5).text
            assert 'cuecast_events_posted_total{kind="shot"} 21.0' in metrics, metrics[-2000:]
        finally:
            svc.terminate(15)
            svc.close()

        # After a restart: the same events, their clips, in order; bad requests say what is wrong.
        svc, api, sock = start(cam, tmp_path)
        try:
            listed = httpx.get(f"{api}/api/events", timeout=5).json()
            assert [e["id"] for e in listed] == sorted(e["id"] for e in listed) and len(listed) == 21
            assert {e["id"] for e in events} <= {e["id"] for e in listed}
            clip_id = listed[0]["clip"]["id"]
            again = httpx.get(f"{api}/api/clips/{clip_id}", timeout=5).json()
            assert again["frames"] and again["event"] == listed[0]["id"]
            assert httpx.get(f"{api}/api/events", params={"kind": "nothing"}, timeout=5).json() == []

            gone = httpx.post(f"{api}/api/events", json={"kind": "shot", "frame": 1, "clip": {}}, timeout=10).json()
            assert gone["clip"]["status"] in ("pending", "failed")
            bad = httpx.post(f"{api}/api/events", json={"kind": "shot", "frame": 3, "time": 5.0}, timeout=5)
            assert bad.status_code == 422 and "not both" in bad.text
            bad = httpx.post(f"{api}/api/events", json={"kind": "", "frame": 3}, timeout=5)
            assert bad.status_code == 422 and "kind" in bad.text
            bad = httpx.post(f"{api}/api/clips", json={"frame": 10**9, "before": 1}, timeout=10)
            assert bad.status_code == 422 and "not known" in bad.text, bad.text
            assert httpx.delete(f"{api}/api/events/{listed[0]['id']}", timeout=5).status_code == 204
            assert httpx.get(f"{api}/api/events/{listed[0]['id']}", timeout=5).status_code == 404
        finally:
            svc.terminate(15)
            svc.close()


def rtsp_frames(url: str, seconds: float) -> list[tuple[float | None, np.ndarray]]:
    """(capture time from the RTP header extension, picture) of every frame a plain GStreamer RTSP client
    decodes in `seconds` (rtspsrc's depayloader reads the extension the SDP announces by itself)."""
    from cuecast.core.gst import Gst

    p = Gst.parse_launch(f"rtspsrc location={url} latency=0 protocols=tcp ! rtph264depay ! avdec_h264 "
                         "! videoconvert ! video/x-raw,format=BGR ! appsink name=s sync=false max-buffers=200")
    sink, ntp = p.get_by_name("s"), Gst.Caps.from_string("timestamp/x-ntp")
    p.set_state(Gst.State.PLAYING)
    out = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sample = sink.emit("try-pull-sample", Gst.SECOND)
            if sample is None:
                continue
            buf = sample.get_buffer()
            meta = buf.get_reference_timestamp_meta(ntp)
            ok, info = buf.map(Gst.MapFlags.READ)
            assert ok
            img = np.frombuffer(info.data, np.uint8)[: W * H * 3].reshape(H, W, 3).copy()
            buf.unmap(info)
            out.append((None if meta is None else meta.timestamp / 1e9 - 2208988800, img))
    finally:
        p.set_state(Gst.State.NULL)
    return out


def test_an_rtsp_client_reads_each_frames_capture_time(tmp_path: Path) -> None:
    import threading

    lens = LensCode(W, H)
    with CameraRig(tmp_path) as cam:
        svc, _api, sock, ports = serve_camera(cam, tmp_path, W, H, CUECAST_MJPEG__LOW__ENABLED="false")
        try:
            backend: dict[int, float] = {}  # the number painted in the picture -> the backend's capture time

            def read_backend() -> None:
                with GStreamerFrameConsumer(sock) as c:
                    end = time.monotonic() + 7
                    for frame, info in c.frames(timeout=2.0, copy=False):
                        n = read_code(frame, lens.corrected_centres)
                        if n is not None and not info.placeholder:
                            backend[n] = info.capture_time
                        if time.monotonic() > end:
                            break

            reader = threading.Thread(target=read_backend)
            reader.start()
            frames = rtsp_frames(f"rtsp://127.0.0.1:{ports['rtsp']}/high", 5.0)
            reader.join()
        finally:
            svc.terminate(15)
            svc.close()
    assert len(frames) >= 100, f"{len(frames)} RTSP frames in 5 s"
    stamped = [(t, read_code(img, lens.corrected_centres)) for t, img in frames]
    assert all(t is not None for t, _n in stamped), "every RTSP frame carries its capture time"
    errors = [abs(t - backend[n]) * 1000 for t, n in stamped if n is not None and n in backend and t is not None]
    assert len(errors) >= 0.8 * len(frames), f"{len(errors)} of {len(frames)} frames matched to the backend's"
    print(f"RTSP capture time vs the backend's: {len(errors)} frames, max {max(errors):.4f} ms")
    assert max(errors) < 1.0, f"an RTSP frame's capture time is {max(errors):.3f} ms off the backend's"
