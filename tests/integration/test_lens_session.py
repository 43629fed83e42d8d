"""The guided lens calibration through the API, as the viewer drives it: a test camera shows a checkerboard
held in one pose after another through a known fisheye lens, on a service with no calibration yet (a new
install; the viewer's test covers re-calibrating over another lens). The session finds the board a few
times a second, keeps views where the guide says, reaches complete coverage, solves with progress and its
own error estimate, and applies live: the pipeline gains its correction, the backend's reader goes on
through it, the board's lines in its frames are straight within 1 px, and the solved lens matches the true
one (f within 1 %, map error p95 <= 1 px, max <= 2 px). A second session gets 409 naming who holds the first;
revert says there is nothing before; bad input says what to do."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.lens.calibration import detect, line_deviation, map_error
from cuecast.lens.maps import output_matrix, raw_to_corrected
from cuecast.lens.model import FisheyeModel, load_model
from cuecast.testcam.board import BOARD, TRUE_D, scaled_lens
from tests.helpers.testcam import SPEC, CameraRig, serve_camera

W, H = 1280, 720


def board_camera(tmp: Path) -> Path:
    spec = tmp / "cam.yaml"
    spec.write_text(SPEC.read_text().replace("picture: demo", "picture: board"))
    return spec


def wait_session(api: str, until: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    s: dict[str, Any] = {}
    while time.monotonic() < deadline:
        s = httpx.get(f"{api}/api/lens/session", timeout=5).json()
        if until(s):
            return s
        assert s["state"] != "failed", s
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout:.0f} s: {s}")


def straightness(frame: np.ndarray) -> float | None:
    """Worst distance (px) of the board's rows and columns from a straight line, in a picture."""
    corners = detect(frame, BOARD)
    if corners is None:
        return None
    grid = corners.reshape(BOARD[1], BOARD[0], 2)
    return max(line_deviation(line) for line in [*grid, *grid.transpose(1, 0, 2)])


