"""GStreamerFrameConsumer: the vision backend's side of the shared-memory output.

Owns connecting to the producer's socket (also before the producer exists), reading frames as numpy BGR
arrays with their metadata, and reconnecting by itself: shmsrc never reconnects, so on an error its
pipeline is set to NULL and rebuilt. Needs GStreamer and numpy, never FastAPI or the service.

    with GStreamerFrameConsumer("/tmp/camera-backend") as c:
        frame = c.get_frame(timeout=1.0)   # (H, W, 3) uint8 BGR, or None
        info = c.last_info                 # seq, capture time (CLOCK_MONOTONIC ns), placeholder flag
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType

import numpy as np

from cuecast.frame import FrameInfo
from cuecast.gst import Gst

log = logging.getLogger(__name__)

RECONNECT_INTERVAL_S = 0.1  # how often to retry a missing or dead producer (resume well within 1 s)
BUS_POLL_NS = 50 * Gst.MSECOND
STALE_RETRY_S = 2.0  # retry a socket file that failed, unless it is replaced sooner  # how quickly stop() is noticed


class GStreamerFrameConsumer:
    """Reads the newest BGR frame from a cuecast (or any raw BGR shmsink) producer."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] = "/tmp/camera-backend",
        *,
        width: int | None = None,
        height: int | None = None,
        reconnect_interval: float = RECONNECT_INTERVAL_S,
    ) -> None:
        """`width`/`height` are only needed for a producer that sends no cuecast trailer."""
        self.socket_path = Path(socket_path)
        self._fallback_size = (width, height) if width and height else None
        self.reconnect_interval = reconnect_interval
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._info: FrameInfo | None = None
        self._received_ns = 0
        self._returned_seq = 0
        self._local_seq = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failed_ident: tuple[int, int] | None = None
        self._failed_at = 0.0
        self.connected = False
        self.frames_received = 0
        self.reconnects = 0
        self.last_info: FrameInfo | None = None  # metadata of the frame get_frame last returned

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
            self._cond.notify_all()

    def __enter__(self) -> GStreamerFrameConsumer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- frames --------------------------------------------------------------------------------------

    def get_frame(self, timeout: float | None = None) -> np.ndarray | None:
        """Newest frame as (H, W, 3) uint8 BGR.

        Without a timeout: the newest frame at once, or None if none arrived yet. With a timeout: wait up
        to `timeout` seconds for a frame newer than the one last returned; None if none came.
        """
        got = self.read(timeout)
        return None if got is None else got[0]

    def read(self, timeout: float | None = None) -> tuple[np.ndarray, FrameInfo] | None:
        """Like get_frame, but returns (frame, info)."""
        with self._cond:
            if timeout is not None:
                deadline = time.monotonic() + timeout
                while self._local_seq <= self._returned_seq:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None:
                        return None
                    self._cond.wait(left)
            if self._frame is None or self._info is None:
                return None
            self._returned_seq = self._local_seq
            self.last_info = self._info
            return self._frame, self._info

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
            pipeline.set_state(Gst.State.NULL)
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
            if info is None:
                if self._fallback_size is None:
                    log.warning("frame of %d bytes has no cuecast trailer; pass width= and height=", mi.size)
                    return
                w, h = self._fallback_size
                if mi.size < w * h * 3:
                    return
                now = time.monotonic_ns()
                info = FrameInfo(self.frames_received + 1, now, time.time_ns(), w, h)
            # Copy out: the shared-memory block is reused as soon as the buffer is released.
            frame = np.frombuffer(mi.data, np.uint8, count=info.width * info.height * 3)
            frame = frame.reshape(info.height, info.width, 3).copy()
        finally:
            buf.unmap(mi)
        with self._cond:
            self._frame = frame
            self._info = info
            self._received_ns = time.monotonic_ns()
            self._local_seq += 1
            self.frames_received += 1
            self._cond.notify_all()
