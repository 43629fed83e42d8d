"""Calibrating the lens in the viewer, as a venue would: a camera (the test camera) whose lens differs from the
calibration in use shows a checkerboard held in one pose after another; in Chromium the person opens
"calibrate lens", starts, watches the guide (what is missing, the coverage, the live picture with the
corners), reloads the page halfway (the session is found again), solves when coverage is complete, reads
the result and applies. The backend's picture then has straight board lines (within 1 px), the config file
points at the new lens, and revert goes back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.lens.calibration import map_error
from cuecast.lens.model import FisheyeModel, load_model
from cuecast.media.demo import demo_calibration_path
from cuecast.testcam.board import TRUE_D, scaled_lens
from tests.conftest import ARTIFACTS
from tests.helpers.browser import Browser
from tests.helpers.service import ServiceProcess, http_env, wait_http
from tests.helpers.testcam import SPEC, CameraRig
from tests.integration.test_lens_session import straightness

LENS = "window.cuecast.lens.session"


def test_guided_lens_calibration_in_the_viewer(tmp_path: Path, browser: Browser) -> None:
    spec = tmp_path / "cam.yaml"
    spec.write_text(SPEC.read_text().replace("picture: demo", "picture: board"))
    cfg = tmp_path / "cuecast.yaml"
    sock = tmp_path / "sock"
    cfg.write_text(f"# the venue's config\nsource:\n  uri: v4l2:///dev/video0\n  width: 1280\n  height: 720\n"
                   f"fisheye:\n  calibration: {demo_calibration_path()}\nshm:\n  socket: {sock}\n"
                   "rtsp:\n  enabled: false\n")
    with CameraRig(tmp_path, spec) as cam:
        env, ports = http_env(CUECAST_MJPEG__LOW__ENABLED="false")
        api = f"http://127.0.0.1:{ports['api']}"
        svc = ServiceProcess(["--config", str(cfg)], tmp_path / "svc.log", env={**cam.own_env, **env})
        try:
            wait_http(f"{api}/healthz")
            browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=1100, deviceScaleFactor=1,
                         mobile=False)
            browser.goto(f"{api}/")
            browser.eval("document.getElementById('lensopen').click()")
            browser.wait_for("!document.getElementById('lenscal').hidden")
            browser.eval("document.getElementById('lensstart').click()")
            browser.wait_for(f"{LENS} && {LENS}.state === 'capturing' && "
                             "document.getElementById('lenslook').naturalWidth === 960", timeout=30)
            browser.wait_for("document.querySelectorAll('#lensmissing li').length > 0", timeout=30)
            first = browser.eval(f"{LENS}.id")
            words = browser.eval("document.getElementById('lensmissing').textContent")
            assert "board" in words, words
            browser.wait_for(f"{LENS}.views >= 3", timeout=60)

            browser.goto(f"{api}/")  # a reloaded page finds its session again
            browser.wait_for(f"!document.getElementById('lenscal').hidden && {LENS} && {LENS}.id === '{first}'",
                             timeout=20)
            t0 = time.monotonic()
            browser.wait_for(f"{LENS}.coverage.complete", timeout=150)
            print(f"coverage complete {time.monotonic() - t0:.1f} s after the reload "
                  f"({browser.eval(f'{LENS}.views')} views)")
            cov = browser.eval("document.getElementById('lenscov').textContent")
            assert cov.endswith("complete") and "accuracy so far: map error p95" in cov, cov
            browser.wait_for("!document.getElementById('lenssolve').disabled")
            browser.eval("document.getElementById('lenssolve').click()")
            browser.wait_for(f"{LENS}.state === 'solved' && document.getElementById('lenspreview').naturalWidth > 0",
                             timeout=120)
            result = browser.eval("document.getElementById('lensresult').textContent")
            assert "estimated map error" in result and "by region" in result and "per view" in result, result
            browser.eval("document.getElementById('lenscal').scrollIntoView()")
            browser.screenshot(ARTIFACTS / "viewer-lens-calibration.png")
            browser.eval("document.getElementById('lensapply').click()")
            browser.wait_for("document.getElementById('lensmsg').textContent.startsWith('applied live')", timeout=30)

            applied = Path(yaml.safe_load(cfg.read_text())["fisheye"]["calibration"])
            assert applied.parent == tmp_path / "lens" and applied.is_file()
            # Re-calibrating over an active lens finds the camera's lens, as calibrating with none does.
            truth = FisheyeModel(scaled_lens((1280, 720)), TRUE_D, (1280, 720))
            model = load_model(applied)
            err = map_error(truth, model)
            print(f"re-calibrated over the demo lens: f {100 * (model.K[0, 0] / truth.K[0, 0] - 1):+.2f} %, map error "
                  f"p95 {np.percentile(err, 95):.3f} max {err.max():.3f} px")
            assert abs(model.K[0, 0] / truth.K[0, 0] - 1) < 0.01 and np.percentile(err, 95) <= 1.0
            assert cfg.read_text().startswith("# the venue's config"), "the config file's comments are kept"
            worst: list[float] = []
            with GStreamerFrameConsumer(sock) as c:
                deadline = time.monotonic() + 20
                while len(worst) < 3 and time.monotonic() < deadline:
                    got = c.read(timeout=5)
                    assert got is not None
                    dev = straightness(got[0])
                    if dev is not None:
                        worst.append(dev)
            print(f"board lines in the backend's frames after apply: worst {max(worst):.3f} px")
            assert len(worst) == 3 and max(worst) <= 1.0, worst

            browser.wait_for("!document.getElementById('lensrevert').hidden")
            browser.eval("document.getElementById('lensrevert').click()")
            browser.wait_for("document.getElementById('lensmsg').textContent.startsWith('reverted')", timeout=30)
            assert yaml.safe_load(cfg.read_text())["fisheye"]["calibration"] == str(demo_calibration_path())
            assert httpx.get(f"{api}/api/lens", timeout=5).json()["revert_to"] is None
        finally:
            svc.terminate(15)
            svc.close()
