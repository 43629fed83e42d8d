"""The output pipeline: appsrc -> entry gate -> a view each (remap, videobalance, tee) -> a branch per output.

Owns frame bookkeeping (sequence number, capture time and placeholder flag per frame, carried in each
buffer's offset fields and flags for the native elements, and by PTS for Python branches), the picture controls, the tee
and the branch contract, and the pipeline's bus (an error restarts the output pipeline). Frames enter from
the source side (capture.py) through `push`, so a source that fails never takes the outputs down.

A view is one rendering of the frame: "camera" (the corrected picture) and "table" (the playing surface
top-down). Each is one native remap pass from the pipeline's input, rendered only while an output in that
view has a consumer, and shared by all of them. Both processes build one: the capture process from the raw
camera frame (the correction, and the correction composed with the table's homography), with the shared-
memory branches and no Python per frame (valves switched when demand changes); the streaming process from
the corrected ring frames (the camera view as it comes, the table view by the homography alone), with the
encoders (Python pad probes gate and thin each branch).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cuecast.config import ControlsConfig
from cuecast.core.gst import GLib, Gst, pending_error
from cuecast.lens.maps import Maps, luma_lut, remap_table
from cuecast.lens.model import FisheyeModel

log = logging.getLogger(__name__)

# Sinks in branches must be async=false: in a live pipeline a sink that has not received a buffer yet
# (an output nobody watches) would otherwise hold the whole pipeline in PAUSED.
# A branch that may block starts with this queue: it drops the oldest frame instead of blocking the tee,
# so a slow or stalled output can never hold back another output or the capture.
LEAKY_QUEUE = "queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0"
# How many frames' metadata we remember (frames older than this have left every branch).
META_HISTORY = 256
RESTART_DELAY_S = 1.0
PLAYING_TIMEOUT_S = 2
# Frame metadata in buffer fields (native/pack.h reads them): OFFSET = sequence number, OFFSET_END = capture
# time, this flag = placeholder. (Python shares the buffers it handles, so it cannot add metas to them.)
FLAG_PLACEHOLDER = int(Gst.BufferFlags.LAST)


@dataclass
class FisheyeSetup:
    """Where the correction came from, for the status."""

    model: FisheyeModel
    source: str  # where the calibration came from (a path, or "built-in demo lens")
    balance: float | None = None
    fov_scale: float | None = None
    enabled: bool = True


@dataclass
class View:
    """One rendering of the frame, shared by every output in it."""

    name: str  # "camera" | "table"
    maps: Maps | None = None  # the remap from the pipeline's input; None: frames pass as they come
    switchable: bool = False  # fisheye.enabled turns this view's remap into a pass-through (the correction)
    enabled: bool = True

    @property
    def size(self) -> tuple[int, int] | None:
        return self.maps.size if self.maps is not None else None


def _names(view: str) -> tuple[str, str, str]:
    """(remap, balance, tee) element names of a view; the camera view keeps its historical names."""
    if view == "camera":
        return "cuecast_fisheye", "cuecast_balance", "cuecast_tee"
    return f"remap_{view}", f"balance_{view}", f"tee_{view}"


@dataclass(frozen=True)
class FrameMeta:
    seq: int
    capture_ns: int  # CLOCK_MONOTONIC
    capture_wall_ns: int
    placeholder: bool


class Branch(Protocol):
    """An output hanging off its view's tee."""

    name: str
    queued: bool  # starts with a leaky queue (its own thread); False: runs in the tee's thread
    view: str  # the view it shows

    def fragment(self) -> str:
        """Elements after the branch head (gst-launch syntax)."""
        ...

    def attach(self, pipeline: Gst.Pipeline, frames: OutputPipeline) -> None:
        """Connect to the elements once the pipeline is built (before PLAYING)."""
        ...

    def started(self) -> None:
        """Called once the pipeline is PLAYING."""
        ...

    def active(self) -> bool:
        """Does anyone consume this output now? (When no output is active, frames stop at the entry.)"""
        ...

    def stopped(self) -> None:
        """Called after the pipeline reached NULL: release OS resources."""
        ...


