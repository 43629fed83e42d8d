"""Instant replay: the last seconds of the encoded H.264 kept in memory, cut into MP4 clips on request.

Owns the ring (a subscriber of the one H.264 hub: with replay on, the encoder runs all the time; the ring keeps
whole key-frame intervals, so a clip can start on a key frame and memory stays within seconds x bitrate plus
one interval; each access unit keeps its frame's identity, the capture process's `seq` and capture wall time),
writing a clip (the access units from the key frame at or before the requested start, remuxed by h264parse !
mp4mux faststart=true: no re-encode; a frame-exact clip then starts presentation at the asked frame with an
edit list, mp4.py, and lists every shown frame's identity), and the clip store on disk (a temporary name
renamed into place, so a half-written file is never listed; a JSON side file per clip; retention by count and
bytes, oldest first; rebuilt from the directory at start). Errors a person can fix are ReplayError with an
HTTP status: 503 for an unwritable directory or no frames yet, 507 for a full disk, 410 for frames no longer
kept.

Threads: `push` runs in the encoder's streaming thread (a copy of each access unit into the ring, under a
lock); `take` and `extend` are quick (a list of references); `write` blocks and runs in the caller's thread
(an API worker), one at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cuecast.core.gst import Gst, pending_error
from cuecast.streaming.outputs.replay.mp4 import Mp4Error, start_at

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 20.0


class ReplayError(Exception):
    """A clip that cannot be made; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AccessUnit:
    seq: int
    data: bytes
    pts: int  # ns, the encoder's
    duration: int
    key: bool
    wall: float  # time.time() when it arrived
    mono: float
    frame_seq: int | None = None  # the capture process's frame number (the backend's seq); None: placeholder
    capture_wall_ns: int | None = None  # the frame's capture wall time (the backend's trailer)

    @property
    def frame(self) -> dict[str, Any]:
        """The frame's identity as a clip lists it."""
        t = None if self.capture_wall_ns is None else round(self.capture_wall_ns / 1e9, 6)
        return {"seq": self.frame_seq, "capture_time": t}


@dataclass
class Clip:
    id: str
    label: str
    start: str  # ISO wall-clock time of its first frame
    duration: float  # seconds
    bytes: int
    created: str
    width: int = 0
    height: int = 0
    event: str | None = None  # the event it was made for
    frames: list[dict[str, Any]] = field(default_factory=list)  # every shown frame: seq, capture_time, t

    @property
    def url(self) -> str:
        return f"/api/clips/{self.id}.mp4"

    def public(self, frames: bool = True) -> dict[str, Any]:
        out = {**asdict(self), "url": self.url, "frame_count": len(self.frames)}
        if not frames:
            del out["frames"]
        return out


@dataclass
class Take:
    """The access units of a clip being made (they stay referenced here even if the ring lets them go)."""

    aus: list[AccessUnit]
    caps: Gst.Caps
    shown_from: int = 0  # the first access unit shown (a frame-exact start); those before only lead up to it
    until_ns: int | None = None  # a frame-exact end: the last frame captured at or before this wall time


