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
from cuecast.degrade import Degrader, EntryCounters, Group, Rated, thread_run_delay_s
from cuecast.encoders import EncoderError, EncoderKind, choose
from cuecast.fisheye.model import CalibrationError, load_model
from cuecast.gst import GLib, Gst
from cuecast.outputs.h264 import H264Hub, H264Output
from cuecast.outputs.mjpeg import FrameHub, MjpegOutput
from cuecast.outputs.publish import Publisher
from cuecast.outputs.rtsp import RtspError, RtspServer
from cuecast.outputs.shm import ShmError, ShmOutput
from cuecast.outputs.webrtc import WebRtcOutput
from cuecast.pipeline import Branch, CapturePipeline, FisheyeSetup
from cuecast.sources import SourceError, SourceSpec, check_source, parse_source

log = logging.getLogger(__name__)

QUALITIES = ("low", "medium", "high")
# /healthz fails when no frame entered the pipeline for this long.
HEALTHY_FRAME_AGE_S = 2.0
# With no real frame for this long, the outputs get "NO SIGNAL" frames at the configured rate instead.
PLACEHOLDER_AFTER_S = 0.5
# At start-up the source gets this long to deliver its first frame before NO SIGNAL is shown.
PLACEHOLDER_AT_START_S = 1.5
# Niceness added per step down degrade.priority for the outputs' threads (0, 5, 10).
NICE_STEP = 5


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

    def __init__(self, cfg: Config, config_path: Path | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = overrides or {}  # CLI flags, kept over a SIGHUP reload
        self.spec: SourceSpec | None = None
        self.loop = GLibLoopThread()
        self.shm: ShmOutput | None = None
        self.pipeline: CapturePipeline | None = None
        self.runner: SourceRunner | None = None
        self.hubs: dict[str, FrameHub] = {}
        self.mjpeg: dict[str, MjpegOutput] = {}
        for q in QUALITIES:
            qc = getattr(cfg.mjpeg, q)
            if qc.enabled:
                hub = FrameHub(q, qc.max_clients)
                self.hubs[q] = hub
                self.mjpeg[q] = MjpegOutput(q, qc.width, qc.height, qc.fps, qc.quality, hub, cfg.source.fps)
        self.h264_hub = H264Hub()
        self.h264: H264Output | None = None
        self.rtsp: RtspServer | None = None
        self.webrtc: WebRtcOutput | None = None
        self.publishers: list[Publisher] = []
        self.encoder: EncoderKind | None = None
        self.encoder_reason = ""
        self.cpu_percent = 0.0
        self.fisheye: FisheyeSetup | None = None
        self.degrader: Degrader | None = None
        self._degrade_id = 0
        self._stop_placeholder = threading.Event()
        self._placeholder_thread: threading.Thread | None = None
        self.placeholder_frames = 0
        self.signal_lost_mono: float | None = None
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
        branches.extend(self.mjpeg.values())
        if self.h264_wanted:
            try:
                self.encoder, self.encoder_reason = choose(cfg.rtsp.encoder)
            except EncoderError as e:
                raise StartupError(str(e)) from None
            log.info("H.264 encoder: %s (%s)", self.encoder.element, self.encoder_reason)
            w, h = cfg.rtsp_size
            self.h264 = H264Output(self.encoder, w, h, cfg.rtsp.fps, cfg.rtsp.bitrate_kbps,
                                   cfg.rtsp.keyframe_interval, cfg.source.fps, self.h264_hub)
            branches.append(self.h264)
        self.fisheye = self._fisheye_setup(spec)
        self._set_thread_priorities()
        self.pipeline = CapturePipeline(cfg.source.width, cfg.source.height, cfg.source.fps, branches,
                                        cfg.controls, self.fisheye)
        self._started = True
        self.started_mono = time.monotonic()
        self.loop.start()
        try:
            self.pipeline.start()
        except (RuntimeError, GLib.Error) as e:
            self.stop()
            raise StartupError(f"output pipeline failed to start: {e}") from None
        if cfg.rtsp.enabled:
            self.rtsp = RtspServer(cfg.rtsp.bind, cfg.rtsp.port, cfg.rtsp.mount, self.h264_hub,
                                   cfg.rtsp.session_timeout, {u.name: u.password for u in cfg.rtsp.users})
            try:
                self.rtsp.start()
            except RtspError as e:
                self.stop()
                raise StartupError(str(e)) from None
        if cfg.webrtc.enabled:
            self.webrtc = WebRtcOutput(self.h264_hub, cfg.webrtc.max_viewers, cfg.webrtc.connect_timeout,
                                       cfg.webrtc.addresses or None)
            try:
                self.webrtc.start()
            except RuntimeError as e:
                self.stop()
                raise StartupError(f"webrtc: {e}") from None
        self.publishers = [Publisher(t.url, self.h264_hub, i) for i, t in enumerate(cfg.publish) if t.enabled]
        for pub in self.publishers:
            pub.start()
        self.degrader = self._degrader(self.pipeline)
        self._degrade_id = GLib.timeout_add_seconds(1, self._degrade_tick)
        self.runner = SourceRunner(spec, cfg.source, self.pipeline.push)
        self.runner.start()
        self._stop_placeholder.clear()
        self._placeholder_thread = threading.Thread(target=self._placeholder_loop, name="placeholder", daemon=True)
        self._placeholder_thread.start()
        log.info("cuecast %s started (pid %d), source %s", __version__, os.getpid(), spec.describe())

    @property
    def h264_wanted(self) -> bool:
        """The H.264 encoder branch exists when RTSP, WebRTC or a publish target can use it."""
        cfg = self.cfg
        return cfg.rtsp.enabled or cfg.webrtc.enabled or any(t.enabled for t in cfg.publish)

    def _by_priority(self) -> list[tuple[str, list[tuple[str, ShmOutput | H264Output | MjpegOutput]]]]:
        """The rate-controlled outputs as degrade.priority orders them: [(group, [(name, branch), ...]), ...]."""
        groups: dict[str, list[tuple[str, ShmOutput | H264Output | MjpegOutput]]] = {
            "shm": [("shm", self.shm)] if self.shm else [],
            "rtsp": [("h264", self.h264)] if self.h264 else [],
            "mjpeg": [(f"mjpeg {q}", out) for q, out in self.mjpeg.items()],
        }
        return [(name, groups[name]) for name in self.cfg.degrade.priority]

    def _degrader(self, pipeline: CapturePipeline) -> Degrader:
        """The degradation policy over this service's outputs, grouped and ordered by degrade.priority."""
        groups = [Group(name, [Rated(label, b.fps, b.active, lambda b=b: b.gate.passed, b.set_fps)
                               for label, b in branches]) for name, branches in self._by_priority()]
        dc = self.cfg.degrade
        entry = EntryCounters(lambda: pipeline.frames_in, lambda: pipeline.frames_entered,
                              lambda: pipeline.frames_idle, lambda: float(self.cfg.source.fps), thread_run_delay_s)
        return Degrader(groups, entry, dc.min_fps, dc.recover_after, enabled=dc.enabled)

    def _set_thread_priorities(self) -> None:
        """Outputs lower in degrade.priority run their threads at a higher niceness (set before the pipeline
        starts, so threads an encoder starts inherit it)."""
        if not self.cfg.degrade.thread_priorities:
            return
        for rank, (_name, branches) in enumerate(self._by_priority()):
            for _label, branch in branches:
                branch.gate.nice = NICE_STEP * rank

    def _degrade_tick(self) -> bool:
        if self.degrader is not None:
            self.degrader.tick()
        return True

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
        from cuecast.fisheye.element import register

        register()
        log.info("fisheye correction %s with %s", "on" if fc.enabled else "available (off)", source)
        return FisheyeSetup(model, source, fc.balance, fc.fov_scale, fc.enabled)

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
        self._stop_placeholder.set()
        if self._degrade_id:
            GLib.source_remove(self._degrade_id)
            self._degrade_id = 0
        if self._placeholder_thread is not None:
            self._placeholder_thread.join(timeout=2)
        if self.runner is not None:
            self.runner.stop()
        for pub in self.publishers:
            pub.stop()
        if self.webrtc is not None:
            self.webrtc.stop()
        if self.rtsp is not None:
            self.rtsp.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        self.loop.stop()
        log.info("cuecast stopped")

    def apply_config(self, new: Config) -> tuple[list[str], list[str]]:
        """Apply a reloaded config: (keys applied live, keys that need a restart)."""
        old = self.cfg.model_dump()
        fresh = new.model_dump()
        applied: list[str] = []
        if new.controls != self.cfg.controls:
            self.set_controls(new.controls)
            applied.append("controls")
        if new.fisheye.enabled != self.cfg.fisheye.enabled and self.pipeline is not None:
            if self.pipeline.set_fisheye_enabled(new.fisheye.enabled):
                self.cfg.fisheye.enabled = new.fisheye.enabled
                applied.append("fisheye.enabled")
        for q, out in self.mjpeg.items():
            quality = getattr(new.mjpeg, q).quality
            if quality != getattr(self.cfg.mjpeg, q).quality:
                out.set_quality(quality)
                getattr(self.cfg.mjpeg, q).quality = quality
                applied.append(f"mjpeg.{q}.quality")
        if new.mjpeg.client_timeout != self.cfg.mjpeg.client_timeout:
            self.cfg.mjpeg.client_timeout = new.mjpeg.client_timeout
            applied.append("mjpeg.client_timeout")
        if new.log.level != self.cfg.log.level:
            logging.getLogger().setLevel(new.log.level)
            self.cfg.log.level = new.log.level
            applied.append("log.level")
        live = set(applied) | {"controls"}
        restart = [k for k in _changed_keys(old, fresh) if not any(k == a or k.startswith(a + ".") for a in live)]
        return applied, restart

    def set_controls(self, controls: ControlsConfig) -> None:
        self.cfg.controls = controls
        if self.pipeline is not None:
            self.pipeline.apply_controls(controls)

    def _placeholder_loop(self) -> None:
        """Keep every output fed while the source is down: NO SIGNAL frames at the configured rate."""
        from cuecast.placeholder import Placeholder

        cfg = self.cfg.source
        w, h, fps = cfg.width, cfg.height, cfg.fps
        card = Placeholder(w, h, self.spec.describe() if self.spec else "?")
        period = 1.0 / fps
        next_t = time.monotonic()
        shown: object = None
        shown_bytes: GLib.Bytes | None = None
        while not self._stop_placeholder.wait(max(0.0, next_t - time.monotonic())):
            next_t += period
            if next_t < time.monotonic() - 1:  # fell far behind (suspended): resync
                next_t = time.monotonic() + period
            runner, pipeline = self.runner, self.pipeline
            if runner is None or pipeline is None:
                continue
            last = runner.status.last_frame_mono
            now = time.monotonic()
            if last is None and self.started_mono is not None and now - self.started_mono < PLACEHOLDER_AT_START_S:
                continue
            if last is not None and now - last < PLACEHOLDER_AFTER_S:
                if self.signal_lost_mono is not None and self.placeholder_frames:
                    log.info("source %s: signal back after %.1f s", runner.spec.describe(),
                             now - self.signal_lost_mono)
                    self.signal_lost_mono = None
                continue
            if self.signal_lost_mono is None:
                self.signal_lost_mono = last if last is not None else now
                log.warning("source %s: no signal; outputs show a placeholder", runner.spec.describe())
            frame = card.frame(now - self.signal_lost_mono)
            if frame is not shown:  # the card changes once a second: copy it into GLib memory only then
                shown, shown_bytes = frame, GLib.Bytes.new(frame.tobytes())
            pipeline.push(Gst.Buffer.new_wrapped_bytes(shown_bytes), time.monotonic_ns(), placeholder=True)
            self.placeholder_frames += 1

    def healthy(self) -> bool:
        """True while frames flow from the source into the pipeline."""
        st = self.runner.status if self.runner else None
        return bool(st and st.last_frame_mono and time.monotonic() - st.last_frame_mono < HEALTHY_FRAME_AGE_S)

    def status(self) -> dict[str, Any]:
        src = self.runner.status if self.runner else None
        source: dict[str, Any] | None = None
        if src is not None:
            source = vars(src).copy()
            last = source.pop("last_frame_mono")
            source["last_frame_age_s"] = round(time.monotonic() - last, 3) if last else None
            source["fps"] = round(source["fps"], 2) if source["fps"] else None
            source["signal"] = self.healthy()
            source["signal_lost_s"] = (round(time.monotonic() - self.signal_lost_mono, 1)
                                       if self.signal_lost_mono is not None else None)
            source["placeholder_frames"] = self.placeholder_frames
        out: dict[str, Any] = {
            "version": __version__,
            "gstreamer": Gst.version_string(),
            "uptime_s": round(time.monotonic() - self.started_mono, 1) if self.started_mono else 0.0,
            "cpu_percent": round(self.cpu_percent, 1),
            "healthy": self.healthy(),
            "source": source,
            "pipeline": {
                "frames_in": self.pipeline.frames_in if self.pipeline else 0,
                "frames_idle": self.pipeline.frames_idle if self.pipeline else 0,
                "restarts": self.pipeline.restarts if self.pipeline else 0,
                "last_error": self.pipeline.last_error if self.pipeline else None,
            },
            "fisheye": {
                "active": self.fisheye is not None,
                "enabled": bool(self.fisheye and self.fisheye.enabled),
                "calibration": self.fisheye.source if self.fisheye else None,
                "camera_matrix": self.pipeline.fisheye_matrix() if self.pipeline else None,
            },
            "outputs": {},
        }
        outputs = out["outputs"]
        outputs["shm"] = {"enabled": self.shm is not None}
        if self.shm is not None:
            outputs["shm"].update({
                "socket": str(self.shm.socket_path), "clients": self.shm.clients,
                "frames_sent": self.shm.frames_sent, "width": self.shm.width, "height": self.shm.height,
            })
        for q in QUALITIES:
            qc = getattr(self.cfg.mjpeg, q)
            entry: dict[str, Any] = {"enabled": q in self.hubs, "port": qc.port, "width": qc.width,
                                     "height": qc.height, "fps_configured": qc.fps, "quality": qc.quality}
            if q in self.hubs:
                entry.update(self.hubs[q].stats())
            outputs[f"mjpeg_{q}"] = entry
        h264: dict[str, Any] = {"enabled": self.encoder is not None}
        if self.encoder is not None:
            hub = self.h264_hub
            w, h = self.cfg.rtsp_size
            h264.update({
                "encoder": self.encoder.element, "encoder_reason": self.encoder_reason, "encoding": hub.demand,
                "consumers": hub.subscribers, "width": w, "height": h, "fps_configured": self.cfg.rtsp.fps,
                "frames_encoded": hub.frames, "keyframes": hub.keyframes, "bytes_encoded": hub.bytes,
            })
        outputs["h264"] = h264
        rtsp: dict[str, Any] = {"enabled": self.rtsp is not None}
        if self.rtsp is not None:
            rtsp.update({"url": self.rtsp.url, "clients": self.rtsp.clients, "auth": bool(self.cfg.rtsp.users),
                         **{k: v for k, v in h264.items() if k != "enabled"}})
        outputs["rtsp"] = rtsp
        webrtc: dict[str, Any] = {"enabled": self.webrtc is not None}
        if self.webrtc is not None:
            webrtc.update({"endpoint": "/whep/high", **self.webrtc.stats()})
        outputs["webrtc"] = webrtc
        out["publish"] = [p.stats() for p in self.publishers]
        if self.degrader is not None:
            out["degradation"] = self.degrader.status()
            for name, rates in out["degradation"]["outputs"].items():
                key = name.replace(" ", "_")  # "mjpeg medium" -> the "mjpeg_medium" output
                if key in outputs:
                    outputs[key]["fps_target"] = rates["fps_target"]
        return out


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, path + ".")
        elif a != b:
            keys.append(path)
    return keys
