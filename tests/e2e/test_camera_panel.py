"""The viewer's Camera panel on a UVC camera (the test camera), used as a venue would: the panel is built from
what the device reports, exposure is greyed out with the reason while auto exposure is on, switching to
manual (a key on the menu) makes it active, the slider is set with the mouse and saved as it is let go, the
mains frequency is chosen, and the device, the config file and a reloaded page all show the same values."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.conftest import ARTIFACTS
from tests.helpers.browser import Browser
from tests.helpers.service import ServiceProcess, http_env, wait_http
from tests.helpers.testcam import CameraRig


def press(browser: Browser, key: str, code: int) -> None:
    """A real key press on the focused element."""
    for kind in ("rawKeyDown", "keyUp"):
        browser.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code,
                     nativeVirtualKeyCode=code)


def row(name: str) -> str:
    return f"document.querySelector('.camctl[data-name={name}]')"


def test_camera_panel_sets_exposure_and_mains_frequency_that_stick(tmp_path: Path, browser: Browser) -> None:
    with CameraRig(tmp_path) as cam:
        cfg = tmp_path / "cuecast.yaml"
        cfg.write_text("source:\n  uri: v4l2:///dev/video0\n  width: 640\n  height: 480\n")
        env, ports = http_env(CUECAST_RTSP__ENABLED="false")
        api = f"http://127.0.0.1:{ports['api']}"
        svc = ServiceProcess(["--config", str(cfg), "--shm-socket", str(tmp_path / "sock")], tmp_path / "svc.log",
                             env={**cam.own_env, **env})

        def device(name: str) -> str:
            r = cam.run("v4l2-ctl", "-d", "/dev/video0", "--get-ctrl", name)
            return r.stdout.split(":", 1)[1].split()[0]  # the value (v4l2-ctl may add a menu entry's name)

        try:
            wait_http(f"{api}/healthz")
            browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1,
                         mobile=False)
            browser.goto(f"{api}/")
            browser.wait_for(f"!document.getElementById('camerapanel').hidden && !!{row('exposure_time_absolute')}")
            info = browser.eval("document.getElementById('caminfo').textContent")
            assert info.startswith("USB Fisheye Camera") and "640×480" in info, info
            # Both kinds are named, so nobody confuses the camera's settings with the software picture controls.
            headings = browser.eval("[...document.querySelectorAll('aside h2')].map(h => h.textContent)")
            assert "Camera (the device's own settings)" in headings
            assert "Picture (in software, after the camera)" in headings

            # Auto exposure on: the manual exposure is greyed out, and the panel says what makes it active.
            exposure = "document.getElementById('cam-exposure_time_absolute')"
            greyed = f"{exposure}.disabled && {row('exposure_time_absolute')}.classList.contains('inactive')"
            assert browser.eval(greyed)
            why = browser.eval(f"{row('exposure_time_absolute')}.title")
            assert why == "set auto exposure to Manual Mode to change it", why

            # Manual mode with a key on the menu (Manual Mode is listed before Aperture Priority Mode).
            browser.eval("document.getElementById('cam-auto_exposure').focus()")
            press(browser, "ArrowUp", 38)
            browser.wait_for(f"!{exposure}.disabled", timeout=15)
            assert device("auto_exposure") == "1"

            # The slider, with the mouse: its thumb dragged to the right; nothing is sent until it is let go.
            left, top, width, height = browser.eval(f"(r => [r.left, r.top, r.width, r.height])"
                                                    f"({exposure}.getBoundingClientRect())")
            y = top + height / 2
            x = left + 8 + (156 - 1) / 4999 * (width - 16)  # the thumb (16 px wide) at the value 156
            browser.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
            for step in range(1, 7):
                browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x + step, y=y, button="left")
            dragged = int(browser.eval(f"{exposure}.value"))
            assert dragged > 156, dragged
            time.sleep(0.5)
            assert device("exposure_time_absolute") == "156", "sent before the slider was let go"
            browser.call("Input.dispatchMouseEvent", type="mouseReleased", x=x + 6, y=y, button="left", clickCount=1)
            browser.wait_for("document.getElementById('cammsg').textContent.includes('exposure time')", timeout=15)
            chosen = int(browser.eval(f"{exposure}.value"))
            assert chosen == dragged and device("exposure_time_absolute") == str(chosen)

            # Mains at 60 Hz: the next entry after 50 Hz.
            browser.eval("document.getElementById('cam-power_line_frequency').focus()")
            press(browser, "ArrowDown", 40)
            browser.wait_for("document.getElementById('cammsg').textContent.includes('power line frequency 2')",
                             timeout=15)
            assert device("power_line_frequency") == "2"
            assert "saved" in browser.eval("document.getElementById('cammsg').textContent")
            browser.screenshot(ARTIFACTS / "viewer-camera.png")

            # Kept: in the config file, and a reloaded page shows what the device reports.
            text = cfg.read_text()
            assert "auto_exposure: 1" in text and f"exposure_time_absolute: {chosen}" in text, text
            assert "power_line_frequency: 2" in text
            browser.goto(f"{api}/?again=1")
            browser.wait_for(f"!!{row('exposure_time_absolute')} && !{exposure}.disabled")
            shown = browser.eval("JSON.stringify(Object.fromEntries(window.cuecast.camera.data.controls"
                                 ".map(c => [c.name, c.value])))")
            assert json.loads(shown)["exposure_time_absolute"] == chosen
            assert browser.eval(f"{exposure}.value") == str(chosen)
            assert browser.eval("document.getElementById('cam-power_line_frequency').value") == "2"
            # The same values in /metrics, as read from the device.
            metrics = httpx.get(f"{api}/metrics", timeout=5).text
            assert f'cuecast_camera_control{{control="exposure_time_absolute"}} {chosen}.0' in metrics, metrics
        finally:
            svc.terminate()
            svc.close()
