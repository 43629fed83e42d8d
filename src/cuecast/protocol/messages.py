"""What the streaming process asks the capture process, and the capture status it gets back: typed, and
versioned once (PROTOCOL_VERSION), like the frame trailer. control.py carries them over the socket.

A request is one JSON line `{"v": PROTOCOL_VERSION, "op": ..., "args": {...}}`; the answer
`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`. Both processes come from one install, so a
version mismatch means a half-upgraded service: it is refused with a message that says so.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cuecast.config import ControlsConfig

PROTOCOL_VERSION = 1


class ProtocolError(Exception):
    """A message that is not one of ours (bad JSON, wrong version, unknown or invalid request)."""


class Request(BaseModel):
    """A request from the streaming process; `op` names it on the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    op: ClassVar[str]

    def encode(self) -> bytes:
        return json.dumps({"v": PROTOCOL_VERSION, "op": self.op, "args": self.model_dump(mode="json")}).encode()


class StatusRequest(Request):
    """The capture process's status (CaptureStatus)."""

    op = "status"


class DemandRequest(Request):
    """Whether the streaming process wants frames on the ring (none while nobody watches)."""

    op = "demand"
    on: bool


class ControlsRequest(Request):
    """Picture controls (brightness, contrast) for the correction pass; answers the controls applied."""

    op = "controls"
    controls: ControlsConfig


class TableRequest(Request):
    """A new table calibration (table.model.table_dict's form); answers the table status."""

    op = "table"
    table: dict[str, Any]


class SnapshotRequest(Request):
    """The newest corrected frame as PNG in the runtime directory; answers {path, width, height}."""

    op = "snapshot"


class RawFrameRequest(Request):
    """The next raw camera frame (decoded, before the picture controls and the correction) as I420 bytes in the
    runtime directory (no encoding in the capture process), for lens calibration; answers {path, format: I420,
    width, height, seq, capture_time, source, corrected}."""

    op = "raw_frame"


class LensRequest(Request):
    """A new lens calibration, live: the camera.yaml at `calibration` replaces the correction's model (the maps
    are rebuilt and swapped between two frames; a pipeline without a correction gets one) and the table's
    corners move with it. Answers {fisheye: the fisheye status, table: table_dict or None}."""

    op = "lens"
    calibration: str


class CameraRequest(Request):
    """The V4L2 camera's modes, controls, saved values and profiles."""

    op = "camera"


class CameraSetRequest(Request):
    """Set camera controls live, or (profile_set) switch to a named profile (None: none)."""

    op = "camera_set"
    controls: dict[str, int | bool | str] = {}
    profile_set: bool = False
    profile: str | None = None


class FisheyeRequest(Request):
    """Correction on or off."""

    op = "fisheye"
    enabled: bool


REQUESTS: dict[str, type[Request]] = {cls.op: cls for cls in (
    StatusRequest, DemandRequest, ControlsRequest, TableRequest, SnapshotRequest, RawFrameRequest, LensRequest,
    CameraRequest, CameraSetRequest, FisheyeRequest)}


def decode_request(line: bytes) -> Request:
    try:
        doc = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("not a request object")
    if doc.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {doc.get('v')!r}, this process speaks {PROTOCOL_VERSION}: the two "
                            "processes come from different installs; restart the service")
    cls = REQUESTS.get(str(doc.get("op")))
    if cls is None:
        raise ProtocolError(f"unknown request {doc.get('op')!r}")
    try:
        return cls(**(doc.get("args") or {}))
    except (ValidationError, TypeError) as e:
        raise ProtocolError(f"invalid {cls.op} request: {e}") from None


class PipelineStatus(BaseModel):
    frames_in: int = 0
    restarts: int = 0
    last_error: str | None = None


class CaptureStatus(BaseModel):
    """The capture process's state, polled twice a second by the streaming process. The blocks after
    `pipeline` go to /api/status as they are (their fields are documented there)."""

    instance: str  # changes when a new capture process starts
    pid: int
    uptime_s: float
    cpu_percent: float
    priority: str
    healthy: bool  # real frames flow from the camera
    source: dict[str, Any] | None  # media.runner.SourceStatus, with ages instead of clock readings
    pipeline: PipelineStatus
    fisheye: dict[str, Any]
    shm: dict[str, Any]
    ring: dict[str, Any] | None
    controls: ControlsConfig
    camera: dict[str, Any] | None  # a V4L2 camera's control values as last read
    table: dict[str, Any]
    headroom: dict[str, Any] = {}  # the capture path's per-frame work against its frame budget, CPU waits
