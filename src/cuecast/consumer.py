"""GStreamerFrameConsumer: the vision backend's side of the shared-memory output.

Owns connecting to the producer's socket (also before the producer exists), reading frames as numpy BGR
arrays with their metadata (frame.py, the same module the producer packs with), and reconnecting by
itself: shmsrc never reconnects, so on an error its pipeline is set to NULL and rebuilt. Needs GStreamer
and numpy, never FastAPI or the service; `post_event` speaks the service's HTTP API with the standard library.

    with GStreamerFrameConsumer("/tmp/camera-backend") as c:
        frame = c.get_frame(timeout=1.0)   # (H, W, 3) uint8 BGR, or None
        info = c.last_info                 # seq, capture time (CLOCK_MONOTONIC ns), placeholder flag
        view = c.get_frame(timeout=1.0, copy=False)  # read-only, in shared memory, valid until the next call

    for frame, info in c.frames():         # a tracker: every frame, in order (info.seq +1 each time)
        if info.dropped_before: ...        # frames missed just before this one (this reader was too slow)
        if shot_started:                   # an event at this frame, and its frame-exact clip (replay on)
            c.post_event("shot", frame=info.seq, before=3, after=5, data={"overlay": ...})

Frames are held as they arrive (no copy in the streaming thread); `copy=True` (the default) copies one out
when it is read, `copy=False` lends the shared-memory block itself until the next read.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from cuecast.core.gst import Gst
from cuecast.protocol.frame import FrameFormatError, FrameInfo

log = logging.getLogger(__name__)

RECONNECT_INTERVAL_S = 0.05  # how often to look for a missing or dead producer (a stat(); resume within 1 s)
DEFAULT_API = "http://127.0.0.1:8000"  # the service's HTTP API (http.port), for post_event
BUS_POLL_NS = 50 * Gst.MSECOND
STALE_RETRY_S = 2.0  # retry a socket file that failed, unless it is replaced sooner
# frames(): frames kept for a reader that is momentarily behind. Each holds one of the producer's shared-memory
# blocks (shm.buffers: 0.2 s of frames by default, 6 at 30 fps), and the producer drops a frame for everyone
# when readers hold them all.
ORDERED_QUEUE = 3


class EventError(Exception):
    """The service refused an event, or cannot be reached; the message says which and why."""


class GStreamerFrameConsumer:
    """Reads the newest BGR frame from a cuecast (or any raw BGR shmsink) producer."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] = "/tmp/camera-backend",
        *,
        width: int | None = None,
        height: int | None = None,
        reconnect_interval: float = RECONNECT_INTERVAL_S,
        api: str = DEFAULT_API,
        token: str | None = None,
    ) -> None:
        """`width`/`height` are only needed for a producer that sends no cuecast trailer. `api` and `token` (default
        $CUECAST_TOKEN) are the service's HTTP API, for `post_event`."""
        self.socket_path = Path(socket_path)
        self.api = api
        self.token = token if token is not None else os.environ.get("CUECAST_TOKEN")
        self._fallback_size = (width, height) if width and height else None
        self.reconnect_interval = reconnect_interval
        self._cond = threading.Condition()
        self._held: _Held | None = None  # the newest frame, still in shared memory
        self._lent: _Held | None = None  # the frame a copy=False read handed out (until the next read)
        self._copy: tuple[int, np.ndarray] | None = None  # (local seq, copy) of the newest frame, once made
        self._info: FrameInfo | None = None
        self._format_error: str | None = None
        self._received_ns = 0
        self._returned_seq = 0
        self._local_seq = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failed_ident: tuple[int, int] | None = None
        self._failed_at = 0.0
        self.connected = False
        self.frames_received = 0
        self.frames_missed = 0  # frames(): frames this reader did not get (the sum of info.dropped_before)
        self.reconnects = 0
        self._queue: deque[tuple[_Held, FrameInfo]] | None = None  # while frames() runs: frames not read yet
        self._ordered_last_seq: int | None = None
        self._ordered_max = ORDERED_QUEUE
        self.last_info: FrameInfo | None = None  # metadata of the frame get_frame last returned

    # -- events --------------------------------------------------------------------------------------

    def post_event(self, kind: str, *, frame: int | None = None, time: float | None = None, label: str = "",
                   data: dict[str, Any] | None = None, before: float | None = None, after: float | None = None,
                   wait: bool = False, api: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Record an event at frame `frame` (an `info.seq`) or capture time `time` (`info.capture_time`); with
        `before`/`after` (seconds) the service cuts that frame-exact clip. Returns the event as the service
        keeps it (its `clip.id` names the clip; with `wait` the clip is written, or says why not). Raises
        EventError naming what the service refused."""
        body: dict[str, Any] = {"kind": kind, "label": label, "wait": wait}
        if frame is not None:
            body["frame"] = frame
        if time is not None:
            body["time"] = time
        if data is not None:
            body["data"] = data
        if before is not None or after is not None:
            body["clip"] = {"before": 3.0 if before is None else before, "after": 5.0 if after is None else after}
        url = f"{(api or self.api).rstrip('/')}/api/events"
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                detail = str(json.loads(detail)["detail"])
            except (ValueError, KeyError, TypeError):
                pass
            raise EventError(f"{url} answered {e.code}: {detail}") from None
        except OSError as e:
            raise EventError(f"no cuecast API at {url} ({e}): is the service running, and http.port right?") from None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> GStreamerFrameConsumer:
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"consumer:{self.socket_path}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=5)
        with self._cond:
            self._release_lent()  # a copy=False view is valid until the next call or until stop()
            self._cond.notify_all()

    def __enter__(self) -> GStreamerFrameConsumer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- frames --------------------------------------------------------------------------------------

    def get_frame(self, timeout: float | None = None, *, copy: bool = True) -> np.ndarray | None:
        """Newest frame as (H, W, 3) uint8 BGR.

        Without a timeout: the newest frame at once, or None if none arrived yet. With a timeout: wait up
        to `timeout` seconds for a frame newer than the one last returned; None if none came. `copy=False`
        returns a read-only view of the shared memory itself, valid until the next get_frame/read call or
        stop() (for backends that work in place); the default is a copy the caller owns.
        """
        got = self.read(timeout, copy=copy)
        return None if got is None else got[0]

    def read(self, timeout: float | None = None, *, copy: bool = True) -> tuple[np.ndarray, FrameInfo] | None:
        """Like get_frame, but returns (frame, info)."""
        with self._cond:
            self._release_lent()
            if timeout is not None:
                deadline = time.monotonic() + timeout
                while self._local_seq <= self._returned_seq:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None:
                        return None
                    self._cond.wait(left)
            held, info = self._held, self._info
            if held is None or info is None:
                return None
            self._returned_seq = self._local_seq
            self.last_info = info
            if not copy:
                held.lent += 1
                self._lent = held
                return held.view, info
            if self._copy is None or self._copy[0] != self._local_seq:
                self._copy = (self._local_seq, held.view.copy())
            return self._copy[1], info

    def frames(self, timeout: float | None = None, *, copy: bool = True,
               queue: int = ORDERED_QUEUE) -> Iterator[tuple[np.ndarray, FrameInfo]]:
        """Every frame in order, for a tracker that needs each one (get_frame gives only the newest).

        Yields (frame, info) with `info.seq` one more than the last one's, unless frames were missed: then
        `info.dropped_before` says how many (this reader was too slow for more than `queue` frames, or the
        producer dropped them) and `frames_missed` counts them all. A producer restart starts its numbers
        again (not counted as missed). Ends after `timeout` seconds without a frame (None: runs until stop()).
        `copy=False` yields the shared-memory block itself, valid until the next frame is asked for.
        """
        with self._cond:
            if self._queue is not None:
                raise RuntimeError("frames() is already running on this consumer")
            self._queue = deque()
            self._ordered_last_seq = None
            self._ordered_max = max(1, queue)
        try:
            while True:
                got = self._next_ordered(timeout, copy)
                if got is None:
                    return
                yield got
        finally:
            with self._cond:
                self._release_lent()
                pending, self._queue = self._queue, None
                for held, _info in pending or ():
                    held.queued -= 1
                    held.release_if_unused()

    def _next_ordered(self, timeout: float | None, copy: bool) -> tuple[np.ndarray, FrameInfo] | None:
        with self._cond:
            self._release_lent()
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._queue:
                if self._thread is None:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left if left is not None else 0.5)
            held, info = self._queue.popleft()
            held.queued -= 1
            last, self._ordered_last_seq = self._ordered_last_seq, info.seq
            missed = info.seq - last - 1 if last is not None and info.seq > last else 0
            if missed:
                self.frames_missed += missed
                info = replace(info, dropped_before=missed)
            self.last_info = info
            if copy:
                frame = held.view.copy()
                held.release_if_unused()
                return frame, info
            held.lent += 1
            self._lent = held
            return held.view, info

    def _release_lent(self) -> None:
        lent, self._lent = self._lent, None
        if lent is not None:
            lent.lent -= 1
            lent.release_if_unused()

    @property
    def last_received_ns(self) -> int:
        """CLOCK_MONOTONIC ns when the newest frame arrived."""
        return self._received_ns

    # -- worker thread -------------------------------------------------------------------------------

    def _worth_trying(self) -> bool:
        """A socket file can outlive its producer (kill -9), and shmsrc on such a file fails noisily
        (GStreamer-CRITICAL on every retry). After a failure, wait until the file is replaced (a new
        producer: new inode/ctime) or STALE_RETRY_S has passed."""
        try:
            st = self.socket_path.stat()
        except OSError:
            return False
        ident = (st.st_ino, st.st_ctime_ns)  # inode numbers are reused at once on tmpfs: add the ctime
        if ident == self._failed_ident and time.monotonic() - self._failed_at < STALE_RETRY_S:
            return False
        return True

    def _remember_failure(self) -> None:
        try:
            st = self.socket_path.stat()
            self._failed_ident = (st.st_ino, st.st_ctime_ns)
        except OSError:
            self._failed_ident = None
        self._failed_at = time.monotonic()

    def _build(self) -> tuple[Gst.Pipeline, Gst.Element]:
        pipeline = Gst.Pipeline.new("consumer")
        src = Gst.ElementFactory.make("shmsrc", None)
        src.set_property("socket-path", str(self.socket_path))
        src.set_property("is-live", True)
        sink = Gst.ElementFactory.make("appsink", None)
        sink.set_property("sync", False)
        sink.set_property("max-buffers", 1)
        sink.set_property("drop", True)
        # No "last sample" kept aside: it would hold one more of the producer's few shared-memory blocks.
        sink.set_property("enable-last-sample", False)
        # Frames are taken in the streaming thread as they arrive: no extra thread hop on the way.
        sink.set_property("emit-signals", True)
        sink.connect("new-sample", self._on_sample)
        pipeline.add(src)
        pipeline.add(sink)
        src.link(sink)
        return pipeline, sink

    def _run(self) -> None:
        was_connected = False
        while not self._stop.is_set():
            if not self._worth_trying():
                self._stop.wait(self.reconnect_interval)
                continue
            pipeline, _sink = self._build()
            if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                pipeline.set_state(Gst.State.NULL)
                self._remember_failure()
                self._stop.wait(self.reconnect_interval)
                continue
            bus = pipeline.get_bus()
            self.connected = True
            if was_connected:
                self.reconnects += 1
            log.info("connected to %s", self.socket_path)
            was_connected = True
            while not self._stop.is_set():
                msg = bus.timed_pop_filtered(BUS_POLL_NS, Gst.MessageType.ERROR | Gst.MessageType.EOS)
                if msg is not None:
                    log.info("producer at %s went away; reconnecting", self.socket_path)
                    break
            self.connected = False
            # Stop the pipeline first, then let go of its frames: a frame delivered in between would keep the
            # shared-memory connection open and unread (a held buffer keeps shmsrc's pipe alive), and the
            # producer would fill its area with frames for a reader that is gone.
            pipeline.set_state(Gst.State.NULL)
            self._drop_held()
            self._remember_failure()
            if not self._stop.is_set():
                self._stop.wait(self.reconnect_interval)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is not None:
            self._deliver(sample)
        return Gst.FlowReturn.OK

    def _deliver(self, sample: Gst.Sample) -> None:
        buf = sample.get_buffer()
        ok, mi = buf.map(Gst.MapFlags.READ)
        if not ok:
            return
        try:
            info = FrameInfo.unpack(mi.data)
        except FrameFormatError as e:
            info = None
            if self._format_error != str(e):
                self._format_error = str(e)
                log.error("%s: %s", self.socket_path, e)
            buf.unmap(mi)
            return
        if info is None:
            if self._fallback_size is None:
                log.warning("frame of %d bytes has no cuecast trailer; pass width= and height=", mi.size)
                buf.unmap(mi)
                return
            w, h = self._fallback_size
            if mi.size < w * h * 3:
                buf.unmap(mi)
                return
            now = time.monotonic_ns()
            info = FrameInfo(self.frames_received + 1, now, time.time_ns(), w, h)
        # A read-only view on the shared-memory block: the block stays ours until this frame is replaced
        # and no copy=False reader holds it (the producer reuses it once it is released).
        view = np.frombuffer(mi.data, np.uint8, count=info.width * info.height * 3).reshape(info.height, info.width, 3)
        view.flags.writeable = False
        held = _Held(buf, mi, view)
        with self._cond:
            if self._queue is not None:  # frames() runs: keep it for that reader, in order
                if len(self._queue) >= self._ordered_max:  # too far behind: the oldest goes (seen as a gap)
                    gone, _ = self._queue.popleft()
                    gone.queued -= 1
                    gone.release_if_unused()
                held.queued += 1
                self._queue.append((held, info))
            old, self._held = self._held, held
            self._info = info
            self._received_ns = time.monotonic_ns()
            self._local_seq += 1
            self.frames_received += 1
            if old is not None:
                old.current = False
                old.release_if_unused()
            self._cond.notify_all()

    def _drop_held(self) -> None:
        """The producer went away: let go of the newest frame (a lent one stays valid until the next read)."""
        with self._cond:
            held, self._held = self._held, None
            self._copy = None
            if held is not None:
                held.current = False
                held.release_if_unused()


class _Held:
    """A mapped shared-memory frame; unmapped (and so released to the producer) once it is neither the
    newest frame, nor lent to a copy=False reader, nor waiting in frames()'s queue."""

    def __init__(self, buf: Gst.Buffer, mi: Gst.MapInfo, view: np.ndarray) -> None:
        self.buf = buf
        self.mi = mi
        self.view = view
        self.current = True
        self.lent = 0
        self.queued = 0  # waiting in frames()'s queue
        self._released = False

    def release_if_unused(self) -> None:
        if not self.current and self.lent <= 0 and self.queued <= 0 and not self._released:
            self._released = True
            self.buf.unmap(self.mi)
