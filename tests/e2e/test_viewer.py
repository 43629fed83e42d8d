"""The web viewer in real headless Chromium: the picture shows and moves, controls reach the API,
the stream comes back by itself after the service restarts, and the page fits a phone."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import ARTIFACTS
from tests.helpers.browser import Browser
from tests.helpers.service import ServiceProcess, http_env, wait_http

# A small sample of the shown picture, drawn through a canvas (same origin, so readable).
SAMPLE_JS = """(() => {
  const img = document.getElementById('stream');
  if (!img || !img.naturalWidth) return null;
  const c = document.createElement('canvas'); c.width = 64; c.height = 36;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0, 64, 36);
  const d = g.getImageData(0, 0, 64, 36).data; let s = '';
  for (let i = 0; i < d.length; i += 4) s += d[i] + ',';
  return s;
})()"""


def start(tmp_path: Path, env: dict[str, str], name: str) -> ServiceProcess:
    # The defaults: 1920x1080@30, the demo source with its lens corrected, as `make run` serves it.
    svc = ServiceProcess(["--source", "demo", "--shm-socket", str(tmp_path / "sock")], tmp_path / f"{name}.log",
                         env=env)
    wait_http(f"http://127.0.0.1:{env['CUECAST_HTTP__PORT']}/healthz")
    return svc


def test_viewer_shows_live_picture_and_sends_controls(tmp_path: Path, browser: Browser) -> None:
    env, ports = http_env()
    api = f"http://127.0.0.1:{ports['api']}"
    svc = start(tmp_path, env, "first")
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)
        browser.goto(f"{api}/")
        first = browser.wait_for(SAMPLE_JS)
        time.sleep(1.0)
        second = browser.wait_for(SAMPLE_JS)
        assert first != second, "the picture did not change over 1 s"
        assert browser.wait_for("document.getElementById('badge').textContent.startsWith('live')")
        assert browser.eval("document.getElementById('stream').naturalWidth") == 1280  # the medium stream
        # Stats come from /api/status.
        assert browser.wait_for("document.querySelector('#stats').textContent.includes('playing')")
        browser.screenshot(ARTIFACTS / "viewer-desktop.png")

        # Move the brightness slider like a person would: the value reaches the API.
        browser.eval("""(() => { const s = document.getElementById('ctl-brightness');
                         s.value = '-0.25'; s.dispatchEvent(new Event('input')); })()""")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if httpx.get(f"{api}/api/controls", timeout=5).json()["brightness"] == -0.25:
                break
            time.sleep(0.2)
        assert httpx.get(f"{api}/api/controls", timeout=5).json()["brightness"] == -0.25

        # Only one stream connection at a time, whatever the quality switches.
        browser.eval("(() => { const q = document.getElementById('quality'); q.value = 'low'; "
                     "q.dispatchEvent(new Event('change')); })()")
        time.sleep(2)
        st = httpx.get(f"{api}/api/status", timeout=5).json()["outputs"]
        assert st["mjpeg_low"]["clients"] == 1 and st["mjpeg_medium"]["clients"] == 0, st

        # Phone-sized screen: the picture still fits the width.
        browser.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        time.sleep(0.5)
        width = browser.eval("document.getElementById('stream').getBoundingClientRect().width")
        assert 300 <= width <= 390, width
        browser.screenshot(ARTIFACTS / "viewer-phone.png")

        # The service restarts: the page reconnects by itself.
        svc.close()
        time.sleep(1.5)
        svc = start(tmp_path, env, "second")
        browser.wait_for("document.getElementById('badge').textContent.startsWith('live')", timeout=20)
        a = browser.wait_for(SAMPLE_JS)
        time.sleep(1.0)
        assert browser.wait_for(SAMPLE_JS) != a
    finally:
        svc.close()
