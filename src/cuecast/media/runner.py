"""The source side: a small GStreamer pipeline per source attempt, rebuilt on failure with backoff.

Owns turning a SourceSpec into decoded I420 frames at the configured size, delivering each frame with
its capture time to a callback, looping files at their native rate, and retrying live sources with capped
exponential backoff. It is a separate pipeline from the outputs so that losing and rebuilding the source
never touches a consumer (shared memory, RTSP and HTTP clients stay connected). The streaming process uses
it too, on the internal ring (kind "ring"): frames arrive there corrected, with their metadata trailer.

All state changes run on the GLib main-loop thread; `on_frame` is called from a GStreamer streaming thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cuecast.config import SourceConfig
from cuecast.core.gst import GLib, Gst
from cuecast.media.sources import SourceError, SourceSpec, choose_v4l2_format, probe_v4l2, source_fragment
from cuecast.protocol.frame import FrameFormatError, FrameInfo

if TYPE_CHECKING:
    from cuecast.media.demo import DemoScene

log = logging.getLogger(__name__)

# (I420 buffer, capture time CLOCK_MONOTONIC ns, the trailer's metadata for ring frames else None)
FrameCallback = Callable[[Gst.Buffer, int, FrameInfo | None], None]
# Frames must have flowed this long before the backoff resets to its initial delay.
HEALTHY_AFTER_S = 5.0
# How often an unplugged camera's device node is looked for.
NODE_POLL_MS = 100


@dataclass
class SourceStatus:
    kind: str
    location: str
    state: str = "stopped"  # starting | playing | retrying | ended | stopped
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    device_format: str | None = None  # what the device/decoder negotiated, e.g. "image/jpeg 1920x1080@30"
    fourcc: str | None = None  # a V4L2 camera's mode chosen: MJPG, YUYV or raw:<format>
    frames: int = 0
    attempts: int = 0
    last_error: str | None = None
    next_retry_s: float | None = None
    last_frame_mono: float | None = None
    corrupt_frames: int = 0  # corrupt camera JPEGs dropped before the decoder (never a restart)
    camera_drops: int = 0  # frames the camera's driver dropped (gaps in its buffer sequence numbers)
    frame_interval_ms: float | None = None  # mean time between the driver's buffer timestamps (recent frames)
    frame_interval_jitter_ms: float | None = None  # their standard deviation


class DriverTiming:
    """What a V4L2 driver's buffers say about the camera: sequence gaps (frames it dropped because no buffer
    was free) and the spread of the time between its timestamps. Fed from v4l2src's pad, whose buffers carry
    the driver's sequence as the offset and its timestamp as the PTS (do-timestamp=false)."""

    WINDOW = 300  # intervals the mean and jitter are taken over (10 s at 30 fps)

    def __init__(self, status: SourceStatus) -> None:
        self.status = status
        self._seq: int | None = None
        self._pts: int | None = None
        self._intervals: deque[float] = deque(maxlen=self.WINDOW)
        self._added = 0
        self._in_stream = 0  # buffers since the stream started

    def reset(self) -> None:
        """A new stream (reopen, replug): its sequence starts again."""
        self._seq = self._pts = None
        self._in_stream = 0

    def add(self, seq: int, pts: int) -> None:
        if seq != Gst.BUFFER_OFFSET_NONE:
            gap = seq - self._seq - 1 if self._seq is not None else 0
            # v4l2src adds one to the driver's sequence from a stream's second buffer on (its renegotiation
            # offset): that step is not a drop (the driver's own numbers, v4l2-ctl shows, have no gap).
            if gap > 0 and not (self._in_stream == 1 and gap == 1):
                self.status.camera_drops += gap
            self._seq = seq
            self._in_stream += 1
        if pts != Gst.CLOCK_TIME_NONE:
            if self._pts is not None and pts > self._pts:
                self._intervals.append((pts - self._pts) / 1e6)
                self._added += 1
            self._pts = pts
        n = len(self._intervals)
        if n >= 2 and (self._added < 30 or self._added % 30 == 0):  # cheap: the stats every second or so
            a = np.fromiter(self._intervals, dtype=np.float64, count=n)
            self.status.frame_interval_ms = round(float(a.mean()), 3)
            self.status.frame_interval_jitter_ms = round(float(a.std()), 3)


