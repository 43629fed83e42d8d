"""The one H.264 encoder of the service and its fan-out to every H.264 consumer.

Owns the encode branch (gated: the encoder sees no frame while no H.264 consumer exists) and the hub
that hands the same encoded access units to each subscriber (RTSP clients, WebRTC viewers, publish targets,
the replay ring) without a second encoder. A subscriber starts on a key frame (one is
requested when it joins) and one that falls behind skips to the next key frame instead of queueing.

Runs entirely in GStreamer threads; subscribers' `push` must not block.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from cuecast.core.gst import Gst, GstVideo
from cuecast.media.pipeline import DemandGate, FrameMeta, OutputPipeline, queue_name
from cuecast.streaming.encoders import EncoderKind
from cuecast.streaming.outputs.entry import RateMeter, output_entry

log = logging.getLogger(__name__)

KEYFRAME_REREQUEST_S = 0.5  # one pending key-frame request serves every subscriber that joins meanwhile
# A subscriber whose appsrc queues more than this is behind: it skips to the next key frame.
MAX_QUEUED_BYTES = 4 * 2**20
MAX_DRIFT_NS = 100 * Gst.MSECOND


class H264Subscriber(Protocol):
    name: str
    waiting_for_key: bool

    def push(self, buf: Gst.Buffer, caps: Gst.Caps) -> bool:
        """Take one access unit; False if it could not keep up (it then waits for the next key frame)."""
        ...


class H264Hub:
    """Encoded-frame fan-out (thread-safe). Each access unit carries the identity of the frame it encodes:
    `offset` is the capture process's frame number (the backend's `seq`) and `offset_end` its capture wall
    time in ns (the backend's trailer); both are GST_BUFFER_OFFSET_NONE for a placeholder frame."""

    def __init__(self) -> None:
        self._subs: list[H264Subscriber] = []
        self._lock = threading.Lock()
        self.request_keyframe: Callable[[], None] = lambda: None
        self.frame_ns = 0  # frame interval while the rate is lowered (0: as the encoder stamps it)
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.dropped = 0  # access units a subscriber skipped (joined between key frames, or fell behind)
        self.rate = RateMeter()  # encoded frames per second, sampled by the service once a second

    @property
    def demand(self) -> bool:
        return bool(self._subs)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, sub: H264Subscriber) -> None:
        sub.waiting_for_key = True
        with self._lock:
            self._subs = [*self._subs, sub]
        log.debug("h264: %s joined (%d consumers)", sub.name, len(self._subs))
        self.request_keyframe()

    def unsubscribe(self, sub: H264Subscriber) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]
        log.debug("h264: %s left (%d consumers)", sub.name, len(self._subs))

    def publish(self, buf: Gst.Buffer, caps: Gst.Caps) -> None:
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        self.frames += 1
        self.keyframes += key
        self.bytes += buf.get_size()
        need_key = False
        if self.frame_ns and buf.duration != self.frame_ns:  # lowered rate: subscribers pace frames by this
            buf = buf.copy()
            buf.duration = self.frame_ns
        for sub in self._subs:  # copy-on-write list: safe without the lock
            if sub.waiting_for_key:
                if not key:
                    need_key = True
                    self.dropped += 1
                    continue
                sub.waiting_for_key = False
            if not sub.push(buf, caps):
                sub.waiting_for_key = True
                need_key = True
                self.dropped += 1
        if need_key:
            self.request_keyframe()