class ReplayRing:
    """An H.264 hub subscriber keeping the last `seconds` (whole key-frame intervals)."""

    name = "replay"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.waiting_for_key = True
        self._aus: deque[AccessUnit] = deque()
        self._lock = threading.Lock()
        self._bytes = 0
        self._seq = 0
        self.caps: Gst.Caps | None = None

    def push(self, buf: Gst.Buffer, caps: Gst.Caps, now: float | None = None) -> bool:
        """Keep a copy of one access unit (`now`: its monotonic arrival time, default the present)."""
        duration = buf.duration if buf.duration != Gst.CLOCK_TIME_NONE else Gst.SECOND // 30
        self._seq += 1
        mono = time.monotonic() if now is None else now
        known = buf.offset != Gst.BUFFER_OFFSET_NONE
        au = AccessUnit(self._seq, buf.extract_dup(0, buf.get_size()), buf.pts, duration,
                        not buf.has_flags(Gst.BufferFlags.DELTA_UNIT), time.time() - (time.monotonic() - mono), mono,
                        buf.offset if known else None, buf.offset_end if known else None)
        with self._lock:
            if self.caps is None or not self.caps.is_equal(caps):
                self.caps = caps
            self._aus.append(au)
            self._bytes += len(au.data)
            # Drop whole key-frame intervals from the front while the rest still covers `seconds`.
            while True:
                nxt = next((i for i, a in enumerate(self._aus) if i and a.key), None)
                if nxt is None or au.mono - self._aus[nxt].mono < self.seconds:
                    break
                for _ in range(nxt):
                    self._bytes -= len(self._aus.popleft().data)
        return True

    @property
    def held_s(self) -> float:
        with self._lock:
            return self._aus[-1].mono - self._aus[0].mono if len(self._aus) > 1 else 0.0

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def cut(self, since_mono: float) -> tuple[list[AccessUnit], Gst.Caps | None]:
        """The access units from the key frame at or before `since_mono` (the oldest kept if none is) to now."""
        with self._lock:
            aus = list(self._aus)
            caps = self.caps
        start = 0
        for i, a in enumerate(aus):
            if a.key and a.mono <= since_mono:
                start = i
        while start < len(aus) and not aus[start].key:
            start += 1
        return aus[start:], caps

    def cut_at(self, start_ns: int) -> tuple[list[AccessUnit], Gst.Caps | None, int]:
        """(the access units from the key frame at or before the first frame captured at or after `start_ns`
        (wall ns) to now, caps, the index of that first frame). The oldest kept frame if all are later."""
        with self._lock:
            aus = list(self._aus)
            caps = self.caps
        first = next((i for i, a in enumerate(aus) if a.capture_wall_ns is not None
                      and a.capture_wall_ns >= start_ns), len(aus))
        key = next((i for i in range(min(first, len(aus) - 1), -1, -1) if aus[i].key), None)
        if key is None:  # the ring begins on a key frame; nothing before it can be shown
            key = next((i for i, a in enumerate(aus) if a.key), len(aus))
            first = max(first, key)
        return aus[key:], caps, first - key

    def ends(self) -> tuple[AccessUnit, AccessUnit] | None:
        """The oldest and the newest kept access unit that belong to a camera frame (they carry its identity)."""
        with self._lock:
            oldest = next((a for a in self._aus if a.frame_seq is not None), None)
            newest = next((a for a in reversed(self._aus) if a.frame_seq is not None), None)
        return (oldest, newest) if oldest is not None and newest is not None else None

    def frame(self, seq: int) -> AccessUnit | None:
        """The kept access unit of frame `seq` (the capture process's number), or of the first encoded frame
        after it (the H.264 rate can be below the camera's); None if it is not kept (too old, or not yet)."""
        ends = self.frame_range()
        if ends is None or not ends[0] <= seq <= ends[1]:
            return None
        with self._lock:
            return next(a for a in self._aus if a.frame_seq is not None and a.frame_seq >= seq)

    def frame_range(self) -> tuple[int, int] | None:
        """(oldest, newest) frame number kept."""
        ends = self.ends()
        return None if ends is None else (ends[0].frame_seq or 0, ends[1].frame_seq or 0)

    def since(self, seq: int) -> list[AccessUnit]:
        """The access units after number `seq` (the rest of a clip that keeps recording)."""
        with self._lock:
            return [a for a in self._aus if a.seq > seq]


