"""/api/lens: the lens calibration in use, the guided calibration session (start, watch, solve, apply) and a
one-click revert. Applying saves the solved model as a new file in the lens folder (fisheye.dir; nothing is
overwritten), points fisheye.calibration at it in the config file, and swaps the correction's maps live in
the capture process (no restart, no client dropped). history.json in that folder lists what was applied
after what, which is what revert undoes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from cuecast.config import save_lens_path
from cuecast.lens.calibration import parse_board
from cuecast.protocol import messages as msg
from cuecast.protocol.control import ControlError
from cuecast.streaming.lenscal import LensSession
from cuecast.streaming.service import Service
from cuecast.streaming.web.pictures import read_picture, save_to_config
from cuecast.table.model import table_from_dict

log = logging.getLogger(__name__)

HISTORY = "history.json"
DEMO_LENS = "built-in demo lens"


class SessionStart(BaseModel):
    """A guided calibration: the board's inner corners (columns x rows, as OpenCV counts them: a board of
    10 x 7 squares is 9x6) and the side of one square in mm."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    board: str = Field("9x6", max_length=16, description="inner corners COLSxROWS")
    square_mm: float = Field(25.0, gt=1.0, le=500.0, description="one square's side in mm")


def _jpeg(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def router(service: Service) -> APIRouter:
    r = APIRouter()
    lock = asyncio.Lock()
    changes: dict[int | str, dict[str, Any]] = {
        401: {"description": "auth.token is set and the bearer token is missing or wrong"},
        403: {"description": "No auth.token configured and the client is not on this machine"}}

    def folder() -> Path:
        return service.cfg.lens_dir(service.config_path)

    def history() -> list[dict[str, Any]]:
        try:
            doc = json.loads((folder() / HISTORY).read_text())
            return list(doc.get("applied", []))
        except (OSError, ValueError, AttributeError):
            return []

    def write_history(entries: list[dict[str, Any]]) -> None:
        tmp = folder() / f".{HISTORY}"
        tmp.write_text(json.dumps({"applied": entries[-100:]}, indent=1))
        tmp.replace(folder() / HISTORY)

    def current() -> str | None:
        cap = service.capture_status()
        if cap is not None:
            return cap.fisheye.get("calibration")
        return str(service.cfg.fisheye.calibration) if service.cfg.fisheye.calibration else None

    def grab() -> tuple[Any, dict[str, Any]]:
        try:
            shot = service.link.request(msg.RawFrameRequest(), 5.0)
        except ControlError as e:
            raise RuntimeError(str(e)) from None
        frame = read_picture(shot)
        if frame is None:
            raise RuntimeError("the raw frame was gone before it was read")
        return frame, shot

    def session_or_404() -> LensSession:
        s = service.lens_session
        if s is None:
            raise HTTPException(404, "no lens calibration session: start one with POST /api/lens/session")
        s.touch()
        return s

    async def apply_path(path: Path) -> dict[str, Any]:
        """Make `path` the lens: live in the capture process, then in the config file; the table (its corners
        are in the corrected picture) follows and is saved where it was."""
        try:
            answer = await asyncio.to_thread(service.link.request, msg.LensRequest(calibration=str(path)), 15.0)
        except ControlError as e:
            raise HTTPException(503, f"the lens was not applied: {e}") from None
        fisheye = answer["fisheye"]
        if answer.get("table") and service.table is not None:
            table = table_from_dict(answer["table"], "the capture process's table")
            service.set_table(table)
            kept = service.cfg.table.calibration
            if kept is not None:
                try:
                    await asyncio.to_thread(table.save, Path(kept))
                except OSError as e:
                    log.warning("the table moved with the lens but was not saved to %s: %s", kept, e)
                    service.table_set_live = True
            else:
                service.table_set_live = True
            log.info("the table's corners moved with the lens: %s", [tuple(round(v, 1) for v in c)
                                                                      for c in table.corners])
        service.lens_path = path
        service.cfg.fisheye.calibration = path
        persisted = await save_to_config(service, lambda cfg: save_lens_path(cfg, path), "the lens")
        return {"fisheye": fisheye, "config_saved_to": persisted}

    @r.get("/api/lens", summary="The lens calibration in use, and what revert would go back to")
    async def get_lens() -> dict[str, Any]:
        entries = history()
        last = entries[-1] if entries else None
        s = service.lens_session
        return {"calibration": current(), "folder": str(folder()),
                "revert_to": last["previous"] if last and last.get("path") == current() else None,
                "history": entries[-10:], "session": s.to_json() if s is not None and s.active else None}

    @r.post("/api/lens/session", status_code=201, summary="Start the guided lens calibration",
            responses={**changes, 400: {"description": "Body is not valid JSON"},
                       413: {"description": "Body too large"},
                       409: {"description": "Another calibration runs (the detail names who holds it)"},
                       422: {"description": "Not a board size"},
                       503: {"description": "The lens folder (fisheye.dir) cannot be written"}})
    async def start_session(body: SessionStart, request: Request) -> dict[str, Any]:
        async with lock:
            s = service.lens_session
            if s is not None and s.active:
                raise HTTPException(409, f"a lens calibration is running, started by {s.owner} at {s.started_text()} "
                                         f"({s.state}, {len(s.views)} views): open the viewer to go on with it, or "
                                         "end it with DELETE /api/lens/session")
            try:
                board = parse_board(body.board)
            except ValueError as e:
                raise HTTPException(422, str(e)) from None
            client = request.client.host if request.client else "?"
            agent = request.headers.get("user-agent", "")[:40]
            s = LensSession(grab, board, body.square_mm, f"{client} ({agent})" if agent else client,
                            folder() / "sessions")
            try:
                await asyncio.to_thread(s.start)
            except OSError as e:
                raise HTTPException(503, f"cannot keep the views in {folder()}: {e} (set fisheye.dir)") from None
            service.lens_session = s
            log.info("lens calibration started by %s, board %s, %g mm squares", s.owner, body.board, body.square_mm)
            return s.to_json()

    @r.get("/api/lens/session", summary="The guided calibration: coverage, what is missing, progress, result",
           responses={404: {"description": "No session"}})
    async def get_session() -> dict[str, Any]:
        return session_or_404().to_json()

    @r.get("/api/lens/session/look.jpg", summary="The raw picture last looked at, with the board's corners and "
           "the coverage grid drawn on it", responses={200: {"content": {"image/jpeg": {}}}, **changes,
                                                       404: {"description": "No session"},
                                                       409: {"description": "No look yet (retry)"}})
    async def look() -> Response:
        s = session_or_404()
        for _ in range(30):  # a new session's first look comes within a second or two
            if s.look_jpeg is not None:
                return _jpeg(s.look_jpeg)
            await asyncio.sleep(0.1)
        raise HTTPException(409, f"no look at the camera yet: {s.message}", headers={"Retry-After": "1"})

    @r.post("/api/lens/session/solve", status_code=202, summary="Solve the kept views (progress in the session)",
            responses={**changes, 404: {"description": "No session"}, 409: {"description": "Not enough views"}})
    async def solve() -> dict[str, Any]:
        s = session_or_404()
        try:
            s.request_solve()
        except ValueError as e:
            raise HTTPException(409, str(e)) from None
        return s.to_json()

    @r.get("/api/lens/session/preview.jpg", summary="Before | after the solved correction, with straight guides",
           responses={200: {"content": {"image/jpeg": {}}}, **changes, 404: {"description": "Not solved"}})
    async def preview() -> Response:
        s = session_or_404()
        if s.preview_jpeg is None:
            raise HTTPException(404, f"no solved calibration to show (the session is {s.state})")
        return _jpeg(s.preview_jpeg)

    @r.post("/api/lens/session/apply", summary="Apply the solved lens live and save it (previous kept for revert)",
            responses={**changes, 404: {"description": "No session"}, 409: {"description": "Not solved yet"},
                       503: {"description": "The capture process did not take it, or the file cannot be saved"}})
    async def apply() -> dict[str, Any]:
        async with lock:
            s = session_or_404()
            if s.state != "solved" or s.model is None:
                raise HTTPException(409, f"nothing to apply: the session is {s.state}"
                                         + ("" if s.state != "capturing" else "; solve it first"))
            previous = current()
            path = folder() / f"camera-{time.strftime('%Y%m%d-%H%M%S')}-{s.id[:6]}.yaml"
            try:
                await asyncio.to_thread(s.model.save, path)
            except OSError as e:
                raise HTTPException(503, f"cannot save the lens to {path}: {e} (set fisheye.dir)") from None
            result = await apply_path(path)
            entries = history()
            entries.append({"path": str(path), "previous": previous, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "rms": (s.result or {}).get("rms"),
                            "map_error_p95": ((s.result or {}).get("map_error") or {}).get("p95")})
            await asyncio.to_thread(write_history, entries)
            s.applied = {"path": str(path), "previous": previous, **result}
            s.state = "applied"
            s.stop("applied")
            log.info("lens calibration applied live from %s (previous: %s)", path, previous)
            return s.to_json()

    @r.delete("/api/lens/session", summary="End the guided calibration (its views stay in its folder)",
              responses={**changes, 404: {"description": "No session"}})
    async def end_session() -> dict[str, Any]:
        async with lock:
            s = session_or_404()
            s.stop()
            service.lens_session = None
            return s.to_json()

    @r.post("/api/lens/revert", summary="Go back to the lens in use before the last apply",
            responses={**changes, 409: {"description": "Nothing to revert to"},
                       503: {"description": "The capture process did not take it"}})
    async def revert() -> dict[str, Any]:
        async with lock:
            entries = history()
            now = current()
            if not entries or entries[-1].get("path") != now:
                raise HTTPException(409, f"nothing to revert: the lens in use ({now}) was not applied by a guided "
                                         "calibration")
            previous = entries[-1].get("previous")
            if previous is None:
                raise HTTPException(409, "there was no lens calibration before this one: switch the correction off "
                                         "instead (fisheye.enabled: false)")
            if previous == DEMO_LENS:
                from cuecast.media.demo import demo_calibration_path

                target = Path(demo_calibration_path())
            else:
                target = Path(previous)
            if not target.is_file():
                raise HTTPException(409, f"the previous lens file {target} is gone")
            result = await apply_path(target)
            entries.pop()
            await asyncio.to_thread(write_history, entries)
            log.info("lens calibration reverted to %s", target)
            return {"calibration": str(target), **result}

    return r