HTTP_PROBE_TIMEOUT_S = 2.0


def probe_http(url: str) -> tuple[str, str]:
    """What an HTTP camera answers now: ("multipart", ...) for MJPEG, ("other", why) for another 200 answer,
    ("not-ready", why) for an error page (a camera booting answers 503 or an HTML page for a while) or no
    answer at all. Anything the probe cannot judge (a login it cannot do, TLS) goes to GStreamer as MJPEG."""
    import base64
    import http.client
    from urllib.parse import unquote, urlsplit

    u = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    try:
        conn = conn_cls(u.hostname or "", u.port, timeout=HTTP_PROBE_TIMEOUT_S)
        headers = {"User-Agent": "cuecast"}
        if u.username is not None:
            creds = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(creds).decode()
        path = u.path or "/"
        conn.request("GET", path + (f"?{u.query}" if u.query else ""), headers=headers)
        resp = conn.getresponse()
        ctype = resp.getheader("Content-Type", "") or ""
        status = resp.status
        conn.close()
    except (ConnectionRefusedError, TimeoutError) as e:
        return "not-ready", f"IP camera {url} is unreachable ({e}): check the address and network"
    except (OSError, http.client.HTTPException):
        return "multipart", "the probe could not judge the answer"
    if status == 401:
        return "multipart", "a login the probe does not do"
    if status != 200:
        return "not-ready", f"the camera answered {status} {ctype.split(';')[0] or ''}: not streaming yet"
    if ctype.lower().startswith("multipart/"):
        return "multipart", "MJPEG"
    if ctype.lower().startswith("text/html"):
        return "not-ready", "the camera answered an HTML page, not a video stream: not streaming yet"
    return "other", f"the camera answers {ctype or 'without a content type'}, not multipart MJPEG"


def holders(device: str) -> str:
    """The processes that have `device` open ("pid 1234 (ffmpeg)"), from /proc; empty when none is found."""
    try:
        target = os.path.realpath(device)
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) == os.getpid():
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                    with open(f"/proc/{pid}/comm") as f:
                        found.append(f"pid {pid} ({f.read().strip()})")
            except OSError:
                continue
        return ", ".join(found)
    except OSError:
        return ""


def _hint(spec: SourceSpec, text: str) -> str:
    low = text.lower()
    if spec.kind == "v4l2" and "busy" in low:
        who = holders(spec.location)
        return (f"camera {spec.location} is busy: another program holds it"
                + (f": {who}" if who else f" (check `fuser {spec.location}`)"))
    if spec.kind == "v4l2" and ("cannot identify" in low or "no such" in low):
        return f"camera {spec.location} disappeared: check the cable"
    if spec.kind == "file" and any(k in low for k in ("type", "text file", "decod", "plugin", "demux", "stream")):
        return f"{spec.location} is not a video file GStreamer can decode ({text})"
    if spec.kind in ("rtsp", "http") and ("could not" in low or "resolve" in low or "connect" in low):
        return f"IP camera {spec.location} is unreachable: check the address, network and credentials"
    return text