def queue_name(branch: Branch) -> str:
    """The name of a queued branch's leaky queue."""
    return f"q_{branch.name}"


class DemandGate:
    """A pad probe for the head of a branch: drops every frame while nobody consumes the output, and
    thins the rate to `fps` (keeping the original timestamps) so scaler and encoder work only as needed."""

    def __init__(self, fps: int, source_fps: int, demand: Callable[[], bool]) -> None:
        self.demand = demand
        self.nice = 0  # niceness added to the process's for the branch's thread (set before the pipeline starts)
        self._niced: set[int] = set()
        self.tids: set[int] = set()  # the threads that carry the branch's frames (its queue's)
        self._tid = 0  # the last of them: one int compare per frame
        self.source_fps = source_fps
        self.passed = 0  # frames let through (what the branch processed): the degradation policy reads it
        self._interval_ns = 0
        self._next_pts = 0
        self.set_fps(fps)

    def passed_count(self) -> int:
        return self.passed

    def set_fps(self, fps: int) -> None:
        """Change the rate live (graceful degradation)."""
        self.fps = min(fps, self.source_fps)
        self._interval_ns = 0 if fps >= self.source_fps else Gst.SECOND // fps

    def install(self, pipeline: Gst.Pipeline, queue: str) -> None:
        pad = pipeline.get_by_name(queue).get_static_pad("src")
        pad.add_probe(Gst.PadProbeType.BUFFER, self.probe)
        if self.nice:  # the caps event comes before any frame: renice before an encoder starts its threads
            pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_event)

    def _on_event(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        if threading.get_native_id() not in self._niced:
            self._renice()
        return Gst.PadProbeReturn.OK

    def cpu_s(self) -> float | None:
        """CPU seconds the branch's threads have used (Linux schedstat); None before its first frame. Threads an
        encoder starts by itself (x264's) are not among them."""
        if not self.tids:
            return None
        total = 0
        for tid in list(self.tids):
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended: its time is gone with it
        return total / 1e9

    def probe(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        tid = threading.get_native_id()
        if tid != self._tid:
            self._tid = tid
            self.tids.add(tid)
        if not self.demand():
            return Gst.PadProbeReturn.DROP
        if self._interval_ns:
            pts = info.get_buffer().pts
            if pts < self._next_pts - self._interval_ns // 4:  # a quarter interval absorbs jitter
                return Gst.PadProbeReturn.DROP
            # Step the schedule; after a pause resync to now instead of bursting to catch up.
            step = self._next_pts + self._interval_ns
            self._next_pts = step if step > pts else pts + self._interval_ns
        self.passed += 1
        return Gst.PadProbeReturn.OK

    def _renice(self) -> None:
        """Lower this branch thread's priority (and of the threads it starts later, e.g. x264's) below the
        process's own: under CPU contention the scheduler then serves higher-priority outputs first. Raising
        niceness needs no privilege; failure is harmless."""
        tid = threading.get_native_id()
        self._niced.add(tid)
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.nice))
        except OSError as e:
            log.debug("could not renice thread %d: %s", tid, e)


