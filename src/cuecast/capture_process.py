"""The capture process: camera -> decode -> correction -> the vision backend's shared memory (and the ring).

The composition root of the backend's path, kept apart from everything that serves people: it owns the
camera (SourceRunner), the output pipeline with the native correction and the two native shared-memory
branches (the backend's BGR socket, in the correction's own thread; the internal I420 ring the streaming
process reads, behind a leaky queue), the NO SIGNAL feeder, and the control socket the streaming process
talks to. No HTTP, no encoder, no per-frame Python after the source's hand-over: a browser, an encoder or a
crash of the streaming process cannot slow down or stop the backend's frames.

Started by `cuecast serve` as `python -m cuecast _capture`; runs at the higher scheduling priority.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from cuecast import __version__, native
from cuecast.child import Heartbeat, Runtime, die_with_supervisor, runtime_from_env, set_priority
from cuecast.config import Config, ConfigError, ControlsConfig, load_config, reload_plan
from cuecast.control import ControlError, ControlServer
from cuecast.fisheye.model import CalibrationError, load_model
from cuecast.frame import FrameInfo
from cuecast.gst import GLib, Gst
from cuecast.outputs.shm import PRIVATE_MODE, ShmError, ShmOutput
from cuecast.pipeline import FisheyeSetup, OutputPipeline
from cuecast.placeholder import NoSignalFeeder
from cuecast.sources import SourceError, SourceSpec, check_source, parse_source

log = logging.getLogger(__name__)

# The ring holds few frames: the streaming process copies each one out as it arrives.
RING_BUFFERS = 4
# /healthz fails when no real frame came from the source for this long.
HEALTHY_FRAME_AGE_S = 2.0
# How long a file source gets to show it can be decoded before the start counts as failed.
FIRST_RESULT_TIMEOUT_S = 10.0


class StartupError(Exception):
    """The capture process cannot start; the message says what is wrong and how to fix it."""


class CaptureService:
    """Source -> correction -> shared memory. A context manager; stop() twice is harmless."""

    def __init__(self, cfg: Config, runtime: Runtime, config_path: Path | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.runtime = runtime
        self.config_path = config_path
        self.overrides = overrides or {}
        self.spec: SourceSpec | None = None
        self.instance = f"{os.getpid()}-{time.time_ns()}"
        self.loop = GLib.MainLoop()
        self._loop_thread: threading.Thread | None = None
        self.pipeline: OutputPipeline | None = None
        self.runner: Any = None
        self.shm: ShmOutput | None = None
        self.ring: ShmOutput | None = None
        self.fisheye: FisheyeSetup | None = None
        self.feeder: NoSignalFeeder | None = None
        self.control = ControlServer(runtime.control, self.handle)
        self.ring_demand = False
        self.priority = ""
        self.started_mono = time.monotonic()
        self.last_real_mono: float | None = None
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)
        self._started = False

    def __enter__(self) -> CaptureService:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        cfg = self.cfg
        try:
            spec = parse_source(cfg.source.uri)
            check_source(spec)
            native.load()
        except (SourceError, native.NativeError) as e:
            raise StartupError(str(e)) from None
        if spec.fell_back:
            log.info("no camera at /dev/video0: streaming the built-in demo source (set source.uri to choose)")
        self.spec = spec
        w, h, fps = cfg.source.width, cfg.source.height, cfg.source.fps
        branches = []
        if cfg.shm.enabled:
            sw, sh = cfg.shm_size
            self.shm = ShmOutput(cfg.shm.socket, sw, sh, fps, cfg.shm.buffers, cfg.shm.group, source_size=(w, h))
            branches.append(self.shm)
        self.ring = ShmOutput(self.runtime.ring, w, h, fps, RING_BUFFERS, name="ring", fmt="I420", queued=True,
                              mode=PRIVATE_MODE, wanted=lambda: self.ring_demand)
        branches.append(self.ring)
        try:
            for out in branches:
                out.prepare()
        except ShmError as e:
            raise StartupError(str(e)) from None
        self.fisheye = self._fisheye_setup(spec)
        self.pipeline = OutputPipeline(w, h, fps, branches, cfg.controls, self.fisheye, entry_valve=True)
        self._started = True
        self.started_mono = time.monotonic()
        self._loop_thread = threading.Thread(target=self.loop.run, name="glib", daemon=True)
        self._loop_thread.start()
        try:
            self.pipeline.start()
        except (RuntimeError, GLib.Error) as e:
            self.stop()
            raise StartupError(f"capture pipeline failed to start: {e}") from None
        from cuecast.capture import SourceRunner

        self.runner = SourceRunner(spec, cfg.source, self._on_frame)
        self.runner.start()
        self.feeder = NoSignalFeeder(w, h, fps, spec.describe(), self._last_real, self._push_placeholder)
        self.feeder.start()
        self.control.start()
        log.info("capture %s started (pid %d), source %s, %s", __version__, os.getpid(), spec.describe(),
                 self.priority or "default priority")

    def _fisheye_setup(self, spec: SourceSpec) -> FisheyeSetup | None:
        fc = self.cfg.fisheye
        if fc.calibration is not None:
            path, source = fc.calibration, str(fc.calibration)
        elif spec.kind == "demo":
            from cuecast.fisheye.demo import demo_calibration_path

            path, source = demo_calibration_path(), "built-in demo lens"
        else:
            return None  # no calibration: the element is not in the pipeline at all
        try:
            model = load_model(path)
            model.scaled_to(self.cfg.source.width, self.cfg.source.height)  # aspect check, before start
        except CalibrationError as e:
            text = str(e) if str(path) in str(e) else f"{path}: {e}"
            raise StartupError(f"fisheye.calibration: {text}") from None
        log.info("fisheye correction %s with %s", "on" if fc.enabled else "available (off)", source)
        return FisheyeSetup(model, source, fc.balance, fc.fov_scale, fc.enabled)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.control.stop()
        if self.feeder is not None:
            self.feeder.stop()
        if self.runner is not None:
            self.runner.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        self.loop.quit()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=2)
        log.info("capture stopped")

    def wait_first_result(self, timeout: float) -> str | None:
        """Wait for the first frame or the first source error; returns the error text, if any."""
        if self.runner is None:
            return None
        self.runner.first_result.wait(timeout)
        return self.runner.first_error  # type: ignore[no-any-return]

    # -- frames -----------------------------------------------------------------------------------------

    def _on_frame(self, buf: Gst.Buffer, capture_ns: int, _info: FrameInfo | None) -> None:
        self.last_real_mono = time.monotonic()
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.push(buf, capture_ns)

    def _last_real(self) -> float | None:
        return self.last_real_mono

    def _push_placeholder(self, buf: object, capture_ns: int) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.push(buf, capture_ns, placeholder=True)  # type: ignore[arg-type]

    # -- control ----------------------------------------------------------------------------------------

    def handle(self, op: str, args: dict[str, Any]) -> Any:
        """A request from the streaming process (control.py)."""
        if op == "status":
            return self.status()
        if op == "demand":
            self.set_ring_demand(bool(args.get("on")))
            return {"ring": self.ring_demand}
        if op == "controls":
            try:
                controls = ControlsConfig(**args)
            except ValueError as e:
                raise ControlError(f"invalid controls: {e}") from None
            self.set_controls(controls)
            return controls.model_dump()
        if op == "fisheye":
            enabled = bool(args.get("enabled"))
            if self.pipeline is None or not self.pipeline.set_fisheye_enabled(enabled):
                raise ControlError("no fisheye correction in this pipeline (no calibration)")
            self.cfg.fisheye.enabled = enabled
            return {"enabled": enabled}
        raise ControlError(f"unknown request {op!r}")

    def set_ring_demand(self, on: bool) -> None:
        if on != self.ring_demand:
            self.ring_demand = on
            log.debug("ring demand %s", "on" if on else "off")
        if self.ring is not None:
            self.ring.refresh()

    def set_controls(self, controls: ControlsConfig) -> None:
        self.cfg.controls = controls
        if self.pipeline is not None:
            self.pipeline.apply_controls(controls)

    def apply_config(self, new: Config) -> list[str]:
        """SIGHUP: apply what this process can change live; returns the keys applied."""
        live, _restart = reload_plan(self.cfg, new)
        applied = []
        if "controls" in live:
            self.set_controls(new.controls)
            applied.append("controls")
        if "fisheye.enabled" in live and self.pipeline is not None:
            if self.pipeline.set_fisheye_enabled(new.fisheye.enabled):
                self.cfg.fisheye.enabled = new.fisheye.enabled
                applied.append("fisheye.enabled")
        if "log.level" in live:
            logging.getLogger().setLevel(new.log.level)
            self.cfg.log.level = new.log.level
            applied.append("log.level")
        return applied

    # -- status -----------------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Real frames flow from the camera (not a NO SIGNAL placeholder)."""
        last = self.last_real_mono
        lost = self.feeder is not None and self.feeder.signal_lost_mono is not None
        return not lost and last is not None and time.monotonic() - last < HEALTHY_FRAME_AGE_S

    def status(self) -> dict[str, Any]:
        source: dict[str, Any] | None = None
        if self.runner is not None:
            source = vars(self.runner.status).copy()
            last = source.pop("last_frame_mono")
            source["last_frame_age_s"] = round(time.monotonic() - last, 3) if last else None
            source["fps"] = round(source["fps"], 2) if source["fps"] else None
            source["signal"] = self.healthy()
            lost = self.feeder.signal_lost_mono if self.feeder else None
            source["signal_lost_s"] = round(time.monotonic() - lost, 1) if lost is not None else None
            source["placeholder_frames"] = self.feeder.frames if self.feeder else 0
        p = self.pipeline
        return {
            "instance": self.instance,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "cpu_percent": round(self._proc.cpu_percent(None), 1),
            "priority": self.priority,
            "healthy": self.healthy(),
            "source": source,
            "pipeline": {"frames_in": p.frames_in if p else 0, "restarts": p.restarts if p else 0,
                         "last_error": p.last_error if p else None},
            "fisheye": {
                "active": self.fisheye is not None,
                "enabled": bool(self.fisheye and self.fisheye.enabled),
                "calibration": self.fisheye.source if self.fisheye else None,
                "camera_matrix": p.fisheye_matrix() if p else None,
                "correction_ms": round(p.correction_ms, 2) if p and p.correction_ms is not None else None,
            },
            "shm": {"enabled": True, **self.shm.stats()} if self.shm else {"enabled": False},
            "ring": {"demand": self.ring_demand, **self.ring.stats()} if self.ring else None,
            "controls": self.cfg.controls.model_dump(),
        }


