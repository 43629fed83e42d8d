"""The control channel between the two processes: the capture process serves it, the streaming process uses it.

Owns the transport: a private Unix socket (mode 0600, in the service's runtime directory), one JSON line each
way per request. What the lines say (the typed requests and the capture status) is messages.py. No GStreamer
here.

Threads: the server answers each connection on its own thread; `CaptureLink` keeps one connection, used by
its own thread (status every half second, demand changes at once) and by callers (controls), under a lock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cuecast.protocol.messages import (
    CaptureStatus,
    DemandRequest,
    ProtocolError,
    Request,
    StatusRequest,
    decode_request,
)

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20
STATUS_INTERVAL_S = 0.5
REQUEST_TIMEOUT_S = 2.0
SHUTDOWN_POLL_S = 0.05  # how soon the server notices a stop (a restart waits for it)

Handler = Callable[[Request], Any]


class ControlError(Exception):
    """The other process did not answer, or refused the request (the message says why)."""


class ControlServer:
    """Serves requests on a Unix socket; `handler(request)` returns the result (a model or plain JSON data) or
    raises ControlError."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        handler = self.handler

        class Conn(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    line = self.rfile.readline(MAX_LINE)
                    if not line:
                        return
                    try:
                        result = handler(decode_request(line))
                        if isinstance(result, BaseModel):
                            result = result.model_dump(mode="json")
                        reply = {"ok": True, "result": result}
                    except (ControlError, ProtocolError) as e:
                        reply = {"ok": False, "error": str(e)}
                    except Exception as e:  # noqa: BLE001 - a bug answers with its text, the server lives on
                        log.exception("control request failed")
                        reply = {"ok": False, "error": f"internal error: {e}"}
                    self.wfile.write(json.dumps(reply).encode() + b"\n")

        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        server = socketserver.ThreadingUnixStreamServer(str(self.path), Conn)
        server.daemon_threads = True
        os.chmod(self.path, 0o600)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_S,), name="control",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class CaptureLink:
    """The streaming process's end: the capture half's status (cached), demand and controls."""

    def __init__(self, path: Path, on_new_instance: Callable[[CaptureStatus, bool], None] | None = None) -> None:
        self.path = path
        self.on_new_instance = on_new_instance  # (status, first) when a capture process is met
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._demand = False
        self._sent_demand: bool | None = None
        self._instance: str | None = None
        self.status: CaptureStatus | None = None  # the newest capture status, None while unreachable
        self.status_mono = 0.0
        self.instances_seen = 0
        self.closing = False  # this process is stopping: the capture process going away is expected

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture-link", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close()

    @property
    def connected(self) -> bool:
        return self.status is not None and time.monotonic() - self.status_mono < 3 * STATUS_INTERVAL_S + 1

    def set_demand(self, on: bool) -> None:
        """Ask for frames on the ring (sent at once by the link's thread)."""
        if on != self._demand:
            self._demand = on
            self._wake.set()

    def request(self, req: Request, timeout: float = REQUEST_TIMEOUT_S) -> Any:
        """One request; its result as JSON data. ControlError if the capture process is unreachable or
        refuses."""
        with self._lock:
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(timeout)
                    try:
                        sock.connect(str(self.path))
                    except OSError:
                        sock.close()  # not left for the garbage collector while the capture process is away
                        raise
                    self._sock, self._file = sock, sock.makefile("rb")
                assert self._sock is not None
                self._sock.settimeout(timeout)
                self._sock.sendall(req.encode() + b"\n")
                line = self._file.readline(MAX_LINE)
                if not line:
                    raise OSError("connection closed")
                reply = json.loads(line)
            except (OSError, ValueError) as e:
                self._close_locked()
                raise ControlError(f"the capture process is not answering ({e})") from None
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error")))
        return reply.get("result")

    def _close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock, self._file = None, None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                try:
                    status = CaptureStatus.model_validate(self.request(StatusRequest()))
                except ValidationError as e:
                    raise ControlError(f"the capture process sent a status this process cannot read: {e}") from None
                instance = status.instance
                if instance != self._instance:
                    first = self._instance is None
                    self._instance = instance
                    self._sent_demand = None  # a new capture process knows nothing of our demand
                    self.instances_seen += 1
                    if not first:
                        log.info("capture process %s is up (pid %s); the ring reconnects", instance, status.pid)
                    if self.on_new_instance is not None:
                        self.on_new_instance(status, first)
                if self._sent_demand != self._demand:
                    want = self._demand
                    self.request(DemandRequest(on=want))
                    self._sent_demand = want
                self.status, self.status_mono = status, time.monotonic()
            except ControlError as e:
                if self.status is not None and not self.closing:
                    log.warning("capture process unreachable: %s", e)
                self.status = None
            self._wake.wait(STATUS_INTERVAL_S)
            self._wake.clear()
