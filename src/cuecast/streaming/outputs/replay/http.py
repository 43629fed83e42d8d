"""The replay API: /api/clips (make, list, read, download with Range, delete) over outputs.replay, and
`make_clip`, the one way a clip is made (for /api/clips and for events): at most MAX_PENDING at once, waiting
for their end and for the muxer in the event loop, not in worker threads.

Owns the HTTP contract of instant replay only; the guard decides who may call it (POST and DELETE like
controls, GET like streams).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.responses import Response

from cuecast.streaming.outputs.replay.branch import Clip, Replay, ReplayError
from cuecast.streaming.service import Service

MAX_AFTER_S = 60.0
MAX_PENDING = 8  # clips being made at once; each holds up to seconds + after of H.264
FRAME_WAIT_S = 1.0  # a frame the backend has seen may reach the encoder this much later
END_GRACE_S = 3.0  # after the asked end, how long to wait for the encoder before writing what there is


def _whole(value: Any) -> Any:
    """JSON numbers like 1234.0 are integers (JSON Schema says so); strict validation would refuse them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


FrameNumber = Annotated[int, Field(ge=0), BeforeValidator(_whole)]
# `frame` or `time`, never both: said in the schema, so clients (and fuzzers) know it.
FRAME_OR_TIME: dict[str, Any] = {"not": {"required": ["frame", "time"]}}


class ClipRequest(BaseModel):
    """Save the last `seconds` (and `after` seconds more) as an MP4 clip; or, frame-exact, from `before`
    seconds before frame `frame` (or capture wall time `time`) to `after` seconds after it."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False,  # strict: `false` is no number
                              json_schema_extra=FRAME_OR_TIME)
    seconds: float = Field(10.0, gt=0, le=600, description="how far back the clip starts; beyond replay.seconds, "
                           "everything kept (ignored with `frame` or `time`)")
    after: float = Field(0.0, ge=0, le=MAX_AFTER_S, description="seconds more to record before writing")
    frame: FrameNumber | None = Field(None, description="the capture process's frame number (the backend's "
                              "`info.seq`, an MJPEG part's X-Frame-Seq): the clip is cut around it to the frame")
    time: float | None = Field(None, gt=0, description="a capture wall time (seconds, the backend's "
                               "`info.capture_time`, X-Timestamp): the clip is cut around it to the frame")
    before: float = Field(3.0, ge=0, le=600, description="with `frame` or `time`: seconds shown before it")
    label: str = Field("", max_length=200)


async def frame_time(r: Replay, seq: int) -> int:
    """Capture wall time (ns) of frame `seq` (or the first encoded after it); waits up to FRAME_WAIT_S for a
    frame the encoder has not reached yet. ReplayError 410 when it is no longer kept, 422 when it is unknown."""
    deadline = time.monotonic() + FRAME_WAIT_S
    while True:
        au = r.ring.frame(seq)
        if au is not None and au.capture_wall_ns is not None:
            return au.capture_wall_ns
        kept = r.ring.frame_range()
        if kept is not None and seq < kept[0]:
            raise ReplayError(410, f"frame {seq} is no longer kept: replay keeps frames {kept[0]}..{kept[1]} (the "
                                   f"last {r.ring.seconds:g} s, replay.seconds)")
        if time.monotonic() > deadline:
            newest = f"the newest is {kept[1]}" if kept else "no frame is kept yet"
            raise ReplayError(422, f"frame {seq} is not known: {newest} (frame numbers start again when the "
                                   "capture process restarts)")
        await asyncio.sleep(0.02)


async def make_clip(r: Replay, *, seconds: float = 10.0, after: float = 0.0, around_ns: int | None = None,
                    before: float = 0.0, label: str = "", clip_id: str | None = None,
                    event: str | None = None) -> Clip:
    """Make one clip: the last `seconds` and `after` more; or, with `around_ns` (a capture wall time),
    frame-exact from `before` seconds before it to `after` seconds after it. Returns once it is written."""
    if r.pending >= MAX_PENDING:
        raise ReplayError(429, f"{MAX_PENDING} clips are being made already: try again when one is done")
    r.pending += 1
    try:
        if around_ns is None:
            take = r.take(seconds)
            if after > 0:
                await asyncio.sleep(after)
                r.extend(take)
        else:
            until_ns = around_ns + int(after * 1e9)
            take = r.take_from(around_ns - int(before * 1e9), until_ns)  # fails early for frames gone
            await asyncio.sleep(max(0.0, (until_ns - time.time_ns()) / 1e9))
            deadline = time.monotonic() + END_GRACE_S
            while not r.covered(until_ns) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            r.extend(take)
        async with r.mux_turn:  # one muxer at a time; the others wait here
            return await asyncio.to_thread(r.write, take, label, clip_id, event)
    finally:
        r.pending -= 1


class ClipFrame(BaseModel):
    seq: int | None = Field(description="the capture process's frame number (None: a placeholder frame)")
    capture_time: float | None = Field(description="capture wall time, seconds (the backend's trailer)")
    t: float = Field(0.0, description="its presentation time in the MP4, seconds from the first frame shown")


class ClipInfo(BaseModel):
    id: str
    label: str
    start: str = Field(description="wall-clock time of the first frame shown (ISO 8601, UTC)")
    duration: float = Field(description="seconds")
    bytes: int
    created: str
    width: int
    height: int
    url: str
    event: str | None = Field(None, description="the event it was made for")
    frame_count: int = Field(0, description="video frames shown")
    frames: list[ClipFrame] | None = Field(None, description="every frame shown, in order: the k-th decoded "
                                           "frame of the MP4 is frames[k] (one clip only, not in the list)")


def _error(e: ReplayError) -> HTTPException:
    return HTTPException(e.status, str(e), headers={"Retry-After": "5"} if e.status in (429, 503) else None)


def router(service: Service) -> APIRouter:
    api = APIRouter()
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
              description="Answers once the MP4 is complete (after `after` seconds more of recording). The last "
                          "`seconds` start on the key frame at or before them; with `frame` or `time` the clip is "
                          "frame-exact: its first frame shown is the first at or after the asked start, and "
                          "`frames` lists every frame shown.",
              responses={**responses, 401: {"description": "auth.token is set and the token is missing or wrong"},
                         403: {"description": "No auth.token configured and the client is not on this machine"},
                         400: {"description": "Body is not valid JSON"}, 413: {"description": "Body too large"},
                         410: {"description": "The asked frames are no longer kept (replay.seconds)"},
                         422: {"description": "A field out of range or of the wrong type, or an unknown frame"},
                         429: {"description": "Too many clips being made at once"},
                         503: {"description": "No frames yet, or replay.dir is not writable"},
                         507: {"description": "No space left in replay.dir"}})
    async def new_clip(request: ClipRequest) -> dict[str, Any]:
        r = replay()
        if request.frame is not None and request.time is not None:
            raise HTTPException(422, "give `frame` or `time`, not both")
        try:
            around = None
            if request.frame is not None:
                around = await frame_time(r, request.frame)
            elif request.time is not None:
                around = int(request.time * 1e9)
            clip = await make_clip(r, seconds=request.seconds, after=request.after, around_ns=around,
                                   before=request.before, label=request.label)
        except ReplayError as e:
            raise _error(e) from None
        return clip.public()

    @api.get("/api/clips", response_model=list[ClipInfo], response_model_exclude_none=True,
             summary="The saved clips, newest first (without their frames lists)",
             responses=responses)
    async def list_clips() -> list[dict[str, Any]]:
        return [c.public(frames=False) for c in replay().store.newest_first()]

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
