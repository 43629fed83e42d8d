"""RTSP output: gst-rtsp-server in this process, each client fed from the shared H.264 hub.

Owns the server (bind address, port, mount), optional basic authentication, session timeouts (a client
that vanishes without TEARDOWN is removed), and the per-client media: appsrc -> cuecaststamp -> rtph264pay
with the RFC 6051 64-bit NTP header extension (urn:ietf:params:rtp-hdrext:ntp-64, announced in the SDP as
extmap 1) on every packet of a frame (a depayloader reads the extension of a frame's last packet): the frame's
capture wall time, the backend trailer's, so a client
ties every RTSP frame to the frame the backend saw (GStreamer's depayloaders read it into a reference
timestamp meta "timestamp/x-ntp"; ffmpeg does not read it).
No media encodes: each client's media only payloads the access units the one encoder made (already parsed,
AU-aligned, SPS/PPS on every IDR: a second h264parse here would re-split multi-slice frames into NALs and
players would see half frames), starting on a key frame, so a late joiner decodes cleanly from its first
frame. The payloader's own config-interval stays 0: with multi-slice IDRs (x264 sliced threads) it would put
SPS/PPS before every slice and split the frame; the stream already carries them before every IDR.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import gi

gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtp", "1.0")
from gi.repository import GstRtp, GstRtspServer  # noqa: E402, F401 - GstRtp: the header extension's methods

from cuecast.core.gst import GLib, Gst  # noqa: E402
from cuecast.streaming.outputs.entry import RateMeter, output_entry  # noqa: E402
from cuecast.streaming.outputs.h264 import AppsrcFeed, H264Hub  # noqa: E402

log = logging.getLogger(__name__)

SESSION_CLEANUP_S = 2
MEDIA_LAUNCH = (
    "( appsrc name=h264src is-live=true format=time do-timestamp=true block=false max-bytes=0 "
    'caps="video/x-h264,stream-format=byte-stream,alignment=au" ! cuecaststamp '
    "! rtph264pay name=pay0 pt=96 config-interval=0 aggregate-mode=zero-latency )"
)
CAPTURE_TIME_EXT_ID = 1  # RFC 6051 ntp-64: the frame's capture wall time
ROLE = "viewer"


class RtspError(Exception):
    """The RTSP server cannot start; the message says why."""


class RtspServer:
    def __init__(self, bind: str, port: int, mount: str, hub: H264Hub, session_timeout: int,
                 users: dict[str, str] | None = None) -> None:
        self.bind, self.port, self.mount = bind, port, mount
        self.hub = hub
        self.session_timeout = session_timeout
        self.users = users or {}
        self.rate = RateMeter()
        self.server: GstRtspServer.RTSPServer | None = None
        self._source_id = 0
        self._cleanup_id = 0
        self._lock = threading.Lock()
        self._media_count = 0
        self._feeds: dict[GstRtspServer.RTSPMedia, AppsrcFeed] = {}
        self.clients = 0
        self._gone_frames = 0  # totals of the clients that left
        self._gone_bytes = 0

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind
        return f"rtsp://{host}:{self.port}{self.mount}"

    def start(self) -> None:
        server = GstRtspServer.RTSPServer()
        server.set_address(self.bind)
        server.set_service(str(self.port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(MEDIA_LAUNCH)
        # Not shared: each client gets its own tiny payloading media (no encoding there), so each one starts
        # on its own key frame. The encoder is shared through the hub.
        factory.set_shared(False)
        factory.set_latency(0)
        factory.connect("media-configure", self._on_media_configure)
        if self.users:
            self._setup_auth(server, factory)
        server.get_mount_points().add_factory(self.mount, factory)
        server.connect("client-connected", self._on_client)
        self._source_id = server.attach(None)
        if not self._source_id:
            raise RtspError(f"rtsp.port {self.port}: cannot listen on {self.bind}:{self.port}")
        self.server = server
        self._cleanup_id = GLib.timeout_add_seconds(SESSION_CLEANUP_S, self._cleanup)
        auth = f", basic auth for {len(self.users)} user(s)" if self.users else ""
        log.info("RTSP on %s%s", self.url, auth)

    def _setup_auth(self, server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory) -> None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", ROLE)  # writable_structure() gives a copy in PyGObject
        for user, password in self.users.items():
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        role = Gst.Structure.new_from_string(
            f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
        factory.add_role_from_structure(role)

    def _cleanup(self) -> bool:
        server = self.server
        if server is None:
            return False
        removed = server.get_session_pool().cleanup()
        if removed:
            log.info("RTSP: removed %d timed-out session(s)", removed)
        return True

    def _on_client(self, _server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient) -> None:
        with self._lock:
            self.clients += 1
        conn = client.get_connection()
        peer = f"{conn.get_ip()}" if conn else "?"
        client.connect("closed", self._on_client_closed, peer)
        client.connect("new-session", self._on_new_session)
        client.connect("play-request", self._on_play)

    def _on_play(self, _client: GstRtspServer.RTSPClient, ctx: GstRtspServer.RTSPContext) -> None:
        # Data pushed while the media prerolled never reached this client: start it on a fresh key frame.
        feed = self._feeds.get(ctx.media) if ctx.media is not None else None
        if feed is not None:
            feed.waiting_for_key = True
            self.hub.request_keyframe()

    def _on_client_closed(self, _client: GstRtspServer.RTSPClient, peer: str) -> None:
        with self._lock:
            self.clients = max(0, self.clients - 1)
        log.debug("RTSP client %s closed", peer)

    def _on_new_session(self, _client: GstRtspServer.RTSPClient, session: GstRtspServer.RTSPSession) -> None:
        session.set_timeout(self.session_timeout)

    def _on_media_configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("h264src")
        with self._lock:
            self._media_count += 1
            name = f"rtsp-client-{self._media_count}"
        ext = Gst.ElementFactory.make("rtphdrextntp64")
        if ext is not None:
            ext.set_id(CAPTURE_TIME_EXT_ID)
            ext.set_property("every-packet", True)  # 12 bytes a packet, about 1 %
            media.get_element().get_by_name_recurse_up("pay0").emit("add-extension", ext)
        # rtpbin would overwrite the extension with its own send time (RFC 6051's use); keep the capture time.
        media.get_element().get_parent().connect("element-added", _keep_capture_time)
        feed = AppsrcFeed(name, appsrc)
        self._feeds[media] = feed
        self.hub.subscribe(feed)
        media.connect("unprepared", self._on_unprepared)

    def _on_unprepared(self, media: GstRtspServer.RTSPMedia) -> None:
        with self._lock:
            feed = self._feeds.pop(media, None)
            if feed is not None:
                self._gone_frames += feed.frames
                self._gone_bytes += feed.bytes
        if feed is not None:
            self.hub.unsubscribe(feed)

    @property
    def frames_sent(self) -> int:
        """Access units handed to RTSP clients, summed over clients (those gone included)."""
        with self._lock:
            return self._gone_frames + sum(f.frames for f in self._feeds.values())

    @property
    def bytes_sent(self) -> int:
        with self._lock:
            return self._gone_bytes + sum(f.bytes for f in self._feeds.values())

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        if self._cleanup_id:
            GLib.source_remove(self._cleanup_id)
            self._cleanup_id = 0
        server.client_filter(lambda _s, _c, *_: GstRtspServer.RTSPFilterResult.REMOVE, None)
        if self._source_id:
            GLib.source_remove(self._source_id)
            self._source_id = 0


def _keep_capture_time(_pipeline: Gst.Bin, element: Gst.Element) -> None:
    factory = element.get_factory()
    if factory is not None and factory.get_name() == "rtpbin":
        element.set_property("update-ntp64-header-ext", False)


def status_entry(server: RtspServer | None, encoder: dict[str, Any]) -> dict[str, Any]:
    """RTSP's entry in /api/status (`server` None: disabled)."""
    if server is None:
        return output_entry(False)
    return output_entry(True, server.clients, server.rate.fps, server.frames_sent, 0, server.bytes_sent,
                        url=server.url, auth=bool(server.users), **encoder)
