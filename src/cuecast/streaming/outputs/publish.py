"""Publishing: push the shared H.264 stream to media servers that re-serve it (scale-out).

Owns one small pipeline per target, fed from the H.264 hub (no encoding here): RTMP targets get
h264parse -> flvmux -> rtmp2sink (nginx with the RTMP module, which re-serves RTMP and HLS), RTSP targets
get rtspclientsink (RTSP RECORD, e.g. MediaMTX). A target that fails (unreachable, refused, the server
restarted) is torn down and retried with a doubling delay, logged each time; nothing it does reaches the
other outputs: it is just another hub subscriber, and a slow one only skips to the next key frame.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from cuecast.config import mask_url
from cuecast.core.gst import GLib, Gst, error_text, pending_error
from cuecast.streaming.outputs.h264 import AppsrcFeed, H264Hub

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 5.0
STABLE_S = 5.0  # live this long: the next failure starts the backoff from the beginning again
APPSRC = (
    "appsrc name=src is-live=true format=time do-timestamp=true block=false max-bytes=0 "
    'caps="video/x-h264,stream-format=byte-stream,alignment=au" ! queue max-size-buffers=0 max-size-bytes=0 '
    "max-size-time=2000000000 leaky=downstream"
)


def _quote(url: str) -> str:
    return '"' + url.replace("\\", "\\\\").replace('"', '\\"') + '"'


def publish_launch(url: str) -> str:
    """The gst-launch description of a target's pipeline."""
    if url.startswith(("rtmp://", "rtmps://")):
        return (f"{APPSRC} ! h264parse ! video/x-h264,stream-format=avc,alignment=au "
                f"! flvmux streamable=true name=mux ! rtmp2sink name=sink location={_quote(url)}")
    return (f"{APPSRC} ! h264parse ! video/x-h264,stream-format=avc,alignment=au "
            f"! rtspclientsink name=sink protocols=tcp latency=0 location={_quote(url)}")


class Publisher:
    """One publish target that keeps itself connected. start/stop from any thread; work runs on GLib."""

    def __init__(self, url: str, hub: H264Hub, index: int) -> None:
        self.url = url
        self.shown_url = mask_url(url)
        self.hub = hub
        self.name = f"publish-{index}"
        self.pipeline: Gst.Pipeline | None = None
        self._feed: AppsrcFeed | None = None
        self._retry_id = 0
        self._delay = FIRST_RETRY_S
        self._stopped = True
        self.state = "stopped"
        self.attempts = 0
        self.failures = 0
        self.last_error: str | None = None
        self.live_since: float | None = None
        self.frames_sent = 0
        self.bytes_sent = 0

    def start(self) -> None:
        self._stopped = False
        GLib.idle_add(self._connect)

    def stop(self) -> None:
        self._stopped = True
        if self._retry_id:
            GLib.source_remove(self._retry_id)
            self._retry_id = 0
        self._teardown()
        self.state = "stopped"

    def _connect(self) -> bool:
        self._retry_id = 0
        if self._stopped:
            return False
        self.attempts += 1
        self.state = "connecting"
        try:
            pipeline = Gst.parse_launch(publish_launch(self.url))
        except GLib.Error as e:
            self._failed(f"cannot build the publish pipeline: {e.message}")
            return False
        assert isinstance(pipeline, Gst.Pipeline)
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)
        bus.connect("message::eos", lambda *_: self._failed("the server ended the stream"))
        sink = pipeline.get_by_name("sink")
        self.pipeline = pipeline
        self._feed = AppsrcFeed(self.name, pipeline.get_by_name("src"))
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._failed(pending_error(pipeline) or f"{sink.get_name()} did not start")
            return False
        for pad in sink.sinkpads:  # rtspclientsink's pad exists once linked: after parse_launch
            pad.add_probe(Gst.PadProbeType.BUFFER, self._on_buffer)
        self.hub.subscribe(self._feed)
        log.info("publish %s: connecting (attempt %d)", self.shown_url, self.attempts)
        return False

    def _on_buffer(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        self.frames_sent += 1
        self.bytes_sent += buf.get_size()
        if self.state != "live":
            self.state = "live"
            self.live_since = time.monotonic()
            log.info("publish %s: live after %d attempt(s)", self.shown_url, self.attempts)
        return Gst.PadProbeReturn.OK

    def _on_error(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        self._failed(error_text(msg))

    def _failed(self, why: str) -> None:
        if self.pipeline is None and self._retry_id:
            return  # already scheduled
        was_stable = self.live_since is not None and time.monotonic() - self.live_since >= STABLE_S
        if was_stable:
            self._delay = FIRST_RETRY_S
        self._teardown()
        self.failures += 1
        self.last_error = why
        if self._stopped:
            return
        self.state = "retrying"
        log.warning("publish %s: %s; retrying in %.1f s", self.shown_url, why, self._delay)
        self._retry_id = GLib.timeout_add(int(self._delay * 1000), self._connect)
        self._delay = min(self._delay * 2, MAX_RETRY_S)

    def _teardown(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            self.hub.unsubscribe(feed)
        pipeline, self.pipeline = self.pipeline, None
        self.live_since = None
        if pipeline is not None:
            pipeline.get_bus().remove_signal_watch()
            # A sink can block in NULL while its connection times out: never on the GLib thread.
            threading.Thread(target=pipeline.set_state, args=(Gst.State.NULL,), name=f"{self.name}-stop",
                             daemon=True).start()

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.shown_url, "state": self.state, "attempts": self.attempts, "failures": self.failures,
            "last_error": self.last_error, "frames_sent": self.frames_sent, "bytes_sent": self.bytes_sent,
            "live_s": round(time.monotonic() - self.live_since, 1) if self.live_since else None,
        }
