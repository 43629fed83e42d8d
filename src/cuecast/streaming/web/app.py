"""The FastAPI app on :8000: the viewer, status, health, and every router: the MJPEG qualities and WHEP (from
their outputs), table, lens, controls, camera, replay clips, events, metrics.

Owns the HTTP contract of the API (typed, documented at /docs): qualities are an enum (422 lists the
allowed values), controls are bounded (422 names the field), bodies are size-limited (413, limits.py), and
every error answers JSON naming the problem.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from cuecast import __version__
from cuecast.streaming.outputs.mjpeg import http as mjpeg_http
from cuecast.streaming.outputs.replay import http as clips
from cuecast.streaming.outputs.webrtc import http as whep
from cuecast.streaming.service import Service
from cuecast.streaming.web import metrics
from cuecast.streaming.web.limits import finite
from cuecast.streaming.web.routes import camera, controls, events, lens, table

log = logging.getLogger(__name__)


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="cuecast", version=__version__,
                  responses={414: {"description": "Query string too long"},
                             431: {"description": "Request headers too large"}},
                  description="Camera streaming service for a billiards trainer: streams, status and controls.")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def viewer() -> HTMLResponse:
        return HTMLResponse(files("cuecast.streaming.web").joinpath("static/viewer.html").read_text())

    @app.get("/api/status", summary="Source, outputs, CPU, version")
    async def status() -> dict[str, Any]:
        return service.status()

    @app.get("/healthz", summary="200 while frames flow, 503 otherwise")
    async def healthz() -> JSONResponse:
        ok = service.healthy()
        src = service.runner.status.state if service.runner else "stopped"
        return JSONResponse({"ok": ok, "source": src}, status_code=200 if ok else 503)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        """422 naming the field; an input JSON cannot carry (a non-finite number) is shown as text."""
        return JSONResponse({"detail": jsonable_encoder(finite(exc.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette lists only one route's methods; list every method this path supports.
            methods = sorted({m for r in app.routes if isinstance(r, APIRoute) and r.path == request.url.path
                              for m in r.methods or ()})
            headers["Allow"] = ", ".join(methods)
        if request.url.path.startswith("/whep/"):
            headers.update(whep.WHEP_CORS)  # a WHEP player on another origin must be able to read the reason
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    for module in (mjpeg_http, whep, table, lens, controls, camera, clips, events, metrics):
        app.include_router(module.router(service))
    return app
