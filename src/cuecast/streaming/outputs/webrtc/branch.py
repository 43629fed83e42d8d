"""WebRTC output: WHEP-style playback of the shared H.264 stream, one `webrtcbin` per viewer.

Owns the WebRTC pipeline (appsrc fed from the H.264 hub -> tee of access units -> one rtph264pay per
payload-type number in use -> tee -> per viewer a leaky queue and a webrtcbin), the WHEP session life cycle
(offer in, answer out with every host candidate, no trickle; a session ends on DELETE, ICE failure, a
connect timeout, or when the viewer's RTCP stops), the viewer limit and the checks on offers (what is
malformed, what lacks a usable H.264). Nothing is encoded here: the one encoder is shared with RTSP and
publishing through the hub, and nothing is payloaded per viewer (every Chromium picks the same number).

Traps (GStreamer 1.22, PyGObject): libnice skips loopback, so 127.0.0.1 is added to each ICE agent next to
the machine's other addresses; the `ice-agent` is a floating object the first Python wrapper takes over and
frees on collection (a crash later), so the reference is given back (_ice_agent); `create-answer` returns
nothing before the sink pad has caps, so a session waits for them; a branch is torn down webrtcbin first
(its queue would block on the pad webrtcbin holds until DTLS connects); webrtcbin has no ICE consent checks,
so a vanished browser is noticed by its RTCP stopping.
"""

from __future__ import annotations

import ctypes
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import gi

gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
import psutil  # noqa: E402
from gi.repository import GObject, GstSdp, GstWebRTC  # noqa: E402

from cuecast.core.gst import GLib, Gst, GstVideo  # noqa: E402
from cuecast.streaming.outputs.entry import RateMeter, output_entry  # noqa: E402
from cuecast.streaming.outputs.h264 import AppsrcFeed, H264Hub  # noqa: E402

log = logging.getLogger(__name__)

_g_object_ref = ctypes.CDLL("libgobject-2.0.so.0").g_object_ref
_g_object_ref.argtypes = [ctypes.c_void_p]
_g_object_ref.restype = ctypes.c_void_p
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_pointer.restype = ctypes.c_void_p

CAPS_WAIT_S = 5.0  # encoder start + first frame
GATHER_WAIT_S = 3.0
VIEWER_SILENT_S = 5.0  # browsers send RTCP feedback several times a second while they watch
SUPPORTED = "H264 with packetization-mode=1, constrained baseline (profile-level-id 42e0xx or 42xxxx)"
PIPELINE = (
    "appsrc name=src is-live=true format=time do-timestamp=true block=false max-bytes=0 "
    'caps="video/x-h264,stream-format=byte-stream,alignment=au" ! tee name=au allow-not-linked=true'
)
# One payloader per payload-type number in use (one for every Chromium), its packets shared by its viewers.
PAYLOADER = ("queue leaky=downstream max-size-buffers=0 max-size-bytes=0 max-size-time=500000000 "
             "! rtph264pay pt={pt} config-interval=0 aggregate-mode=zero-latency mtu=1200 "
             "! tee allow-not-linked=true")


