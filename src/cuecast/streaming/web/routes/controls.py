"""/api/controls: the picture controls (brightness, contrast, ...), applied live in the capture process and
saved to the config file."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from cuecast.config import ControlsConfig, save_controls
from cuecast.streaming.service import Service
from cuecast.streaming.web.pictures import save_to_config

log = logging.getLogger(__name__)


class ControlsUpdate(BaseModel):
    """Any subset of the picture controls; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # strict: `true` is not a brightness
    brightness: float | None = Field(None, ge=-1.0, le=1.0)
    contrast: float | None = Field(None, ge=0.0, le=2.0)
    saturation: float | None = Field(None, ge=0.0, le=2.0)
    hue: float | None = Field(None, ge=-1.0, le=1.0)


class ControlsResult(ControlsConfig):
    persisted_to: str | None = Field(None, description="config file the controls were saved to, if any")


def router(service: Service) -> APIRouter:
    r = APIRouter()
    controls_lock = asyncio.Lock()

    @r.get("/api/controls", response_model=ControlsConfig, summary="Picture controls")
    async def get_controls() -> ControlsConfig:
        return service.cfg.controls

    @r.put("/api/controls", response_model=ControlsResult, summary="Change picture controls live",
             responses={400: {"description": "Body is not valid JSON"},
                        401: {"description": "auth.token is set and the bearer token is missing or wrong"},
                        403: {"description": "No auth.token configured and the client is not on this machine"},
                        413: {"description": "Body too large"}})
    async def put_controls(update: ControlsUpdate) -> ControlsResult:
        async with controls_lock:
            merged = service.cfg.controls.model_dump() | update.model_dump(exclude_none=True)
            controls = ControlsConfig(**merged)
            service.set_controls(controls)
            persisted = await save_to_config(service, lambda cfg: save_controls(cfg, controls), "controls")
            log.info("controls set: %s", ", ".join(f"{k}={v}" for k, v in controls.model_dump().items()))
            return ControlsResult(**controls.model_dump(), persisted_to=persisted)

    return r
