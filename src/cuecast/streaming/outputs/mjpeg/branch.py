"""MJPEG outputs: one scaler + JPEG encoder per quality, and an asyncio fan-out hub per quality.

Owns the encode-once branch (a pad probe gates it: no frames reach the scaler or encoder while nobody
watches, and it thins the rate to the configured fps while keeping timestamps), and the hub that hands the
same JPEG bytes to every client: a slow client always gets the newest frame and never a backlog.

Threads: the appsink callback runs in a GStreamer thread and only calls `loop.call_soon_threadsafe`;
everything else in the hub runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cuecast.config import MjpegStreamConfig
from cuecast.core.gst import Gst
from cuecast.media.pipeline import DemandGate, OutputPipeline, queue_name
from cuecast.streaming.outputs.entry import entry_from

log = logging.getLogger(__name__)

FRESH_S = 1.0  # a snapshot newer than this is served as is; older ones wait for a new frame
SNAPSHOT_WAIT_S = 3.0
FPS_WINDOW_S = 3.0


@dataclass(eq=False)
class JpegFrame:
    seq: int  # hub's own counter, +1 per published frame
    data: bytes
    capture_ns: int  # CLOCK_MONOTONIC of the source frame (0 if unknown)
    published_mono: float
    wire: bytes | None = None  # the frame as sent (e.g. one multipart part), built once for all clients
    frame_seq: int | None = None  # the capture process's frame number (the backend's trailer has the same)
    capture_wall_ns: int = 0  # its capture time, wall clock (the trailer's)


class HubFull(Exception):
    """max_clients reached."""


@dataclass(eq=False)
class Client:
    peer: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_seq: int = 0
    sent: int = 0
    dropped: int = 0
    bytes_sent: int = 0
    closed: bool = False


class FrameHub:
    """Latest-frame fan-out for one quality. Lives on one asyncio loop."""

    def __init__(self, name: str, max_clients: int) -> None:
        self.name = name
        self.max_clients = max_clients
        self.loop: asyncio.AbstractEventLoop | None = None
        self.latest: JpegFrame | None = None
        self.clients: set[Client] = set()
        self._holds = 0  # snapshot requests keeping the encoder on
        self._seq = 0
        self._new_frame = asyncio.Event()
        self._publish_times: deque[float] = deque()
        self.closed = False
        self.demand = False  # read by the branch's probe (any thread)
        self.frames_published = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.bytes_sent = 0
        self.clients_refused = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    # -- producer side -------------------------------------------------------------------------------

    def publish_threadsafe(self, data: bytes, capture_ns: int, frame_seq: int | None = None,
                           capture_wall_ns: int = 0) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._publish, data, capture_ns, frame_seq, capture_wall_ns)
            except RuntimeError:  # loop closing during shutdown
                pass

    def _publish(self, data: bytes, capture_ns: int, frame_seq: int | None = None, capture_wall_ns: int = 0) -> None:
        self._seq += 1
        now = time.monotonic()
        self.latest = JpegFrame(self._seq, data, capture_ns, now, frame_seq=frame_seq, capture_wall_ns=capture_wall_ns)
        self.frames_published += 1
        self._publish_times.append(now)
        while self._publish_times and now - self._publish_times[0] > FPS_WINDOW_S:
            self._publish_times.popleft()
        for c in self.clients:
            c.wake.set()
        self._new_frame.set()
        self._new_frame = asyncio.Event()

    @property
    def fps(self) -> float:
        """Frames published per second over the last few seconds (0 when idle)."""
        times = self._publish_times
        if len(times) < 2 or time.monotonic() - times[-1] > 1.0:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    def _update_demand(self) -> None:
        want = bool(self.clients) or self._holds > 0
        if want != self.demand:
            self.demand = want
            log.debug("mjpeg %s: encoder %s", self.name, "on" if want else "off")

    # -- consumer side -------------------------------------------------------------------------------

    def subscribe(self, peer: str) -> Client:
        if self.closed:
            raise HubFull("the service is shutting down")
        if len(self.clients) >= self.max_clients:
            self.clients_refused += 1
            raise HubFull(f"{self.name}: {self.max_clients} clients already watching")
        c = Client(peer)
        if self.latest is not None:
            c.last_seq = self.latest.seq - 1 if self._fresh() else self.latest.seq
            if self._fresh():
                c.wake.set()
        self.clients.add(c)
        self._update_demand()
        log.info("mjpeg %s: client %s connected (%d watching)", self.name, peer, len(self.clients))
        return c

    def release(self, c: Client) -> None:
        if c in self.clients:
            self.clients.discard(c)
            self._update_demand()
            log.info("mjpeg %s: client %s left after %d frames (%d watching)", self.name, c.peer, c.sent,
                     len(self.clients))
        c.closed = True

    def disconnect(self, c: Client) -> None:
        """Wake a client's writer so it notices it should stop (client went away)."""
        c.closed = True
        c.wake.set()

    async def next_frame(self, c: Client) -> JpegFrame | None:
        """The newest frame after the client's last one; None once the client or the hub is closed."""
        while True:
            if c.closed or self.closed:
                return None
            f = self.latest
            if f is not None and f.seq > c.last_seq:
                gap = f.seq - c.last_seq - 1
                if c.last_seq and gap > 0:
                    c.dropped += gap
                    self.frames_dropped += gap
                c.last_seq = f.seq
                return f
            c.wake.clear()
            await c.wake.wait()

    def account(self, c: Client, nbytes: int) -> None:
        c.sent += 1
        c.bytes_sent += nbytes
        self.frames_sent += 1
        self.bytes_sent += nbytes

    def _fresh(self) -> bool:
        return self.latest is not None and time.monotonic() - self.latest.published_mono < FRESH_S

    async def snapshot(self) -> JpegFrame | None:
        """The newest frame; if none is fresh, switch the encoder on just long enough to get one."""
        if self._fresh():
            return self.latest
        self._holds += 1
        self._update_demand()
        try:
            deadline = time.monotonic() + SNAPSHOT_WAIT_S
            while not self._fresh() and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._new_frame.wait(), left)
                except TimeoutError:
                    break
            return self.latest if self._fresh() else None
        finally:
            self._holds -= 1
            self._update_demand()

    def close(self) -> None:
        self.closed = True
        for c in list(self.clients):
            self.disconnect(c)
        self._new_frame.set()

    def stats(self) -> dict[str, Any]:
        return {
            "clients": len(self.clients),
            "max_clients": self.max_clients,
            "encoding": self.demand,
            "fps": round(self.fps, 1),
            "frames_encoded": self.frames_published,
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "frames_dropped_slow_clients": self.frames_dropped,
            "bytes_sent": self.bytes_sent,
            "clients_refused": self.clients_refused,
        }


