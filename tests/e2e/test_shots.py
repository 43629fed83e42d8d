"""The shot timeline in real headless Chromium: the backend posts a shot (with an overlay) while the page is
open; it appears in the timeline over the live feed (SSE), its clip becomes playable, a click plays it beside
the live picture, slow motion plays at a quarter of the speed, and frame steps land on exactly the frames the
clip lists: the picture Chromium shows at each step carries the number the backend saw for that seq. The
backend's trajectory is drawn on the clip, in frame pixels and in table millimetres."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.testcam.lenscode import LensCode, read_code
from tests.conftest import ARTIFACTS
from tests.helpers.browser import Browser
from tests.helpers.testcam import CameraRig, serve_camera

W, H = 1280, 720


BROWSER_FLAGS = ["--autoplay-policy=no-user-gesture-required"]  # for the browser fixture (conftest.py)


def shown_number(browser: Browser, centres: list[list[float]]) -> int | None:
    """The number painted in the clip frame Chromium shows now (read from the <video> drawn on a canvas)."""
    pixels = browser.eval(f"""(() => {{
        const v = document.getElementById('clipvideo'), c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(v, 0, 0);
        return {json.dumps(centres)}.map(([x, y]) => {{
            const d = ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data; return [d[2], d[1], d[0]]; }});
    }})()""")
    import numpy as np

    img = np.array([pixels], np.uint8)  # one row: block k at x = k
    return read_code(img, np.array([[k, 0] for k in range(len(pixels))], float))


def test_timeline_slow_motion_frame_steps_and_overlay(tmp_path: Path, browser: Browser) -> None:
    lens = LensCode(W, H)
    centres = lens.corrected_centres.tolist()
    with CameraRig(tmp_path) as cam:
        svc, api, sock, _ports = serve_camera(cam, tmp_path, W, H, CUECAST_REPLAY__ENABLED="true",
                                              CUECAST_REPLAY__DIR=str(tmp_path / "clips"),
                                              CUECAST_REPLAY__SECONDS="20", CUECAST_RTSP__ENABLED="false",
                                              CUECAST_MJPEG__LOW__ENABLED="false", CUECAST_H264__BITRATE_KBPS="6000")
        try:
            table = {"corners": [[200, 100], [1080, 100], [1080, 620], [200, 620]], "size": "2540x1270"}
            assert httpx.put(f"{api}/api/table", json=table, timeout=10).status_code == 200
            browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1,
                         mobile=False)
            browser.goto(f"{api}/")
            browser.wait_for("window.cuecast.shots && window.cuecast.shots.feed && "
                             "window.cuecast.shots.feed.readyState === 1")
            seen: dict[int, int] = {}
            with GStreamerFrameConsumer(sock, api=api) as c:
                end = time.monotonic() + 4
                for frame, info in c.frames(timeout=2.0, copy=False):
                    n = read_code(frame, lens.corrected_centres)
                    if n is not None and not info.placeholder:
                        seen[info.seq] = n
                    if time.monotonic() > end:
                        break
                shot = sorted(seen)[len(seen) // 2]
                overlay = {"units": "px", "color": "#ff00ff", "always": [[[100, 360], [1180, 360]]],
                           "frames": {str(shot): [[[640, 100], [640, 620]]]}}
                event = c.post_event("shot", frame=shot, before=1, after=1, label="break", data={"overlay": overlay})
            # It shows up by itself (SSE), and becomes playable when its clip is written.
            browser.wait_for(f"!!document.querySelector('#shots li[data-id=\"{event['id']}\"]')", timeout=10)
            browser.wait_for(f"document.querySelector('#shots li[data-id=\"{event['id']}\"] .state').textContent"
                             " === '▶'", timeout=15)
            assert browser.eval("window.cuecast.shots.received") >= 2  # the event, then its clip
            browser.eval(f"document.querySelector('#shots li[data-id=\"{event['id']}\"]').click()")
            browser.wait_for("!document.getElementById('clipbox').hidden && "
                             "document.getElementById('clipvideo').readyState >= 2", timeout=20)
            clip = httpx.get(f"{api}/api/clips/{event['clip']['id']}", timeout=5).json()

            # Slow motion: a quarter of the speed, measured on the element's own clock.
            browser.eval("document.querySelector('#clipbar [data-rate=\"0.25\"]').click()")
            browser.wait_for("!document.getElementById('clipvideo').paused", timeout=10)
            t0, w0 = browser.eval("document.getElementById('clipvideo').currentTime"), time.monotonic()
            time.sleep(2.0)
            t1, w1 = browser.eval("document.getElementById('clipvideo').currentTime"), time.monotonic()
            rate = (t1 - t0) / (w1 - w0)
            assert 0.15 <= rate <= 0.32, f"played {rate:.2f} s of clip per second at 1/4 speed"
            assert browser.eval("document.getElementById('clipvideo').playbackRate") == 0.25

            # Frame steps: from the first frame, each step shows exactly the next listed frame.
            browser.eval("(() => { const v = document.getElementById('clipvideo'); v.pause(); v.currentTime = 0; })()")
            browser.wait_for("!document.getElementById('clipvideo').seeking", timeout=10)
            k_shot = next(i for i, f in enumerate(clip["frames"]) if f["seq"] == shot)
            checked = 0
            for k in range(k_shot + 3):
                if k:
                    browser.eval("document.querySelector('#clipbar [data-step=\"1\"]').click()")
                browser.wait_for(f"window.cuecast.replay.frame === {k} && "
                                 "!document.getElementById('clipvideo').seeking", timeout=10)
                seq = clip["frames"][k]["seq"]
                if k >= k_shot - 2 and seq in seen:
                    number = shown_number(browser, centres)
                    assert number == seen[seq], f"step {k}: Chromium shows {number}, frame {seq} is {seen[seq]}"
                    checked += 1
            assert checked >= 4
            badge = browser.eval("document.getElementById('clipbadge').textContent")
            assert f"frame {clip['frames'][k_shot + 2]['seq']}" in badge, badge

            # The overlay: `always` plus this frame's trajectory, drawn in the overlay colour over the picture.
            assert browser.eval("window.cuecast.replay.drawn") == 2
            browser.eval("document.querySelector('#clipbar [data-step=\"-1\"]').click()")
            browser.eval("document.querySelector('#clipbar [data-step=\"-1\"]').click()")
            browser.eval("document.querySelector('#clipbar [data-step=\"-1\"]').click()")
            browser.wait_for(f"window.cuecast.replay.frame === {k_shot - 1}", timeout=10)
            assert browser.eval("window.cuecast.replay.drawn") == 1, "before the shot's frame only `always` shows"
            magenta = browser.eval("""(() => { const c = document.getElementById('clipoverlay');
                const d = c.getContext('2d').getImageData(0, Math.round(c.height / 2), c.width, 1).data;
                let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] < 60 && d[i + 2] > 200) n++;
                return n; })()""")
            assert magenta > 100, f"{magenta} overlay pixels on the picture's middle row"
            browser.screenshot(ARTIFACTS / "viewer-shot.png")

            # Millimetres on the table: a line along the table's long axis lands between its corners.
            with GStreamerFrameConsumer(sock, api=api) as c:
                mm = c.post_event("shot", frame=shot, before=0.5, after=0.5, label="mm", wait=True,
                                  data={"overlay": {"units": "mm", "color": "#00ffff",
                                                    "always": [[[0, 635], [2540, 635]]]}})
            assert mm["clip"]["status"] == "ready", mm
            browser.wait_for(f"document.querySelector('#shots li[data-id=\"{mm['id']}\"] .state').textContent"
                             " === '▶'", timeout=15)
            browser.eval(f"document.querySelector('#shots li[data-id=\"{mm['id']}\"]').click()")
            browser.wait_for("window.cuecast.replay.drawn === 1 && window.cuecast.replay.event.label === 'mm'",
                             timeout=20)
            cyan = browser.eval("""(() => { const c = document.getElementById('clipoverlay');
                const d = c.getContext('2d').getImageData(0, Math.round(c.height / 2), c.width, 1).data;
                const xs = [];
                for (let i = 0; i < d.length; i += 4) if (d[i] < 60 && d[i + 1] > 200 && d[i + 2] > 200) xs.push(i / 4);
                const r = document.getElementById('clipvideo').getBoundingClientRect();
                return [xs.length ? xs[0] / r.width : -1, xs.length ? xs[xs.length - 1] / r.width : -1]; })()""")
            # The table's corners are at x = 200 and 1080 of 1280: the line spans that part of the picture.
            assert abs(cyan[0] - 200 / 1280) < 0.02 and abs(cyan[1] - 1080 / 1280) < 0.02, cyan
        finally:
            svc.terminate(15)
            svc.close()
