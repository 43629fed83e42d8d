"""/api/events: events from the backend ("a shot at frame N"), each with its frame-exact clip, and their live
feed for viewers (Server-Sent Events at /api/events/stream).

Owns the HTTP contract of events: POST (guarded like the controls) answers 201 at once with the event and the
id its clip will have; the clip is made in the background (frame-exact, outputs/replay) and the event says
when it is ready or why it failed (also sent on the live feed). GET like streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from cuecast.streaming.events import Event
from cuecast.streaming.outputs.replay.branch import Replay, ReplayError
from cuecast.streaming.outputs.replay.http import FRAME_OR_TIME, MAX_AFTER_S, FrameNumber, frame_time, make_clip
from cuecast.streaming.service import Service

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
RETRY_MS = 1000  # how soon a browser's EventSource reconnects


class ClipWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    before: float = Field(3.0, ge=0, le=600, description="seconds shown before the event's frame")
    after: float = Field(5.0, ge=0, le=MAX_AFTER_S, description="seconds shown after it")


class EventRequest(BaseModel):
    """One event at a frame (`frame`, the backend's `info.seq`) or at a capture time (`time`)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra=FRAME_OR_TIME)
    kind: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="e.g. shot")
    frame: FrameNumber | None = Field(None, description="the capture process's frame number (the backend's seq)")
    time: float | None = Field(None, gt=0, description="capture wall time, seconds (the backend's capture_time)")
    label: str = Field("", max_length=200)
    data: dict[str, Any] | None = Field(None, description="anything the backend wants kept; `overlay` "
                                        "({units: px, always: [polyline], frames: {seq: [polyline]}}) is drawn "
                                        "on the clip by the viewer")
    clip: ClipWindow | None = Field(None, description="make a frame-exact clip around the event (replay on)")
    wait: bool = Field(False, description="answer once the clip is written (or failed), not at once")


