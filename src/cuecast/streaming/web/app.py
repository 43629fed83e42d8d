"""The FastAPI app on :8000: streams, WebRTC (WHEP) signalling, snapshot, status, metrics, controls, table,
replay clips (web.clips), viewer.

Owns the HTTP contract of the API (typed, documented at /docs): qualities are an enum (422 lists the
allowed values), controls are bounded (422 names the field), bodies are size-limited (413), and the MJPEG
qualities are served in-process from the same hubs the MJPEG ports use (no HTTP round trip to ourselves).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cuecast import __version__
from cuecast.config import CameraConfig, ControlsConfig, save_camera, save_controls, save_table_path
from cuecast.protocol.control import ControlError
from cuecast.streaming.outputs.mjpeg import http as mjpeg_http
from cuecast.streaming.outputs.replay import http as clips
from cuecast.streaming.outputs.webrtc.branch import WebRtcOutput, WhepError
from cuecast.streaming.service import QUALITIES, Service
from cuecast.table import TableError, TableGeometry, view_of
from cuecast.table.model import parse_size
from cuecast.table.preview import render_preview

log = logging.getLogger(__name__)


# Lets WHEP players served from another origin talk to us (a bearer token still guards it if configured).
WHEP_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Location, ETag"}


class Quality(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class ControlsUpdate(BaseModel):
    """Any subset of the picture controls; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # strict: `true` is not a brightness
    brightness: float | None = Field(None, ge=-1.0, le=1.0)
    contrast: float | None = Field(None, ge=0.0, le=2.0)
    saturation: float | None = Field(None, ge=0.0, le=2.0)
    hue: float | None = Field(None, ge=-1.0, le=1.0)


class ControlsResult(ControlsConfig):
    persisted_to: str | None = Field(None, description="config file the controls were saved to, if any")


class CameraUpdate(BaseModel):
    """Camera (V4L2) controls to set, by the names `GET /api/camera` lists (v4l2-ctl's): {"controls":
    {"auto_exposure": 1, "exposure_time_absolute": 80}}. Applied live in dependency order and saved."""

    model_config = ConfigDict(extra="forbid", strict=True)
    controls: dict[str, int] = Field(..., description="name: whole number (menus: the entry's index)")


class CameraProfile(BaseModel):
    """Switch to a named profile of camera.profiles (null: none)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    profile: str | None


# A camera request the capture process refused, by the kind it names: the HTTP status to answer with.
CAMERA_STATUS = {"unknown": 422, "value": 422, "inactive": 409, "busy": 409, "gone": 503}


def camera_error(e: ControlError) -> HTTPException:
    kind, _, text = str(e).partition(": ")
    if kind in CAMERA_STATUS:
        return HTTPException(CAMERA_STATUS[kind], text)
    return HTTPException(503, f"the capture process did not answer: {e}")


# Pairs as two-item arrays (not tuples: their "prefixItems" schemas trip OpenAPI tools).
Point = Annotated[list[float], Field(min_length=2, max_length=2)]
Size = Annotated[list[int], Field(min_length=2, max_length=2)]


class TableUpdate(BaseModel):
    """A table calibration: the playing surface's corners in the corrected camera image (top-left, top-right,
    bottom-right, bottom-left as seen), and its size: a preset (7ft, 8ft, 9ft), WxH in mm, or size_mm."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    corners: list[Point] = Field(min_length=4, max_length=4, description="[[x, y], ...]: TL, TR, BR, BL")
    size: str | None = Field(None, max_length=32, description="7ft, 8ft, 9ft or WxH in mm")
    size_mm: Point | None = Field(None, description="[W, H] in mm (instead of size)")
    image_size: Size | None = Field(None, description="the image the corners are in (default: the "
                                               "camera view's size)")


class TableResult(BaseModel):
    calibrated: bool
    corners: list[Point] | None = None
    size_mm: Point | None = None
    px_per_mm: float | None = None
    margin_mm: float | None = None
    view_size: Size | None = None
    persisted_to: str | None = Field(None, description="table.yaml it was saved to, if any")