class AppsrcFeed:
    """An H.264 subscriber that pushes into an appsrc (a client's RTSP media, the WebRTC or publish pipeline)."""

    def __init__(self, name: str, appsrc: Gst.Element) -> None:
        self.name = name
        self.appsrc = appsrc
        self.waiting_for_key = True
        self._caps: Gst.Caps | None = None
        self._anchor = -1
        self._n = 0
        self._last_pts = -1
        self.frames = 0
        self.bytes = 0

    def push(self, buf: Gst.Buffer, caps: Gst.Caps) -> bool:
        if self.appsrc.get_property("current-level-bytes") > MAX_QUEUED_BYTES:
            return False
        if self._caps is None or not self._caps.is_equal(caps):
            self._caps = caps
            self.appsrc.set_property("caps", caps)
        # Stamp in the media's own running time on a regular frame grid anchored at arrival time, like a
        # camera: players see a steady frame rate instead of the encoder's jitter (a big key frame arriving
        # late, the next frame right behind it). The grid re-anchors when it drifts from arrival time by more
        # than MAX_DRIFT_NS (a skipped frame, a new base time between preroll and PLAY). Carrying our own PTS
        # over with a fixed offset was tried first: the base-time change stalled clients.
        out = buf.copy()
        clock = self.appsrc.get_clock()
        if clock is None:
            out.pts = out.dts = Gst.CLOCK_TIME_NONE  # not playing yet: appsrc's do-timestamp fills them in
        else:
            now = clock.get_time() - self.appsrc.get_base_time()
            step = buf.duration if buf.duration != Gst.CLOCK_TIME_NONE else Gst.SECOND // 30
            ideal = self._anchor + self._n * step
            if self._anchor < 0 or abs(ideal - now) > MAX_DRIFT_NS:
                # Re-anchor at arrival, never before the last stamp: timestamps only go forward (a burst
                # after a stall would otherwise pull them back and players see non-monotonic DTS).
                self._anchor = max(now, self._last_pts + step // 2)
                self._n, ideal = 0, self._anchor
            self._n += 1
            self._last_pts = ideal
            out.pts = out.dts = ideal
        self.appsrc.emit("push-buffer", out)
        self.frames += 1
        self.bytes += out.get_size()
        return True


class H264Output:
    """Branch: [gate] -> videoscale -> encoder -> h264parse (SPS/PPS on every IDR) -> appsink -> hub."""

    name = "h264"
    queued = True

    def __init__(self, encoder: EncoderKind, width: int, height: int, fps: int, kbps: int, gop: int,
                 source_fps: int, hub: H264Hub, view: str = "camera") -> None:
        self.view = view
        self.encoder = encoder
        self.width, self.height, self.fps = width, height, fps
        self.kbps, self.gop = kbps, gop
        self.hub = hub
        self.gate = DemandGate(fps, source_fps, lambda: hub.demand)
        self._enc_src: Gst.Pad | None = None
        self._frames: OutputPipeline | None = None
        self._in_flight: deque[int] = deque(maxlen=64)  # PTS of frames handed to the encoder, not out yet
        self._shift = 0  # the encoder's output PTS minus its input PTS (x264enc adds up to 1000 h)
        self._key_requested = 0.0  # monotonic time of the last request still waiting for its IDR
        hub.request_keyframe = self.request_keyframe
        self.set_fps(fps)

    def fragment(self) -> str:
        return (
            f"videoscale name=h264_scale ! video/x-raw,width={self.width},height={self.height},pixel-aspect-ratio=1/1 "
            f"! {self.encoder.fragment(self.kbps, self.gop)} ! h264parse name=h264_parse config-interval=-1 "
            "! video/x-h264,stream-format=byte-stream,alignment=au "
            "! appsink name=h264_sink emit-signals=true sync=false async=false max-buffers=4 drop=false qos=false"
        )

    def attach(self, pipeline: Gst.Pipeline, frames: OutputPipeline) -> None:
        self.gate.install(pipeline, queue_name(self))
        self._frames = frames
        self._in_flight.clear()
        pipeline.get_by_name("h264_scale").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._into_encoder)
        self._enc_src = pipeline.get_by_name("h264_parse").get_static_pad("sink").get_peer()
        pipeline.get_by_name("h264_sink").connect("new-sample", self._on_sample)

    def started(self) -> None:
        pass

    def active(self) -> bool:
        return self.hub.demand

    def stopped(self) -> None:
        self._enc_src = None

    def set_fps(self, fps: int) -> None:
        """Lower or restore the encoded rate live (graceful degradation)."""
        self.gate.set_fps(fps)
        self.hub.frame_ns = 0 if fps >= self.gate.source_fps else Gst.SECOND // fps

    def request_keyframe(self) -> None:
        """Ask the encoder for an IDR with SPS/PPS (a new subscriber starts cleanly on it)."""
        pad = self._enc_src
        now = time.monotonic()
        if pad is None or now - self._key_requested < KEYFRAME_REREQUEST_S:
            return
        self._key_requested = now
        event = GstVideo.video_event_new_upstream_force_key_unit(Gst.CLOCK_TIME_NONE, True, 0)
        pad.send_event(event)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        buf = sample.get_buffer()
        if not buf.has_flags(Gst.BufferFlags.DELTA_UNIT):
            self._key_requested = 0.0
        meta = self._identity(buf.pts)
        buf = buf.copy()  # shallow: the access unit carries its frame's identity (see H264Hub)
        if meta is not None and not meta.placeholder:
            buf.offset, buf.offset_end = meta.seq, meta.capture_wall_ns
        else:
            buf.offset = buf.offset_end = Gst.BUFFER_OFFSET_NONE
        self.hub.publish(buf, sample.get_caps())
        return Gst.FlowReturn.OK

    def _into_encoder(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        self._in_flight.append(info.get_buffer().pts)
        return Gst.PadProbeReturn.OK

    def _identity(self, pts: int) -> FrameMeta | None:
        """The frame an access unit encodes. Encoders keep the frames' order (no B-frames) but may shift their
        timestamps by a constant: matched by PTS minus the shift, which is learnt again from the oldest frame in
        the encoder when it does not match (the first frame, a new encoder)."""
        frames, flight = self._frames, self._in_flight
        if frames is None or not flight:
            return None
        want = pts - self._shift
        if want in flight:
            while flight and flight[0] != want:  # frames the encoder dropped
                flight.popleft()
        else:
            self._shift = pts - flight[0]
            want = flight[0]
        flight.popleft()
        return frames.frame_meta_at(want)


def encoder_status(hub: H264Hub, encoder: EncoderKind | None, reason: str, size: tuple[int, int],
                   fps: int) -> dict[str, Any]:
    """What the H.264 outputs (the encoder, RTSP, WebRTC) show of the one encoder; {} when there is none."""
    if encoder is None:
        return {}
    return {"encoder": encoder.element, "encoder_reason": reason, "encoding": hub.demand,
            "consumers": hub.subscribers, "width": size[0], "height": size[1], "fps_configured": fps,
            "frames_encoded": hub.frames, "keyframes": hub.keyframes, "bytes_encoded": hub.bytes}


def status_entry(hub: H264Hub, encoder: dict[str, Any]) -> dict[str, Any]:
    """The encoder's entry in /api/status (`encoder`: encoder_status)."""
    return output_entry(bool(encoder), hub.subscribers, hub.rate.fps, hub.frames, hub.dropped, hub.bytes, **encoder)
