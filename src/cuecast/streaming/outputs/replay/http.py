"""The replay API: /api/clips (make, list, read, download with Range, delete) over outputs.replay.

Owns the HTTP contract of instant replay only; the guard decides who may call it (POST and DELETE like
controls, GET like streams).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from cuecast.streaming.outputs.replay.branch import Replay, ReplayError
from cuecast.streaming.service import Service

MAX_AFTER_S = 60.0
MAX_PENDING = 8  # clips being made at once; each holds up to seconds + after of H.264


class ClipRequest(BaseModel):
    """Save the last `seconds` (and `after` seconds more) as an MP4 clip."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # strict: `false` is no number
    seconds: float = Field(10.0, gt=0, le=600, description="how far back the clip starts; beyond replay.seconds, "
                           "everything kept")
    after: float = Field(0.0, ge=0, le=MAX_AFTER_S, description="seconds more to record before writing")
    label: str = Field("", max_length=200)


class ClipInfo(BaseModel):
    id: str
    label: str
    start: str = Field(description="wall-clock time of the first frame (ISO 8601, UTC)")
    duration: float = Field(description="seconds")
    bytes: int
    created: str
    width: int
    height: int
    url: str


def _error(e: ReplayError) -> HTTPException:
    return HTTPException(e.status, str(e), headers={"Retry-After": "5"} if e.status == 503 else None)


def router(service: Service) -> APIRouter:
    api = APIRouter()
    write_lock = asyncio.Lock()
    pending = [0]  # clips being made (waiting for `after`, or for the muxer)
    responses: dict[int | str, dict[str, Any]] = {404: {"description": "Replay is off, or no such clip"}}

    def replay() -> Replay:
        if service.replay is None:
            raise HTTPException(404, "replay is off: set replay.enabled: true in the config (and replay.dir "
                                     "to a writable directory)")
        return service.replay

    def clip_of(clip_id: str) -> Any:
        if clip_id.endswith(".mp4"):  # /api/clips/{id}.mp4 is read-only
            raise HTTPException(405, "a clip's MP4 can only be read (GET); DELETE /api/clips/{id} removes the clip",
                                headers={"Allow": "GET, HEAD"})
        clip = replay().store.get(clip_id)
        if clip is None:
            raise HTTPException(404, f"no clip {clip_id}: it was deleted, or removed by retention "
                                     "(replay.max_clips, replay.max_bytes)")
        return clip

    @api.post("/api/clips", status_code=201, response_model=ClipInfo, summary="Save the last seconds as a clip",
              description="Answers once the MP4 is complete (after `after` seconds more of recording). The clip "
                          "starts on the key frame at or before the requested start.",
              responses={**responses, 401: {"description": "auth.token is set and the token is missing or wrong"},
                         403: {"description": "No auth.token configured and the client is not on this machine"},
                         400: {"description": "Body is not valid JSON"}, 413: {"description": "Body too large"},
                         422: {"description": "A field out of range or of the wrong type"},
                         429: {"description": "Too many clips being made at once"},
                         503: {"description": "No frames yet, or replay.dir is not writable"},
                         507: {"description": "No space left in replay.dir"}})
    async def make_clip(request: ClipRequest) -> dict[str, Any]:
        r = replay()
        if pending[0] >= MAX_PENDING:
            raise HTTPException(429, f"{MAX_PENDING} clips are being made already: try again when one is done",
                                headers={"Retry-After": "5"})
        pending[0] += 1
        try:
            take = r.take(request.seconds)
            if request.after > 0:
                await asyncio.sleep(request.after)  # in the event loop: no worker thread waits
                r.extend(take)
            async with write_lock:  # one muxer at a time; the others wait here, not in a worker thread
                clip = await asyncio.to_thread(r.write, take, request.label)
        except ReplayError as e:
            raise _error(e) from None
        finally:
            pending[0] -= 1
        return clip.public()

    @api.get("/api/clips", response_model=list[ClipInfo], summary="The saved clips, newest first",
             responses=responses)
    async def list_clips() -> list[dict[str, Any]]:
        return [c.public() for c in replay().store.newest_first()]

    @api.get("/api/clips/{clip_id}.mp4", summary="A clip's MP4 (Range requests supported)",
             responses={**responses, 200: {"content": {"video/mp4": {}}}, 206: {"description": "Part"}})
    async def clip_file(clip_id: str) -> Response:
        clip = clip_of(clip_id)
        path = replay().store.path(clip)
        if not path.is_file():
            raise HTTPException(404, f"clip {clip_id}'s file is gone from {path.parent}")
        return FileResponse(path, media_type="video/mp4", filename=f"cuecast-{clip_id}.mp4",
                            content_disposition_type="inline", headers={"Cache-Control": "private, max-age=3600"})

    @api.get("/api/clips/{clip_id}", response_model=ClipInfo, summary="One clip", responses=responses)
    async def get_clip(clip_id: str) -> dict[str, Any]:
        return clip_of(clip_id).public()

    @api.delete("/api/clips/{clip_id}", status_code=204, summary="Delete a clip", responses=responses)
    async def delete_clip(clip_id: str) -> Response:
        clip_of(clip_id)
        await asyncio.to_thread(replay().store.delete, clip_id)
        return Response(status_code=204)

    return api