class _AsgiResponse(Response):
    """Lets a route hand the connection to a raw ASGI callable (the MJPEG stream)."""

    def __init__(self, call: ASGIApp) -> None:
        super().__init__()
        self._call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._call(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, by Content-Length or while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await mjpeg_http.send_text(send, 413, f"request body over {self.limit} bytes")
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return msg

        started = False

        async def tracking_send(msg: Any) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except _TooLarge:
            if not started:
                await mjpeg_http.send_text(send, 413, f"request body over {self.limit} bytes")


class _TooLarge(Exception):
    pass


JSON_MAX_DEPTH = 32


class JsonBodies:
    """Strict JSON for the API's request bodies, before FastAPI sees them: a body sent to a JSON endpoint
    must say `Content-Type: application/json` (415), be JSON nested at most JSON_MAX_DEPTH deep (400), have no
    duplicate keys (400: which value would count?), and hold no non-finite number, `1e999` or `NaN` included
    (422 naming the field). Bodies for other endpoints (WHEP's SDP) pass untouched."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = ("/api/",)) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH")
                or not scope.get("path", "").startswith(self.paths)):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        if body:
            ctype = dict(scope.get("headers", [])).get(b"content-type", b"").split(b";")[0].strip().lower()
            if ctype != b"application/json":
                await send_json(send, 415, f"send the body as JSON with Content-Type: application/json "
                                           f"(got {ctype.decode('latin-1') or 'none'})")
                return
            problem = check_json(body)
            if problem is not None:
                status, detail = problem
                await send_json(send, status, detail)
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Duplicate(Exception):
    pass


def check_json(body: bytes) -> tuple[int, Any] | None:
    """(status, detail) for a body the API refuses, None for a good one (see JsonBodies)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in body:
        if in_string:
            if escaped:
                escaped = False
            elif ch == 0x5C:  # backslash
                escaped = True
            elif ch == 0x22:  # quote
                in_string = False
        elif ch == 0x22:
            in_string = True
        elif ch in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif ch in (0x5D, 0x7D):
            depth -= 1
    if deepest > JSON_MAX_DEPTH:
        return 400, f"JSON nested {deepest} levels deep; at most {JSON_MAX_DEPTH} are accepted"

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in items:
            if k in seen:
                raise _Duplicate(k)
            seen[k] = v
        return seen

    try:
        data = json.loads(body, object_pairs_hook=pairs)
    except _Duplicate as e:
        return 400, f"duplicate key {e.args[0]!r} in the JSON body"
    except (ValueError, RecursionError):
        return None  # not JSON at all: FastAPI answers that with its own 4xx
    bad = _non_finite(data, ("body",))
    if bad is not None:
        return 422, [{"type": "finite_number", "loc": list(bad), "msg": "Input should be a finite number",
                      "input": str(_at(data, bad[1:]))}]
    return None


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (and any exception object) turned into text, so it can be JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, BaseException):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _non_finite(value: Any, path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, (*path, k))
        if found is not None:
            return found
    return None


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        value = value[k]
    return value


