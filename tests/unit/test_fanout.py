"""The pure logic of the fan-out, on its own: the MJPEG FrameHub (newest frame only, drops counted, demand
follows clients, a full hub refuses), the H.264 appsrc feed's timestamps (a steady grid that re-anchors on a
stall and never goes back), the demand gate (drops without demand, lowers the rate on a schedule), the guard
(who may change what, tokens, DNS rebinding, limits) and the SIGHUP reload plan."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from cuecast.config import Config, changed_keys, reload_plan
from cuecast.core.gst import Gst
from cuecast.media.pipeline import DemandGate
from cuecast.streaming.outputs.h264 import MAX_DRIFT_NS, AppsrcFeed
from cuecast.streaming.outputs.mjpeg.branch import FrameHub, HubFull
from cuecast.streaming.web.guard import Guard

# -- FrameHub ------------------------------------------------------------------------------------------


def test_hub_gives_the_newest_frame_and_counts_what_a_slow_client_missed() -> None:
    async def run() -> None:
        hub = FrameHub("medium", max_clients=2)
        hub.bind(asyncio.get_running_loop())
        assert not hub.demand
        a = hub.subscribe("a")
        assert hub.demand, "a client switches the encoder on"
        for i in range(5):
            hub._publish(b"jpeg%d" % i, i)
        frame = await hub.next_frame(a)
        assert frame is not None and frame.data == b"jpeg4", "the newest, never a queue"
        hub._publish(b"jpeg5", 5)
        assert (await hub.next_frame(a)).data == b"jpeg5"
        hub.subscribe("b")
        with pytest.raises(HubFull, match="2 clients"):
            hub.subscribe("c")
        assert hub.clients_refused == 1
        hub.release(a)
        assert hub.demand
        for c in list(hub.clients):
            hub.release(c)
        assert not hub.demand, "the last client leaving switches the encoder off"

    asyncio.run(run())


def test_hub_counts_dropped_frames_per_client() -> None:
    async def run() -> None:
        hub = FrameHub("low", max_clients=5)
        hub.bind(asyncio.get_running_loop())
        c = hub.subscribe("slow")
        hub._publish(b"1", 1)
        await hub.next_frame(c)
        for i in range(2, 6):
            hub._publish(b"%d" % i, i)
        await hub.next_frame(c)
        assert c.dropped == 3 and hub.frames_dropped == 3

    asyncio.run(run())


def test_closing_the_hub_ends_every_client() -> None:
    async def run() -> None:
        hub = FrameHub("high", max_clients=5)
        hub.bind(asyncio.get_running_loop())
        c = hub.subscribe("x")
        waiter = asyncio.create_task(hub.next_frame(c))
        await asyncio.sleep(0)
        hub.close()
        assert await asyncio.wait_for(waiter, 1) is None
        with pytest.raises(HubFull, match="shutting down"):
            hub.subscribe("y")

    asyncio.run(run())


# -- AppsrcFeed timestamps -------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0

    def get_time(self) -> int:
        return self.now


class _Appsrc:
    """The four appsrc calls AppsrcFeed makes, recorded (no pipeline: this is about the arithmetic)."""

    def __init__(self) -> None:
        self.clock = _Clock()
        self.pushed: list[int] = []

    def get_property(self, _name: str) -> int:
        return 0

    def set_property(self, _name: str, _value: Any) -> None:
        pass

    def get_clock(self) -> _Clock:
        return self.clock

    def get_base_time(self) -> int:
        return 0

    def emit(self, _signal: str, buf: Gst.Buffer) -> None:
        self.pushed.append(buf.pts)


def test_feed_stamps_a_steady_grid_and_reanchors_forward_after_a_stall() -> None:
    src = _Appsrc()
    feed = AppsrcFeed("t", src)
    caps = Gst.Caps.from_string("video/x-h264")
    step = Gst.SECOND // 30
    jitter = [0, 3, -4, 6, -2, 0, 5, -5]  # ms of arrival jitter: the stamps stay on the grid
    for i, j in enumerate(jitter):
        src.clock.now = Gst.SECOND + i * step + j * Gst.MSECOND
        buf = Gst.Buffer.new_wrapped(b"x")
        buf.duration = step
        feed.push(buf, caps)
    assert src.pushed == [Gst.SECOND + i * step for i in range(len(jitter))]
    # A 2 s stall, then a burst: re-anchored at arrival, and never before the last stamp.
    last = src.pushed[-1]
    src.clock.now += 2 * Gst.SECOND
    for _ in range(3):
        buf = Gst.Buffer.new_wrapped(b"x")
        buf.duration = step
        feed.push(buf, caps)
    assert src.pushed[-3] >= src.clock.now - MAX_DRIFT_NS and src.pushed[-3] > last
    assert all(b > a for a, b in zip(src.pushed, src.pushed[1:], strict=False))


# -- DemandGate ------------------------------------------------------------------------------------------


class _Info:
    def __init__(self, pts: int) -> None:
        self.buf = Gst.Buffer.new_wrapped(b"x")
        self.buf.pts = pts

    def get_buffer(self) -> Gst.Buffer:
        return self.buf


def test_gate_drops_without_demand_and_lowers_the_rate() -> None:
    want = [False]
    gate = DemandGate(30, 30, lambda: want[0])
    frame = Gst.SECOND // 30
    assert gate.probe(None, _Info(0)) == Gst.PadProbeReturn.DROP
    want[0] = True
    passed = [gate.probe(None, _Info(i * frame)) == Gst.PadProbeReturn.OK for i in range(30)]
    assert all(passed) and gate.passed_count() == 30
    gate.set_fps(10)
    passed = [gate.probe(None, _Info((30 + i) * frame)) == Gst.PadProbeReturn.OK
              for i in range(90)]
    assert 29 <= sum(passed) <= 31, "10 of 30 fps: about a third"
    gate.set_fps(30)
    assert gate.probe(None, _Info(200 * frame)) == Gst.PadProbeReturn.OK


# -- Guard -----------------------------------------------------------------------------------------------


async def _call(guard: Guard, method: str, path: str, *, client: str = "127.0.0.1", query: bytes = b"",
                headers: list[tuple[bytes, bytes]] | None = None) -> int:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(msg: MutableMapping[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "method": method, "path": path, "client": (client, 5000), "query_string": query,
             "headers": headers or [(b"host", b"127.0.0.1:8000")]}
    await guard(scope, receive, send)
    return int(sent[0]["status"])


async def _ok_app(_scope: Any, _receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def guard(**kw: Any) -> Guard:
    args = {"token": None, "protect_streams": False, "stream_server": False, "max_connections": 10,
            "max_per_ip": 5, "max_query_bytes": 2048, **kw}
    return Guard(_ok_app, **args)


def test_guard_changes_from_this_machine_only_without_a_token() -> None:
    g = guard()
    assert asyncio.run(_call(g, "PUT", "/api/controls")) == 200
    assert asyncio.run(_call(g, "PUT", "/api/controls", client="192.168.1.9")) == 403
    assert asyncio.run(_call(g, "GET", "/stream/video", client="192.168.1.9")) == 200
    evil = [(b"host", b"evil.example:8000")]
    assert asyncio.run(_call(g, "POST", "/api/clips", headers=evil)) == 403, "DNS rebinding"


def test_guard_token_for_changes_and_protected_streams() -> None:
    g = guard(token="t0ken-t0ken-t0ken", protect_streams=True)
    bearer = [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer t0ken-t0ken-t0ken")]
    assert asyncio.run(_call(g, "DELETE", "/api/clips/x")) == 401
    assert asyncio.run(_call(g, "DELETE", "/api/clips/x", client="10.0.0.2", headers=bearer)) == 200
    assert asyncio.run(_call(g, "GET", "/api/clips/x.mp4")) == 401
    assert asyncio.run(_call(g, "GET", "/api/clips/x.mp4", query=b"token=t0ken-t0ken-t0ken")) == 200
    assert asyncio.run(_call(g, "GET", "/healthz")) == 200, "health stays open"
    assert asyncio.run(_call(g, "GET", "/api/controls")) == 200, "reading controls is not a stream"


def test_guard_limits() -> None:
    g = guard()
    assert asyncio.run(_call(g, "GET", "/api/status", query=b"x" * 3000)) == 414
    big = [(b"host", b"127.0.0.1"), (b"x-pad", b"y" * 20_000)]
    assert asyncio.run(_call(g, "GET", "/api/status", headers=big)) == 431


# -- reload plan -----------------------------------------------------------------------------------------


def test_changed_keys_and_reload_plan() -> None:
    assert changed_keys({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 1, "c": 3}, "e": 1}) == ["a.c", "d", "e"]
    old = Config()
    dump = old.model_dump()
    new = Config.model_validate({**dump, "controls": {**dump["controls"], "brightness": 0.5},
                                 "mjpeg": {**dump["mjpeg"], "client_timeout": 3.0},
                                 "replay": {**dump["replay"], "seconds": 30.0}})
    live, restart = reload_plan(old, new)
    assert live == ["controls", "mjpeg.client_timeout"], "live keys, each covering key once"
    assert restart == ["replay.seconds"]