def reload(service: CaptureService) -> None:
    """SIGHUP: re-read the config (the supervisor already checked it) and apply this process's live keys."""
    try:
        new = load_config(service.config_path, overrides=service.overrides).config
    except ConfigError as e:
        log.error("SIGHUP: config not reloaded, it is invalid (the running config stays):\n%s", e)
        return
    applied = service.apply_config(new)
    if applied:
        log.info("capture: applied %s", ", ".join(applied))


def main() -> int:
    """`python -m cuecast _capture`: run until SIGTERM; exit 2 for problems a person must fix."""
    from cuecast.cli import EXIT_BAD_INPUT, EXIT_OK, setup_logging

    die_with_supervisor()
    runtime = runtime_from_env()
    config_path, overrides = runtime.read_origin()
    try:
        cfg = load_config(config_path, overrides=overrides).config
    except ConfigError as e:
        print(f"cuecast: error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    setup_logging(cfg.log.level, cfg.log.format, role="capture")
    priority = set_priority(cfg.priority.capture_nice, cfg.priority.realtime)  # before any thread starts
    heartbeat = Heartbeat()
    stop = threading.Event()
    hup = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: hup.set())
    service = CaptureService(cfg, runtime, config_path, overrides)
    service.priority = priority
    try:
        service.start()
    except StartupError as e:
        print(f"cuecast: error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    try:
        spec = service.spec
        if spec is not None and spec.kind == "file":
            error = service.wait_first_result(FIRST_RESULT_TIMEOUT_S)
            if error:
                print(f"cuecast: error: source {spec.location}: {error}", file=sys.stderr, flush=True)
                return EXIT_BAD_INPUT
        heartbeat.ready()
        while not stop.wait(1.0):
            if hup.is_set():
                hup.clear()
                reload(service)
            if service.pipeline is not None and service._loop_thread is not None and service._loop_thread.is_alive():
                heartbeat.alive()
    finally:
        service.stop()
    return EXIT_OK