class MjpegOutput:
    """Branch: [gate probe] -> videoscale -> jpegenc -> appsink -> hub."""

    def __init__(self, quality: str, width: int, height: int, fps: int, jpeg_quality: int, hub: FrameHub,
                 source_fps: int, view: str = "camera") -> None:
        self.name = f"mjpeg_{quality}"
        self.queued = True
        self.view = view
        self.quality = quality
        self.width, self.height, self.fps = width, height, fps
        self.jpeg_quality = jpeg_quality
        self.hub = hub
        self.gate = DemandGate(fps, source_fps, lambda: hub.demand)
        self._frames: OutputPipeline | None = None
        self._encoder: Gst.Element | None = None

    def fragment(self) -> str:
        return (
            f"videoscale ! video/x-raw,width={self.width},height={self.height},pixel-aspect-ratio=1/1 "
            f"! jpegenc name=enc_{self.name} quality={self.jpeg_quality} "
            f"! appsink name=sink_{self.name} emit-signals=true sync=false async=false max-buffers=1 drop=true "
            "qos=false"
        )

    def attach(self, pipeline: Gst.Pipeline, frames: OutputPipeline) -> None:
        self._frames = frames
        self._encoder = pipeline.get_by_name(f"enc_{self.name}")
        self.gate.install(pipeline, queue_name(self))
        pipeline.get_by_name(f"sink_{self.name}").connect("new-sample", self._on_sample)

    def started(self) -> None:
        pass

    def active(self) -> bool:
        return self.hub.demand

    def stopped(self) -> None:
        self._encoder = None

    def set_fps(self, fps: int) -> None:
        """Lower or restore the rate live (graceful degradation)."""
        self.gate.set_fps(fps)

    def set_quality(self, quality: int) -> None:
        """JPEG quality, changeable while playing."""
        self.jpeg_quality = quality
        if self._encoder is not None:
            self._encoder.set_property("quality", quality)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        buf = sample.get_buffer()
        meta = self._frames.frame_meta(buf) if self._frames else None
        ok, mi = buf.map(Gst.MapFlags.READ)
        if not ok:
            return Gst.FlowReturn.OK
        try:
            data = bytes(mi.data)
        finally:
            buf.unmap(mi)
        if meta is None:
            self.hub.publish_threadsafe(data, 0)
        else:
            self.hub.publish_threadsafe(data, meta.capture_ns, meta.seq, meta.capture_wall_ns)
        return Gst.FlowReturn.OK


def status_entry(qc: MjpegStreamConfig, hub: FrameHub | None) -> dict[str, Any]:
    """This quality's entry in /api/status (`hub` None: disabled in the config)."""
    st = hub.stats() if hub else {}
    return entry_from(hub is not None, st, port=qc.port, width=qc.width, height=qc.height, fps_configured=qc.fps,
                      quality=qc.quality)
