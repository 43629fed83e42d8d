"""/api/camera: the V4L2 camera's own controls and profiles, read and set in the capture process (which owns
the device) and saved to the config file, so a replug or restart applies them again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from cuecast.config import CameraConfig, save_camera
from cuecast.protocol import messages as msg
from cuecast.protocol.control import ControlError
from cuecast.streaming.service import Service
from cuecast.streaming.web.pictures import capture_picture, jpeg_bytes, save_to_config

log = logging.getLogger(__name__)


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


def router(service: Service) -> APIRouter:
    r = APIRouter()
    camera_lock = asyncio.Lock()

    async def camera_request(req: msg.Request) -> Any:
        try:
            return await asyncio.to_thread(service.link.request, req, 10.0)
        except ControlError as e:
            raise camera_error(e) from None

    async def keep_camera(result: dict[str, Any]) -> str | None:
        """The capture process's camera section after a change: into this process's config and the file."""
        camera = service.cfg.camera = CameraConfig(**result["camera"])
        return await save_to_config(service, lambda cfg: save_camera(cfg, camera), "camera controls")

    @r.get("/api/camera", summary="The camera: device, modes and every control read from it",
             responses={503: {"description": "No V4L2 camera (another source), or it is unplugged"}})
    async def get_camera() -> dict[str, Any]:
        return await camera_request(msg.CameraRequest())

    changes: dict[int | str, dict[str, Any]] = {400: {"description": "Body is not valid JSON"},
               401: {"description": "auth.token is set and the bearer token is missing or wrong"},
               403: {"description": "No auth.token configured and the client is not on this machine"},
               413: {"description": "Body too large"}, 415: {"description": "Not application/json"}}

    @r.put("/api/camera", summary="Set camera controls live (saved; applied again on every open)",
             responses={**changes,
                        409: {"description": "A control is inactive (the answer names what makes it active)"},
                        422: {"description": "Unknown control (the answer lists them) or a value out of range"},
                        503: {"description": "No camera"}})
    async def put_camera(update: CameraUpdate) -> dict[str, Any]:
        async with camera_lock:
            result = await camera_request(msg.CameraSetRequest(controls=update.controls))
            persisted = await keep_camera(result)
            return {"controls": result["applied"], "persisted_to": persisted}

    @r.put("/api/camera/profile", summary="Switch to a named camera profile (camera.profiles)",
             responses={**changes, 422: {"description": "No such profile"}, 503: {"description": "No camera"}})
    async def put_camera_profile(body: CameraProfile) -> dict[str, Any]:
        async with camera_lock:
            result = await camera_request(msg.CameraSetRequest(profile_set=True, profile=body.profile))
            persisted = await keep_camera(result)
            return {"profile": body.profile, "controls": result["applied"], "persisted_to": persisted}

    @r.get("/api/camera/raw.jpg", summary="The raw camera picture now: for lens calibration",
           description="The decoded camera frame before the picture controls and the correction (the backend's "
                       "shared memory carries corrected frames): what `cuecast calibrate capture` takes its views "
                       "from. Guarded like the controls. Headers: X-Frame-Seq, X-Timestamp, X-Camera, X-Corrected.",
           responses={200: {"content": {"image/jpeg": {}}},
                      401: {"description": "auth.token is set and the bearer token is missing or wrong"},
                      403: {"description": "No auth.token configured and the client is not on this machine"},
                      503: {"description": "No frame from the camera right now"}})
    async def raw_jpeg() -> Response:
        frame, shot = await capture_picture(service, msg.RawFrameRequest(), "raw camera frame")
        return Response(await jpeg_bytes(frame, 95), media_type="image/jpeg", headers={
            "Cache-Control": "no-store", "X-Frame-Seq": str(shot["seq"]), "X-Timestamp": f"{shot['capture_time']:.6f}",
            "X-Camera": str(shot["source"] or ""), "X-Corrected": "false"})

    return r