def router(service: Service) -> APIRouter:
    api = APIRouter()
    store, feed = service.events, service.event_feed
    jobs: set[asyncio.Task[None]] = set()
    missing: dict[int | str, dict[str, Any]] = {404: {"description": "No such event"}}

    def event_of(event_id: str) -> Event:
        event = store.get(event_id)
        if event is None:
            raise HTTPException(404, f"no event {event_id}: it was deleted, or removed beyond events.max_events")
        return event

    async def resolve(event: Event) -> ReplayError | None:
        """Fill in the frame's capture time (or the frame of a time) from the replay ring, where it is kept;
        why not, when the frame is gone or unknown (its clip then says so)."""
        r = service.replay
        if r is None:
            return None
        if event.frame is not None and event.time is None:
            try:
                event.time = round(await frame_time(r, event.frame) / 1e9, 6)
            except ReplayError as e:
                return e  # the event is kept as it came
        elif event.time is not None and event.frame is None:
            aus, _caps, first = r.ring.cut_at(int(event.time * 1e9))
            if first < len(aus):
                event.frame = aus[first].frame_seq
        return None

    async def clip_for(event: Event, unknown: ReplayError | None, done: asyncio.Event | None) -> None:
        clip = event.clip
        assert clip is not None
        try:
            r = service.replay
            if r is None:
                raise ReplayError(404, "replay is off: set replay.enabled: true in the config to get clips")
            if unknown is not None:
                raise unknown
            if event.time is None:
                raise ReplayError(422, "the event's frame has no capture time")
            made = await make_clip(r, around_ns=int(event.time * 1e9), before=clip["before"], after=clip["after"],
                                   label=event.label or event.kind, clip_id=clip["id"], event=event.id)
            clip.update(status="ready", url=made.url, duration=made.duration, frame_count=len(made.frames))
            store.clips["ready"] += 1
        except ReplayError as e:
            clip.update(status="failed", error=str(e))
            store.clips["failed"] += 1
            log.warning("event %s: no clip: %s", event.id, e)
        except Exception as e:  # noqa: BLE001 - a clip job must not die silently
            clip.update(status="failed", error=f"internal error: {e}")
            store.clips["failed"] += 1
            log.exception("event %s: clip failed", event.id)
        finally:
            await asyncio.to_thread(store.update, event)
            feed.send("clip", event)
            if done is not None:
                done.set()

    @api.post("/api/events", status_code=201, response_model=None, summary="Record an event (a shot at a frame)",
              description="Answers 201 at once with the event; with `clip`, its clip's id is in `clip.id` and "
                          "`clip.status` goes from pending to ready (or failed, with `clip.error`) within "
                          "`after` + 1 s; GET /api/events/{id} or the live feed tells when. `wait: true` answers "
                          "only then.",
              responses={400: {"description": "Body is not valid JSON"}, 413: {"description": "Body too large"},
                         401: {"description": "auth.token is set and the token is missing or wrong"},
                         403: {"description": "No auth.token configured and the client is not on this machine"},
                         422: {"description": "A field out of range or of the wrong type"}})
    async def post_event(request: EventRequest) -> dict[str, Any]:
        if request.frame is not None and request.time is not None:
            raise HTTPException(422, "give `frame` or `time`, not both")
        event = Event(id=store.new_id(), kind=request.kind, created=round(time.time(), 6), frame=request.frame,
                      time=request.time, label=request.label, data=request.data)
        unknown = await resolve(event)
        done = asyncio.Event() if request.wait else None
        if request.clip is not None:
            event.clip = {**request.clip.model_dump(), "id": Replay.new_id(), "status": "pending", "error": None,
                          "url": None}
            if request.frame is None and request.time is None:
                event.clip.update(status="failed", error="a clip needs the event's `frame` or `time`")
                done = None
        await asyncio.to_thread(store.add, event)
        feed.send("event", event)
        if event.clip is not None and event.clip["status"] == "pending":
            job = asyncio.create_task(clip_for(event, unknown, done))
            jobs.add(job)
            job.add_done_callback(jobs.discard)
            if done is not None:
                await done.wait()
        return event.public()

    @api.get("/api/events", summary="Events, oldest first",
             description="`since`: only those made after this unix time; `after`: after this event id; `kind`.")
    async def list_events(since: float | None = Query(None, description="unix seconds"),
                          after: str | None = Query(None, max_length=64, description="an event id"),
                          kind: str | None = Query(None, max_length=64),
                          limit: int = Query(1000, ge=1, le=10_000)) -> list[dict[str, Any]]:
        return [e.public() for e in store.listed(since, after, kind, limit)]

    @api.get("/api/events/stream", summary="Live feed of events (Server-Sent Events)",
             description="Messages `event` (a new one), `clip` (its clip is ready or failed) and `deleted`, each "
                         "with the event as JSON and its id; a reconnecting EventSource sends Last-Event-ID and "
                         "gets what it missed first.",
             responses={200: {"content": {"text/event-stream": {}}}})
    async def stream(last_event_id: str | None = Header(None, max_length=64)) -> Response:
        queue = feed.join()
        missed = store.listed(after_id=last_event_id) if last_event_id else []

        async def messages() -> AsyncIterator[bytes]:
            try:
                yield f"retry: {RETRY_MS}\n\n".encode()
                for e in missed:
                    yield _sse("event", e.public())
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if item is None:  # too slow: dropped (its reconnect catches up)
                        return
                    yield _sse(*item)
            finally:
                feed.leave(queue)

        return StreamingResponse(messages(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @api.get("/api/events/{event_id}", summary="One event", responses=missing)
    async def get_event(event_id: str) -> dict[str, Any]:
        return event_of(event_id).public()

    @api.delete("/api/events/{event_id}", status_code=204, summary="Delete an event (its clip stays)",
                responses=missing)
    async def delete_event(event_id: str) -> Response:
        event = event_of(event_id)
        await asyncio.to_thread(store.delete, event_id)
        feed.send("deleted", event)
        return Response(status_code=204)

    return api


def _sse(name: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":"))
    return f"id: {body['id']}\nevent: {name}\ndata: {data}\n\n".encode()
