"""MJPEG over real HTTP/1.1 (multipart/x-mixed-replace), as raw ASGI, for the ports and for the API.

Owns the response for one watching client: status and headers browsers accept, one part per frame from
the hub, a write timeout (`client_timeout`) that drops a client that reads nothing, disconnect detection,
503 with a short text body when the output is full, and `/snapshot.jpg`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp

from cuecast.config import Quality
from cuecast.streaming.outputs.mjpeg.branch import FrameHub, HubFull, JpegFrame
from cuecast.streaming.service import Service

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BOUNDARY = "cuecastframe"
NO_CACHE = [
    (b"cache-control", b"no-cache, no-store, must-revalidate"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]


def peer_of(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


async def send_text(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = (text.rstrip("\n") + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def identity(frame: JpegFrame) -> list[tuple[str, str]]:
    """The frame's identity as headers: X-Frame-Seq (the capture process's frame number, the same as in the
    backend's trailer), X-Timestamp (its capture time, wall clock, seconds with microseconds, as uStreamer
    sends it) and X-Capture-Ns (CLOCK_MONOTONIC, for latency on this machine)."""
    out = [("X-Frame-Seq", str(frame.frame_seq if frame.frame_seq is not None else frame.seq))]
    if frame.capture_wall_ns:
        wall = frame.capture_wall_ns
        out.append(("X-Timestamp", f"{wall // 1_000_000_000}.{wall // 1000 % 1_000_000:06d}"))
    out.append(("X-Capture-Ns", str(frame.capture_ns)))
    return out


def part(frame: JpegFrame) -> bytes:
    ids = "".join(f"{k}: {v}\r\n" for k, v in identity(frame))
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.data)}\r\n{ids}\r\n".encode()
    return head + frame.data + b"\r\n"


async def stream(hub: FrameHub, scope: Scope, receive: Receive, send: Send, client_timeout: float) -> None:
    """Serve one MJPEG client until it leaves, stalls past client_timeout, or the service stops."""
    try:
        client = hub.subscribe(peer_of(scope))
    except HubFull as e:
        await send_text(send, 503, f"{e}; try again later or use a lower quality",
                        [(b"retry-after", b"5")])
        return

    async def watch_disconnect() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                hub.disconnect(client)
                return

    watcher = asyncio.create_task(watch_disconnect())
    started = False
    try:
        headers = [(b"content-type", f"multipart/x-mixed-replace; boundary={BOUNDARY}".encode()), *NO_CACHE]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        started = True
        if scope.get("method") == "HEAD":
            return
        while True:
            frame = await hub.next_frame(client)
            if frame is None:
                break
            if frame.wire is None:  # framed once per frame, the same bytes for every client
                frame.wire = part(frame)
            chunk = frame.wire
            try:
                await asyncio.wait_for(send({"type": "http.response.body", "body": chunk, "more_body": True}),
                                       client_timeout)
            except TimeoutError:
                log.info("mjpeg %s: dropping client %s: read nothing for %.0f s", hub.name, client.peer,
                         client_timeout)
                break
            except OSError:
                break
            hub.account(client, len(chunk))
    finally:
        watcher.cancel()
        hub.release(client)
        if started:
            await _finish(send)


async def _finish(send: Send) -> None:
    """End a started response properly (the last, empty chunk), however the stream ended; a client that is
    gone or reads nothing is not waited for."""
    try:
        await asyncio.wait_for(send({"type": "http.response.body", "body": b"", "more_body": False}), 1.0)
    except (TimeoutError, OSError, RuntimeError):
        pass


async def snapshot(hub: FrameHub, send: Send) -> None:
    frame = await hub.snapshot()
    if frame is None:
        await send_text(send, 503, "no frame available yet (is the source running?)", [(b"retry-after", b"2")])
        return
    headers = [(b"content-type", b"image/jpeg"), (b"content-length", str(len(frame.data)).encode()), *NO_CACHE,
               *((k.lower().encode(), v.encode()) for k, v in identity(frame))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": frame.data})


def port_app(hub: FrameHub, client_timeout: Callable[[], float]) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app of one MJPEG port: `/` streams, `/snapshot.jpg` is the newest frame, nothing else."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path not in ("/", "/snapshot.jpg"):
            await send_text(send, 404, f"not found: {path}; the stream is at / and the newest frame at /snapshot.jpg")
            return
        if method not in ("GET", "HEAD"):
            await send_text(send, 405, f"method {method} not allowed; use GET", [(b"allow", b"GET, HEAD")])
            return
        if path == "/":
            await stream(hub, scope, receive, send, client_timeout())
        else:
            await snapshot(hub, send)

    return app


class AsgiResponse(Response):
    """Lets a route hand the connection to a raw ASGI callable (the MJPEG stream)."""

    def __init__(self, call: ASGIApp) -> None:
        super().__init__()
        self._call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._call(scope, receive, send)


def router(service: Service) -> APIRouter:
    """The MJPEG qualities on the API port (/stream/video, /snapshot.jpg), from the same hubs the MJPEG ports
    use: no HTTP round trip to ourselves."""
    r = APIRouter()

    def hub_for(quality: Quality) -> Any:
        hub = service.hubs.get(quality.value)
        if hub is None:
            raise HTTPException(404, f"quality {quality.value} is disabled in the config (mjpeg.{quality.value})")
        return hub

    @r.get("/stream/video", summary="Live MJPEG stream (multipart/x-mixed-replace)",
             responses={200: {"content": {"multipart/x-mixed-replace": {}}}, 503: {"description": "Full"}})
    async def stream_route(quality: Quality = Quality.medium) -> Response:
        hub = hub_for(quality)

        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            await stream(hub, scope, receive, send, service.cfg.mjpeg.client_timeout)

        return AsgiResponse(call)

    @r.get("/snapshot.jpg", summary="The newest frame as JPEG",
             responses={200: {"content": {"image/jpeg": {}}}, 503: {"description": "No frame yet"}})
    async def snapshot_route(quality: Quality = Quality.medium) -> Response:
        hub = hub_for(quality)

        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            await snapshot(hub, send)

        return AsgiResponse(call)

    return r
