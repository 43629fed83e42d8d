"""The running service: wires config -> source runner -> output pipeline -> outputs, and the GLib loop.

Owns start/stop order (teardown in reverse), the GLib main-loop thread that runs bus watches and timers,
and the status snapshot. Start-up problems a person can fix raise StartupError with the fix in the text.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from cuecast import __version__
from cuecast.capture import SourceRunner
from cuecast.config import Config, ControlsConfig
from cuecast.gst import GLib, Gst
from cuecast.outputs.shm import ShmError, ShmOutput
from cuecast.pipeline import Branch, CapturePipeline
from cuecast.sources import SourceError, SourceSpec, check_source, parse_source

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The service cannot start; the message says what is wrong and how to fix it."""


class GLibLoopThread:
    """Runs GLib's default main context (bus watches, timers, later the RTSP server) in a thread."""

    def __init__(self) -> None:
        self._loop = GLib.MainLoop()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop.run, name="glib", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._loop.quit()
            self._thread.join(timeout=2)
            self._thread = None


class Service:
    """One camera, one output pipeline, every output. A context manager; stop() twice is harmless."""

    def __init__(self, cfg: Config, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.spec: SourceSpec | None = None
        self.loop = GLibLoopThread()
        self.shm: ShmOutput | None = None
        self.pipeline: CapturePipeline | None = None
        self.runner: SourceRunner | None = None
        self.started_mono: float | None = None
        self._started = False

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._started:
            return
        cfg = self.cfg
        try:
            spec = parse_source(cfg.source.uri)
            check_source(spec)
        except SourceError as e:
            raise StartupError(str(e)) from None
        if spec.fell_back:
            log.info("no camera at /dev/video0: streaming the built-in demo source (set source.uri to choose)")
        self.spec = spec
        branches: list[Branch] = []
        if cfg.shm.enabled:
            w, h = cfg.shm_size
            self.shm = ShmOutput(cfg.shm.socket, w, h, cfg.source.fps, cfg.shm.buffers, cfg.shm.group)
            try:
                self.shm.prepare()
            except ShmError as e:
                raise StartupError(str(e)) from None
            branches.append(self.shm)
        self.pipeline = CapturePipeline(cfg.source.width, cfg.source.height, cfg.source.fps, branches,
                                        cfg.controls)
        self._started = True
        self.started_mono = time.monotonic()
        self.loop.start()
        try:
            self.pipeline.start()
        except (RuntimeError, GLib.Error) as e:
            self.stop()
            raise StartupError(f"output pipeline failed to start: {e}") from None
        self.runner = SourceRunner(spec, cfg.source, self.pipeline.push)
        self.runner.start()
        log.info("cuecast %s started (pid %d), source %s", __version__, os.getpid(), spec.describe())

    def wait_first_result(self, timeout: float) -> str | None:
        """Wait for the first frame or the first source error; returns the error text, if any."""
        if self.runner is None:
            return None
        self.runner.first_result.wait(timeout)
        return self.runner.first_error

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.runner is not None:
            self.runner.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        self.loop.stop()
        log.info("cuecast stopped")

    def set_controls(self, controls: ControlsConfig) -> None:
        self.cfg.controls = controls
        if self.pipeline is not None:
            self.pipeline.apply_controls(controls)

    def status(self) -> dict[str, Any]:
        src = self.runner.status if self.runner else None
        out: dict[str, Any] = {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_mono, 1) if self.started_mono else 0.0,
            "source": vars(src).copy() if src else None,
            "outputs": {},
        }
        if self.shm is not None:
            out["outputs"]["shm"] = {
                "enabled": True, "socket": str(self.shm.socket_path), "clients": self.shm.clients,
                "frames_sent": self.shm.frames_sent, "width": self.shm.width, "height": self.shm.height,
            }
        return out


def gst_version() -> str:
    return Gst.version_string()
