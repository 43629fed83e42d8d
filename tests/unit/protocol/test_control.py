"""The control protocol between the two processes: typed requests round-trip, a wrong version or an unknown
or invalid request is refused with a reason, and over a real Unix socket a refusal or a handler's bug comes
back as an answer (the server lives on) while the link reads a typed status."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cuecast.config import ControlsConfig
from cuecast.protocol import messages as msg
from cuecast.protocol.control import CaptureLink, ControlError, ControlServer


def test_every_request_round_trips() -> None:
    reqs = [msg.StatusRequest(), msg.DemandRequest(on=True), msg.ControlsRequest(controls=ControlsConfig(contrast=1.2)),
            msg.TableRequest(table={"corners": [[0, 0]]}), msg.SnapshotRequest(), msg.RawFrameRequest(),
            msg.LensRequest(calibration="/etc/cuecast/lens/camera.yaml"),
            msg.CameraRequest(),
            msg.CameraSetRequest(controls={"gain": 3, "backlight": True}),
            msg.CameraSetRequest(profile_set=True, profile=None), msg.FisheyeRequest(enabled=False)]
    assert {r.op for r in reqs} == set(msg.REQUESTS)
    for r in reqs:
        assert msg.decode_request(r.encode()) == r


@pytest.mark.parametrize(("line", "words"), [
    (b"{not json", "not JSON"),
    (b"[1]", "not a request"),
    (json.dumps({"op": "status"}).encode(), "protocol version None"),
    (json.dumps({"v": 99, "op": "status"}).encode(), "different installs"),
    (json.dumps({"v": msg.PROTOCOL_VERSION, "op": "reboot"}).encode(), "unknown request 'reboot'"),
    (json.dumps({"v": msg.PROTOCOL_VERSION, "op": "demand", "args": {}}).encode(), "invalid demand request"),
    (json.dumps({"v": msg.PROTOCOL_VERSION, "op": "fisheye", "args": {"enabled": True, "x": 1}}).encode(),
     "invalid fisheye request"),
])
def test_bad_requests_are_refused_with_the_reason(line: bytes, words: str) -> None:
    with pytest.raises(msg.ProtocolError, match=words):
        msg.decode_request(line)


def _status(instance: str) -> msg.CaptureStatus:
    return msg.CaptureStatus(instance=instance, pid=1, uptime_s=0.0, cpu_percent=0.0, priority="nice 0", healthy=True,
                             source=None, pipeline=msg.PipelineStatus(), fisheye={}, shm={"enabled": False},
                             ring=None, controls=ControlsConfig(), camera=None, table={"calibrated": False})


def test_server_and_link_over_a_real_socket(tmp_path: Path) -> None:
    seen: list[msg.Request] = []

    def handler(req: msg.Request) -> Any:
        seen.append(req)
        if isinstance(req, msg.StatusRequest):
            return _status("a")
        if isinstance(req, msg.FisheyeRequest):
            raise ControlError("no fisheye correction in this pipeline (no calibration)")
        if isinstance(req, msg.SnapshotRequest):
            raise RuntimeError("a bug")
        return {"ring": True}

    server = ControlServer(tmp_path / "control", handler)
    server.start()
    met: list[tuple[str, bool]] = []
    link = CaptureLink(tmp_path / "control", lambda st, first: met.append((st.instance, first)))
    try:
        assert (tmp_path / "control").stat().st_mode & 0o777 == 0o600
        with pytest.raises(ControlError, match="no calibration"):
            link.request(msg.FisheyeRequest(enabled=True))
        with pytest.raises(ControlError, match="internal error: a bug"):
            link.request(msg.SnapshotRequest())
        assert link.request(msg.DemandRequest(on=True)) == {"ring": True}  # the connection survived both
        link.set_demand(True)
        link.start()
        deadline = time.monotonic() + 5
        while not (link.connected and any(isinstance(r, msg.DemandRequest) for r in seen[3:])):
            assert time.monotonic() < deadline, seen
            time.sleep(0.02)
        assert isinstance(link.status, msg.CaptureStatus) and link.status.instance == "a"
        assert met == [("a", True)]
    finally:
        link.stop()
        server.stop()
    assert not (tmp_path / "control").exists()
    with pytest.raises(ControlError, match="not answering"):
        CaptureLink(tmp_path / "control").request(msg.StatusRequest(), timeout=0.5)
