"""The process's main loop: the Service plus every HTTP server (uvicorn) on one asyncio loop.

Owns the start order (bind every port first, so a taken port is a clear error before anything starts;
then the service; then the servers), signal handling (SIGTERM/SIGINT stop everything within 2 s), and
periodic chores (CPU sampling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import uvicorn

from cuecast import systemd
from cuecast.config import Config, ConfigError, load_config
from cuecast.ports import PortError, bind_tcp
from cuecast.service import Service, StartupError
from cuecast.web import mjpeg_http
from cuecast.web.api import create_app, with_limits
from cuecast.web.guard import Guard
from cuecast.web.protocol import DeadlineHttpProtocol

log = logging.getLogger(__name__)

FIRST_RESULT_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 1.0
CPU_SAMPLE_S = 2.0
# HTTP hardening defaults: headers over this are refused (431/400), idle keep-alive connections closed.
MAX_HEADER_BYTES = 16 * 1024
KEEPALIVE_S = 5


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process handles signals once for all servers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class FatalStartup(Exception):
    """Bad input found at start-up: exit 2 with this message."""


def _uvicorn(app: object, name: str, header_timeout: float) -> _Server:
    protocol = type("CuecastHttpProtocol", (DeadlineHttpProtocol,), {"header_timeout": header_timeout})
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        timeout_keep_alive=KEEPALIVE_S, h11_max_incomplete_event_size=MAX_HEADER_BYTES, server_header=False,
        http=protocol,
    )
    server = _Server(config)
    server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
    return server


async def _watchdog(service: Service, interval: float) -> None:
    """Tell systemd we are alive while both loops turn (asyncio here, GLib checked by a round trip)."""
    from cuecast.gst import GLib

    loop = asyncio.get_running_loop()

    def ping(done: asyncio.Event) -> bool:
        loop.call_soon_threadsafe(done.set)
        return False  # run once

    while True:
        await asyncio.sleep(interval)
        done = asyncio.Event()
        GLib.idle_add(ping, done)
        try:
            await asyncio.wait_for(done.wait(), interval)
        except TimeoutError:
            log.error("GLib main loop unresponsive; not feeding the watchdog")
            continue
        systemd.notify("WATCHDOG=1")


def reload_config(service: Service) -> None:
    """SIGHUP: re-read the config file, apply what can change live, say what needs a restart."""

    if service.config_path is None:
        log.warning("SIGHUP: no config file to reload (started with built-in defaults)")
        return
    try:
        new = load_config(service.config_path, overrides=service.overrides).config
    except ConfigError as e:
        log.error("SIGHUP: config not reloaded, it is invalid (the running config stays):\n%s", e)
        return
    applied, restart = service.apply_config(new)
    log.info("SIGHUP: reloaded %s; applied live: %s; needs a restart: %s", service.config_path,
             ", ".join(applied) or "nothing changed", ", ".join(restart) or "nothing")


async def _cpu_sampler(service: Service) -> None:
    proc = psutil.Process()
    proc.cpu_percent(None)
    while True:
        await asyncio.sleep(CPU_SAMPLE_S)
        service.cpu_percent = proc.cpu_percent(None)


async def serve(cfg: Config, config_path: Path | None, overrides: dict[str, Any] | None = None) -> None:
    """Run until SIGTERM/SIGINT. Raises FatalStartup for problems a person must fix."""
    loop = asyncio.get_running_loop()
    service = Service(cfg, config_path, overrides)
    for hub in service.hubs.values():
        hub.bind(loop)

    try:
        token = cfg.auth.resolved_token()
    except ValueError as e:
        raise FatalStartup(str(e)) from None

    def guarded(app: object, stream_server: bool) -> Guard:
        return Guard(app, token=token, protect_streams=cfg.auth.protect_streams, stream_server=stream_server,
                     max_connections=cfg.http.max_connections, max_per_ip=cfg.http.max_connections_per_ip,
                     max_query_bytes=cfg.http.max_query_bytes)

    listeners: list[tuple[str, socket.socket, object]] = []
    try:
        if cfg.http.enabled:
            app = guarded(with_limits(create_app(service), service), stream_server=False)
            listeners.append(("API", bind_tcp(cfg.http.bind, cfg.http.port, "http.port"), app))
        for q, hub in service.hubs.items():
            port = getattr(cfg.mjpeg, q).port
            if port is not None:
                sock = bind_tcp(cfg.http.bind, port, f"mjpeg.{q}.port")
                port_app = guarded(mjpeg_http.port_app(hub, lambda: service.cfg.mjpeg.client_timeout), True)
                listeners.append((f"MJPEG {q}", sock, port_app))
        if cfg.rtsp.enabled:  # gst-rtsp-server binds it itself: check it is free first, for a clear error
            bind_tcp(cfg.rtsp.bind, cfg.rtsp.port, "rtsp.port").close()
    except PortError as e:
        for _, s, _ in listeners:
            s.close()
        raise FatalStartup(str(e)) from None

    try:
        await asyncio.to_thread(service.start)
    except StartupError as e:
        for _, s, _ in listeners:
            s.close()
        raise FatalStartup(str(e)) from None

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (log.info("received %s, stopping", s.name), stop.set()))
    loop.add_signal_handler(signal.SIGHUP, reload_config, service)

    servers: list[_Server] = []
    tasks: list[asyncio.Task[None]] = []
    chores = [asyncio.create_task(_cpu_sampler(service))]
    interval = systemd.watchdog_interval_s()
    if interval:
        chores.append(asyncio.create_task(_watchdog(service, interval)))
    try:
        for name, sock, app in listeners:
            server = _uvicorn(app, name, cfg.http.header_timeout)
            servers.append(server)
            tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
            host, port = sock.getsockname()[:2]
            log.info("%s on http://%s:%d/", name, host, port)

        error = await asyncio.to_thread(service.wait_first_result, FIRST_RESULT_TIMEOUT_S)
        if error and service.spec is not None and service.spec.kind == "file":
            raise FatalStartup(f"source {service.spec.location}: {error}")
        systemd.notify(f"READY=1\nSTATUS=streaming {service.spec.describe() if service.spec else ''}")
        await stop.wait()
    finally:
        systemd.notify("STOPPING=1")
        for hub in service.hubs.values():
            hub.close()
        for server in servers:
            server.should_exit = True
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S + 0.3)
            for t in pending:
                t.cancel()
        for t in chores:
            t.cancel()
        await asyncio.to_thread(service.stop)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
