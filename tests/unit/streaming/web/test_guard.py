"""The guard on the ASGI level: who may change what, tokens, DNS rebinding, limits."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from cuecast.streaming.web.guard import Guard


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
