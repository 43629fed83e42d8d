"""The replay ring and clip store on their own: the ring keeps whole key-frame intervals covering the asked
seconds and no more, a cut starts on a key frame, clip times always increase (even across an encoder restart),
and retention removes the oldest clips by count and by bytes but never the newest."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from cuecast.core.gst import Gst
from cuecast.streaming.outputs.replay.branch import AccessUnit, Clip, ClipStore, ReplayRing, clip_times

CAPS = Gst.Caps.from_string("video/x-h264,stream-format=byte-stream,alignment=au,width=64,height=36")
FRAME = Gst.SECOND // 30


def feed(ring: ReplayRing, frames: int, gop: int = 30, size: int = 1000) -> None:
    """`frames` access units at 30 fps (their arrival times spread as a live encoder's would be)."""
    t0 = time.monotonic()
    for i in range(frames):
        buf = Gst.Buffer.new_wrapped(bytes(size))
        buf.pts, buf.duration = i * FRAME, FRAME
        if i % gop:
            buf.mini_object.flags |= int(Gst.BufferFlags.DELTA_UNIT)
        ring.push(buf, CAPS, now=t0 + i / 30)


def test_ring_keeps_whole_intervals_covering_the_seconds() -> None:
    ring = ReplayRing(seconds=5)
    feed(ring, 30 * 20)
    assert 5.0 <= ring.held_s < 6.0  # at most one key-frame interval more than asked
    assert ring._aus[0].key
    assert ring.held_bytes == 1000 * len(ring._aus) <= 1000 * 30 * 6


def test_cut_starts_on_the_key_frame_at_or_before_the_start() -> None:
    ring = ReplayRing(seconds=10)
    feed(ring, 30 * 10, gop=30)
    newest = ring._aus[-1].mono
    aus, caps = ring.cut(newest - 2.5)
    assert caps is not None and aus[0].key
    assert 2.5 <= aus[-1].mono - aus[0].mono <= 3.5
    later = ring.since(aus[50].seq)
    assert later[0].seq == aus[51].seq and later[-1] is ring._aus[-1]


def test_clip_times_increase_across_an_encoder_restart() -> None:
    aus = [AccessUnit(i, b"", pts, FRAME, i == 0, 0.0, i / 30) for i, pts in
           enumerate([0, FRAME, 2 * FRAME, 5, 5 + FRAME, 5 + FRAME, 90 * Gst.SECOND])]
    t = clip_times(aus)
    assert t[:3] == [0, FRAME, 2 * FRAME]
    assert all(b > a for a, b in zip(t, t[1:], strict=False))
    assert all(b - a < Gst.SECOND for a, b in zip(t, t[1:], strict=False))


def make(store: ClipStore, i: int, size: int) -> Clip:
    clip = Clip(id=f"20260101-0000{i:02d}-aaaaaa", label="", start="", duration=1.0, bytes=size,
                created=f"2026-01-01T00:00:{i:02d}")
    (store.dir / f"{clip.id}.mp4").write_bytes(bytes(size))
    store.add(clip)
    return clip


def test_retention_by_count_and_bytes_never_the_newest(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, max_clips=3, max_bytes=10_000)
    store.load()
    clips = [make(store, i, 3000) for i in range(4)]
    assert [c.id for c in store.newest_first()] == [c.id for c in clips[:0:-1]]  # count: 3
    make(store, 4, 5000)  # bytes: 5000 + 3000 = 8000 <= 10000 < 11000
    assert len(store.clips) == 2
    big = make(store, 5, 50_000)  # bigger than max_bytes alone: still kept, everything else goes
    assert list(store.clips) == [big.id]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{big.id}.json", f"{big.id}.mp4"]


def test_load_rebuilds_the_list_and_drops_leftovers(tmp_path: Path) -> None:
    store = ClipStore(tmp_path, 10, 10**9)
    store.load()
    kept = make(store, 1, 100)
    (tmp_path / ".tmp-x.mp4").write_bytes(b"half")
    (tmp_path / "other.json").write_text("{}")
    (tmp_path / "20260101-000002-bbbbbb.json").write_text(json.dumps({**asdict(kept), "id": "20260101-000002-bbbbbb"}))
    again = ClipStore(tmp_path, 10, 10**9)
    again.load()
    assert list(again.clips) == [kept.id]  # no .mp4 for the second description, and the rest is not a clip
    assert not (tmp_path / ".tmp-x.mp4").exists()


def feed_numbered(ring: ReplayRing, frames: int, gop: int = 30, first_seq: int = 100) -> None:
    """Access units that carry their frame's identity (seq in offset, capture wall ns in offset_end)."""
    t0 = time.monotonic()
    for i in range(frames):
        buf = Gst.Buffer.new_wrapped(bytes(100))
        buf.pts, buf.duration = i * FRAME, FRAME
        buf.offset, buf.offset_end = first_seq + i, 1_000 * Gst.SECOND + i * FRAME
        if i % gop:
            buf.mini_object.flags |= int(Gst.BufferFlags.DELTA_UNIT)
        ring.push(buf, CAPS, now=t0 + i / 30)


def test_a_frame_exact_cut_decodes_from_the_key_frame_and_shows_from_the_asked_frame() -> None:
    ring = ReplayRing(seconds=10)
    feed_numbered(ring, 90)  # key frames at seq 100, 130, 160
    au = ring.frame(145)
    assert au is not None and au.frame_seq == 145 and au.capture_wall_ns is not None
    assert au.capture_wall_ns == 1_000 * Gst.SECOND + 45 * FRAME
    aus, _caps, shown_from = ring.cut_at(au.capture_wall_ns)
    assert aus[0].frame_seq == 130 and aus[0].key  # decoding starts on the key frame before
    assert aus[shown_from].frame_seq == 145  # the first frame shown is the asked one
    aus, _caps, shown_from = ring.cut_at(au.capture_wall_ns - 1)  # between frames: the next one
    assert aus[shown_from].frame_seq == 145
    assert ring.frame(99) is None and ring.frame(190) is None  # before the ring, not yet
    assert ring.frame_range() == (100, 189)


def test_frames_without_identity_are_kept_but_never_asked_for() -> None:
    ring = ReplayRing(seconds=10)
    feed(ring, 60)  # placeholder frames: offset NONE
    assert ring.frame_range() is None and ring.ends() is None
    assert all(a.frame == {"seq": None, "capture_time": None} for a in ring._aus)
