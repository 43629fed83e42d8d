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
import threading
import time
from pathlib import Path
from typing import Any

from cuecast import __version__
from cuecast.capture.shm import PRIVATE_MODE, ShmError, ShmOutput, default_buffers
from cuecast.config import Config, ControlsConfig, reload_plan
from cuecast.core import native
from cuecast.core.errors import StartupError
from cuecast.core.gst import GLib, Gst
from cuecast.core.load import LoadMeter
from cuecast.lens.maps import Maps, build_maps
from cuecast.lens.model import CalibrationError, load_model
from cuecast.media import v4l2
from cuecast.media.demo import resolve_table
from cuecast.media.pipeline import FisheyeSetup, OutputPipeline, View
from cuecast.media.placeholder import NoSignalFeeder
from cuecast.media.sources import SourceError, SourceSpec, check_source, parse_source
from cuecast.protocol.control import ControlError, ControlServer
from cuecast.protocol.frame import FrameInfo, Geometry
from cuecast.protocol.messages import (
    CameraRequest,
    CameraSetRequest,
    CaptureStatus,
    ControlsRequest,
    DemandRequest,
    FisheyeRequest,
    LensRequest,
    PipelineStatus,
    RawFrameRequest,
    Request,
    SnapshotRequest,
    StatusRequest,
    TableRequest,
)
from cuecast.protocol.worker import Runtime
from cuecast.table import TableError, TableGeometry, TableView, view_of
from cuecast.table.detect import drift
from cuecast.table.maps import table_maps

log = logging.getLogger(__name__)

# How often the camera's controls are compared with the saved values (some cameras reset on their own).
CAMERA_CHECK_S = 5
KEEP = "__keep__"  # set_camera: leave the profile as it is


def by_id_of(path: str) -> str | None:
    """The /dev/v4l/by-id name that points at a device node, if any (stable across replugs)."""
    folder = "/dev/v4l/by-id"
    try:
        for name in sorted(os.listdir(folder)):
            if os.path.realpath(os.path.join(folder, name)) == os.path.realpath(path):
                return os.path.join(folder, name)
    except OSError:
        pass
    return None


# The ring holds few frames: the streaming process copies each one out as it arrives.
RING_BUFFERS = 4
# /healthz fails when no real frame came from the source for this long.
HEALTHY_FRAME_AGE_S = 2.0
# How long a file source gets to show it can be decoded before the start counts as failed.
FIRST_RESULT_TIMEOUT_S = 10.0
GRAB_TIMEOUT_S = 3.0
DRIFT_SCALE = 0.5  # the drift check measures the cushion lines on a downscaled frame


class GrabOutput:
    """Branch: one camera-view frame now and then (calibration snapshots, the drift check); closed otherwise."""

    name = "grab"
    queued = True
    view = "camera"

    def __init__(self) -> None:
        self.wanted = 0
        self._sink: Gst.Element | None = None

    def fragment(self) -> str:
        return "appsink name=grab_sink emit-signals=false max-buffers=1 drop=true sync=false async=false"

    def attach(self, pipeline: Gst.Pipeline, frames: OutputPipeline) -> None:
        self._sink = pipeline.get_by_name("grab_sink")

    def started(self) -> None:
        pass

    def stopped(self) -> None:
        self._sink = None

    def active(self) -> bool:
        return self.wanted > 0

    def pull(self, timeout: float) -> Gst.Sample | None:
        sink = self._sink
        return sink.emit("try-pull-sample", int(timeout * Gst.SECOND)) if sink is not None else None