class ClipStore:
    """The clips on disk: <id>.mp4 and <id>.json in one directory."""

    def __init__(self, directory: Path, max_clips: int, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_clips = max_clips
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.clips: dict[str, Clip] = {}
        self.written = 0
        self.bytes_written = 0
        self.failures = 0
        self.last_error: str | None = None

    def load(self) -> None:
        """Rebuild the list from the directory; leftovers of an interrupted write are removed."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.last_error = f"replay.dir {self.dir}: {e.strerror}"
            log.warning("%s: clips cannot be kept until it is fixed", self.last_error)
            return
        for p in self.dir.glob(".tmp-*"):
            p.unlink(missing_ok=True)
        for meta in self.dir.glob("*.json"):
            try:
                clip = Clip(**json.loads(meta.read_text()))
            except (OSError, ValueError, TypeError):
                log.warning("replay: %s is not a clip description; left alone", meta)
                continue
            if (self.dir / f"{clip.id}.mp4").is_file():
                self.clips[clip.id] = clip
        if self.clips:
            log.info("replay: %d clips in %s", len(self.clips), self.dir)

    def newest_first(self) -> list[Clip]:
        with self._lock:
            return sorted(self.clips.values(), key=lambda c: c.created, reverse=True)

    def get(self, clip_id: str) -> Clip | None:
        return self.clips.get(clip_id)

    def path(self, clip: Clip) -> Path:
        return self.dir / f"{clip.id}.mp4"

    def delete(self, clip_id: str) -> bool:
        with self._lock:
            clip = self.clips.pop(clip_id, None)
        if clip is None:
            return False
        for suffix in (".mp4", ".json"):
            (self.dir / f"{clip_id}{suffix}").unlink(missing_ok=True)
        return True

    def add(self, clip: Clip) -> None:
        meta, tmp = self.dir / f"{clip.id}.json", self.dir / f".tmp-{clip.id}.json"
        tmp.write_text(json.dumps(asdict(clip)))
        tmp.replace(meta)
        with self._lock:
            self.clips[clip.id] = clip
            self.written += 1
            self.bytes_written += clip.bytes
        self._retain()

    def _retain(self) -> None:
        """Oldest first beyond max_clips or max_bytes."""
        clips = self.newest_first()
        total = 0
        for i, c in enumerate(clips):
            total += c.bytes
            if i and (i >= self.max_clips or total > self.max_bytes):  # the newest always stays
                if self.delete(c.id):
                    log.info("replay: clip %s removed (replay.max_clips / max_bytes)", c.id)

    def check_writable(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ReplayError(503, f"replay.dir {self.dir} cannot be created: {e.strerror}") from None
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise ReplayError(503, f"replay.dir {self.dir} is not writable by this user: fix its permissions or "
                                   "choose another replay.dir")


class Replay:
    """The replay output: the ring, the clip store, and making clips."""

    def __init__(self, seconds: float, directory: Path, max_clips: int, max_bytes: int) -> None:
        self.ring = ReplayRing(seconds)
        self.store = ClipStore(directory, max_clips, max_bytes)
        self._write_lock = threading.Lock()
        self.mux_turn = asyncio.Lock()  # clips wait for the muxer here, in the event loop, not in a worker thread
        self.pending = 0  # clips being made (waiting for their end, or for the muxer)

    def start(self, hub: Any) -> None:
        self.store.load()
        hub.subscribe(self.ring)
        log.info("replay: keeping the last %g s of H.264 in memory; clips in %s", self.ring.seconds, self.store.dir)

    def stop(self, hub: Any) -> None:
        hub.unsubscribe(self.ring)

    def take(self, seconds: float) -> Take:
        """The last `seconds` (from the key frame at or before their start) up to now; more can follow."""
        self.store.check_writable()
        aus, caps = self.ring.cut(time.monotonic() - min(seconds, self.ring.seconds))
        if not aus or caps is None:
            raise ReplayError(503, "no H.264 frames kept yet: replay has just started; try again in a few seconds")
        return Take(aus, caps)

    def take_from(self, start_ns: int, until_ns: int | None = None) -> Take:
        """Frame-exact: from the first frame captured at or after `start_ns` (wall ns; decoding starts on the
        key frame before it) up to now, later cut at `until_ns` (the last frame captured at or before it)."""
        self.store.check_writable()
        ends = self.ring.ends()
        aus, caps, shown_from = self.ring.cut_at(start_ns)
        if ends is None or caps is None or shown_from >= len(aus):
            raise ReplayError(503, "no H.264 frames kept yet: replay has just started; try again in a few seconds")
        if until_ns is not None and until_ns < (ends[0].capture_wall_ns or 0):
            raise ReplayError(410, f"the asked frames are no longer kept: replay keeps the last "
                                   f"{self.ring.seconds:g} s (replay.seconds)")
        return Take(aus, caps, shown_from, until_ns)

    def extend(self, take: Take) -> None:
        """Add what arrived since `take` was cut (a clip that kept recording)."""
        take.aus += self.ring.since(take.aus[-1].seq)

    def covered(self, until_ns: int) -> bool:
        """Has a frame captured after `until_ns` (wall ns) been encoded (so a clip ending there is complete)?"""
        ends = self.ring.ends()
        return ends is not None and (ends[1].capture_wall_ns or 0) > until_ns

    @staticmethod
    def new_id() -> str:
        return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)

    def write(self, take: Take, label: str = "", clip_id: str | None = None, event: str | None = None) -> Clip:
        """Write a take as an MP4 clip; blocks until the file is complete and listed."""
        aus, caps = take.aus, take.caps
        if take.until_ns is not None:  # drop what came after the asked end (frames with no identity stay)
            end = take.until_ns
            last = max((i for i, a in enumerate(aus) if a.capture_wall_ns is None or a.capture_wall_ns <= end),
                       default=take.shown_from)
            aus = aus[:max(last, take.shown_from) + 1]
        clip_id = clip_id or self.new_id()
        final, tmp = self.store.dir / f"{clip_id}.mp4", self.store.dir / f".tmp-{clip_id}.mp4"
        need = 2 * sum(len(a.data) for a in aus) + 2**20  # the mdat in a temporary file, then the MP4
        with self._write_lock:
            try:
                self._check_space(need)
                _remux(aus, caps, tmp, self.store.dir / f".tmp-{clip_id}.faststart")
                skipped = self._start_at(tmp, take.shown_from)
                tmp.replace(final)
            except ReplayError as e:
                tmp.unlink(missing_ok=True)
                if e.status != 507 and self._free() < need:  # the muxer's words for a full disk vary
                    e = _disk_error(self.store.dir, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
                self._failed(e)
                raise e from None
            except OSError as e:
                err = _disk_error(self.store.dir, e)
                self._failed(err)
                tmp.unlink(missing_ok=True)
                raise err from None
        s = caps.get_structure(0)
        stamps = clip_times(aus)
        s0 = take.shown_from if skipped is not None else 0
        shown = aus[s0:]
        first = shown[0]
        start = first.capture_wall_ns / 1e9 if first.capture_wall_ns is not None else first.wall
        clip = Clip(id=clip_id, label=label,
                    duration=round((stamps[-1] + aus[-1].duration) / Gst.SECOND - (skipped or 0.0), 3),
                    start=dt.datetime.fromtimestamp(start, dt.UTC).isoformat(timespec="milliseconds"),
                    bytes=final.stat().st_size, created=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                    width=s.get_int("width")[1], height=s.get_int("height")[1], event=event,
                    frames=[{**a.frame, "t": round((t - stamps[s0]) / Gst.SECOND, 6)}
                            for a, t in zip(shown, stamps[s0:], strict=True)])
        try:
            self.store.add(clip)
        except OSError as e:
            final.unlink(missing_ok=True)
            err = _disk_error(self.store.dir, e)
            self._failed(err)
            raise err from None
        self.store.last_error = None
        log.info("replay: clip %s (%s), %.1f s, %d bytes", clip.id, label or "no label", clip.duration, clip.bytes)
        return clip

    @staticmethod
    def _start_at(path: Path, shown_from: int) -> float | None:
        """Start presentation at access unit `shown_from` (seconds cut off the front); None if it could not be
        (the clip then shows from its key frame, and its frames list says so)."""
        if shown_from == 0:
            return 0.0
        try:
            return start_at(path, shown_from)
        except (Mp4Error, OSError) as e:
            log.warning("replay: clip starts on its key frame, not the asked frame: %s", e)
            return None

    def _free(self) -> int:
        try:
            st = os.statvfs(self.store.dir)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def _check_space(self, need: int) -> None:
        free = self._free()
        if free < need:
            raise ReplayError(507, f"no space left in replay.dir {self.store.dir}: the clip needs about "
                                   f"{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free; delete clips or lower "
                                   "replay.max_bytes")

    def _failed(self, e: ReplayError) -> None:
        self.store.failures += 1
        self.store.last_error = str(e)
        log.warning("replay: clip not written: %s", e)

    def stats(self) -> dict[str, Any]:
        st = self.store
        kept = self.ring.frame_range()
        return {"enabled": True, "seconds": self.ring.seconds, "seconds_held": round(self.ring.held_s, 1),
                "frames_held": list(kept) if kept else None,
                "bytes_held": self.ring.held_bytes, "clips": len(st.clips), "dir": str(st.dir),
                "clips_written": st.written, "bytes_written": st.bytes_written, "failures": st.failures,
                "last_error": st.last_error}


def _disk_error(directory: Path, e: OSError) -> ReplayError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ReplayError(507, f"no space left in replay.dir {directory}: delete clips or lower replay.max_bytes")
    if e.errno == errno.EROFS:
        return ReplayError(503, f"replay.dir {directory} is on a read-only file system (the systemd unit lets the "
                                "service write only under /var/lib/cuecast): choose a directory there")
    if e.errno in (errno.EACCES, errno.EPERM):
        return ReplayError(503, f"replay.dir {directory} is not writable: {e.strerror}")
    return ReplayError(503, f"replay.dir {directory}: {e.strerror}")


def _remux(aus: list[AccessUnit], caps: Gst.Caps, out: Path, faststart: Path) -> None:
    """H.264 access units -> MP4 (fast start), timestamps from the first unit, no re-encode."""
    p = Gst.parse_launch(
        'appsrc name=src format=time is-live=false block=true caps="video/x-h264,stream-format=byte-stream,'
        'alignment=au" ! h264parse ! mp4mux name=mux faststart=true ! filesink name=sink')
    p.get_by_name("src").set_property("caps", caps)
    p.get_by_name("mux").set_property("faststart-file", str(faststart))
    p.get_by_name("sink").set_property("location", str(out))
    src = p.get_by_name("src")
    try:
        if p.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise ReplayError(503, f"clip could not be written: {pending_error(p) or 'the muxer did not start'}")
        for a, pts in zip(aus, clip_times(aus), strict=True):
            buf = Gst.Buffer.new_wrapped(a.data)
            buf.pts = buf.dts = pts
            buf.duration = a.duration
            if not a.key:
                buf.mini_object.flags |= int(Gst.BufferFlags.DELTA_UNIT)
            src.emit("push-buffer", buf)
        src.emit("end-of-stream")
        msg = p.get_bus().timed_pop_filtered(int(WRITE_TIMEOUT_S * Gst.SECOND),
                                             Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if msg is None:
            raise ReplayError(503, "clip could not be written within 20 s")
        if msg.type == Gst.MessageType.ERROR:
            err, _dbg = msg.parse_error()
            if err.matches(Gst.ResourceError.quark(), Gst.ResourceError.NO_SPACE_LEFT):
                raise ReplayError(507, f"no space left in {out.parent}: delete clips or lower replay.max_bytes")
            raise ReplayError(503, f"clip could not be written to {out.parent}: {err.message}")
    finally:
        p.set_state(Gst.State.NULL)
        faststart.unlink(missing_ok=True)


def clip_times(aus: list[AccessUnit]) -> list[int]:
    """Each unit's time in the clip (ns from 0, strictly increasing): the encoder's steps, or the arrival times'
    where the encoder's clock jumped (the pipeline restarted with the source)."""
    out = [0]
    for prev, a in zip(aus, aus[1:], strict=False):
        step = a.pts - prev.pts
        if not 0 < step < Gst.SECOND:
            step = max(Gst.MSECOND, int((a.mono - prev.mono) * Gst.SECOND))
        out.append(out[-1] + step)
    return out
