"""What the two worker processes share: how the supervisor starts them and how they report back.

Owns the hand-over from `cuecast serve` (the supervisor) to a worker: the runtime directory (private, mode
0700: the ring and control sockets, the config origin as JSON), the heartbeat pipe (the worker writes
`ready` once, then `alive` every second while it is healthy; the supervisor feeds systemd's watchdog only
while both do), dying with the supervisor (PR_SET_PDEATHSIG: a `kill -9` of the service takes both workers
down like one process). No GStreamer here.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cuecast.config import Config, ConfigError, load_config

log = logging.getLogger(__name__)

ENV_RUNTIME = "_CUECAST_RUNTIME_DIR"  # not CUECAST_*: that prefix is for config keys
ENV_HEARTBEAT_FD = "_CUECAST_HEARTBEAT_FD"
ENV_SUPERVISOR_PID = "_CUECAST_SUPERVISOR_PID"
ENV_LISTEN_FDS = "_CUECAST_LISTEN_FDS"  # "api=5,mjpeg.medium=6": listening sockets the supervisor holds
ORIGIN_FILE = "config.json"
RING_SOCKET = "ring"
CONTROL_SOCKET = "control"
SUPERVISOR_FILE = "supervisor.json"  # the supervisor's view (pids, restarts), read by /api/status
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Runtime:
    """The service's private runtime directory."""

    path: Path

    @property
    def ring(self) -> Path:
        return self.path / RING_SOCKET

    @property
    def control(self) -> Path:
        return self.path / CONTROL_SOCKET

    def write_origin(self, config_path: Path | None, overrides: dict[str, Any]) -> None:
        """Where the config comes from (file and CLI overrides; the environment is inherited)."""
        tmp = self.path / f".{ORIGIN_FILE}"
        tmp.write_text(json.dumps({"path": str(config_path) if config_path else None, "overrides": overrides},
                                  default=str))
        tmp.replace(self.path / ORIGIN_FILE)

    def read_origin(self) -> tuple[Path | None, dict[str, Any]]:
        data = json.loads((self.path / ORIGIN_FILE).read_text())
        return (Path(data["path"]) if data["path"] else None), data["overrides"]

    def write_supervisor(self, state: dict[str, Any]) -> None:
        tmp = self.path / f".{SUPERVISOR_FILE}"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.path / SUPERVISOR_FILE)

    def read_supervisor(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / SUPERVISOR_FILE).read_text())
        except (OSError, ValueError):
            return None


def runtime_from_env() -> Runtime:
    path = os.environ.get(ENV_RUNTIME)
    if not path:
        sys.exit("cuecast: error: this command is started by `cuecast serve`, not by hand")
    return Runtime(Path(path))


@dataclass
class WorkerStart:
    """What a worker starts from: the runtime directory and the config the supervisor was started with."""

    runtime: Runtime
    config: Config | None  # None: it no longer loads (the reason is on stderr)
    config_path: Path | None
    overrides: dict[str, Any]


def start_worker() -> WorkerStart:
    """A worker's first steps: die with the supervisor, find the runtime directory, load the config."""
    die_with_supervisor()
    runtime = runtime_from_env()
    config_path, overrides = runtime.read_origin()
    try:
        cfg: Config | None = load_config(config_path, overrides=overrides).config
    except ConfigError as e:
        print(f"cuecast: error: {e}", file=sys.stderr, flush=True)
        cfg = None
    return WorkerStart(runtime, cfg, config_path, overrides)


def die_with_supervisor() -> None:
    """SIGKILL this process when the supervisor dies (also by kill -9): never an orphan worker."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError) as e:
        log.warning("cannot tie this process to the supervisor's life: %s", e)
    expected = os.environ.get(ENV_SUPERVISOR_PID)
    if expected and os.getppid() != int(expected):  # it died before prctl took effect
        os._exit(1)


class Heartbeat:
    """The worker's end of the heartbeat pipe (a no-op when not started by the supervisor)."""

    def __init__(self) -> None:
        fd = os.environ.get(ENV_HEARTBEAT_FD)
        self._fd = int(fd) if fd else None

    def _send(self, word: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, word + b"\n")
        except OSError:  # the supervisor is gone: PDEATHSIG ends us shortly
            pass

    def ready(self) -> None:
        self._send(b"ready")

    def alive(self) -> None:
        self._send(b"alive")


def listen_fds() -> dict[str, int]:
    """The listening sockets handed over by the supervisor: {"api": fd, "mjpeg.medium": fd, ...}."""
    text = os.environ.get(ENV_LISTEN_FDS, "")
    out = {}
    for item in filter(None, text.split(",")):
        name, _, fd = item.partition("=")
        out[name] = int(fd)
    return out