class WhepError(Exception):
    """An offer or request the WebRTC output refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Payloader:
    """rtph264pay for one payload-type number, with the tee its viewers hang off."""

    pt: int
    elements: list[Gst.Element]  # queue, rtph264pay, tee
    au_pad: Gst.Pad  # its request pad on the access-unit tee
    users: int = 0

    @property
    def tee(self) -> Gst.Element:
        return self.elements[-1]


@dataclass
class _Session:
    id: str
    peer: str
    pt: int
    queue: Gst.Element
    webrtc: Gst.Element
    tee_pad: Gst.Pad
    offer_level: str  # the offer's profile-level-id
    asymmetry: bool
    created: float = field(default_factory=time.monotonic)
    answered: float | None = None  # when the answer went out: the connect timeout counts from here
    connected: float | None = None
    last_rtcp: float | None = None
    state: str = "new"
    closing: bool = False


@dataclass(frozen=True)
class Offer:
    """What a WHEP offer asks for: its best H.264 format."""

    msg: GstSdp.SDPMessage
    pt: int  # payload type
    profile: str  # profile-level-id, e.g. "42e01f"
    asymmetry: bool  # level-asymmetry-allowed=1: we may send a higher level than the offer names


def parse_offer(text: str) -> Offer:
    """The parsed offer and its best H.264 format; WhepError (400/406) otherwise."""
    if not text.lstrip().startswith("v=0"):
        raise WhepError(400, "malformed SDP offer: it must start with 'v=0' (send the offer's SDP text as "
                             "application/sdp)")
    res, msg = GstSdp.SDPMessage.new_from_text(text)
    if res != GstSdp.SDPResult.OK or msg.medias_len() == 0:
        raise WhepError(400, "malformed SDP offer: no media section (m=) could be read")
    video = [msg.get_media(i) for i in range(msg.medias_len()) if msg.get_media(i).get_media() == "video"]
    if not video:
        raise WhepError(406, f"the offer has no video section; this server sends video only: {SUPPORTED}")
    media = video[0]
    if media.get_attribute_val("ice-ufrag") is None and msg.get_attribute_val("ice-ufrag") is None:
        raise WhepError(400, "malformed SDP offer: no a=ice-ufrag (is this a WebRTC offer?)")
    if media.get_attribute_val("fingerprint") is None and msg.get_attribute_val("fingerprint") is None:
        raise WhepError(400, "malformed SDP offer: no a=fingerprint (DTLS is required)")
    codecs: dict[int, str] = {}
    fmtp: dict[int, str] = {}
    for i in range(media.attributes_len()):
        attr = media.get_attribute(i)
        pt_text, _, rest = (attr.value or "").partition(" ")
        if not pt_text.isdigit():
            continue
        if attr.key == "rtpmap":
            codecs[int(pt_text)] = rest
        elif attr.key == "fmtp":
            fmtp[int(pt_text)] = rest
    best: tuple[int, int, str, bool] | None = None
    for pt, codec in codecs.items():
        if not codec.upper().startswith("H264/90000"):
            continue
        params = dict(p.strip().partition("=")[::2] for p in fmtp.get(pt, "").split(";") if p.strip())
        if params.get("packetization-mode", "0") != "1":
            continue
        profile = params.get("profile-level-id", "42001f").lower()
        if not profile.startswith("42"):
            continue
        rank = 0 if profile[2:4] == "e0" else 1  # constrained baseline first
        if best is None or rank < best[0]:
            best = (rank, pt, profile, params.get("level-asymmetry-allowed") == "1")
    if best is None:
        offered = ", ".join(sorted({c.split("/")[0] for c in codecs.values()})) or "nothing"
        raise WhepError(406, f"no usable H.264 in the offer (it offers {offered}); supported: {SUPPORTED}")
    return Offer(msg, best[1], best[2], best[3])


def local_addresses() -> list[str]:
    """IPv4 addresses for ICE host candidates: 127.0.0.1 (libnice skips loopback) and every interface's."""
    addrs = ["127.0.0.1"]
    for entries in psutil.net_if_addrs().values():
        for a in entries:
            if a.family == socket.AF_INET and a.address not in addrs:
                addrs.append(a.address)
    return addrs


