"""The streaming process's service: everything that serves people, fed from the capture process's ring.

Owns the wiring config -> ring reader (SourceRunner on the internal ring) -> output pipeline (scalers and
encoders, no correction: frames arrive corrected) -> outputs (MJPEG hubs; the one H.264 encoder for RTSP,
WebRTC, publishing and instant replay), the GLib main-loop thread, the link to the capture process (its status, the ring
demand, picture controls), graceful degradation, and the status snapshot of both halves. Start-up problems
a person can fix raise StartupError with the fix in the text.
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
from cuecast.config import QUALITIES, Config, ControlsConfig, ReconnectConfig, reload_plan
from cuecast.core import native
from cuecast.core.errors import StartupError
from cuecast.core.gst import GLib, Gst
from cuecast.core.load import LoadMeter, box_idle_s, box_status, thread_run_delay_s
from cuecast.media.demo import resolve_table
from cuecast.media.pipeline import Branch, OutputPipeline, View
from cuecast.media.placeholder import NoSignalFeeder
from cuecast.media.runner import SourceRunner
from cuecast.media.sources import SourceError, SourceSpec, parse_source
from cuecast.protocol.control import CaptureLink, ControlError
from cuecast.protocol.frame import FrameInfo
from cuecast.protocol.messages import CaptureStatus, ControlsRequest, LensRequest, PipelineStatus, TableRequest
from cuecast.protocol.worker import Runtime
from cuecast.streaming.degrade import Degrader, EntryCounters, Group, Rated
from cuecast.streaming.encoders import EncoderError, EncoderKind, choose
from cuecast.streaming.events import EventFeed, EventStore
from cuecast.streaming.outputs.entry import COMMON, entry_from
from cuecast.streaming.outputs.h264 import H264Hub, H264Output, encoder_status
from cuecast.streaming.outputs.h264 import status_entry as h264_entry
from cuecast.streaming.outputs.mjpeg.branch import FrameHub, MjpegOutput
from cuecast.streaming.outputs.mjpeg.branch import status_entry as mjpeg_entry
from cuecast.streaming.outputs.publish import Publisher
from cuecast.streaming.outputs.replay.branch import Replay
from cuecast.streaming.outputs.rtsp import RtspError, RtspServer
from cuecast.streaming.outputs.rtsp import status_entry as rtsp_entry
from cuecast.streaming.outputs.webrtc.branch import WebRtcOutput
from cuecast.streaming.outputs.webrtc.branch import status_entry as webrtc_entry
from cuecast.table import TableError, TableGeometry, TableView, view_of
from cuecast.table.maps import table_maps
from cuecast.table.model import even_floor, table_dict

log = logging.getLogger(__name__)

# /healthz fails when no frame came through the ring for this long.
HEALTHY_FRAME_AGE_S = 2.0
# Niceness added per step down degrade.priority for the outputs' threads (0, 5, 10).
NICE_STEP = 5
# How often the ring demand (does any output have a consumer?) is sent to the capture process.
DEMAND_POLL_MS = 100
# The ring comes back fast when the capture process restarts: retry it sooner than a camera.
RING_RECONNECT = ReconnectConfig(initial_delay=0.1, max_delay=0.5)


class GLibLoopThread:
    """Runs GLib's default main context (bus watches, timers, the RTSP server) in a thread."""

    def __init__(self) -> None:
        self._loop = GLib.MainLoop()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop.run, name="glib", daemon=True)
            self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._thread is not None:
            self._loop.quit()
            self._thread.join(timeout=2)
            self._thread = None


