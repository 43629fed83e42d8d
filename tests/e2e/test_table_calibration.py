"""Calibrating the table in the viewer, as a person would with a mouse: open the panel, click the playing
surface's four corners on the live camera picture, look at the grid preview, save. The service applies and
keeps the table (GET /api/table), and the corners are where the clicks put them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import ARTIFACTS
from tests.helpers.browser import Browser, click
from tests.helpers.service import ServiceProcess, http_env, wait_http


def test_click_the_corners_preview_and_save(tmp_path: Path, browser: Browser) -> None:
    cfg = tmp_path / "cuecast.yaml"
    cfg.write_text("shm:\n  view: table\n")
    env, ports = http_env()
    api = f"http://127.0.0.1:{ports['api']}"
    svc = ServiceProcess(["--config", str(cfg), "--source", "demo", "--shm-socket", str(tmp_path / "sock")],
                         tmp_path / "svc.log", env=env)
    try:
        wait_http(f"{api}/healthz")
        demo = httpx.get(f"{api}/api/table", timeout=5).json()["corners"]  # the demo table's true corners
        browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=1100, deviceScaleFactor=1, mobile=False)
        browser.goto(f"{api}/")
        browser.eval("document.getElementById('calopen').click()")
        browser.wait_for("document.getElementById('calframe').naturalWidth === 1920")
        rect = browser.eval("(() => { const f = document.getElementById('calframe'); f.scrollIntoView();"
                            " const r = f.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
        left, top, width, height = rect
        for x, y in demo:  # top-left, top-right, bottom-right, bottom-left
            click(browser, left + (x + 0.5) * width / 1920, top + (y + 0.5) * height / 1080)
        browser.wait_for("document.getElementById('calmsg').textContent.includes('4 corners')")
        browser.eval("document.getElementById('calsize').value = '9ft';"
                     "document.getElementById('calpreviewbtn').click()")
        browser.wait_for("document.getElementById('calpreview').naturalWidth === 1994", timeout=20)
        browser.screenshot(ARTIFACTS / "viewer-table-calibration.png")
        browser.eval("document.getElementById('calsave').click()")
        browser.wait_for("document.getElementById('calmsg').textContent.startsWith('saved')", timeout=20)
        saved = httpx.get(f"{api}/api/table", timeout=5).json()
        scale = 1920 / width  # a click lands within about one screen pixel
        for (x, y), (sx, sy) in zip(demo, saved["corners"], strict=True):
            assert abs(x - sx) <= 1.5 * scale and abs(y - sy) <= 1.5 * scale, (demo, saved["corners"])
        assert saved["size_mm"] == [2540.0, 1270.0]
        assert (tmp_path / "table.yaml").is_file() and "calibration:" in cfg.read_text()  # kept over a restart
        deadline = time.monotonic() + 5
        while "table calibrated over the API" not in svc.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "table calibrated over the API" in svc.log()
    finally:
        svc.close()