class SourceRunner:
    """Runs one source; rebuilds its pipeline on error with backoff; loops files."""

    def __init__(self, spec: SourceSpec, cfg: SourceConfig, on_frame: FrameCallback,
                 before_open: Callable[[], None] | None = None) -> None:
        self.spec = spec
        self.cfg = cfg
        self._on_frame = on_frame
        self._before_open = before_open  # a camera's saved controls, set before each open (v4l2)
        self._pipeline: Gst.Pipeline | None = None
        self._lock = threading.Lock()
        self._running = False
        self._retry_id: int | None = None
        self._delay = cfg.reconnect.initial_delay
        self._started_mono = 0.0
        self.status = SourceStatus(spec.kind, spec.location)
        self.first_result = threading.Event()  # set on the first frame or the first error
        self.first_error: str | None = None
        self._demo: DemoScene | None = None
        self._demo_frame = 0
        self._attempt_multipart = True  # HTTP cameras: what this attempt's answer was (see _probe_http)
        self._file_id: tuple[int, int, float] | None = None
        self._format_error: str | None = None
        self._jpeg: bool | None = None  # the camera sends JPEG (checked per frame), once its caps are known
        self._timing = DriverTiming(self.status)
        self.closing = False  # the process is stopping: a failure now is expected (no retry, no warning)

    # -- public, any thread ------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
        GLib.idle_add(self._connect)

    def stop(self) -> None:
        with self._lock:
            self._running = False
            retry, self._retry_id = self._retry_id, None
            pipeline, self._pipeline = self._pipeline, None
        if retry is not None:
            GLib.source_remove(retry)
        if pipeline is not None:
            pipeline.set_state(Gst.State.NULL)
            pipeline.get_bus().remove_signal_watch()
        self.status.state = "stopped"

    # -- GLib thread ---------------------------------------------------------------------------------

    def _description(self) -> str:
        c = self.cfg
        if self.spec.kind == "ring":
            return (f'shmsrc socket-path="{self.spec.location}" is-live=true '
                    "! appsink name=cuecast_sink emit-signals=true max-buffers=1 drop=true sync=false qos=false "
                    "enable-last-sample=false")
        if self.spec.kind == "demo":
            return (
                f"appsrc name=demo_src is-live=false format=time block=true max-buffers=2 "
                f"caps=video/x-raw,format=I420,width={c.width},height={c.height},framerate={c.fps}/1 "
                "! appsink name=cuecast_sink emit-signals=true max-buffers=1 drop=true sync=true qos=false"
            )
        fmt: str = c.format
        if self.spec.kind == "v4l2":
            if fmt == "auto":
                fmt = choose_v4l2_format(probe_v4l2(self.spec.location), c.width, c.height, c.fps)
                self.status.device_format = fmt
            self.status.fourcc = fmt
        head = source_fragment(self.spec, c.width, c.height, c.fps, fmt, http_multipart=self._attempt_multipart)
        sync = "true" if self.spec.kind == "file" else "false"  # files play at their native rate
        return (
            f"{head} ! videoconvert ! videoscale "
            f"! video/x-raw,format=I420,width={c.width},height={c.height},pixel-aspect-ratio=1/1 "
            f"! appsink name=cuecast_sink emit-signals=true max-buffers=1 drop=true sync={sync} qos=false"
        )

    def _connect(self) -> bool:
        self._retry_id = None
        if not self._running:
            return False
        self.status.attempts += 1
        self.status.state = "starting"
        self.status.next_retry_s = None
        if self.spec.kind == "http":
            # Look at the camera's answer first, off the GLib thread: the kind of stream is decided on every
            # attempt from what the camera says now (a camera that boots answers error pages for a while).
            threading.Thread(target=self._probe_then_start, name="http-probe", daemon=True).start()
        else:
            self._start_pipeline()
        return False

    def _probe_then_start(self) -> None:
        kind, why = probe_http(self.spec.location)
        GLib.idle_add(self._after_probe, kind, why)

    def _after_probe(self, kind: str, why: str) -> bool:
        if not self._running:
            return False
        if kind == "not-ready":
            self._failed(why)
        else:
            self._attempt_multipart = kind == "multipart"
            if not self._attempt_multipart:
                log.info("source %s: %s; decoding it generically", self.spec.describe(), why)
            self._start_pipeline()
        return False

    def _start_pipeline(self) -> None:
        if self.spec.kind == "v4l2" and self._before_open is not None:
            self._before_open()
        try:
            desc = self._description()
            pipeline = Gst.parse_launch(desc)
        except (SourceError, GLib.Error) as e:
            self._failed(str(e))
            return
        assert isinstance(pipeline, Gst.Pipeline)
        sink = pipeline.get_by_name("cuecast_sink")
        sink.connect("new-sample", self._on_sample)
        demo_src = pipeline.get_by_name("demo_src")
        if demo_src is not None:
            self._demo_frame = 0
            demo_src.connect("need-data", self._on_demo_need_data)
        camera = pipeline.get_by_name("cuecast_camera")
        if camera is not None:
            self._jpeg = None
            self._timing.reset()
            camera.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._check_jpeg)
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)
        with self._lock:
            if not self._running:
                pipeline.set_state(Gst.State.NULL)
                return
            self._pipeline = pipeline
        log.info("source %s: connecting (attempt %d)", self.spec.describe(), self.status.attempts)
        if self.spec.kind == "file":
            self._file_id = self._file_identity()
        self._started_mono = time.monotonic()
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            # The ERROR message on the bus carries the reason; it arrives next and triggers the retry.
            log.debug("source %s: state change to PLAYING failed", self.spec.describe())

    def _file_identity(self) -> tuple[int, int, float] | None:
        try:
            st = os.stat(self.spec.location)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_mtime

    def _file_changed(self) -> str | None:
        """Before looping: the file may have been deleted or replaced since it was opened."""
        now = self._file_identity()
        if now is None:
            return f"file {self.spec.location} is gone or unreadable"
        if now != self._file_id:
            return f"file {self.spec.location} was replaced; reopening it"
        return None

    def _teardown(self) -> None:
        with self._lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.set_state(Gst.State.NULL)
            pipeline.get_bus().remove_signal_watch()

    def _failed(self, reason: str) -> None:
        self.status.last_error = reason
        if self.first_error is None and not self.first_result.is_set():
            self.first_error = reason
            self.first_result.set()
        self._teardown()
        if not self._running or self.closing:
            return
        if self.status.last_frame_mono and time.monotonic() - self._started_mono > HEALTHY_AFTER_S:
            self._delay = self.cfg.reconnect.initial_delay
        delay = self._delay
        self._delay = min(self._delay * 2, self.cfg.reconnect.max_delay)
        self.status.state = "retrying"
        self.status.next_retry_s = delay
        if self.spec.kind == "v4l2" and not os.path.exists(self.spec.location):
            # Unplugged: the node is gone. Watch for it (cheap) instead of backing off, so a camera plugged
            # back in streams within a fraction of a second.
            log.warning("source %s: %s; the camera is unplugged, waiting for %s to come back",
                        self.spec.describe(), reason, self.spec.location)
            self._retry_id = GLib.timeout_add(NODE_POLL_MS, self._node_back)
            return
        log.warning("source %s: %s; retrying in %.1f s", self.spec.describe(), reason, delay)
        self._retry_id = GLib.timeout_add(int(delay * 1000), self._connect)

    def _node_back(self) -> bool:
        """While a v4l2 camera is unplugged: connect as soon as its node is back."""
        if not self._running:
            self._retry_id = None
            return False
        if not os.path.exists(self.spec.location):
            return True
        log.info("source %s: the camera is back", self.spec.describe())
        self._delay = self.cfg.reconnect.initial_delay
        self._connect()
        return False

    def _check_jpeg(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """Drop (and count) a camera JPEG that is cut short or garbled, as some cameras send: no start-of-image
        marker, or no end-of-image marker near its end. The decoder would show it half grey; never a restart.
        A V4L2 camera's buffers also feed the driver timing (drops, interval jitter) here."""
        if self.spec.kind == "v4l2":
            buf = info.get_buffer()
            self._timing.add(buf.offset, buf.pts)
        if self._jpeg is None:
            caps = pad.get_current_caps()
            self._jpeg = caps is not None and caps.get_structure(0).get_name() == "image/jpeg"
        if not self._jpeg:
            return Gst.PadProbeReturn.OK
        buf = info.get_buffer()
        ok, mi = buf.map(Gst.MapFlags.READ)
        if not ok:
            return Gst.PadProbeReturn.OK
        try:
            n = mi.size
            good = n > 4 and bytes(mi.data[:2]) == b"\xff\xd8" and b"\xff\xd9" in bytes(mi.data[max(0, n - 4096):n])
        finally:
            buf.unmap(mi)
        if good:
            return Gst.PadProbeReturn.OK
        self.status.corrupt_frames += 1
        if self.status.corrupt_frames in (1, 10, 100) or self.status.corrupt_frames % 1000 == 0:
            log.warning("source %s: %d corrupt JPEG frame(s) from the camera dropped so far",
                        self.spec.describe(), self.status.corrupt_frames)
        return Gst.PadProbeReturn.DROP

    def _on_message(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        pipeline = self._pipeline
        if pipeline is None or msg.src is None:
            return
        t = msg.type
        if t == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            log.debug("source error detail: %s", dbg)
            self._failed(_hint(self.spec, f"{err.message}"))
        elif t == Gst.MessageType.EOS:
            if self.spec.kind == "file" and self.cfg.loop:
                changed = self._file_changed()
                if changed:
                    self._failed(changed)
                elif not pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0):
                    self._failed("could not seek back to the start of the file to loop it")
            elif self.spec.kind == "file":
                log.info("source %s: end of file (source.loop is false)", self.spec.describe())
                self._teardown()
                self.status.state = "ended"
            else:
                self._failed("the stream ended")
        elif t == Gst.MessageType.STATE_CHANGED and msg.src == pipeline:
            _old, new, _pending = msg.parse_state_changed()
            if new == Gst.State.PLAYING:
                self.status.state = "playing"
        elif t == Gst.MessageType.WARNING:
            warn, _dbg = msg.parse_warning()
            log.warning("source %s: %s", self.spec.describe(), warn.message)

    # -- streaming thread ----------------------------------------------------------------------------

    def _on_demo_need_data(self, src: Gst.Element, _length: int) -> None:
        """Next demo frame: the pre-rendered table plus the moving balls (rendered once, then cheap)."""
        if self._demo is None:
            from cuecast.media.demo import DemoScene  # OpenCV work only when the demo is used

            self._demo = DemoScene(self.cfg.width, self.cfg.height)
        w, h, fps = self.cfg.width, self.cfg.height, self.cfg.fps
        buf = Gst.Buffer.new_allocate(None, w * h * 3 // 2, None)
        ok, mi = buf.map(Gst.MapFlags.WRITE)
        if not ok:
            return
        try:
            self._demo.frame_i420(self._demo_frame, np.ndarray((h * 3 // 2, w), np.uint8, buffer=mi.data))
        finally:
            buf.unmap(mi)
        buf.pts = self._demo_frame * Gst.SECOND // fps
        buf.duration = Gst.SECOND // fps
        self._demo_frame += 1
        src.emit("push-buffer", buf)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        now = time.monotonic_ns()
        buf = sample.get_buffer()
        info: FrameInfo | None = None
        if self.spec.kind == "ring":
            got = self._from_ring(buf)
            if got is None:
                return Gst.FlowReturn.OK
            buf, info = got
            capture = info.capture_ns
        else:
            capture = now
            if buf.pts != Gst.CLOCK_TIME_NONE and self._pipeline is not None:
                stamped = self._pipeline.get_base_time() + buf.pts
                if now - 1_000_000_000 < stamped <= now:  # a sane capture stamp from the source clock
                    capture = stamped
        st = self.status
        if st.frames == 0 or st.width is None:
            if info is not None:
                st.width, st.height, st.fps = info.width, info.height, float(self.cfg.fps)
            else:
                s = sample.get_caps().get_structure(0)
                st.width = s.get_int("width")[1]
                st.height = s.get_int("height")[1]
                ok, num, den = s.get_fraction("framerate")
                st.fps = num / den if ok and den else None
            self._log_negotiated()
        st.frames += 1
        st.last_frame_mono = time.monotonic()
        if not self.first_result.is_set():
            self.first_result.set()
        self._on_frame(buf, capture, info)
        return Gst.FlowReturn.OK

    def _from_ring(self, buf: Gst.Buffer) -> tuple[Gst.Buffer, FrameInfo] | None:
        """A frame from the capture process: its trailer, and the image copied out of the shared area (the
        block goes back to the writer at once, so a slow encoder here never holds the ring)."""
        ok, mi = buf.map(Gst.MapFlags.READ)
        if not ok:
            return None
        try:
            info = FrameInfo.unpack(mi.data)
        except FrameFormatError as e:
            info = None
            if self._format_error != str(e):
                self._format_error = str(e)
                log.error("internal ring: %s", e)
        finally:
            buf.unmap(mi)
        c = self.cfg
        if info is None or info.format != "I420" or (info.width, info.height) != (c.width, c.height):
            return None
        return buf.copy_region(Gst.BufferCopyFlags.MEMORY | Gst.BufferCopyFlags.DEEP, 0, info.image_size()), info

    def _log_negotiated(self) -> None:
        pipeline = self._pipeline
        detail = ""
        if pipeline is not None:
            it = pipeline.iterate_sources()
            while True:
                res, el = it.next()
                if res != Gst.IteratorResult.OK:
                    break
                pad = el.get_static_pad("src")
                caps = pad.get_current_caps() if pad else None
                if caps is not None:
                    detail = caps.to_string()
                    break
        if detail:
            self.status.device_format = detail
        log.info(
            "source %s: playing, %sx%s @ %s fps%s", self.spec.describe(), self.status.width,
            self.status.height, self.status.fps, f" (source gives {detail})" if detail else "",
        )
