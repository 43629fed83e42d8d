"""The streaming process's main: the Service plus every HTTP server (uvicorn) on one asyncio loop.

Owns the start order (the listening sockets come from the supervisor, which bound them before anything
started, so a taken port is a clear error and connections made while this process restarts wait in the
backlog; then the service; then the servers), SIGTERM/SIGINT (stop within 2 s), SIGHUP (apply this
process's live keys), and liveness: a server that stops unexpectedly ends the process with an error (the
supervisor restarts it), and the heartbeat goes out only while every server runs and the GLib loop turns.
No websocket support is loaded: nothing here speaks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from cuecast.config import Config, reread
from cuecast.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, StartupError
from cuecast.core.log import setup_logging
from cuecast.core.ports import PortError, bind_tcp
from cuecast.protocol.worker import Heartbeat, Runtime, listen_fds
from cuecast.streaming.outputs.mjpeg import http as mjpeg_http
from cuecast.streaming.service import Service
from cuecast.streaming.web.app import create_app
from cuecast.streaming.web.deadline import DeadlineHttpProtocol
from cuecast.streaming.web.guard import Guard
from cuecast.streaming.web.limits import with_limits

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 1.0
CPU_SAMPLE_S = 2.0
HEARTBEAT_S = 1.0
# Idle keep-alive connections are closed after this long.
KEEPALIVE_S = 5


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process handles signals once for all servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServerDied(Exception):
    """A server stopped while the service was running: exit 1 (the supervisor starts a new process)."""


def _uvicorn(app: ASGIApp, header_timeout: float) -> _Server:
    protocol = type("CuecastHttpProtocol", (DeadlineHttpProtocol,), {"header_timeout": header_timeout})
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        timeout_keep_alive=KEEPALIVE_S, server_header=False, http=protocol,
        ws="none",  # never import a websockets package (a broken system one killed every server before)
    )
    server = _Server(config)
    server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
    return server


async def _glib_turns(timeout: float) -> bool:
    """True when the GLib main loop runs a callback within `timeout` (it is not stuck)."""
    from cuecast.core.gst import GLib

    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def ping() -> bool:
        loop.call_soon_threadsafe(done.set)
        return False  # run once

    GLib.idle_add(ping)
    try:
        await asyncio.wait_for(done.wait(), timeout)
        return True
    except TimeoutError:
        return False


async def _heartbeat(heartbeat: Heartbeat, tasks: list[asyncio.Task[None]], service: Service) -> None:
    """Tell the supervisor we are alive, only while every server runs and both loops turn."""
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        if all(not t.done() for t in tasks) and service.loop.alive() and await _glib_turns(HEARTBEAT_S):
            heartbeat.alive()
        else:
            log.error("not healthy (a server or the GLib loop is not running); no heartbeat")


def reload_config(service: Service) -> None:
    """SIGHUP: re-read the config file and apply what this process can change live."""
    new = reread(service.config_path, service.overrides)
    if new is None:
        return
    live, _restart = service.apply_config(new)
    if live:
        log.info("streaming: applied %s", ", ".join(live))


async def _cpu_sampler(service: Service) -> None:
    while True:
        await asyncio.sleep(CPU_SAMPLE_S)
        service.load.sample()
        service.cpu_percent = service.load.cpu_percent


def _listeners(cfg: Config, service: Service, token: str | None) -> list[tuple[str, socket.socket, ASGIApp]]:
    """(name, listening socket, ASGI app) for the API and each MJPEG port; the sockets are the supervisor's
    when it handed them over, else bound here."""
    fds = listen_fds()

    def sock_for(key: str, port: int) -> socket.socket:
        if key in fds:
            s = socket.socket(fileno=fds[key])
            s.setblocking(False)
            return s
        return bind_tcp(cfg.http.bind, port, key)

    def guarded(app: ASGIApp, stream_server: bool) -> Guard:
        return Guard(app, token=token, protect_streams=cfg.auth.protect_streams, stream_server=stream_server,
                     max_connections=cfg.http.max_connections, max_per_ip=cfg.http.max_connections_per_ip,
                     max_query_bytes=cfg.http.max_query_bytes, allowed_hosts=cfg.http.allowed_hosts)

    out: list[tuple[str, socket.socket, ASGIApp]] = []
    if cfg.http.enabled:
        app = guarded(with_limits(create_app(service), service.cfg.http.max_body_bytes), stream_server=False)
        out.append(("API", sock_for("http.port", cfg.http.port), app))
    for q, hub in service.hubs.items():
        port = getattr(cfg.mjpeg, q).port
        if port is not None:
            port_app = guarded(mjpeg_http.port_app(hub, lambda: service.cfg.mjpeg.client_timeout), True)
            out.append((f"MJPEG {q}", sock_for(f"mjpeg.{q}.port", port), port_app))
    return out


async def serve(cfg: Config, runtime: Runtime, config_path: Path | None, overrides: dict[str, Any] | None = None,
                heartbeat: Heartbeat | None = None, priority: str = "") -> None:
    """Run until SIGTERM/SIGINT. StartupError for problems a person must fix, ServerDied when a server stops."""
    loop = asyncio.get_running_loop()
    heartbeat = heartbeat or Heartbeat()
    service = Service(cfg, runtime, config_path, overrides)
    service.priority = priority
    for hub in service.hubs.values():
        hub.bind(loop)
    try:
        token = cfg.auth.resolved_token()
    except ValueError as e:
        raise StartupError(str(e)) from None
    try:
        listeners = _listeners(cfg, service, token)
    except PortError as e:
        raise StartupError(str(e)) from None
    try:
        await asyncio.to_thread(service.start)
    except StartupError:
        for _, s, _ in listeners:
            s.close()
        raise

    stop = asyncio.Event()
    def on_stop_signal(sig: signal.Signals) -> None:
        log.info("received %s, stopping", sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, reload_config, service)

    servers: list[_Server] = []
    tasks: list[asyncio.Task[None]] = []
    chores: list[asyncio.Task[None]] = [asyncio.create_task(_cpu_sampler(service))]
    try:
        for name, sock, app in listeners:
            server = _uvicorn(app, cfg.http.header_timeout)
            servers.append(server)
            task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
            tasks.append(task)
            host, port = sock.getsockname()[:2]
            log.info("%s on http://%s:%d/", name, host, port)
        chores.append(asyncio.create_task(_heartbeat(heartbeat, tasks, service)))
        heartbeat.ready()
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if stopping not in done:
            stopping.cancel()
            died = next(t for t in tasks if t in done)
            why = died.exception() if not died.cancelled() else None
            raise ServerDied(f"the {died.get_name()} server stopped unexpectedly"
                             + (f": {type(why).__name__}: {why}" if why else ""))
    finally:
        service.closing()
        for t in chores:
            t.cancel()
        for hub in service.hubs.values():
            hub.close()
        service.event_feed.close()
        for server in servers:
            server.should_exit = True
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S + 0.3)
            for t in pending:
                t.cancel()
        await asyncio.to_thread(service.stop)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def main() -> int:
    """`python -m cuecast _stream`: the streaming process, started by `cuecast serve`."""
    import os

    from cuecast.core.priority import set_priority
    from cuecast.protocol.worker import start_worker

    start = start_worker()
    runtime, cfg, config_path, overrides = start.runtime, start.config, start.config_path, start.overrides
    if cfg is None:
        return EXIT_BAD_INPUT
    setup_logging(cfg.log.level, cfg.log.format, role="streaming")
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    # The people-facing side yields to the backend's path: a higher niceness than the service's own.
    priority = set_priority(min(19, os.getpriority(os.PRIO_PROCESS, 0) + cfg.priority.streaming_nice))
    try:
        asyncio.run(serve(cfg, runtime, config_path, overrides, priority=priority))
    except StartupError as e:
        print(f"cuecast: error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except ServerDied as e:
        log.error("%s; exiting so the supervisor starts this process again", e)
        return EXIT_FAILURE
    # Stopped in order (servers closed, pipelines at NULL): exit without the interpreter's finalization, which
    # with GStreamer's threads and objects took over a second of a busy box at this process's niceness, past
    # the supervisor's grace.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_OK)