class RawTap:
    """The next raw frame (decoded, before the picture controls and the correction) for whoever asks: lens
    calibration needs the lens's own picture. Costs one flag test per frame while nobody asks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.wanted = 0
        self._frame: tuple[Gst.Buffer, int, float] | None = None

    def offer(self, buf: Gst.Buffer, seq: int) -> None:
        if not self.wanted:
            return
        with self._cond:
            self._frame = (buf, seq, time.time())
            self._cond.notify_all()

    def take(self, timeout: float) -> tuple[Gst.Buffer, int, float] | None:
        """(buffer, seq, capture wall time) of the next frame, None after `timeout` seconds."""
        with self._cond:
            self.wanted += 1
            self._frame = None
            try:
                self._cond.wait_for(lambda: self._frame is not None, timeout)
                frame, self._frame = self._frame, None
            finally:
                self.wanted -= 1
        return frame


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
        self.kernel = ""  # the native pixel kernels in use (avx2 or plain-c), once loaded
        self.camera_values: dict[str, int] = {}  # a V4L2 camera's controls as last read (for /metrics)
        self.grab = GrabOutput()
        self.raw = RawTap()
        self._grab_lock = threading.Lock()
        self.table: TableGeometry | None = None
        self.table_source = ""
        self.drift: dict[str, Any] = {"checked": False}
        self._drift_stop = threading.Event()
        self._drift_thread: threading.Thread | None = None
        self.priority = ""
        self.started_mono = time.monotonic()
        self.last_real_mono: float | None = None
        self.load = LoadMeter()
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
            self.kernel = native.kernel(cfg.fisheye.kernel)
        except (SourceError, native.NativeError) as e:
            raise StartupError(str(e)) from None
        log.info("native pixel kernels: %s", self.kernel)
        if spec.fell_back:
            log.info("no camera at /dev/video0: streaming the built-in demo source (set source.uri to choose)")
        self.spec = spec
        w, h, fps = cfg.source.width, cfg.source.height, cfg.source.fps
        self.fisheye = self._fisheye_setup(spec)
        fc = cfg.fisheye
        camera_maps = (build_maps(self.fisheye.model, w, h, chroma=True, balance=fc.balance, fov_scale=fc.fov_scale)
                       if self.fisheye else None)
        try:
            self.table, self.table_source = resolve_table(cfg, spec.kind)
        except TableError as e:
            raise StartupError(f"table.calibration: {e}") from None
        if self.table is None and cfg.shm.enabled and cfg.shm.view == "table":
            raise StartupError("shm.view is table but there is no table calibration: run `cuecast calibrate table` "
                               "and set table.calibration")
        views = {"camera": View("camera", camera_maps, switchable=True, enabled=fc.enabled)}
        if self.table is not None and cfg.shm.enabled and cfg.shm.view == "table":
            views["table"] = View("table", self._table_maps(self.table))
        branches: list = []
        if cfg.shm.enabled:
            view_size = views[cfg.shm.view].size or (w, h)
            sw, sh = (cfg.shm.width, cfg.shm.height) if cfg.shm.width and cfg.shm.height else view_size
            buffers = cfg.shm.buffers or default_buffers(fps)
            self.shm = ShmOutput(cfg.shm.socket, sw, sh, fps, buffers, cfg.shm.group, source_size=view_size,
                                 view=cfg.shm.view, geometry=self._geometry(cfg.shm.view), kernel=cfg.fisheye.kernel)
            branches.append(self.shm)
        self.ring = ShmOutput(self.runtime.ring, w, h, fps, RING_BUFFERS, name="ring", fmt="I420", queued=True,
                              mode=PRIVATE_MODE, wanted=lambda: self.ring_demand, max_fps=cfg.people_fps,
                              kernel=cfg.fisheye.kernel)
        branches += [self.ring, self.grab]
        try:
            for out in (self.shm, self.ring):
                if out is not None:
                    out.prepare()
        except ShmError as e:
            raise StartupError(str(e)) from None
        order = sorted(views.values(), key=lambda v: v.name != cfg.shm.view)  # the backend's view renders first
        self.pipeline = OutputPipeline(w, h, fps, branches, cfg.controls, order, entry_valve=True,
                                       kernel=cfg.fisheye.kernel)
        self._started = True
        self.started_mono = time.monotonic()
        self._loop_thread = threading.Thread(target=self.loop.run, name="glib", daemon=True)
        self._loop_thread.start()
        try:
            self.pipeline.start()
        except (RuntimeError, GLib.Error) as e:
            self.stop()
            raise StartupError(f"capture pipeline failed to start: {e}") from None
        from cuecast.media.runner import SourceRunner

        self.runner = SourceRunner(spec, cfg.source, self._on_frame, before_open=self.apply_camera_controls)
        self.runner.start()
        self.feeder = NoSignalFeeder(w, h, fps, spec.describe(), self._last_real, self._push_placeholder)
        self.feeder.start()
        self.control.start()
        if spec.kind == "v4l2":
            GLib.idle_add(lambda: self._check_camera() and False)  # the values for /metrics from the start
            GLib.timeout_add_seconds(CAMERA_CHECK_S, self._check_camera)
        if self.table is not None:
            self._drift_thread = threading.Thread(target=self._drift_loop, name="table-drift", daemon=True)
            self._drift_thread.start()
        log.info("capture %s started (pid %d), source %s, %s", __version__, os.getpid(), spec.describe(),
                 self.priority or "default priority")

    def _fisheye_setup(self, spec: SourceSpec) -> FisheyeSetup | None:
        fc = self.cfg.fisheye
        if fc.calibration is not None:
            path, source = fc.calibration, str(fc.calibration)
        elif spec.kind == "demo":
            from cuecast.media.demo import demo_calibration_path

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

    def _table_view(self, table: TableGeometry) -> TableView:
        return view_of(self.cfg, table)

    def _table_maps(self, table: TableGeometry) -> Maps:
        """The table view straight from the raw frame: the correction and the table's homography in one map."""
        fe = self.fisheye
        P = None
        if fe is not None:
            from cuecast.lens.maps import output_matrix

            P = output_matrix(fe.model.scaled_to(self.cfg.source.width, self.cfg.source.height), fe.balance,
                              fe.fov_scale)
        return table_maps(self._table_view(table), (self.cfg.source.width, self.cfg.source.height),
                          fe.model if fe else None, P)

    def _geometry(self, view: str) -> Geometry:
        """The trailer's geometry for the backend's frames in `view`."""
        if self.table is None:
            return Geometry(view)
        return self._table_view(self.table).frame_geometry(view)

    def set_table(self, table: TableGeometry) -> None:
        """A new table calibration, live: the backend's table view and its millimetre mapping follow."""
        table = table.scaled_to(self.cfg.source.width, self.cfg.source.height)
        self.table, self.table_source = table, "set over the API"
        p = self.pipeline
        if p is not None and p.view("table") is not None:
            p.set_view_maps("table", self._table_maps(table))
        if self.shm is not None:
            self.shm.set_geometry(self._geometry(self.shm.view))
        self.drift = {"checked": False}
        log.info("table geometry set: corners %s, %gx%g mm", [tuple(round(v, 1) for v in c) for c in table.corners],
                 *table.size_mm)

    def grab_bgr(self, timeout: float = GRAB_TIMEOUT_S) -> Any:
        """One corrected camera-view frame as BGR (numpy), or None."""
        import cv2
        import numpy as np

        with self._grab_lock:
            self.grab.wanted += 1
            try:
                if self.pipeline is not None:
                    self.pipeline.refresh_demand()
                sample = self.grab.pull(timeout)
            finally:
                self.grab.wanted -= 1
                if self.pipeline is not None:
                    self.pipeline.refresh_demand()
        if sample is None:
            return None
        buf = sample.get_buffer()
        s = sample.get_caps().get_structure(0)
        w, h = s.get_int("width")[1], s.get_int("height")[1]
        ok, mi = buf.map(Gst.MapFlags.READ)
        if not ok:
            return None
        try:
            yuv = np.frombuffer(mi.data, np.uint8, count=w * h * 3 // 2).reshape(h * 3 // 2, w)
            return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
        finally:
            buf.unmap(mi)

    def raw_frame(self, timeout: float = GRAB_TIMEOUT_S) -> dict[str, Any]:
        """The next raw camera frame, written as I420 bytes to the runtime directory (RawFrameRequest): a copy,
        no conversion or encoding on the capture process's CPU."""
        pipeline = self.pipeline
        got = self.raw.take(timeout) if pipeline is not None else None
        if got is None or pipeline is None:
            raise ControlError("no frame from the camera right now")
        buf, seq, wall = got
        w, h = pipeline.width, pipeline.height
        ok, mi = buf.map(Gst.MapFlags.READ)
        if not ok:
            raise ControlError("the camera frame could not be read")
        path, tmp = self.runtime.path / "raw.i420", self.runtime.path / ".raw.i420"
        try:
            with open(tmp, "wb") as f:
                f.write(mi.data[: w * h * 3 // 2])
        finally:
            buf.unmap(mi)
        tmp.replace(path)
        source = self.spec.describe() if self.spec is not None else None
        return {"path": str(path), "format": "I420", "width": w, "height": h, "seq": seq,
                "capture_time": round(wall, 6), "source": source, "corrected": False}

    def set_lens(self, path: Path) -> dict[str, Any]:
        """A new lens calibration, live (LensRequest): the camera view's maps (and the table view's, which
        start from the raw frame) are rebuilt and swapped between two frames; a pipeline built without a
        correction gets one linked in while frames flow. The table's corners (in the corrected picture) move
        with the correction, so the table stays where it is on the felt. Answers {fisheye, table}: the
        table as it now is (None without one)."""
        import numpy as np

        from cuecast.lens.maps import corrected_to_raw, output_matrix, raw_to_corrected
        from cuecast.table.model import table_dict

        fc, w, h = self.cfg.fisheye, self.cfg.source.width, self.cfg.source.height
        try:
            model = load_model(path)
            model.scaled_to(w, h)
        except CalibrationError as e:
            raise ControlError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
        old = self.fisheye
        self.fisheye = FisheyeSetup(model, str(path), fc.balance, fc.fov_scale, old.enabled if old else fc.enabled)
        fc.calibration = path
        maps = build_maps(model, w, h, chroma=True, balance=fc.balance, fov_scale=fc.fov_scale)
        table = self.table
        if table is not None:
            corners = np.array(table.corners, np.float64)
            if old is not None:
                before = old.model.scaled_to(w, h)
                corners = corrected_to_raw(corners, before, output_matrix(before, fc.balance, fc.fov_scale))
            moved = raw_to_corrected(corners, model.scaled_to(w, h), maps.P)
            try:
                self.table = TableGeometry(tuple((float(x), float(y)) for x, y in moved), table.size_mm, (w, h))
            except TableError as e:
                log.warning("the table calibration does not fit the new lens (%s): calibrate the table again", e)
            else:
                self.table_source = f"moved with the lens from {table.corners}"
        p = self.pipeline
        if p is not None:
            p.set_view_maps("camera", maps)
            if self.table is not None and p.view("table") is not None:
                p.set_view_maps("table", self._table_maps(self.table))
        if self.shm is not None:
            self.shm.set_geometry(self._geometry(self.shm.view))
        log.info("lens calibration applied live from %s (fx %.2f, fy %.2f)", path, model.K[0, 0], model.K[1, 1])
        return {"fisheye": self.status().fisheye, "table": table_dict(self.table) if self.table else None}

    def _drift_loop(self) -> None:
        """About once a minute: are the cushion lines still where the calibration says? Never changes it."""
        import cv2

        interval = self.cfg.table.drift_interval
        while not self._drift_stop.wait(interval):
            table = self.table
            if table is None or (self.fisheye is not None and not self.cfg.fisheye.enabled) or not self.healthy():
                continue
            frame = self.grab_bgr()
            if frame is None:
                continue
            small = cv2.resize(frame, None, fx=DRIFT_SCALE, fy=DRIFT_SCALE, interpolation=cv2.INTER_AREA)
            corners = tuple(((x + 0.5) * DRIFT_SCALE - 0.5, (y + 0.5) * DRIFT_SCALE - 0.5) for x, y in table.corners)
            try:
                moved = drift(small, corners) / DRIFT_SCALE
            except TableError as e:
                moved = float("inf")
                log.debug("drift check: %s", e)
            limit = self.cfg.table.drift_px
            was_ok = self.drift.get("ok", True)
            ok = moved <= limit
            self.drift = {"checked": True, "px": None if moved == float("inf") else round(moved, 1), "limit_px": limit,
                          "ok": ok, "at": time.time()}
            if was_ok and not ok:
                log.warning("the table moved in the picture: %s (table.drift_px %g): the camera may have been bumped; "
                            "calibrate the table again (`cuecast calibrate table`)",
                            "its outline was not found" if moved == float("inf") else f"{moved:.1f} px", limit)
            elif ok and not was_ok:
                log.info("the table is back where the calibration says (%.1f px)", moved)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._drift_stop.set()
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
        return self.runner.first_error

    # -- frames -----------------------------------------------------------------------------------------

    def _on_frame(self, buf: Gst.Buffer, capture_ns: int, _info: FrameInfo | None) -> None:
        self.last_real_mono = time.monotonic()
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.push(buf, capture_ns)
            self.raw.offer(buf, pipeline.seq)

    def _last_real(self) -> float | None:
        return self.last_real_mono

    def _push_placeholder(self, buf: object, capture_ns: int) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.push(buf, capture_ns, placeholder=True)

    # -- control ----------------------------------------------------------------------------------------

    def handle(self, req: Request) -> Any:
        """A request from the streaming process (protocol.messages)."""
        if isinstance(req, StatusRequest):
            return self.status()
        if isinstance(req, DemandRequest):
            self.set_ring_demand(req.on)
            return {"ring": self.ring_demand}
        if isinstance(req, ControlsRequest):
            self.set_controls(req.controls)
            return req.controls
        if isinstance(req, TableRequest):
            from cuecast.table.model import table_from_dict

            try:
                self.set_table(table_from_dict(req.table, "table"))
            except TableError as e:
                raise ControlError(str(e)) from None
            return self.table_status()
        if isinstance(req, SnapshotRequest):
            import cv2

            frame = self.grab_bgr()
            if frame is None:
                raise ControlError("no frame from the camera right now")
            path = self.runtime.path / "snapshot.png"
            tmp = self.runtime.path / ".snapshot.png"
            cv2.imwrite(str(tmp), frame)
            tmp.replace(path)
            return {"path": str(path), "width": int(frame.shape[1]), "height": int(frame.shape[0])}
        if isinstance(req, RawFrameRequest):
            return self.raw_frame()
        if isinstance(req, LensRequest):
            return self.set_lens(Path(req.calibration))
        if isinstance(req, CameraRequest):
            return self.camera_status()
        if isinstance(req, CameraSetRequest):
            return self.set_camera(dict(req.controls), req.profile if req.profile_set else KEEP)
        if isinstance(req, FisheyeRequest):
            if self.pipeline is None or not self.pipeline.set_fisheye_enabled(req.enabled):
                raise ControlError("no fisheye correction in this pipeline (no calibration)")
            self.cfg.fisheye.enabled = req.enabled
            return {"enabled": req.enabled}
        raise ControlError(f"unknown request {req.op!r}")

    # -- the camera's own controls (V4L2) ---------------------------------------------------------------

    def _camera_path(self) -> str:
        if self.spec is None or self.spec.kind != "v4l2":
            kind = self.spec.kind if self.spec else "none"
            raise ControlError(f"gone: no V4L2 camera: the source is {kind} (source.uri: v4l2:///dev/videoN)")
        return self.spec.location

    def apply_camera_controls(self) -> None:
        """Set the saved controls in the device: before every open (start, replug, restart) and when the
        device drifted. Never fatal: a control the camera refuses is logged and the stream goes on."""
        values = self.cfg.camera.effective()
        if not values or self.spec is None or self.spec.kind != "v4l2":
            return
        try:
            with v4l2.Camera(self.spec.location) as cam:
                applied = v4l2.apply(cam, values)
            self.camera_values.update(applied)
            log.info("camera controls applied: %s", ", ".join(f"{k}={v}" for k, v in applied.items()))
        except v4l2.CameraError as e:
            log.warning("camera controls not applied: %s", e)

    def _check_camera(self) -> bool:
        """Every few seconds: read the camera's controls (for /metrics) and, since some cameras reset a
        control on their own, put a saved value the device no longer reports back, and say so."""
        if self.spec is None or not os.path.exists(self.spec.location):
            return True
        values = self.cfg.camera.effective()
        try:
            with v4l2.Camera(self.spec.location) as cam:
                now = {c.name: c.value for c in cam.controls(menus=False) if c.value is not None}
            self.camera_values = now
            drifted = {k: v for k, v in values.items() if k in now and now[k] != v}
            if drifted:
                log.warning("camera reported %s instead of the saved values: setting them again",
                            ", ".join(f"{k}={now[k]}" for k in drifted))
                self.apply_camera_controls()
        except v4l2.CameraError as e:
            log.debug("camera check: %s", e)
        return True

    def camera_status(self) -> dict[str, Any]:
        path = self._camera_path()
        try:
            with v4l2.Camera(path) as cam:
                info, modes, controls = cam.info(), cam.modes(), cam.controls()
        except v4l2.CameraError as e:
            raise ControlError(f"{e.kind}: {e}") from None
        st = self.runner.status if self.runner is not None else None
        src = self.cfg.source
        return {"path": path, **info, "by_id": by_id_of(path),
                "mode": {"format": st.device_format if st else None, "fourcc": st.fourcc if st else None,
                         "width": src.width, "height": src.height, "fps": src.fps},
                "modes": modes, "controls": [c.as_dict() for c in controls],
                "saved": self.cfg.camera.controls, "profile": self.cfg.camera.profile,
                "profiles": self.cfg.camera.profiles}

    def set_camera(self, values: dict[str, Any], profile: Any = KEEP) -> dict[str, Any]:
        """Set controls live (all checked first, applied in dependency order, read back) and keep them in this
        process's config, so a replug or reopen applies them again; or, with `profile`, switch to that named
        profile (None: none) and apply its values."""
        path = self._camera_path()
        camera = self.cfg.camera
        if profile is not KEEP:
            if profile is not None and profile not in camera.profiles:
                raise ControlError(f"unknown: no camera profile {profile!r}; profiles: "
                                   + (", ".join(sorted(camera.profiles)) or "none (camera.profiles)"))
            values = {**(camera.profiles[profile] if profile else {}), **values}
        try:
            with v4l2.Camera(path) as cam:
                applied = v4l2.apply(cam, values)
        except v4l2.CameraError as e:
            raise ControlError(f"{e.kind}: {e}") from None
        if profile is KEEP:
            profiles = dict(camera.profiles)
            if camera.profile:  # the profile in use keeps what was just set, or a reopen would undo it
                profiles[camera.profile] = {**profiles[camera.profile],
                                            **{k: v for k, v in applied.items() if k in profiles[camera.profile]}}
            self.cfg.camera = camera.model_copy(update={"controls": {**camera.controls, **applied},
                                                        "profiles": profiles})
        else:
            self.cfg.camera = camera.model_copy(update={"profile": profile})
        self.camera_values.update(applied)
        if applied:
            log.info("camera controls set: %s", ", ".join(f"{k}={v}" for k, v in applied.items()))
        return {"applied": applied, "camera": self.cfg.camera.model_dump()}

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

    def status(self) -> CaptureStatus:
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
        self.load.sample()
        return CaptureStatus(
            instance=self.instance,
            pid=os.getpid(),
            uptime_s=round(time.monotonic() - self.started_mono, 1),
            cpu_percent=round(self.load.cpu_percent, 1),
            priority=self.priority,
            healthy=self.healthy(),
            source=source,
            pipeline=PipelineStatus(frames_in=p.frames_in if p else 0, restarts=p.restarts if p else 0,
                                    last_error=p.last_error if p else None),
            fisheye={
                "active": self.fisheye is not None,
                "enabled": bool(self.fisheye and self.fisheye.enabled),
                "calibration": self.fisheye.source if self.fisheye else None,
                "camera_matrix": p.fisheye_matrix() if p else None,
                "correction_ms": round(p.correction_ms, 2) if p and p.correction_ms is not None else None,
                "kernel": self.kernel,
            },
            shm={"enabled": True, **self.shm.stats()} if self.shm else {"enabled": False},
            ring={"demand": self.ring_demand, **self.ring.stats()} if self.ring else None,
            controls=self.cfg.controls,
            camera={"controls": dict(self.camera_values)} if self.spec and self.spec.kind == "v4l2" else None,
            table=self.table_status(),
            headroom=self.headroom(),
        )

    def headroom(self) -> dict[str, Any]:
        """The backend's path against its frame budget: the native elements' own per-frame times (correction,
        packing) as a share of the frame interval, and how long this process's threads waited for a CPU."""
        budget = 1000.0 / self.cfg.source.fps
        p = self.pipeline
        correction = p.correction_ms if p is not None else None
        pack = self.shm.pack_ms if self.shm is not None else None
        work = (correction or 0.0) + (pack or 0.0)
        return {"frame_budget_ms": round(budget, 2), "correction_ms": round(correction, 2) if correction else None,
                "pack_ms": round(pack, 2) if pack else None, "busy_percent": round(100 * work / budget, 1),
                **self.load.status()}

    def table_status(self) -> dict[str, Any]:
        t = self.table
        if t is None:
            return {"calibrated": False}
        view = self._table_view(t)
        return {"calibrated": True, "source": self.table_source, "corners": [list(c) for c in t.corners],
                "size_mm": list(t.size_mm), "image_size": list(t.image_size), "px_per_mm": view.px_per_mm,
                "margin_mm": view.margin_mm, "view_size": list(view.size), "drift": self.drift}
