"""The guided lens calibration behind the viewer's "Calibrate lens" (/api/lens): one session at a time that
looks at the camera's raw picture a few times a second (in its own thread of the streaming process, off the
backend's path: the capture process only copies a frame out), finds the board, keeps views when the guide
says (still, adds coverage), solves with progress, and keeps the result for the routes to apply.

Owns the session's state and its files (views as JPEG with their corners, in the session's folder); the
routes own HTTP, saving and applying. Pure Python + OpenCV; it reaches the camera through `grab`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cuecast.lens.calibration import CalibrationFailed, View, detect, preview, solve
from cuecast.lens.guide import COLS, ROWS, Picker

log = logging.getLogger(__name__)

LOOK_INTERVAL_S = 0.2  # between looks (a look takes about 0.2 s of detection at 1280x720)
IDLE_PAUSE_S = 15.0  # nobody asked for the session this long: stop looking (no CPU) until someone does
LOOK_WIDTH = 960  # the look picture the viewer shows is scaled to this width at most
SO_FAR_FROM = 8  # views kept before the accuracy so far is estimated

Grab = Callable[[], tuple[np.ndarray, dict[str, Any]]]  # (BGR raw frame, what the capture process said)


class LensBusy(Exception):
    """A second calibration while one runs; the message names who holds it."""


class LensSession:
    """One guided calibration: capturing -> solving -> solved (or failed) -> applied, or cancelled."""

    def __init__(self, grab: Grab, board: tuple[int, int], square_mm: float, owner: str, folder: Path) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.grab = grab
        self.board, self.square_mm, self.owner = board, square_mm, owner
        self.started = time.time()
        self.folder = folder / self.id
        self.state = "capturing"
        self.message = "starting: waiting for the camera"
        self.picker: Picker | None = None
        self.views: list[View] = []
        self.kept: list[dict[str, Any]] = []
        self.looks = 0
        self.look_seq = 0
        self.look_jpeg: bytes | None = None
        self.last_raw: np.ndarray | None = None
        self.size: tuple[int, int] | None = None
        self.camera: str | None = None
        self.progress: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None
        self.model: Any = None  # FisheyeModel once solved
        self.preview_jpeg: bytes | None = None
        self.so_far: dict[str, Any] | None = None  # the estimated accuracy of the views kept so far
        self.error: str | None = None
        self.applied: dict[str, Any] | None = None
        self._seen = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lens-session", daemon=True)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self, state: str = "cancelled") -> None:
        if self.state in ("capturing", "solving"):
            self.state = state
        self._stop.set()
        self._wake.set()

    def started_text(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.started))

    @property
    def active(self) -> bool:
        return self.state in ("capturing", "solving", "solved")

    def touch(self) -> None:
        """Someone is watching: keep (or start again) looking."""
        self._seen = time.monotonic()
        self._wake.set()

    # -- capturing ------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.state == "solving":
                    self._solve()
                    continue
                if self.state != "capturing":
                    self._wake.wait(1.0)
                    self._wake.clear()
                    continue
                if time.monotonic() - self._seen > IDLE_PAUSE_S:
                    self.message = "paused: nobody is watching (open the viewer to go on)"
                    self._wake.wait(5.0)
                    self._wake.clear()
                    continue
                self._look()
                self._stop.wait(LOOK_INTERVAL_S)
        except Exception as e:  # noqa: BLE001 - a session must say why it stopped, never die silently
            log.exception("lens calibration session %s failed", self.id)
            self.error = f"the session stopped: {e}"
            self.state = "failed"

    def _look(self) -> None:
        try:
            frame, shot = self.grab()
        except RuntimeError as e:
            self.message = f"no camera picture: {e}"
            return
        size = (frame.shape[1], frame.shape[0])
        if self.picker is None or size != self.size:
            if self.picker is not None:
                log.warning("lens calibration: the camera's size changed to %dx%d: starting the views again", *size)
            self.picker, self.size, self.views, self.kept = Picker(size, self.board), size, [], []
        self.camera = shot.get("source")
        corners = detect(frame, self.board)
        keep, why = self.picker.consider(corners)
        self.looks += 1
        if keep and corners is not None:
            name = f"view-{len(self.views) + 1:03d}.jpg"
            cv2.imwrite(str(self.folder / name), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            self.picker.keep(corners)
            with self._lock:
                self.views.append(View(name, corners, size))
                self.kept.append({"name": name, "seq": shot.get("seq"), "adds": why})
            self._save_views_file()
            log.info("lens calibration: kept %s (%s)", name, why)
            self._estimate_so_far()
        cov = self.picker.coverage
        if keep:
            self.message = f"kept view {len(self.views)}: {why}"
        elif corners is None and self.views and not cov.complete:
            self.message = f"{why}; next: {cov.missing()[0]}"
        else:
            self.message = why if not cov.complete else "coverage complete: solve when ready"
        self.last_raw = frame
        self.look_jpeg = self._draw(frame, corners)
        self.look_seq += 1

    def _estimate_so_far(self) -> None:
        """After each kept view (from 8 on): a quick solve of the views so far for its estimated map error, so
        the person sees the accuracy grow (about 0.1-0.3 s in this thread)."""
        if len(self.views) < SO_FAR_FROM:
            return
        try:
            sol = solve(list(self.views), self.board, self.square_mm / 1000.0)
        except (CalibrationFailed, cv2.error):
            self.so_far = None
            return
        est = sol.estimate
        self.so_far = {"views": len(self.views), "rms": round(sol.rms, 3),
                       "map_error_p95": None if est is None else est.p95,
                       "map_error_max": None if est is None else est.max}

    def _draw(self, frame: np.ndarray, corners: np.ndarray | None) -> bytes:
        """The look for the viewer: the coverage grid tinted by how often corners were seen there, and the
        board's corners as found (OpenCV's coloured rows), scaled to LOOK_WIDTH."""
        img = frame.copy()
        h, w = img.shape[:2]
        if self.picker is not None:
            cells = self.picker.coverage.cells
            tint = img.copy()
            for r in range(ROWS):
                for c in range(COLS):
                    x0, y0, x1, y1 = c * w // COLS, r * h // ROWS, (c + 1) * w // COLS, (r + 1) * h // ROWS
                    colour = (60, 200, 60) if cells[r, c] else (40, 40, 220)
                    cv2.rectangle(tint, (x0, y0), (x1, y1), colour, -1)
                    cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 255), 1)
            img = cv2.addWeighted(tint, 0.18, img, 0.82, 0)
        if corners is not None:
            cv2.drawChessboardCorners(img, self.board, corners.astype(np.float32), True)
        if w > LOOK_WIDTH:
            img = cv2.resize(img, (LOOK_WIDTH, h * LOOK_WIDTH // w), interpolation=cv2.INTER_AREA)
        return bytes(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())

    def _save_views_file(self) -> None:
        """views.json beside the views, as `calibrate capture` writes it: `calibrate solve` can use them too."""
        views = {k["name"]: {"camera": self.camera, "seq": k["seq"], "corrected": False,
                             "size": list(self.size or ())} for k in self.kept}
        (self.folder / "views.json").write_text(json.dumps({"format": 1, "views": views}, indent=1))

    # -- solving --------------------------------------------------------------------------------------

    def request_solve(self) -> None:
        """Start solving the kept views (in the session's thread); ValueError says why not."""
        if self.state not in ("capturing", "solved", "failed") or self.state == "failed" and not self.views:
            raise ValueError(f"the session is {self.state}")
        if len(self.views) < 6:
            more = self.picker.coverage.missing()[:1] if self.picker else []
            raise ValueError(f"{len(self.views)} view(s) kept; a solve needs at least 6"
                             + (f" (next: {more[0]})" if more else ""))
        self.state, self.error, self.result = "solving", None, None
        self.progress = {"step": "starting", "fraction": 0.0}
        self._wake.set()

    def _solve(self) -> None:
        with self._lock:
            views = list(self.views)
        complete = bool(self.picker and self.picker.coverage.complete)
        square = self.square_mm / 1000.0
        t0 = time.monotonic()
        try:
            steps = iter((0.2, 0.5, 0.7, 0.8, 0.9))
            self.progress = {"step": f"solving {len(views)} views", "fraction": 0.1}
            sol = solve(views, self.board, square,
                        progress=lambda m: self.progress.update(step=m, fraction=next(steps, 0.9)))
            self.progress = {"step": "before/after picture", "fraction": 0.95}
            if self.last_raw is not None:
                pic = preview(sol.model, self.last_raw)
                pic = cv2.resize(pic, (pic.shape[1] // 2, pic.shape[0] // 2), interpolation=cv2.INTER_AREA)
                self.preview_jpeg = bytes(cv2.imencode(".jpg", pic, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        except CalibrationFailed as e:
            self.error = f"{e}. Keep capturing (the views stay) and solve again"
            self.state, self.progress = "failed", {}
            log.warning("lens calibration: solve failed: %s", e)
            return
        except cv2.error as e:
            self.error = (f"the solve did not converge ({e.err}): capture views where the guide asks (corners and "
                          "tilts) and solve again")
            self.state, self.progress = "failed", {}
            return
        K, D = sol.model.K, sol.model.D
        est = sol.estimate
        sol.model.extra.update({"views_used": len(sol.used), "coverage": round(sol.coverage, 3),
                                "straightness_px": round(sol.straightness_px, 3), "camera": self.camera})
        if est is not None:
            sol.model.extra["map_error_estimate"] = {"p95": est.p95, "max": est.max, "regions": est.regions}
        self.model = sol.model
        self.result = {
            "rms": round(sol.rms, 4), "views_used": len(sol.used), "views_kept": len(views),
            "per_view_rms": {k: round(v, 4) for k, v in sorted(sol.per_view_rms.items())},
            "dropped": sol.dropped, "notes": sol.notes + ([] if complete else
                                                          ["coverage was not complete: the map error is larger where "
                                                           "the board never went"]),
            "fx": round(float(K[0, 0]), 3), "fy": round(float(K[1, 1]), 3), "cx": round(float(K[0, 2]), 3),
            "cy": round(float(K[1, 2]), 3), "D": [round(float(v), 6) for v in np.ravel(D)],
            "image_size": list(sol.model.image_size), "coverage": round(sol.coverage, 3),
            "straightness_px": round(sol.straightness_px, 3),
            "map_error": None if est is None else {"p95": est.p95, "max": est.max, "regions": est.regions,
                                                   "noise_px": est.noise_px},
            "seconds": round(time.monotonic() - t0, 2),
        }
        self.progress = {"step": "done", "fraction": 1.0}
        self.message = "check the result and the before/after picture, then apply (or keep capturing)"
        self.state = "solved"
        log.info("lens calibration solved: RMS %.3f px from %d views, map error p95 %s px", sol.rms, len(sol.used),
                 est.p95 if est else "?")

    # -- reporting ------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        cov = self.picker.coverage.to_json() if self.picker else None
        return {
            "id": self.id, "state": self.state, "owner": self.owner,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "board": f"{self.board[0]}x{self.board[1]}", "square_mm": self.square_mm, "camera": self.camera,
            "image_size": list(self.size) if self.size else None, "message": self.message, "looks": self.looks,
            "look_seq": self.look_seq, "coverage": cov, "views": len(self.views), "kept": self.kept[-50:],
            "so_far": self.so_far,
            "progress": self.progress, "result": self.result, "error": self.error, "applied": self.applied,
            "folder": str(self.folder),
        }
