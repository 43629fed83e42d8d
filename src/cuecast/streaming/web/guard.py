"""HTTP guard for every server of the service (API and MJPEG ports): who may do what, and how much.

Owns, as one ASGI middleware: bearer-token checks (constant-time, never logged) for state-changing requests
and, with auth.protect_streams, for streams, snapshots, WebRTC (WHEP) sessions and the status that
describes them (`Authorization: Bearer` or `?token=` for <img> tags); loopback-only changes when no token is
configured; DNS-rebinding protection (a change must name this box in Host, and Origin when sent); limits on
open requests in total and per client address (503), on header size (431) and query length (414). Idle
keep-alive limits are uvicorn's.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import psutil
from starlette.types import ASGIApp, Receive, Scope, Send

from cuecast.streaming.outputs.mjpeg.http import send_text

log = logging.getLogger(__name__)

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
STREAM_PATHS = ("/stream/", "/snapshot.jpg", "/api/status", "/metrics", "/api/table/frame.jpg",
                "/api/table/preview.jpg", "/api/clips", "/api/events")
WHEP_PATH = "/whep/"  # WebRTC playback: POST/DELETE here start and end *viewing*, they change nothing
OPEN_PATHS = {"/healthz"}
# Reads guarded like changes: the raw camera picture (also as the lens calibration's looks and preview)
PROTECTED_READS = {"/api/camera/raw.jpg", "/api/lens/session/look.jpg", "/api/lens/session/preview.jpg"}
MAX_HEADER_BYTES = 16 * 1024


def own_names(extra: list[str]) -> set[str]:
    """The names and addresses this box answers to: loopback, its hostname, every interface's address, and
    http.allowed_hosts."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname().lower(), socket.getfqdn().lower()}
    for entries in psutil.net_if_addrs().values():
        for a in entries:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                names.add(a.address.split("%")[0].lower())
    names.update(h.lower() for h in extra)
    return names


def host_of(value: str) -> str:
    """The host part of a Host header or an Origin ("[::1]:8000" -> "::1", "http://x:8000" -> "x")."""
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    return (urlsplit(f"//{value}").hostname or "").lower()


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    def __init__(self, app: ASGIApp, *, token: str | None, protect_streams: bool, stream_server: bool,
                 max_connections: int, max_per_ip: int, max_query_bytes: int,
                 allowed_hosts: list[str] | None = None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.protect_streams = protect_streams
        self.stream_server = stream_server  # an MJPEG port: everything on it is a stream or a snapshot
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.max_query_bytes = max_query_bytes
        self.allowed_hosts = allowed_hosts or []
        self.open: Counter[str] = Counter()
        self.refused = 0

    def _foreign_page(self, scope: Scope) -> str | None:
        """For a change: the Host or Origin naming another site (a page that rebound its DNS to this box), or
        None when both name this box."""
        headers = dict(scope.get("headers", []))
        names = own_names(self.allowed_hosts)
        for key in (b"host", b"origin"):
            value = headers.get(key)
            if value is None or (key == b"origin" and value == b"null"):
                continue
            text = value.decode("latin-1")
            if host_of(text) not in names:
                return f"{key.decode().capitalize()} {text}"
        return None

    def _token_ok(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return hmac.compare_digest(value[7:].strip(), self.token)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[0].encode()
        return bool(given) and hmac.compare_digest(given, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "?"
        if sum(len(k) + len(v) + 4 for k, v in scope.get("headers", [])) > MAX_HEADER_BYTES:
            await send_text(send, 431, f"request headers over {MAX_HEADER_BYTES} bytes")
            return
        if len(scope.get("query_string", b"")) > self.max_query_bytes:
            await send_text(send, 414, f"query string over {self.max_query_bytes} bytes")
            return
        if sum(self.open.values()) >= self.max_connections:
            self.refused += 1
            await send_text(send, 503, "server busy: too many open requests, try again later", [(b"retry-after", b"5")])
            return
        if self.open[ip] >= self.max_per_ip:
            self.refused += 1
            await send_text(send, 503, f"too many open requests from {ip}", [(b"retry-after", b"5")])
            return
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        if path.startswith(WHEP_PATH):
            if self.protect_streams and method != "OPTIONS" and not self._token_ok(scope):
                await send_text(send, 401, "this stream needs the token: Authorization: Bearer ...",
                                [(b"www-authenticate", b'Bearer realm="cuecast"'),
                                 (b"access-control-allow-origin", b"*")])
                return
        elif method in STATE_CHANGING or path in PROTECTED_READS:
            foreign = self._foreign_page(scope)
            if foreign is not None:
                await send_text(send, 403, f"changes are refused from other sites ({foreign} is not this box); "
                                           "add the name to http.allowed_hosts if it is")
                return
            if self.token is None and not is_loopback(ip):
                await send_text(send, 403, "changes are accepted from this machine only; set auth.token to allow "
                                           "them over the network")
                return
            if not self._token_ok(scope):
                await send_text(send, 401, "a valid bearer token is required (Authorization: Bearer ...)",
                                [(b"www-authenticate", b'Bearer realm="cuecast"')])
                return
        elif self.protect_streams and path not in OPEN_PATHS and (
            self.stream_server or path.startswith(STREAM_PATHS)
        ) and not self._token_ok(scope):
            await send_text(send, 401, "this stream needs the token: Authorization: Bearer ... or ?token=...",
                            [(b"www-authenticate", b'Bearer realm="cuecast"')])
            return
        self.open[ip] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open[ip] -= 1
            if self.open[ip] <= 0:
                del self.open[ip]
