"""Instant replay in real headless Chromium: the viewer's replay button saves the last 10 s, the clip shows
in the list and plays beside the live picture from start to end; a clip's URL plays in a bare <video> too
(seeking, which needs Range)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import ARTIFACTS
from tests.helpers.browser import Browser, click
from tests.helpers.service import ServiceProcess, http_env, wait_http

BROWSER_FLAGS = ["--autoplay-policy=no-user-gesture-required"]  # for the browser fixture (conftest.py)


def test_replay_button_saves_and_plays_the_last_10_seconds(tmp_path: Path, browser: Browser) -> None:
    env, ports = http_env(CUECAST_REPLAY__ENABLED="true", CUECAST_REPLAY__DIR=str(tmp_path / "clips"),
                          CUECAST_REPLAY__SECONDS="30")
    api = f"http://127.0.0.1:{ports['api']}"
    svc = ServiceProcess(["--source", "test:ball", "--width", "1280", "--height", "720", "--shm-socket",
                          str(tmp_path / "sock")], tmp_path / "svc.log", env=env)
    try:
        wait_http(f"{api}/healthz")
        browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
        browser.goto(f"{api}/")
        browser.wait_for("!document.getElementById('replaybtn').hidden")
        deadline = time.monotonic() + 30
        while httpx.get(f"{api}/api/status").json()["replay"]["seconds_held"] < 11:
            assert time.monotonic() < deadline, "the ring did not fill"
            time.sleep(0.5)
        box = browser.eval("(() => { const r = document.getElementById('replaybtn').getBoundingClientRect(); "
                           "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        click(browser, *box)
        browser.wait_for("document.querySelectorAll('#clips li').length === 1", timeout=20)
        clip = httpx.get(f"{api}/api/clips").json()[0]
        assert 10 <= clip["duration"] <= 11.2, clip
        # It plays beside the live picture, from start to end.
        browser.wait_for("!document.getElementById('clipbox').hidden && "
                         "document.getElementById('clipvideo').readyState >= 2", timeout=20)
        assert browser.eval("document.getElementById('pictures').classList.contains('two')")
        assert browser.eval("document.getElementById('clipvideo').videoWidth") == 1280
        assert abs(browser.eval("document.getElementById('clipvideo').duration") - clip["duration"]) < 0.2
        time.sleep(2)
        browser.screenshot(ARTIFACTS / "viewer-replay.png")
        assert browser.wait_for("document.getElementById('clipvideo').ended", timeout=30)
        assert browser.eval("document.getElementById('clipvideo').currentTime") >= clip["duration"] - 0.2
        # The live picture kept going meanwhile.
        assert browser.eval("document.getElementById('badge').textContent").startswith("live")

        # A bare <video> seeks in it (Range requests) and shows the frame there.
        browser.eval(f"""(() => {{ const v = document.createElement('video'); v.id = 'bare'; v.muted = true;
                      v.src = '{clip["url"]}'; document.body.append(v);
                      v.addEventListener('loadedmetadata', () => {{ v.currentTime = 7.5; }}); }})()""")
        browser.wait_for("(() => { const v = document.getElementById('bare'); "
                         "return v.readyState >= 2 && Math.abs(v.currentTime - 7.5) < 0.1 && !v.seeking; })()")
        assert browser.eval("document.getElementById('bare').error") is None
    finally:
        svc.terminate()
        svc.close()