def test_guided_calibration_reaches_complete_applies_live_and_reverts(tmp_path: Path) -> None:
    truth = FisheyeModel(scaled_lens((W, H)), TRUE_D, (W, H))
    with CameraRig(tmp_path, board_camera(tmp_path)) as cam:
        svc, api, sock, _ports = serve_camera(cam, tmp_path, W, H, calibrated=False, CUECAST_RTSP__ENABLED="false",
                                              CUECAST_MJPEG__LOW__ENABLED="false")
        try:
            assert httpx.get(f"{api}/api/lens/session", timeout=5).status_code == 404
            bad = httpx.post(f"{api}/api/lens/session", json={"board": "nine"}, timeout=5)
            assert bad.status_code == 422 and "COLSxROWS" in bad.text, bad.text
            r = httpx.post(f"{api}/api/lens/session", json={"board": "9x6", "square_mm": 25},
                           headers={"User-Agent": "first-browser"}, timeout=10)
            assert r.status_code == 201, r.text
            again = httpx.post(f"{api}/api/lens/session", json={}, timeout=5)
            assert again.status_code == 409 and "first-browser" in again.json()["detail"], again.text
            early = httpx.post(f"{api}/api/lens/session/solve", timeout=5)
            assert early.status_code == 409 and "at least 6" in early.json()["detail"], early.text

            # Guidance while the board moves: words for what is missing, a look picture with the corners.
            s = wait_session(api, lambda s: s["views"] >= 2, 60, "two views")
            assert s["coverage"]["missing"] and s["message"], s
            look = httpx.get(f"{api}/api/lens/session/look.jpg", timeout=5)
            assert look.status_code == 200 and look.content[:2] == b"\xff\xd8"
            t0 = time.monotonic()
            s = wait_session(api, lambda s: s["coverage"]["complete"], 150, "complete coverage")
            print(f"coverage complete after {time.monotonic() - t0:.1f} s more, {s['views']} views, {s['looks']} looks")
            assert s["coverage"]["missing"] == [] and s["coverage"]["fraction"] == 1.0

            r = httpx.post(f"{api}/api/lens/session/solve", timeout=5)
            assert r.status_code == 202, r.text
            s = wait_session(api, lambda s: s["state"] == "solved", 120, "a solved calibration")
            assert s["progress"] == {"step": "done", "fraction": 1.0}, s["progress"]
            res = s["result"]
            est = res["map_error"]
            print(f"solved: RMS {res['rms']} px, fx {res['fx']} (true {truth.K[0, 0]:.1f}), estimated map error "
                  f"p95 {est['p95']} max {est['max']} px, straightness {res['straightness_px']} px")
            assert abs(res["fx"] / truth.K[0, 0] - 1) < 0.01 and abs(res["fy"] / truth.K[1, 1] - 1) < 0.01, res
            assert len(est["regions"]) == 3 and len(est["regions"][0]) == 4
            assert httpx.get(f"{api}/api/lens/session/preview.jpg", timeout=5).content[:2] == b"\xff\xd8"

            # A table calibrated on the uncorrected picture (its corners where the felt is in it) ...
            felt = [[300.0, 200.0], [980.0, 200.0], [1000.0, 560.0], [280.0, 560.0]]
            r = httpx.put(f"{api}/api/table", json={"corners": felt, "size": "9ft"}, timeout=10)
            assert r.status_code == 200, r.text

            # Apply live: the backend keeps reading through it; then the board's lines are straight.
            with GStreamerFrameConsumer(sock) as c:
                assert c.read(timeout=5) is not None
                r = httpx.post(f"{api}/api/lens/session/apply", timeout=30)
                assert r.status_code == 200, r.text
                applied = r.json()["applied"]
                path = Path(applied["path"])
                solved_model = load_model(path)
                err = map_error(truth, solved_model)
                print(f"true map error of the applied lens: p95 {np.percentile(err, 95):.3f} max {err.max():.3f} px")
                assert np.percentile(err, 95) <= 1.0 and err.max() <= 2.0
                assert yaml.safe_load(path.read_text())["map_error_estimate"]["p95"] == est["p95"]
                worst: list[float] = []
                deadline = time.monotonic() + 20
                gaps = []
                last = time.monotonic()
                while len(worst) < 5 and time.monotonic() < deadline:
                    got = c.read(timeout=5)
                    assert got is not None, "the backend's frames stopped after the lens was applied"
                    gaps.append(time.monotonic() - last)
                    last = time.monotonic()
                    frame, info = got
                    if info.placeholder or time.monotonic() - (deadline - 20) < 0.5:
                        continue
                    dev = straightness(frame)
                    if dev is not None:
                        worst.append(dev)
                print(f"board lines in the corrected frames after apply: worst {max(worst):.3f} px "
                      f"(of {len(worst)} frames); longest gap {max(gaps):.2f} s")
                assert len(worst) == 5 and max(worst) <= 1.0, worst
            status = httpx.get(f"{api}/api/status", timeout=5).json()
            assert status["fisheye"]["calibration"] == str(path) and status["fisheye"]["active"]
            # ... stays on the same felt: its corners moved to where the correction now puts those points.
            want = raw_to_corrected(np.array(felt), solved_model.scaled_to(W, H), output_matrix(solved_model))
            table_now = np.array(httpx.get(f"{api}/api/table", timeout=5).json()["corners"])
            assert np.abs(table_now - want).max() < 0.5, (table_now, want)
            assert np.abs(table_now - np.array(felt)).max() > 5, "the correction moved the felt in the picture"
            lens = httpx.get(f"{api}/api/lens", timeout=5).json()
            assert lens["calibration"] == str(path) and lens["revert_to"] is None
            assert httpx.get(f"{api}/api/lens/session", timeout=5).json()["state"] == "applied"
            r = httpx.post(f"{api}/api/lens/revert", timeout=30)
            assert r.status_code == 409 and "no lens calibration before" in r.text, r.text
        finally:
            svc.terminate(15)
            svc.close()
