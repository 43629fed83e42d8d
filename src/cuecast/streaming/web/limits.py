"""What the HTTP layer refuses before any route runs: bodies over http.max_body_bytes (413), and for the API's
JSON bodies a wrong Content-Type (415), deep nesting or duplicate keys (400) and non-finite numbers (422 naming
the field). `with_limits` wraps the app in both."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from cuecast.streaming.outputs.mjpeg.http import send_text


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
                await send_text(send, 413, f"request body over {self.limit} bytes")
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
                await send_text(send, 413, f"request body over {self.limit} bytes")


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
    bad = _nonfinite(data, ("body",))
    if bad is not None:
        return 422, [{"type": "finite_number", "loc": list(bad), "msg": "Input should be a finite number",
                      "input": str(_at(data, bad[1:]))}]
    return None


def finite(value: Any) -> Any:
    """`value` with every non-finite float (and any exception object) turned into text, so it can be JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, BaseException):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _nonfinite(value: Any, path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _nonfinite(v, (*path, k))
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


def with_limits(app: ASGIApp, max_body_bytes: int) -> ASGIApp:
    return BodyLimit(JsonBodies(app), max_body_bytes)