class Service:
    """The people-facing outputs, one output pipeline fed from the ring. A context manager; stop() twice is
    harmless."""

    def __init__(self, cfg: Config, runtime: Runtime, config_path: Path | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.runtime = runtime
        self.config_path = config_path
        self.overrides = overrides or {}  # CLI flags, kept over a SIGHUP reload
        self.loop = GLibLoopThread()
        self.pipeline: OutputPipeline | None = None
        self.runner: SourceRunner | None = None
        self.feeder: NoSignalFeeder | None = None
        self.link = CaptureLink(runtime.control, self._on_capture_instance)
        self.hubs: dict[str, FrameHub] = {}
        self.mjpeg: dict[str, MjpegOutput] = {}
        kind: str
        try:
            kind = parse_source(cfg.source.uri).kind
        except SourceError:
            kind = ""
        self.table: TableGeometry | None = None
        self.table_error = ""
        try:
            self.table, _ = resolve_table(cfg, kind)
        except TableError as e:
            self.table_error = str(e)
        for q in QUALITIES:
            qc = getattr(cfg.mjpeg, q)
            if qc.enabled:
                hub = FrameHub(q, qc.max_clients)
                self.hubs[q] = hub
                w, h = self._output_size(qc.view, qc.width, qc.height, keep_width=True)
                self.mjpeg[q] = MjpegOutput(q, w, h, qc.fps, qc.quality, hub, cfg.source.fps, qc.view)
        self.h264_hub = H264Hub()
        self.h264: H264Output | None = None
        self.rtsp: RtspServer | None = None
        self.webrtc: WebRtcOutput | None = None
        self.publishers: list[Publisher] = []
        self.replay: Replay | None = None
        self.events = EventStore(cfg.events_dir, cfg.events.max_events)
        self.event_feed = EventFeed()
        self.encoder: EncoderKind | None = None
        self.encoder_reason = ""
        self.cpu_percent = 0.0
        self.load = LoadMeter()  # sampled by the server's loop once a second
        self.priority = ""
        self.degrader: Degrader | None = None
        self._timers: list[int] = []
        self.table_set_live = False  # a table set over the API, not saved: a new capture process gets it from here
        self.lens_path: Path | None = None  # a lens applied over the API: a new capture process gets it from here
        self.lens_session: Any = None  # the guided lens calibration (streaming.lenscal.LensSession), if any
        self.last_ring_mono: float | None = None
        self.demand_since: float | None = None  # when an output here last got a consumer (None: nobody)
        self.started_mono: float | None = None
        self._started = False

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- life cycle -------------------------------------------------------------------------------------

    def _table_view(self) -> TableView | None:
        return view_of(self.cfg, self.table) if self.table is not None else None

    def _output_size(self, view: str, width: int, height: int, keep_width: bool = False) -> tuple[int, int]:
        """An output's size: as configured in the camera view; in the table view, the configured width with the
        view's own aspect (or the view's size itself when `keep_width` is false)."""
        tv = self._table_view()
        if view != "table" or tv is None:
            return width, height
        tw, th = tv.size
        return (width, even_floor(width * th / tw)) if keep_width else (tw, th)

    def _views(self) -> list[View]:
        views = [View("camera")]
        tv = self._table_view()
        if tv is not None and any(v == "table" for k, v in self.cfg.views().items() if k != "shm"):
            # From the corrected ring frames: the table's homography alone (the capture process corrected them).
            views.append(View("table", table_maps(tv, (self.cfg.source.width, self.cfg.source.height))))
        return views

    def start(self) -> None:
        if self._started:
            return
        cfg = self.cfg
        people = {k: v for k, v in cfg.views().items() if k != "shm"}
        if self.table is None and "table" in people.values():
            which = ", ".join(k for k, v in people.items() if v == "table")
            raise StartupError(f"{which}: view table needs a table calibration ({self.table_error or 'none'}): run "
                               "`cuecast calibrate table` and set table.calibration")
        views = self._views()
        if any(v.maps is not None for v in views) or cfg.rtsp.enabled:  # RTSP: cuecaststamp
            try:
                native.load()
            except native.NativeError as e:
                raise StartupError(str(e)) from None
        branches: list[Branch] = [*self.mjpeg.values()]
        if self.h264_wanted:
            try:
                self.encoder, self.encoder_reason = choose(cfg.h264.encoder)
            except EncoderError as e:
                raise StartupError(str(e)) from None
            log.info("H.264 encoder: %s (%s)", self.encoder.element, self.encoder_reason)
            w, h = cfg.h264_size
            if cfg.h264.view == "table" and (cfg.h264.width is None):
                w, h = self._output_size("table", w, h)
            self.h264 = H264Output(self.encoder, w, h, cfg.h264.fps, cfg.h264.bitrate_kbps,
                                   cfg.h264.keyframe_interval, cfg.source.fps, self.h264_hub, cfg.h264.view)
            branches.append(self.h264)
        self._set_thread_priorities()
        src = cfg.source
        self.pipeline = OutputPipeline(src.width, src.height, src.fps, branches, cfg.controls, views)
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
                                   cfg.rtsp.session_timeout, rtsp_users(cfg))
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
        if cfg.replay.enabled:
            rc = cfg.replay
            self.replay = Replay(rc.seconds, rc.dir, rc.max_clips, rc.max_bytes)
            self.replay.start(self.h264_hub)
        self.events.load()
        self.degrader = self._degrader(self.pipeline)
        self._timers = [GLib.timeout_add_seconds(1, self._tick), GLib.timeout_add(DEMAND_POLL_MS, self._demand)]
        ring = SourceSpec("ring", str(self.runtime.ring))
        self.runner = SourceRunner(ring, src.model_copy(update={"reconnect": RING_RECONNECT}), self._on_frame)
        self.runner.start()
        self.feeder = NoSignalFeeder(src.width, src.height, src.fps, "the capture process", self._last_ring,
                                     self._push_placeholder)
        self.feeder.start()
        self.link.start()
        log.info("streaming %s started (pid %d), %s", __version__, os.getpid(), self.priority or "default priority")

    @property
    def h264_wanted(self) -> bool:
        """The H.264 encoder branch exists when RTSP, WebRTC, replay or a publish target can use it."""
        return self.cfg.h264_wanted

    def _by_priority(self) -> list[tuple[str, list[tuple[str, H264Output | MjpegOutput]]]]:
        """The rate-controlled outputs as degrade.priority orders them: [(group, [(name, branch), ...]), ...].
        Shared memory is in the capture process, always first: its group here is empty (never lowered)."""
        groups: dict[str, list[tuple[str, H264Output | MjpegOutput]]] = {
            "shm": [],
            "h264": [("h264", self.h264)] if self.h264 else [],
            "mjpeg": [(f"mjpeg_{q}", out) for q, out in self.mjpeg.items()],
        }
        order = ["shm", *[n for n in self.cfg.degrade.priority if n != "shm"]]
        return [(name, groups[name]) for name in order]

    def _degrader(self, pipeline: OutputPipeline) -> Degrader:
        """The degradation policy over this process's outputs, grouped and ordered by degrade.priority."""
        groups = [Group(name, [Rated(label, b.fps, b.active, b.gate.passed_count, b.set_fps, b.gate.cpu_s)
                               for label, b in branches]) for name, branches in self._by_priority()]
        dc = self.cfg.degrade
        entry = EntryCounters(lambda: pipeline.frames_in, lambda: pipeline.frames_entered,
                              lambda: pipeline.frames_idle, lambda: float(self.cfg.source.fps), thread_run_delay_s,
                              box_idle_s)
        return Degrader(groups, entry, dc.min_fps, dc.recover_after, enabled=dc.enabled)

    def _set_thread_priorities(self) -> None:
        """Outputs lower in degrade.priority run their threads at a higher niceness (set before the pipeline
        starts, so threads an encoder starts inherit it)."""
        if not self.cfg.degrade.thread_priorities:
            return
        for rank, (_name, branches) in enumerate(self._by_priority()):
            for _label, branch in branches:
                branch.gate.nice = NICE_STEP * max(0, rank - 1)

    def _tick(self) -> bool:
        """Once a second: degradation, and the H.264 outputs' rates."""
        if self.degrader is not None:
            self.degrader.tick()
        self.h264_hub.rate.sample(self.h264_hub.frames)
        if self.rtsp is not None:
            self.rtsp.rate.sample(self.rtsp.frames_sent)
        if self.webrtc is not None:
            self.webrtc.rate.sample(self.webrtc.frames_sent)
        return True

    def _demand(self) -> bool:
        """Ask the capture process for ring frames only while an output here has a consumer."""
        pipeline = self.pipeline
        want = pipeline is not None and any(b.active() for b in pipeline.branches)
        if pipeline is not None:
            pipeline.refresh_demand()  # a view nobody here watches is not rendered
        if want and self.demand_since is None:
            self.demand_since = time.monotonic()
        elif not want:
            self.demand_since = None
        self.link.set_demand(want)
        return True

    def closing(self) -> None:
        """First thing at shutdown (any thread): the capture process stops at the same time, so its ring and
        its control link going away is expected, not a fault to retry and log."""
        self.link.closing = True
        if self.runner is not None:
            self.runner.closing = True

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for timer in self._timers:
            GLib.source_remove(timer)
        self._timers = []
        if self.lens_session is not None:
            self.lens_session.stop()
        if self.feeder is not None:
            self.feeder.stop()
        self.link.stop()
        if self.runner is not None:
            self.runner.stop()
        for pub in self.publishers:
            pub.stop()
        if self.replay is not None:
            self.replay.stop(self.h264_hub)
        if self.webrtc is not None:
            self.webrtc.stop()
        if self.rtsp is not None:
            self.rtsp.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        self.loop.stop()
        log.info("streaming stopped")

    def wait_first_result(self, timeout: float) -> str | None:
        """Wait for the first ring frame or the first ring error; returns the error text, if any."""
        if self.runner is None:
            return None
        self.runner.first_result.wait(timeout)
        return self.runner.first_error

    # -- frames -----------------------------------------------------------------------------------------

    def _on_frame(self, buf: Gst.Buffer, capture_ns: int, info: FrameInfo | None) -> None:
        self.last_ring_mono = time.monotonic()
        pipeline = self.pipeline
        if pipeline is not None and info is not None:
            pipeline.push(buf, capture_ns, info.placeholder, seq=info.seq, wall_ns=info.capture_wall_ns)

    def _last_ring(self) -> float | None:
        """The newest ring frame's arrival, for the NO SIGNAL feeder: frames only flow while an output here has
        a consumer, so until then (and for a moment after) the ring counts as fine."""
        since = self.demand_since
        if since is None:
            return time.monotonic()
        return max(since, self.last_ring_mono or 0.0)

    def _push_placeholder(self, buf: object, capture_ns: int) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.push(buf, capture_ns, placeholder=True)

    # -- controls and reload ----------------------------------------------------------------------------

    def _on_capture_instance(self, status: CaptureStatus, first: bool) -> None:
        """A capture process met for the first time: take its controls when this process just started; give
        it ours when it is the one that restarted (changes made over the API are not lost)."""
        if first:
            self.cfg.controls = status.controls
            return
        try:
            self.link.request(ControlsRequest(controls=self.cfg.controls))
            if self.table is not None and self.table_set_live:
                self.link.request(TableRequest(table=table_dict(self.table)))
            if self.lens_path is not None:
                self.link.request(LensRequest(calibration=str(self.lens_path)), 10.0)
        except ControlError as e:
            log.warning("could not hand the picture controls to the new capture process: %s", e)

    def set_table(self, table: TableGeometry) -> None:
        """A new table calibration, live, in both processes (the capture process renders the backend's view)."""
        self.table = table.scaled_to(self.cfg.source.width, self.cfg.source.height)
        tv = self._table_view()
        if self.pipeline is not None and tv is not None and self.pipeline.view("table") is not None:
            self.pipeline.set_view_maps("table", table_maps(tv, (self.cfg.source.width, self.cfg.source.height)))
        try:
            self.link.request(TableRequest(table=table_dict(self.table)))
        except ControlError as e:
            log.warning("table kept here, the capture process takes it when it answers: %s", e)

    def set_controls(self, controls: ControlsConfig) -> None:
        """Apply picture controls (in the capture process, where the correction runs)."""
        self.cfg.controls = controls
        try:
            self.link.request(ControlsRequest(controls=controls))
        except ControlError as e:
            log.warning("controls kept here, the capture process takes them when it answers: %s", e)

    def apply_config(self, new: Config) -> tuple[list[str], list[str]]:
        """Apply a reloaded config: (keys applied live, keys that need a restart). Controls and the
        correction switch are applied by the capture process from the same file."""
        live, restart = reload_plan(self.cfg, new)
        if "controls" in live:
            self.cfg.controls = new.controls
        if "fisheye.enabled" in live:
            self.cfg.fisheye.enabled = new.fisheye.enabled
        for q, out in self.mjpeg.items():
            if f"mjpeg.{q}.quality" in live:
                quality = getattr(new.mjpeg, q).quality
                out.set_quality(quality)
                getattr(self.cfg.mjpeg, q).quality = quality
        if "mjpeg.client_timeout" in live:
            self.cfg.mjpeg.client_timeout = new.mjpeg.client_timeout
        if "log.level" in live:
            logging.getLogger().setLevel(new.log.level)
            self.cfg.log.level = new.log.level
        return live, restart

    # -- status -----------------------------------------------------------------------------------------

    def capture_status(self) -> CaptureStatus | None:
        """The capture process's newest status, None while it does not answer."""
        return self.link.status if self.link.connected else None

    def healthy(self) -> bool:
        """True while real frames flow from the camera into the capture process and, when an output here has
        a consumer, on through the ring."""
        cap = self.capture_status()
        last = self._last_ring()
        return bool(cap and cap.healthy and last and time.monotonic() - last < HEALTHY_FRAME_AGE_S)

    def _processes(self, cap: CaptureStatus | None) -> dict[str, Any]:
        sup = self.runtime.read_supervisor() or {}
        restarts = sup.get("restarts", {})
        return {
            "capture": {"pid": cap.pid, "state": "running", "uptime_s": cap.uptime_s,
                        "cpu_percent": cap.cpu_percent, "priority": cap.priority,
                        "restarts": restarts.get("capture", 0), "headroom": cap.headroom} if cap else
                       {"pid": sup.get("pids", {}).get("capture"), "state": "not answering",
                        "restarts": restarts.get("capture", 0)},
            "streaming": {"pid": os.getpid(), "state": "running",
                          "uptime_s": round(time.monotonic() - self.started_mono, 1) if self.started_mono else 0.0,
                          "cpu_percent": round(self.cpu_percent, 1), "priority": self.priority,
                          "restarts": restarts.get("streaming", 0),
                          "headroom": {**self.load.status(),
                                       "degrading": bool(self.degrader and self.degrader.degraded)}},
        }

    def outputs(self, cap: CaptureStatus | None) -> dict[str, dict[str, Any]]:
        """Every output's own entry (the same fields first, then its own): collected, not built here."""
        shm = cap.shm if cap else {"enabled": self.cfg.shm.enabled}
        # the capture process's shm stats but its format
        shown = (*COMMON, "socket", "width", "height", "view", "buffers")
        out = {"shm": entry_from(bool(shm.get("enabled")), {k: v for k, v in shm.items() if k in shown})}
        for q in QUALITIES:
            out[f"mjpeg_{q}"] = mjpeg_entry(getattr(self.cfg.mjpeg, q), self.hubs.get(q))
        enc = encoder_status(self.h264_hub, self.encoder, self.encoder_reason, self.cfg.h264_size, self.cfg.h264.fps)
        out["h264"] = h264_entry(self.h264_hub, enc)
        out["rtsp"] = rtsp_entry(self.rtsp, enc)
        out["webrtc"] = webrtc_entry(self.webrtc)
        return out

    def status(self) -> dict[str, Any]:
        cap = self.capture_status()
        source = dict(cap.source) if cap and cap.source else None
        if source is not None:
            source["signal"] = self.healthy()
        out: dict[str, Any] = {
            "version": __version__,
            "gstreamer": Gst.version_string(),
            "uptime_s": round(time.monotonic() - self.started_mono, 1) if self.started_mono else 0.0,
            "cpu_percent": round(self.cpu_percent + (cap.cpu_percent if cap else 0.0), 1),
            "healthy": self.healthy(),
            "source": source,
            "processes": self._processes(cap),
            "box": box_status(self.load),
            "pipeline": {
                **(cap.pipeline if cap else PipelineStatus()).model_dump(),
                "streaming_frames_in": self.pipeline.frames_in if self.pipeline else 0,
                "streaming_frames_idle": self.pipeline.frames_idle if self.pipeline else 0,
                "streaming_restarts": self.pipeline.restarts if self.pipeline else 0,
            },
            "fisheye": cap.fisheye if cap else {"active": None, "enabled": self.cfg.fisheye.enabled},
            "camera": cap.camera if cap else None,  # a V4L2 camera's controls as last read; None for other sources
            "ring": {"state": self.runner.status.state if self.runner else "stopped",
                     **((cap.ring if cap else None) or {})},
            "table": {**(cap.table if cap else {"calibrated": self.table is not None}), "views": self.cfg.views()},
            "outputs": self.outputs(cap),
        }
        out["publish"] = [p.stats() for p in self.publishers]
        out["replay"] = self.replay.stats() if self.replay else {"enabled": False}
        out["events"] = {**self.events.stats(), "listeners": self.event_feed.listeners,
                         "listeners_dropped": self.event_feed.dropped}
        if self.degrader is not None:
            out["degradation"] = self.degrader.status()
            # Shared memory is served by the capture process, first in priority: never lowered.
            fps = self.cfg.source.fps
            out["degradation"]["outputs"] = {"shm": {"fps_configured": fps, "fps_target": fps},
                                             **out["degradation"]["outputs"]}
            for name, rates in out["degradation"]["outputs"].items():
                if name in out["outputs"]:
                    out["outputs"][name]["fps_target"] = rates["fps_target"]
        return out



RTSP_TOKEN_USER = "cuecast"


def rtsp_users(cfg: Config) -> dict[str, str]:
    """RTSP logins: rtsp.users, and with auth.protect_streams the token as the password of user `cuecast`
    (the streams are protected on every port, RTSP included)."""
    users = {u.name: u.password for u in cfg.rtsp.users}
    if cfg.auth.protect_streams:
        token = cfg.auth.resolved_token()
        if token:
            users.setdefault(RTSP_TOKEN_USER, token)
    return users
