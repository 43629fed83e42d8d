"""`cuecast serve`: the supervisor of the two worker processes, and the one systemd sees.

Owns the service's process tree: the capture process (camera, correction, the vision backend's shared
memory; higher scheduling priority) and the streaming process (encoders, HTTP, RTSP, WebRTC, publishing;
lower priority), started side by side and restarted on their own when they exit or stop sending heartbeats
(a crash, stall or `kill -9` of the streaming process never interrupts the backend's frames). It binds the
HTTP ports before anything starts (a taken port is a clear error; connections made while the streaming
process restarts wait in the backlog), talks to systemd (READY once both are up, WATCHDOG only while both
send heartbeats, STOPPING), reloads the config on SIGHUP (checks it, says what applies live and what needs a
restart, then tells both workers), and stops both on SIGTERM. It loads no GStreamer.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from cuecast.config import QUALITIES, Config, reload_plan, reread
from cuecast.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE
from cuecast.core.ports import PortError, bind_tcp
from cuecast.protocol.worker import (
    ENV_HEARTBEAT_FD,
    ENV_LISTEN_FDS,
    ENV_RUNTIME,
    ENV_SUPERVISOR_PID,
    Runtime,
)
from cuecast.supervisor import systemd

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # a first start on a slow box (imports, maps, encoder probe)
HEARTBEAT_TIMEOUT_S = 10.0  # a ready worker silent this long is stuck: it is killed and started again
STOP_GRACE_S = 1.2  # SIGTERM -> SIGKILL for the streaming process (half of it for the capture process)
FAILURES_WINDOW_S = 60.0
MAX_FAILURES = 5  # unexpected exits within the window before the whole service gives up (systemd restarts it)
RESTART_DELAYS_S = (0.0, 0.2, 0.5, 1.0, 2.0, 5.0)


class Backoff:
    """How soon a worker that died is started again: at once after a long healthy run, later after each
    failure within FAILURES_WINDOW_S; after MAX_FAILURES there the service gives up (systemd restarts it)."""

    def __init__(self) -> None:
        self._failures: deque[float] = deque()

    def failed(self, now: float) -> float:
        """Record a failure at `now`; the delay before the next start (seconds)."""
        while self._failures and now - self._failures[0] > FAILURES_WINDOW_S:
            self._failures.popleft()
        self._failures.append(now)
        return RESTART_DELAYS_S[min(len(self._failures) - 1, len(RESTART_DELAYS_S) - 1)]

    @property
    def recent(self) -> int:
        return len(self._failures)

    @property
    def given_up(self) -> bool:
        return len(self._failures) >= MAX_FAILURES


class Worker:
    """One worker process: how to start it, its heartbeat pipe, and its restart bookkeeping."""

    def __init__(self, role: str, command: str, runtime: Runtime, listen: dict[str, socket.socket] | None = None):
        self.role = role
        self.command = command
        self.runtime = runtime
        self.listen = listen or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.beat_fd = -1
        self.ready = False
        self.last_beat = 0.0
        self.started = 0.0
        self.restarts = 0
        self.backoff = Backoff()
        self.restart_at: float | None = None
        self._buf = b""

    def start(self) -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env.update({ENV_RUNTIME: str(self.runtime.path), ENV_HEARTBEAT_FD: str(w),
                    ENV_SUPERVISOR_PID: str(os.getpid())})
        fds = [w]
        if self.listen:
            env[ENV_LISTEN_FDS] = ",".join(f"{k}={s.fileno()}" for k, s in self.listen.items())
            fds += [s.fileno() for s in self.listen.values()]
        self.proc = subprocess.Popen([sys.executable, "-m", "cuecast", self.command], env=env, pass_fds=fds)
        os.close(w)
        self.beat_fd = r
        self.ready = False
        self.started = self.last_beat = time.monotonic()
        self.restart_at = None
        self._buf = b""
        log.info("%s process started (pid %d)", self.role, self.proc.pid)

    def read_beats(self) -> None:
        try:
            data = os.read(self.beat_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line == b"ready" and not self.ready:
                self.ready = True
                log.info("%s process ready (pid %d) after %.1f s", self.role, self.pid, time.monotonic() - self.started)
            self.last_beat = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def close_pipe(self) -> None:
        if self.beat_fd >= 0:
            os.close(self.beat_fd)
            self.beat_fd = -1

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass



def describe_exit(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


class Supervisor:
    def __init__(self, cfg: Config, config_path: Path | None, overrides: dict[str, Any]) -> None:
        self.cfg = cfg
        self.started_cfg = cfg
        self.config_path = config_path
        self.overrides = overrides
        self.runtime: Runtime | None = None
        self.listen: dict[str, socket.socket] = {}
        self.workers: list[Worker] = []
        self._stop = False
        self._hup = False
        self._sel = selectors.DefaultSelector()

    # -- start ------------------------------------------------------------------------------------------

    def _bind(self) -> None:
        """Every port before anything starts: a clear error for a taken one."""
        cfg = self.cfg
        if cfg.http.enabled:
            self.listen["http.port"] = bind_tcp(cfg.http.bind, cfg.http.port, "http.port")
        for q in QUALITIES:
            qc = getattr(cfg.mjpeg, q)
            if qc.enabled and qc.port is not None:
                self.listen[f"mjpeg.{q}.port"] = bind_tcp(cfg.http.bind, qc.port, f"mjpeg.{q}.port")
        if cfg.rtsp.enabled:  # gst-rtsp-server binds it itself: check it is free first, for a clear error
            bind_tcp(cfg.rtsp.bind, cfg.rtsp.port, "rtsp.port").close()

    def _make_runtime(self) -> Runtime:
        base = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None  # systemd's RuntimeDirectory
        path = Path(tempfile.mkdtemp(prefix="cuecast-", dir=base))
        os.chmod(path, 0o700)
        runtime = Runtime(path)
        runtime.write_origin(self.config_path, self.overrides)
        return runtime

    def _publish_state(self) -> None:
        if self.runtime is not None:
            self.runtime.write_supervisor({
                "pid": os.getpid(),
                "pids": {w.role: w.pid for w in self.workers},
                "restarts": {w.role: w.restarts for w in self.workers},
            })

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; the exit code of `cuecast serve`."""
        try:
            self.cfg.auth.resolved_token()
            self._bind()
        except (ValueError, PortError) as e:
            print(f"cuecast: error: {e}", file=sys.stderr, flush=True)
            self._close_listeners()
            return EXIT_BAD_INPUT
        self.runtime = self._make_runtime()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            self.workers = [Worker("capture", "_capture", self.runtime),
                            Worker("streaming", "_stream", self.runtime, self.listen)]
            for w in self.workers:
                self._start(w)
            self._publish_state()
            code = self._wait_ready()
            if code is not None:
                return code
            systemd.notify("READY=1\nSTATUS=capture and streaming running")
            log.info("cuecast serving (supervisor pid %d)", os.getpid())
            return self._loop()
        finally:
            systemd.notify("STOPPING=1")
            self._stop_all()
            self._close_listeners()
            if self.runtime is not None:
                shutil.rmtree(self.runtime.path, ignore_errors=True)

    def _start(self, w: Worker) -> None:
        w.start()
        self._sel.register(w.beat_fd, selectors.EVENT_READ, w)

    def _close_listeners(self) -> None:
        for s in self.listen.values():
            s.close()
        self.listen = {}

    def _wait_ready(self) -> int | None:
        """Until both workers are ready: an exit code if one fails to start, else None."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(w.ready for w in self.workers):
            if self._stop:
                return 0
            self._poll(0.1)
            for w in self.workers:
                code = w.exited()
                if code is not None and not w.ready:
                    w.read_beats()
                    if not w.ready:
                        log.error("%s process %s while starting", w.role, describe_exit(code))
                        return EXIT_BAD_INPUT if code == EXIT_BAD_INPUT else EXIT_FAILURE
            if time.monotonic() > deadline:
                late = ", ".join(w.role for w in self.workers if not w.ready)
                log.error("%s not ready within %.0f s", late, READY_TIMEOUT_S)
                return 1
        return None

    # -- running ----------------------------------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        try:
            events = self._sel.select(timeout)
        except InterruptedError:
            events = []
        for key, _ in events:
            key.data.read_beats()

    def _loop(self) -> int:
        interval = systemd.watchdog_interval_s()
        next_watchdog = time.monotonic()
        while not self._stop:
            self._poll(0.1)
            now = time.monotonic()
            if self._hup:
                self._hup = False
                self._reload()
            for w in self.workers:
                code = self._check(w, now)
                if code is not None:
                    return code
            if interval and now >= next_watchdog:
                next_watchdog = now + interval
                if all(w.ready and now - w.last_beat < 3 for w in self.workers):
                    systemd.notify("WATCHDOG=1")
                else:
                    log.error("not feeding the watchdog: %s", ", ".join(
                        f"{w.role} silent" for w in self.workers if not w.ready or now - w.last_beat >= 3))
        return 0

    def _check(self, w: Worker, now: float) -> int | None:
        """Restart a worker that exited or went silent; an exit code when the service must give up."""
        if w.restart_at is not None:
            if now >= w.restart_at:
                w.restarts += 1
                self._start(w)
                self._publish_state()
            return None
        code = w.exited()
        if code is None and w.ready and now - w.last_beat > HEARTBEAT_TIMEOUT_S:
            log.error("%s process (pid %d) sent no heartbeat for %.0f s: killing it", w.role, w.pid,
                      now - w.last_beat)
            w.signal(signal.SIGKILL)
            w.proc.wait()  # type: ignore[union-attr]
            code = w.exited()
        if code is None:
            return None
        w.read_beats()
        self._sel.unregister(w.beat_fd)
        w.close_pipe()
        delay = w.backoff.failed(now)
        if w.backoff.given_up:
            log.error("%s process %s; %d failures within %.0f s: giving up (exit 1)", w.role, describe_exit(code),
                      w.backoff.recent, FAILURES_WINDOW_S)
            return 1
        log.error("%s process (pid %s) %s; starting it again%s", w.role, w.pid, describe_exit(code),
                  f" in {delay:.1f} s" if delay else "")
        w.restart_at = now + delay
        return None

    def _reload(self) -> None:
        """SIGHUP: check the new config, say what it changes, hand it to both workers."""
        if self.config_path is None:
            log.warning("SIGHUP: no config file to reload (started with built-in defaults)")
            return
        new = reread(self.config_path, self.overrides)
        if new is None:
            return
        live, _ = reload_plan(self.cfg, new)
        _, restart = reload_plan(self.started_cfg, new)
        self.cfg = new
        for w in self.workers:
            w.signal(signal.SIGHUP)
        log.info("SIGHUP: reloaded %s; applied live: %s; needs a restart: %s", self.config_path,
                 ", ".join(live) or "nothing changed", ", ".join(restart) or "nothing")

    # -- stop -------------------------------------------------------------------------------------------

    def _on_stop(self, signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self._stop = True

    def _on_hup(self, _signum: int, _frame: object) -> None:
        self._hup = True

    def _stop_all(self) -> None:
        """Both workers at once (a restart is back sooner: the backend's gap is the stop plus the start), each
        killed when it overstays its grace. The streaming process is told first: it stops reading the capture
        process before that one's ring goes, so neither logs the other's stop as a fault."""
        start = time.monotonic()
        for w in sorted(self.workers, key=lambda w: w.role != "streaming"):
            w.signal(signal.SIGTERM)
        for w in self.workers:
            if w.proc is not None:
                grace = STOP_GRACE_S if w.role == "streaming" else STOP_GRACE_S / 2
                try:
                    w.proc.wait(max(0.0, start + grace - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("%s process did not stop in time: killing it", w.role)
                    w.proc.kill()
                    w.proc.wait()
            w.close_pipe()


def serve(cfg: Config, config_path: Path | None, overrides: dict[str, Any]) -> int:
    """`cuecast serve`."""
    try:
        return Supervisor(cfg, config_path, overrides).run()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            print(f"cuecast: error: no space for the runtime directory: {e}", file=sys.stderr)
            return 1
        raise