async def send_json(send: Send, status: int, detail: Any) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _StatusCollector:
    """Prometheus view of Service.status(), read at scrape time."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Any:
        st = self.service.status()
        yield GaugeMetricFamily("cuecast_uptime_seconds", "Seconds since the service started", st["uptime_s"])
        yield GaugeMetricFamily("cuecast_cpu_percent", "Process CPU, percent of one core", st["cpu_percent"])
        yield GaugeMetricFamily("cuecast_source_up", "1 while frames flow from the source", int(st["healthy"]))
        src = st["source"] or {}
        yield CounterMetricFamily("cuecast_source_frames", "Frames received from the source", src.get("frames", 0))
        yield CounterMetricFamily("cuecast_source_attempts", "Source connection attempts", src.get("attempts", 0))
        yield CounterMetricFamily("cuecast_source_corrupt_frames", "Frames the decoder dropped as corrupt",
                                  src.get("corrupt_frames", 0))
        if src.get("kind") == "v4l2":
            yield CounterMetricFamily("cuecast_camera_drops", "Frames the camera's driver dropped (gaps in its "
                                      "buffer sequence: no buffer was free)", src.get("camera_drops", 0))
            for key, metric, what in (
                    ("frame_interval_ms", "cuecast_camera_frame_interval_seconds",
                     "Mean time between the driver's frame timestamps, recent frames"),
                    ("frame_interval_jitter_ms", "cuecast_camera_frame_interval_jitter_seconds",
                     "Standard deviation of the time between the driver's frame timestamps (jitter)")):
                if src.get(key) is not None:
                    yield GaugeMetricFamily(metric, what, src[key] / 1000)
        camera = st.get("camera") or {}
        if camera.get("controls"):
            ctl = GaugeMetricFamily("cuecast_camera_control", "A camera (V4L2) control's value as last read "
                                    "from the device (every 5 s)", labels=["control"])
            for name, value in sorted(camera["controls"].items()):
                ctl.add_metric([name], value)
            yield ctl
        clients = GaugeMetricFamily("cuecast_output_clients", "Connected clients", labels=["output"])
        fps = GaugeMetricFamily("cuecast_output_fps", "Frames per second sent", labels=["output"])
        sent = CounterMetricFamily("cuecast_output_frames_sent", "Frames sent to clients", labels=["output"])
        dropped = CounterMetricFamily("cuecast_output_frames_dropped", "Frames a consumer did not get (slow "
                                      "clients, a full shared area, waiting for a key frame)", labels=["output"])
        nbytes = CounterMetricFamily("cuecast_output_bytes_sent", "Bytes sent to clients", labels=["output"])
        for name, o in st["outputs"].items():  # every output has these fields (service.output_entry)
            if not o["enabled"]:
                continue
            clients.add_metric([name], o["clients"])
            fps.add_metric([name], o["fps"])
            sent.add_metric([name], o["frames_sent"])
            dropped.add_metric([name], o["frames_dropped"])
            nbytes.add_metric([name], o["bytes_sent"])
        yield from (clients, fps, sent, dropped, nbytes)
        degr = st.get("degradation") or {}
        yield GaugeMetricFamily("cuecast_degrading", "1 while outputs run below their configured rate",
                                int(bool(degr.get("degrading"))))
        target = GaugeMetricFamily("cuecast_output_fps_target", "Rate an output runs at now (degradation)",
                                   labels=["output"])
        for name, rates in (degr.get("outputs") or {}).items():
            target.add_metric([name], rates["fps_target"])
        up = GaugeMetricFamily("cuecast_publish_live", "1 while a publish target is live", labels=["url"])
        pub_bytes = CounterMetricFamily("cuecast_publish_bytes", "Bytes pushed to a publish target", labels=["url"])
        failures = CounterMetricFamily("cuecast_publish_failures", "Failed or lost connections", labels=["url"])
        for p in st.get("publish", []):
            up.add_metric([p["url"]], int(p["state"] == "live"))
            pub_bytes.add_metric([p["url"]], p["bytes_sent"])
            failures.add_metric([p["url"]], p["failures"])
        yield from (target, up, pub_bytes, failures)
        rp = st.get("replay") or {}
        if rp.get("enabled"):
            yield CounterMetricFamily("cuecast_replay_clips_written", "Replay clips written", rp["clips_written"])
            yield CounterMetricFamily("cuecast_replay_bytes_written", "Bytes of replay clips written",
                                      rp["bytes_written"])
            yield CounterMetricFamily("cuecast_replay_failures", "Replay clips that could not be written",
                                      rp["failures"])
            yield GaugeMetricFamily("cuecast_replay_seconds_held", "Seconds of H.264 kept for replay",
                                    rp["seconds_held"])
            yield GaugeMetricFamily("cuecast_replay_bytes_held", "Bytes of H.264 kept for replay", rp["bytes_held"])
            yield GaugeMetricFamily("cuecast_replay_clips", "Replay clips on disk", rp["clips"])


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="cuecast", version=__version__,
                  responses={414: {"description": "Query string too long"},
                             431: {"description": "Request headers too large"}},
                  description="Camera streaming service for a billiards trainer: streams, status and controls.")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_StatusCollector(service))
    controls_lock = asyncio.Lock()

    def hub_for(quality: Quality) -> Any:
        hub = service.hubs.get(quality.value)
        if hub is None:
            raise HTTPException(404, f"quality {quality.value} is disabled in the config (mjpeg.{quality.value})")
        return hub

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def viewer() -> HTMLResponse:
        return HTMLResponse(files("cuecast.streaming.web").joinpath("static/viewer.html").read_text())

    @app.get("/stream/video", summary="Live MJPEG stream (multipart/x-mixed-replace)",
             responses={200: {"content": {"multipart/x-mixed-replace": {}}}, 503: {"description": "Full"}})
    async def stream_video(quality: Quality = Quality.medium) -> Response:
        hub = hub_for(quality)

        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            await mjpeg_http.stream(hub, scope, receive, send, service.cfg.mjpeg.client_timeout)

        return _AsgiResponse(call)

    @app.get("/snapshot.jpg", summary="The newest frame as JPEG",
             responses={200: {"content": {"image/jpeg": {}}}, 503: {"description": "No frame yet"}})
    async def snapshot(quality: Quality = Quality.medium) -> Response:
        hub = hub_for(quality)

        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            await mjpeg_http.snapshot(hub, send)

        return _AsgiResponse(call)

    def webrtc() -> WebRtcOutput:
        if service.webrtc is None:
            raise HTTPException(404, "WebRTC is disabled in the config (webrtc.enabled)")
        return service.webrtc

    @app.post("/whep/high", status_code=201, summary="WebRTC playback of the high stream (WHEP)",
              description="Send an SDP offer (Content-Type: application/sdp, ICE candidates included); the "
                          "answer carries every server candidate (no trickle). DELETE the Location to end.",
              openapi_extra={"requestBody": {"required": True, "content": {"application/sdp": {
                  "schema": {"type": "string"}}}}},
              responses={201: {"content": {"application/sdp": {}}, "description": "SDP answer",
                               "headers": {"Location": {"schema": {"type": "string"}}}},
                         400: {"description": "Malformed SDP offer"}, 404: {"description": "WebRTC disabled"},
                         406: {"description": "No usable H.264 in the offer"},
                         413: {"description": "Body too large"}, 415: {"description": "Not application/sdp"},
                         503: {"description": "Viewer limit reached, or no frames yet"}})
    async def whep_offer(request: Request) -> Response:
        output = webrtc()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            raise HTTPException(415, "send the SDP offer with Content-Type: application/sdp")
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(400, "malformed SDP offer: not UTF-8 text") from None
        peer = request.client.host if request.client else "?"
        try:
            sid, answer = await asyncio.to_thread(output.answer, text, peer)
        except WhepError as e:
            headers = {"Retry-After": "5"} if e.status == 503 else None
            raise HTTPException(e.status, str(e), headers=headers) from None
        return Response(answer, status_code=201, media_type="application/sdp",
                        headers={**WHEP_CORS, "Location": f"/whep/high/{sid}", "ETag": f'"{sid}"'})

    @app.delete("/whep/high/{session}", summary="End a WebRTC (WHEP) session",
                responses={404: {"description": "No such session"}})
    async def whep_delete(session: str) -> Response:
        if not await asyncio.to_thread(webrtc().close, session):
            raise HTTPException(404, "no such WebRTC session: it ended already or never existed")
        return Response(status_code=200, headers=WHEP_CORS)

    @app.options("/whep/high", include_in_schema=False)
    @app.options("/whep/high/{session}", include_in_schema=False)
    async def whep_preflight() -> Response:
        return Response(status_code=204, headers={
            **WHEP_CORS, "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "content-type, authorization", "Accept-Post": "application/sdp"})

    @app.get("/api/status", summary="Source, outputs, CPU, version")
    async def status() -> dict[str, Any]:
        return service.status()

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    @app.get("/healthz", summary="200 while frames flow, 503 otherwise")
    async def healthz() -> JSONResponse:
        ok = service.healthy()
        src = service.runner.status.state if service.runner else "stopped"
        return JSONResponse({"ok": ok, "source": src}, status_code=200 if ok else 503)

    table_lock = asyncio.Lock()

    def table_of(update: TableUpdate) -> TableGeometry:
        src = service.cfg.source
        try:
            if update.size_mm is not None:
                size = (update.size_mm[0], update.size_mm[1])
            elif update.size is not None:
                size = parse_size(update.size)
            else:
                raise HTTPException(422, "give the table's size: size (7ft, 8ft, 9ft, WxH in mm) or size_mm")
            corners = tuple((c[0], c[1]) for c in update.corners)
            image = (update.image_size[0], update.image_size[1]) if update.image_size else (src.width, src.height)
            return TableGeometry(corners, size, image)
        except TableError as e:
            raise HTTPException(422, str(e)) from None

    async def camera_frame() -> Any:
        import cv2

        try:
            shot = await asyncio.to_thread(service.link.request, "snapshot", 5.0)
        except ControlError as e:
            raise HTTPException(503, f"no camera frame: {e}", headers={"Retry-After": "2"}) from None
        frame = await asyncio.to_thread(cv2.imread, shot["path"])
        if frame is None:
            raise HTTPException(503, "no camera frame right now", headers={"Retry-After": "2"})
        return frame

    async def jpeg(img: Any) -> Response:
        import cv2

        ok, data = await asyncio.to_thread(cv2.imencode, ".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        return Response(data.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/table", response_model=TableResult, summary="The table calibration and its view")
    async def get_table() -> TableResult:
        t = service.table
        if t is None:
            return TableResult(calibrated=False)
        tv = view_of(service.cfg, t)
        return TableResult(calibrated=True, corners=[list(c) for c in t.corners], size_mm=list(t.size_mm),
                           px_per_mm=tv.px_per_mm, margin_mm=tv.margin_mm, view_size=list(tv.size))

    @app.put("/api/table", response_model=TableResult, summary="Calibrate the table (applied live, saved)",
             responses={401: {"description": "auth.token is set and the bearer token is missing or wrong"},
                        403: {"description": "No auth.token configured and the client is not on this machine"},
                        400: {"description": "Body is not valid JSON"}, 413: {"description": "Body too large"},
                        422: {"description": "The corners or the size cannot be a table"}})
    async def put_table(update: TableUpdate) -> TableResult:
        async with table_lock:
            table = table_of(update)
            persisted: str | None = None
            path = service.cfg.table.calibration
            if path is None and service.config_path is not None:
                path = service.config_path.with_name("table.yaml")
            if path is not None:
                try:
                    await asyncio.to_thread(table.save, Path(path))
                    if service.cfg.table.calibration is None and service.config_path is not None:
                        await asyncio.to_thread(save_table_path, service.config_path, Path(path))
                        service.cfg.table.calibration = Path(path)
                    persisted = str(path)
                except OSError as e:
                    log.warning("table applied but not saved to %s: %s", path, e)
            service.table_set_live = persisted is None
            await asyncio.to_thread(service.set_table, table)
            log.info("table calibrated over the API: corners %s, %gx%g mm%s",
                     [tuple(round(v, 1) for v in c) for c in table.corners], *table.size_mm,
                     f", saved to {persisted}" if persisted else "")
            result = await get_table()
            result.persisted_to = persisted
            return result

    @app.get("/api/table/frame.jpg", summary="The corrected camera picture now (for calibrating the table)",
             responses={200: {"content": {"image/jpeg": {}}}, 503: {"description": "No frame right now"}})
    async def table_frame() -> Response:
        return await jpeg(await camera_frame())

    @app.get("/api/table/preview.jpg", summary="The table view for given corners, with a 100 mm grid",
             responses={200: {"content": {"image/jpeg": {}}}, 422: {"description": "Not a table"},
                        503: {"description": "No frame right now"}})
    async def table_preview(corners: str = Query(max_length=150, description="x,y of TL, TR, BR, BL"),
                            size: str = Query("9ft", max_length=16)) -> Response:
        try:
            values = [float(v) for v in corners.split(",")]
        except ValueError:
            raise HTTPException(422, "corners: 8 numbers, x,y of top-left, top-right, bottom-right, "
                                     "bottom-left") from None
        if len(values) != 8 or not all(math.isfinite(v) for v in values):
            raise HTTPException(422, "corners: 8 numbers, x,y of top-left, top-right, bottom-right, bottom-left")
        table = table_of(TableUpdate(corners=[[x, y] for x, y in zip(values[::2], values[1::2], strict=True)],
                                     size=size))
        frame = await camera_frame()
        img = await asyncio.to_thread(render_preview, frame, view_of(service.cfg, table))
        return await jpeg(img)

    @app.get("/api/controls", response_model=ControlsConfig, summary="Picture controls")
    async def get_controls() -> ControlsConfig:
        return service.cfg.controls

    @app.put("/api/controls", response_model=ControlsResult, summary="Change picture controls live",
             responses={400: {"description": "Body is not valid JSON"},
                        401: {"description": "auth.token is set and the bearer token is missing or wrong"},
                        403: {"description": "No auth.token configured and the client is not on this machine"},
                        413: {"description": "Body too large"}})
    async def put_controls(update: ControlsUpdate) -> ControlsResult:
        async with controls_lock:
            merged = service.cfg.controls.model_dump() | update.model_dump(exclude_none=True)
            controls = ControlsConfig(**merged)
            service.set_controls(controls)
            persisted: str | None = None
            if service.config_path is not None:
                try:
                    await asyncio.to_thread(save_controls, service.config_path, controls)
                    persisted = str(service.config_path)
                except OSError as e:
                    log.warning("controls applied but not saved to %s: %s", service.config_path, e)
            log.info("controls set: %s", ", ".join(f"{k}={v}" for k, v in controls.model_dump().items()))
            return ControlsResult(**controls.model_dump(), persisted_to=persisted)

    camera_lock = asyncio.Lock()

    async def camera_request(op: str, **args: Any) -> Any:
        try:
            return await asyncio.to_thread(service.link.request, op, 10.0, **args)
        except ControlError as e:
            raise camera_error(e) from None

    async def keep_camera(result: dict[str, Any]) -> str | None:
        """The capture process's camera section after a change: into this process's config and the file."""
        service.cfg.camera = CameraConfig(**result["camera"])
        if service.config_path is None:
            return None
        try:
            await asyncio.to_thread(save_camera, service.config_path, service.cfg.camera)
            return str(service.config_path)
        except OSError as e:
            log.warning("camera controls applied but not saved to %s: %s", service.config_path, e)
            return None

    @app.get("/api/camera", summary="The camera: device, modes and every control read from it",
             responses={503: {"description": "No V4L2 camera (another source), or it is unplugged"}})
    async def get_camera() -> dict[str, Any]:
        return await camera_request("camera")

    changes: dict[int | str, dict[str, Any]] = {400: {"description": "Body is not valid JSON"},
               401: {"description": "auth.token is set and the bearer token is missing or wrong"},
               403: {"description": "No auth.token configured and the client is not on this machine"},
               413: {"description": "Body too large"}, 415: {"description": "Not application/json"}}

    @app.put("/api/camera", summary="Set camera controls live (saved; applied again on every open)",
             responses={**changes,
                        409: {"description": "A control is inactive (the answer names what makes it active)"},
                        422: {"description": "Unknown control (the answer lists them) or a value out of range"},
                        503: {"description": "No camera"}})
    async def put_camera(update: CameraUpdate) -> dict[str, Any]:
        async with camera_lock:
            result = await camera_request("camera_set", controls=update.controls)
            persisted = await keep_camera(result)
            return {"controls": result["applied"], "persisted_to": persisted}

    @app.put("/api/camera/profile", summary="Switch to a named camera profile (camera.profiles)",
             responses={**changes, 422: {"description": "No such profile"}, 503: {"description": "No camera"}})
    async def put_camera_profile(body: CameraProfile) -> dict[str, Any]:
        async with camera_lock:
            result = await camera_request("camera_set", profile=body.profile)
            persisted = await keep_camera(result)
            return {"profile": body.profile, "controls": result["applied"], "persisted_to": persisted}

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        """422 naming the field; an input JSON cannot carry (a non-finite number) is shown as text."""
        return JSONResponse({"detail": jsonable_encoder(_finite(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette lists only one route's methods; list every method this path supports.
            methods = sorted({m for r in app.routes if isinstance(r, APIRoute) and r.path == request.url.path
                              for m in r.methods or ()})
            headers["Allow"] = ", ".join(methods)
        if request.url.path.startswith("/whep/"):
            headers.update(WHEP_CORS)  # a WHEP player on another origin must be able to read the reason
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    app.include_router(clips.router(service))
    assert set(q.value for q in Quality) == set(QUALITIES)
    return app


def with_limits(app: FastAPI, service: Service) -> ASGIApp:
    return BodyLimit(JsonBodies(app), service.cfg.http.max_body_bytes)
