"""Pictures the capture process writes on request (the corrected snapshot, the raw frame for calibration), read
back for HTTP: one place that turns a missing frame into 503 with Retry-After; and `save_to_config`, the one
way a route writes a change it applied live back into the config file."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from cuecast.protocol import messages as msg
from cuecast.protocol.control import ControlError
from cuecast.streaming.service import Service

log = logging.getLogger(__name__)


async def save_to_config(service: Service, save: Callable[[Path], None], what: str) -> str | None:
    """Write a change applied live into the config file (`save(config_path)`): the file's path, or None when
    there is no config file or it cannot be written (logged: the change stays applied)."""
    if service.config_path is None:
        return None
    try:
        await asyncio.to_thread(save, service.config_path)
        return str(service.config_path)
    except OSError as e:
        log.warning("%s applied but not saved to %s: %s", what, service.config_path, e)
        return None


async def capture_picture(service: Service, request: msg.Request, what: str) -> tuple[Any, dict[str, Any]]:
    """(BGR image, the capture process's answer) for a SnapshotRequest or RawFrameRequest; 503 naming `what`."""

    try:
        shot = await asyncio.to_thread(service.link.request, request, 5.0)
    except ControlError as e:
        raise HTTPException(503, f"no {what}: {e}", headers={"Retry-After": "2"}) from None
    frame = await asyncio.to_thread(read_picture, shot)
    if frame is None:
        raise HTTPException(503, f"no {what} right now", headers={"Retry-After": "2"})
    return frame, shot


def read_picture(shot: dict[str, Any]) -> Any:
    """The BGR picture the capture process wrote: raw I420 bytes (the raw frame) or an image file; None if gone."""
    import cv2
    import numpy as np

    if shot.get("format") != "I420":
        return cv2.imread(shot["path"])
    w, h = int(shot["width"]), int(shot["height"])
    try:
        yuv = np.fromfile(shot["path"], np.uint8, count=w * h * 3 // 2)
    except OSError:
        return None
    if yuv.size != w * h * 3 // 2:
        return None
    return cv2.cvtColor(yuv.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)


async def jpeg_bytes(img: Any, quality: int) -> bytes:
    import cv2

    _ok, data = await asyncio.to_thread(cv2.imencode, ".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(data.tobytes())