class WebRtcOutput:
    """The WHEP endpoint's engine: sessions in, H.264 out. Methods that wait are for worker threads."""

    def __init__(self, hub: H264Hub, max_viewers: int, connect_timeout: float,
                 addresses: list[str] | None = None) -> None:
        self.hub = hub
        self.rate = RateMeter()
        self.max_viewers = max_viewers
        self.connect_timeout = connect_timeout
        self.addresses = addresses or local_addresses()
        self.pipeline: Gst.Pipeline | None = None
        self._au_tee: Gst.Element | None = None
        self._feed: AppsrcFeed | None = None
        self._payloaders: dict[int, _Payloader] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._timer = 0
        self._restarting = threading.Event()
        self.sessions_total = 0
        self.refused = 0
        self.restarts = 0

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        pipeline = Gst.parse_launch(PIPELINE)
        assert isinstance(pipeline, Gst.Pipeline)
        appsrc = pipeline.get_by_name("src")
        # A viewer's PLI/FIR arrives as an upstream force-key-unit event: ask the shared encoder for an IDR.
        appsrc.get_static_pad("src").add_probe(Gst.PadProbeType.EVENT_UPSTREAM, self._on_upstream)
        self._feed = AppsrcFeed("webrtc", appsrc)
        self._au_tee = pipeline.get_by_name("au")
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("the WebRTC pipeline did not start")
        self.pipeline = pipeline
        self._timer = GLib.timeout_add(1000, self._reap)
        log.info("WebRTC (WHEP) ready: up to %d viewers, ICE host addresses %s", self.max_viewers,
                 ", ".join(self.addresses))

    def stop(self) -> None:
        for sid in self._session_ids():
            self.close(sid)
        if self._timer:
            GLib.source_remove(self._timer)
            self._timer = 0
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.set_state(Gst.State.NULL)
            pipeline.get_bus().remove_signal_watch()

    def _session_ids(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def _session_list(self) -> list[_Session]:
        with self._lock:
            return list(self._sessions.values())

    def _on_error(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        err, _debug = msg.parse_error()
        src = msg.src.get_name() if msg.src else "?"
        for s in self._session_list():  # an error inside one viewer's branch ends that viewer
            if msg.src is not None and (msg.src in (s.webrtc, s.queue) or msg.src.has_as_ancestor(s.webrtc)):
                log.warning("WebRTC viewer %s: %s: %s", s.id, src, err.message)
                self._close_later(s.id, f"error: {err.message}")
                return
        # The shared part (the access units' source, a payloader) failed: no later viewer would get a frame.
        # Start the output afresh, so the next viewer works.
        log.warning("WebRTC: %s: %s; restarting the WebRTC output", src, err.message)
        if not self._restarting.is_set():
            self._restarting.set()
            threading.Thread(target=self._restart, name="webrtc-restart", daemon=True).start()

    def _restart(self) -> None:
        try:
            self.stop()
            self.start()
            self.restarts += 1
        except RuntimeError as e:
            log.error("WebRTC output could not restart: %s", e)
        finally:
            self._restarting.clear()

    def _on_upstream(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        event = info.get_event()
        if event is not None and GstVideo.video_event_is_force_key_unit(event):
            self.hub.request_keyframe()
            return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    # -- sessions ---------------------------------------------------------------------------------------
    def answer(self, offer_text: str, peer: str) -> tuple[str, str]:
        """(session id, SDP answer) for a WHEP offer. Blocks up to a few seconds: call from a worker thread."""
        offer = parse_offer(offer_text)
        pipeline = self.pipeline
        if pipeline is None:
            raise WhepError(503, "WebRTC output is not running")
        with self._lock:
            if len(self._sessions) >= self.max_viewers:
                self.refused += 1
                raise WhepError(503, f"all {self.max_viewers} WebRTC viewer slots are taken (webrtc.max_viewers); "
                                     "try again later or use the MJPEG stream")
            sid = secrets.token_urlsafe(12)
            session = self._add_viewer(pipeline, self._payloader(pipeline, offer.pt), sid, peer, offer)
            self._sessions[sid] = session
            first = len(self._sessions) == 1
        self.sessions_total += 1
        if first and self._feed is not None:
            self.hub.subscribe(self._feed)
        else:
            self.hub.request_keyframe()
        try:
            answer = self._negotiate(session, offer.msg)
            session.answered = time.monotonic()
            return sid, answer
        except WhepError as e:
            closed_meanwhile = session.closing or sid not in self._session_ids()
            self.close(sid)
            if closed_meanwhile and e.status != 503:
                # Not the offer's fault: the output stopped or restarted under it (a valid offer never gets 400).
                raise WhepError(503, "the WebRTC output restarted while answering; try again") from None
            raise
        except Exception as e:  # noqa: BLE001 - a GStreamer failure becomes a clear 500, the session is undone
            self.close(sid)
            raise WhepError(500, f"WebRTC negotiation failed: {e}") from None

    def _payloader(self, pipeline: Gst.Pipeline, pt: int) -> _Payloader:
        pay = self._payloaders.get(pt)
        if pay is None:
            elements = [Gst.parse_launch(d.strip()) for d in PAYLOADER.format(pt=pt).split("!")]
            for el in elements:
                pipeline.add(el)
            for a, b in zip(elements, elements[1:], strict=False):
                a.link(b)
            for el in reversed(elements):
                el.sync_state_with_parent()
            assert self._au_tee is not None  # set in start()
            au_pad = self._au_tee.request_pad_simple("src_%u")
            au_pad.link(elements[0].get_static_pad("sink"))
            pay = self._payloaders[pt] = _Payloader(pt, elements, au_pad)
            log.info("WebRTC: payloader for payload type %d", pt)
        pay.users += 1
        return pay

    def _add_viewer(self, pipeline: Gst.Pipeline, pay: _Payloader, sid: str, peer: str, offer: Offer) -> _Session:
        queue = Gst.ElementFactory.make("queue", f"q_{sid}")
        queue.set_property("leaky", 2)  # downstream: a slow viewer loses packets, never holds the others
        queue.set_property("max-size-buffers", 0)
        queue.set_property("max-size-bytes", 0)
        queue.set_property("max-size-time", 500 * Gst.MSECOND)
        webrtc = Gst.ElementFactory.make("webrtcbin", f"w_{sid}")
        if webrtc is None:
            raise WhepError(500, "webrtcbin is missing: install gstreamer1.0-plugins-bad and gstreamer1.0-nice")
        webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        webrtc.set_property("latency", 0)
        agent = _ice_agent(webrtc)
        for addr in self.addresses:
            agent.emit("add-local-ip-address", addr)
        pipeline.add(queue)
        pipeline.add(webrtc)
        sink = webrtc.request_pad_simple("sink_%u")
        trans = sink.get_property("transceiver")
        trans.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        # Answer with the offer's own H.264 format (its payload type). The profile and level are the stream's
        # own, set once its caps are known (_negotiate): pinning the offer's level here (3.1 from Chromium)
        # refused a 1080p stream (level 4) at the sink and broke the shared payloader for every later viewer.
        trans.set_property("codec-preferences", Gst.Caps.from_string(_codec_caps(pay.pt)))
        queue.get_static_pad("src").link(sink)
        webrtc.sync_state_with_parent()
        queue.sync_state_with_parent()
        tee_pad = pay.tee.request_pad_simple("src_%u")
        tee_pad.link(queue.get_static_pad("sink"))
        session = _Session(sid, peer, pay.pt, queue, webrtc, tee_pad, offer.profile, offer.asymmetry)
        webrtc.connect("notify::connection-state", self._on_state, session)
        # webrtcbin (1.22) has no ICE consent checks: a browser that closes the page never moves it out of
        # "connected". Its RTCP does stop, though: an RTCP BYE, or no RTCP for VIEWER_SILENT_S, ends it.
        rtpbin = webrtc.get_by_name("rtpbin")
        rtpbin.connect("on-bye-ssrc", lambda *_: self._close_later(sid, "the viewer left (RTCP BYE)"))
        rtpbin.connect("on-timeout", lambda *_: self._close_later(sid, "the viewer's RTCP stopped"))
        return session

    def _negotiate(self, s: _Session, msg: GstSdp.SDPMessage) -> str:
        sink = s.webrtc.get_static_pad("sink_0")
        deadline = time.monotonic() + CAPS_WAIT_S
        while sink.get_current_caps() is None:  # create-answer needs the caps (see module docstring)
            if time.monotonic() > deadline:
                raise WhepError(503, "no H.264 frames to send yet (encoder not producing); try again")
            time.sleep(0.01)
        stream = sink.get_current_caps().get_structure(0)
        level = stream.get_string("profile-level-id")
        if level:
            # RFC 6184: with level-asymmetry-allowed=1 (every browser offers it) the answer may carry the level
            # the sender really sends, whatever level the offer named for the other direction.
            s.webrtc.get_static_pad("sink_0").get_property("transceiver").set_property(
                "codec-preferences", Gst.Caps.from_string(_codec_caps(s.pt, level)))
            if int(level[4:6], 16) > int(s.offer_level[4:6], 16) and not s.asymmetry:
                log.warning("WebRTC viewer %s: the offer allows H.264 level %s only (no level-asymmetry-allowed); "
                            "sending the stream's level %s anyway", s.id, s.offer_level[4:], level[4:])
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg)
        _call(s.webrtc, "set-remote-description", offer, "the offer was not accepted", 400)
        reply = _call(s.webrtc, "create-answer", None, "no answer could be made for this offer", 500)
        answer = reply.get_value("answer") if reply is not None and reply.has_field("answer") else None
        if answer is None:
            raise WhepError(406, f"no answer could be made for this offer; supported: {SUPPORTED}")
        gathered = threading.Event()

        def on_gathering(webrtc: Gst.Element, _pspec: object) -> None:
            if webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
                gathered.set()

        handler = s.webrtc.connect("notify::ice-gathering-state", on_gathering)
        _call(s.webrtc, "set-local-description", answer, "the answer could not be applied", 500)
        if s.webrtc.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            gathered.wait(GATHER_WAIT_S)
        s.webrtc.disconnect(handler)
        rtcp_in = s.webrtc.get_by_name("rtpbin").get_static_pad("recv_rtcp_sink_0")
        if rtcp_in is not None:
            rtcp_in.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, _note_rtcp, s)
        text = s.webrtc.get_property("local-description").sdp.as_text()
        if "H264/90000" not in text or "a=inactive" in text:
            raise WhepError(406, f"no H.264 format in common with the offer; supported: {SUPPORTED}")
        log.info("WebRTC viewer %s from %s: answered (H.264 payload type %d)", s.id, s.peer, s.pt)
        return text

    def _on_state(self, webrtc: Gst.Element, _pspec: object, s: _Session) -> None:
        state = webrtc.get_property("connection-state")
        s.state = state.value_nick
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and s.connected is None:
            s.connected = time.monotonic()
            log.info("WebRTC viewer %s connected after %.2f s", s.id, s.connected - s.created)
        elif state in (GstWebRTC.WebRTCPeerConnectionState.FAILED, GstWebRTC.WebRTCPeerConnectionState.CLOSED):
            self._close_later(s.id, s.state)

    def _reap(self) -> bool:
        now = time.monotonic()
        for s in self._session_list():
            if s.connected is None and s.answered is not None and now - s.answered > self.connect_timeout:
                self._close_later(s.id, f"not connected within {self.connect_timeout:g} s")
            elif s.connected is not None and now - max(s.last_rtcp or 0, s.connected) > VIEWER_SILENT_S:
                self._close_later(s.id, f"no RTCP from the viewer for {VIEWER_SILENT_S:g} s (it left)")
            elif s.connected is not None and s.webrtc.get_property("ice-connection-state") in (
                GstWebRTC.WebRTCICEConnectionState.FAILED, GstWebRTC.WebRTCICEConnectionState.DISCONNECTED,
            ):
                self._close_later(s.id, "ICE connection lost")
        return True

    def _close_later(self, sid: str, why: str) -> None:
        with self._lock:
            s = self._sessions.get(sid)
            if s is None or s.closing:
                return
            s.closing = True
        log.info("WebRTC viewer %s: closing (%s)", sid, why)
        threading.Thread(target=self.close, args=(sid,), name="whep-close", daemon=True).start()

    def close(self, sid: str) -> bool:
        """End a session; False when there is no such session. The bookkeeping is done under the lock, the
        (up to a second long) unlinking outside it, so other sessions come and go meanwhile."""
        with self._lock:
            s = self._sessions.pop(sid, None)
            if s is None:
                return False
            last = not self._sessions
            left = len(self._sessions)
            pay = self._payloaders[s.pt]
            pay.users -= 1
            drop_payloader = pay.users == 0
            if drop_payloader:
                del self._payloaders[s.pt]
        _detach(self.pipeline, pay.tee, s.tee_pad, [s.webrtc, s.queue])
        if drop_payloader:
            _detach(self.pipeline, self._au_tee, pay.au_pad, pay.elements)
        if last and self._feed is not None:
            self.hub.unsubscribe(self._feed)
        log.info("WebRTC viewer %s: closed (%d left)", sid, left)
        return True

    @property
    def frames_sent(self) -> int:
        """Access units handed to the WebRTC pipeline (payloaded once for every viewer)."""
        return self._feed.frames if self._feed is not None else 0

    @property
    def bytes_sent(self) -> int:
        return self._feed.bytes if self._feed is not None else 0

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        sessions = self._session_list()
        with self._lock:
            payloaders = sorted(self._payloaders)
        return {
            "clients": len(sessions), "max_viewers": self.max_viewers,
            "sessions_total": self.sessions_total, "refused": self.refused, "restarts": self.restarts,
            "payloaders": payloaders,
            "sessions": [{"id": s.id[:6] + "…", "peer": s.peer, "state": s.state,
                          "age_s": round(now - s.created, 1)} for s in sessions],
        }


def _detach(pipeline: Gst.Pipeline | None, tee: Gst.Element | None, tee_pad: Gst.Pad,
            elements: list[Gst.Element]) -> None:
    """Unlink a branch from a running tee (when the pad is idle), then stop and remove its elements."""
    if tee is not None:
        done = threading.Event()
        peer = tee_pad.get_peer()

        def unlink(pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
            if peer is not None:
                pad.unlink(peer)
            done.set()
            return Gst.PadProbeReturn.REMOVE

        tee_pad.add_probe(Gst.PadProbeType.IDLE, unlink)
        done.wait(1.0)
        tee.release_request_pad(tee_pad)
    for el in elements:
        el.set_state(Gst.State.NULL)
        if pipeline is not None:
            pipeline.remove(el)


def _ice_agent(webrtc: Gst.Element) -> GObject.Object:
    """webrtcbin's ICE agent, safe to drop afterwards.

    The agent is a GstObject webrtcbin never sinks: the first Python wrapper made for it sinks the floating
    reference and releases it when collected, freeing the agent under webrtcbin (a crash later). Taking the
    reference back once, in C, leaves webrtcbin as its owner again."""
    agent = webrtc.get_property("ice-agent")
    if agent.__grefcount__ == 1:
        _g_object_ref(_capsule_pointer(agent.__gpointer__, None))
    return agent


def _codec_caps(pt: int, profile_level_id: str | None = None) -> str:
    caps = (f"application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt},"
            "packetization-mode=(string)1")
    if profile_level_id:
        caps += f",profile-level-id=(string){profile_level_id},level-asymmetry-allowed=(string)1"
    return caps


def _note_rtcp(_pad: Gst.Pad, _info: Gst.PadProbeInfo, s: _Session) -> Gst.PadProbeReturn:
    s.last_rtcp = time.monotonic()
    return Gst.PadProbeReturn.OK


def _call(webrtc: Gst.Element, signal: str, arg: object, what: str, status: int) -> Gst.Structure | None:
    """Emit a webrtcbin action signal that answers through a promise; its reply, or WhepError(status, what):
    400 only where the offer itself was refused, 500 for our side."""
    promise = Gst.Promise.new()
    webrtc.emit(signal, arg, promise)
    promise.wait()
    reply = promise.get_reply()
    if reply is not None and reply.has_field("error"):
        err = reply.get_value("error")
        raise WhepError(status, f"{what}: {getattr(err, 'message', err)}")
    return reply


def status_entry(output: WebRtcOutput | None) -> dict[str, Any]:
    """WebRTC's entry in /api/status (`output` None: disabled)."""
    if output is None:
        return output_entry(False)
    extra = output.stats()
    return output_entry(True, extra.pop("clients", 0), output.rate.fps, output.frames_sent, 0, output.bytes_sent,
                        endpoint="/whep/high", **extra)
