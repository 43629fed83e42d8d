"""/api/table: the table calibration and its view (read, set live and saved, the camera picture and a preview
to calibrate from)."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from cuecast.config import save_table_path
from cuecast.protocol import messages as msg
from cuecast.streaming.service import Service
from cuecast.streaming.web.pictures import capture_picture, jpeg_bytes
from cuecast.table import TableError, TableGeometry, view_of
from cuecast.table.model import parse_size
from cuecast.table.preview import render_preview

log = logging.getLogger(__name__)


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
    image_size: Size | None = Field(None, description="the camera picture the corners are in")
    camera_from_mm: list[float] | None = Field(None, description="3x3 homography, row-major: table mm (0, 0 at "
                                               "the top-left corner) -> camera-view pixels (drawing in mm)")
    persisted_to: str | None = Field(None, description="table.yaml it was saved to, if any")


def router(service: Service) -> APIRouter:
    r = APIRouter()
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
        frame, _shot = await capture_picture(service, msg.SnapshotRequest(), "camera frame")
        return frame

    async def jpeg(img: Any) -> Response:
        return Response(await jpeg_bytes(img, 92), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @r.get("/api/table", response_model=TableResult, summary="The table calibration and its view")
    async def get_table() -> TableResult:
        t = service.table
        if t is None:
            return TableResult(calibrated=False)
        tv = view_of(service.cfg, t)
        to_px = np.linalg.inv(t.homography())
        return TableResult(calibrated=True, corners=[list(c) for c in t.corners], size_mm=list(t.size_mm),
                           px_per_mm=tv.px_per_mm, margin_mm=tv.margin_mm, view_size=list(tv.size),
                           image_size=list(t.image_size), camera_from_mm=(to_px / to_px[2, 2]).ravel().tolist())

    @r.put("/api/table", response_model=TableResult, summary="Calibrate the table (applied live, saved)",
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

    @r.get("/api/table/frame.jpg", summary="The corrected camera picture now (for calibrating the table)",
             responses={200: {"content": {"image/jpeg": {}}}, 503: {"description": "No frame right now"}})
    async def table_frame() -> Response:
        return await jpeg(await camera_frame())

    @r.get("/api/table/preview.jpg", summary="The table view for given corners, with a 100 mm grid",
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

    return r