class OutputPipeline:
    """The pipeline after the source. `push` from any thread; `start`/`stop` from the control thread.

    `views` in the order their remaps run (the backend's first); every branch's view must be among them.
    `entry_valve`: gate the entry with a valve switched by `refresh_demand()` (no Python per frame) instead
    of a pad probe that asks every branch on every frame."""

    def __init__(
        self, width: int, height: int, fps: int, branches: list[Branch], controls: ControlsConfig,
        views: list[View] | None = None, *, entry_valve: bool = False, remap_threads: int = 0, kernel: str = "auto",
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.branches = branches
        self.controls = controls
        self.views = views or [View("camera")]
        self.entry_valve = entry_valve
        self.remap_threads = remap_threads
        self.kernel = kernel
        self._remaps: dict[str, Gst.Element] = {}
        self._balances: dict[str, Gst.Element] = {}
        self._view_valves: dict[str, Gst.Element] = {}
        self._pipeline: Gst.Pipeline | None = None
        self._appsrc: Gst.Element | None = None
        self._valve: Gst.Element | None = None
        self._meta: OrderedDict[int, FrameMeta] = OrderedDict()  # by PTS
        self._lock = threading.Lock()  # push() runs on the source's and the placeholder's threads
        self._seq = 0
        self._last_pts = -1
        self._running = False
        self._restart_id: int | None = None
        self.frames_in = 0
        self.frames_idle = 0  # dropped at the entry because no output had a consumer
        self.frames_entered = 0  # past the entry into correction and the branches
        self.restarts = 0
        self.last_error: str | None = None

    def view(self, name: str) -> View | None:
        return next((v for v in self.views if v.name == name), None)

    @property
    def maps(self) -> Maps | None:
        """The camera view's correction maps (None without a correction)."""
        v = self.view("camera")
        return v.maps if v is not None else None

    def caps(self) -> str:
        return f"video/x-raw,format=I420,width={self.width},height={self.height},framerate={self.fps}/1"

    def description(self) -> str:
        head = (f"appsrc name=cuecast_src is-live=true format=time do-timestamp=false block=false "
                f"max-buffers=2 leaky-type=downstream caps={self.caps()} ")
        if self.entry_valve:
            head += "! valve name=cuecast_entry drop=true "
        head += "! tee name=cuecast_views allow-not-linked=true"
        parts = [head]
        for v in self.views:
            remap, balance, tee = _names(v.name)
            chain = f"cuecast_views. ! valve name=view_{v.name} drop=false "
            if v.maps is not None:
                chain += f"! cuecastremap name={remap} n-threads={self.remap_threads} kernel={self.kernel} "
            parts.append(chain + f"! videobalance name={balance} ! tee name={tee} allow-not-linked=true")
        for b in self.branches:
            queue = f"{LEAKY_QUEUE} name={queue_name(b)} ! " if b.queued else ""
            parts.append(f"{_names(b.view)[2]}. ! {queue}{b.fragment()}")
        return "  ".join(parts)

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._build()

    def _build(self) -> None:
        pipeline = Gst.parse_launch(self.description())
        assert isinstance(pipeline, Gst.Pipeline)
        self._appsrc = pipeline.get_by_name("cuecast_src")
        self._valve = pipeline.get_by_name("cuecast_entry")
        if self._valve is None:
            # Nobody consuming any output: frames stop here, before correction and every branch.
            self._appsrc.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._any_demand)
        for v in self.views:
            remap, balance, _tee = _names(v.name)
            self._view_valves[v.name] = pipeline.get_by_name(f"view_{v.name}")
            self._balances[v.name] = pipeline.get_by_name(balance)
            el = pipeline.get_by_name(remap)
            if el is not None and v.maps is not None:
                self._remaps[v.name] = el
                el.set_property("map", GLib.Bytes.new(remap_table(v.maps, (self.width, self.height))))
                el.set_property("enabled", v.enabled or not v.switchable)
        self.apply_controls(self.controls)
        for b in self.branches:
            b.attach(pipeline, self)
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)
        self._pipeline = pipeline
        self.refresh_demand()
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            err = pending_error(pipeline) or "the output pipeline failed to start"
            self._teardown()
            raise RuntimeError(err)
        _ret, state, _pending = pipeline.get_state(PLAYING_TIMEOUT_S * Gst.SECOND)
        if state != Gst.State.PLAYING:
            log.warning("output pipeline is %s, not PLAYING, after %d s", state.value_nick, PLAYING_TIMEOUT_S)
        for b in self.branches:
            b.started()

    def _teardown(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        self._appsrc = None
        self._valve = None
        self._remaps, self._balances, self._view_valves = {}, {}, {}
        if pipeline is not None:
            pipeline.set_state(Gst.State.NULL)
            pipeline.get_bus().remove_signal_watch()
        for b in reversed(self.branches):
            b.stopped()

    def stop(self) -> None:
        self._running = False
        if self._restart_id is not None:
            GLib.source_remove(self._restart_id)
            self._restart_id = None
        self._teardown()

    def _on_message(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        if msg.type == Gst.MessageType.ERROR and self._pipeline is not None:
            err, dbg = msg.parse_error()
            name = msg.src.get_name() if msg.src else "?"
            self.last_error = f"{name}: {err.message}"
            log.error("output pipeline error in %s: %s; restarting outputs in %.0f s", name, err.message,
                      RESTART_DELAY_S)
            log.debug("detail: %s", dbg)
            self._teardown()
            if self._running and self._restart_id is None:
                self._restart_id = GLib.timeout_add(int(RESTART_DELAY_S * 1000), self._restart)
        elif msg.type == Gst.MessageType.WARNING:
            warn, _dbg = msg.parse_warning()
            log.warning("output pipeline: %s", warn.message)

    def _any_demand(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        if any(b.active() for b in self.branches):
            self.frames_entered += 1
            return Gst.PadProbeReturn.OK
        self.frames_idle += 1
        return Gst.PadProbeReturn.DROP

    def refresh_demand(self) -> None:
        """Open the entry valve while any branch has a consumer, and each view's while one of its branches has
        (any thread). A view nobody watches is not rendered."""
        active = {b.name: b.active() for b in self.branches}
        valve = self._valve
        if valve is not None:
            valve.set_property("drop", not any(active.values()))
        if len(self.views) > 1:
            for name, v in self._view_valves.items():
                v.set_property("drop", not any(active[b.name] for b in self.branches if b.view == name))

    def set_view_maps(self, name: str, maps: Maps) -> None:
        """A new remap table for a view, live (a new table or lens calibration); its size may change. A view
        that had no remap gets one, linked in while frames flow (no reader of any branch is dropped)."""
        v = self.view(name)
        if v is None:
            raise ValueError(f"no {name} view in this pipeline")
        v.maps = maps
        el = self._remaps.get(name)
        if el is not None:
            el.set_property("map", GLib.Bytes.new(remap_table(maps, (self.width, self.height))))
        elif self._pipeline is not None:
            self._insert_remap(v)

    def _insert_remap(self, v: View) -> None:
        """Link a remap element in between a view's valve and its videobalance, at a moment no buffer is in
        that link (an IDLE probe); the caps stay the same (I420 in and out, same size)."""
        pipeline, valve, balance = self._pipeline, self._view_valves.get(v.name), self._balances.get(v.name)
        if pipeline is None or valve is None or balance is None or v.maps is None:
            return
        el = Gst.ElementFactory.make("cuecastremap", _names(v.name)[0])
        el.set_property("n-threads", self.remap_threads)
        el.set_property("kernel", self.kernel)
        el.set_property("map", GLib.Bytes.new(remap_table(v.maps, (self.width, self.height))))
        el.set_property("enabled", v.enabled or not v.switchable)

        def link(_pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
            pipeline.add(el)
            valve.unlink(balance)
            if not (valve.link(el) and el.link(balance)):
                log.error("could not link the correction into the %s view", v.name)
            el.sync_state_with_parent()
            self._remaps[v.name] = el
            self.apply_controls(self.controls)  # brightness/contrast move into the remap's lookup table
            log.info("correction linked into the %s view", v.name)
            return Gst.PadProbeReturn.REMOVE

        valve.get_static_pad("src").add_probe(Gst.PadProbeType.IDLE, link)

    def _restart(self) -> bool:
        self._restart_id = None
        if not self._running:
            return False
        self.restarts += 1
        try:
            self._build()
        except (RuntimeError, GLib.Error) as e:
            log.error("output pipeline restart failed: %s", e)
            self._restart_id = GLib.timeout_add(int(RESTART_DELAY_S * 1000), self._restart)
        return False

    # -- frames --------------------------------------------------------------------------------------

    def push(self, buf: Gst.Buffer, capture_ns: int, placeholder: bool = False, *, seq: int | None = None,
             wall_ns: int | None = None) -> None:
        """Feed one I420 frame (any thread). Stamps it with its sequence number (ours, or the one it came
        with from the other process), capture times and running time."""
        pipeline, appsrc = self._pipeline, self._appsrc
        if pipeline is None or appsrc is None:
            return
        out = buf.copy()  # shallow: shares the memory, lets us set our own timestamps
        clock = pipeline.get_clock()
        now = clock.get_time() if clock else 0
        if wall_ns is None:
            wall_ns = time.time_ns() - (time.monotonic_ns() - capture_ns)
        out.dts = Gst.CLOCK_TIME_NONE
        out.duration = Gst.SECOND // self.fps
        out.offset_end = capture_ns
        if placeholder:
            out.mini_object.flags |= FLAG_PLACEHOLDER
        # One frame at a time: the source's and the placeholder's threads must not interleave between
        # numbering a frame and queueing it, or frames would leave out of order.
        with self._lock:
            pts = max(now - pipeline.get_base_time(), self._last_pts + 1)
            self._last_pts = pts
            self._seq = seq if seq is not None else self._seq + 1
            meta = FrameMeta(self._seq, capture_ns, wall_ns, placeholder)
            self._meta[pts] = meta
            while len(self._meta) > META_HISTORY:
                self._meta.popitem(last=False)
            self.frames_in += 1
            out.pts = pts
            out.offset = meta.seq
            appsrc.emit("push-buffer", out)

    @property
    def seq(self) -> int:
        """The number of the frame last pushed (the backend's `seq` for it)."""
        return self._seq

    def frame_meta(self, buf: Gst.Buffer) -> FrameMeta | None:
        """Metadata of a frame, found by its PTS (unique per frame, kept by scalers and JPEG encoders; an H.264
        encoder may shift it, see outputs/h264.py)."""
        return self.frame_meta_at(buf.pts)

    def frame_meta_at(self, pts: int) -> FrameMeta | None:
        with self._lock:
            return self._meta.get(pts)

    @property
    def correction_ms(self) -> float | None:
        """Mean wall time of the camera view's remap per frame (the native element's own measure)."""
        el = self._remaps.get("camera")
        if el is None or not el.get_property("frames"):
            return None
        return float(el.get_property("mean-us")) / 1000

    # -- controls ------------------------------------------------------------------------------------

    def set_fisheye_enabled(self, enabled: bool) -> bool:
        """Switch the correction on/off live (pass-through); False when there is none. The table view stays
        corrected: it means nothing without it."""
        switchable = [v for v in self.views if v.switchable and v.maps is not None]
        if not switchable:
            return False
        for v in switchable:
            v.enabled = enabled
            el = self._remaps.get(v.name)
            if el is not None:
                el.set_property("enabled", enabled)
        self.apply_controls(self.controls)  # brightness/contrast move between the remap and videobalance
        return True

    def fisheye_matrix(self) -> list[list[float]] | None:
        """The corrected image's camera matrix, once the maps are built."""
        maps = self.maps
        return None if maps is None else [[float(v) for v in row] for row in maps.P]

    def apply_controls(self, controls: ControlsConfig) -> None:
        """Apply picture controls live. Where a view has a remap, brightness/contrast are a lookup table in its
        pass; videobalance keeps saturation/hue and is passthrough at their defaults (zero cost)."""
        self.controls = controls
        for v in self.views:
            bal = self._balances.get(v.name)
            if bal is None:
                continue
            values = {n: float(getattr(controls, n)) for n in ("brightness", "contrast", "saturation", "hue")}
            el = self._remaps.get(v.name)
            if el is not None and (v.enabled or not v.switchable):
                lut = luma_lut(values["brightness"], values["contrast"])
                el.set_property("luma-lut", None if lut is None else GLib.Bytes.new(lut.tobytes()))
                values["brightness"], values["contrast"] = 0.0, 1.0
            elif el is not None:
                el.set_property("luma-lut", None)
            for name, value in values.items():
                bal.set_property(name, value)
