"""Frame-exact MP4 starts: a clip must begin on a key frame, but its first *shown* frame is the asked one.

Owns reading the few boxes of a (fast-start, single-track) MP4 that mp4mux writes, and rewriting its edit list
in place so presentation starts at a given sample: the player decodes from the key frame and shows from the
edit's media time (ISO/IEC 14496-12, 8.6.6). Only fixed-size fields change (the edit list mp4mux writes has one
entry; the movie and track durations), so no box moves and the chunk offsets stay right. ffmpeg (and with it
Chromium and ffplay) and VLC honour the edit list.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_CONTAINERS = {b"moov", b"trak", b"edts", b"mdia", b"minf", b"stbl"}


class Mp4Error(Exception):
    """The file is not the MP4 layout mp4mux writes (one video track, one edit)."""


@dataclass
class _Box:
    kind: bytes
    start: int  # offset of the box's header
    body: int  # offset of its content
    end: int


def _boxes(data: bytes | bytearray, start: int, end: int) -> list[_Box]:
    out = []
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, off)
        body = off + 8
        if size == 1:
            size = struct.unpack_from(">Q", data, off + 8)[0]
            body = off + 16
        elif size == 0:
            size = end - off
        if size < 8 or off + size > end:
            raise Mp4Error(f"box {kind!r} at {off} runs past its parent")
        out.append(_Box(kind, off, body, off + size))
        off += size
    return out


def _find(data: bytes | bytearray, parent: _Box, path: list[bytes]) -> _Box:
    box = parent
    for kind in path:
        found = [b for b in _boxes(data, box.body, box.end) if b.kind == kind]
        if not found:
            raise Mp4Error(f"no {kind.decode()} box")
        box = found[0]
    return box


def _durations(data: bytes | bytearray, stbl: _Box) -> tuple[list[int], list[int]]:
    """Per sample (decode order): its duration and its composition offset, in media time units."""
    stts = _find(data, stbl, [b"stts"])
    (count,) = struct.unpack_from(">I", data, stts.body + 4)
    deltas: list[int] = []
    for i in range(count):
        n, delta = struct.unpack_from(">II", data, stts.body + 8 + 8 * i)
        deltas += [delta] * n
    offsets = [0] * len(deltas)
    ctts = [b for b in _boxes(data, stbl.body, stbl.end) if b.kind == b"ctts"]
    if ctts:
        version = data[ctts[0].body]
        (count,) = struct.unpack_from(">I", data, ctts[0].body + 4)
        k = 0
        for i in range(count):
            n, off = struct.unpack_from(">Ii" if version else ">II", data, ctts[0].body + 8 + 8 * i)
            for _ in range(n):
                if k < len(offsets):
                    offsets[k] = off
                k += 1
    return deltas, offsets


def _set_duration(data: bytearray, box: _Box, offset_v0: int, offset_v1: int, value: int) -> None:
    """Write the duration field of an mvhd or tkhd (version 0: 32 bits, 1: 64 bits)."""
    if data[box.body]:
        struct.pack_into(">Q", data, box.body + offset_v1, value)
    else:
        struct.pack_into(">I", data, box.body + offset_v0, min(value, 0xFFFFFFFF))


def start_at(path: Path, sample: int) -> float:
    """Rewrite the edit list of `path` so that presentation starts at `sample` (decode-order index; the samples
    before it are decoded, not shown). Returns the time in seconds of the part cut off the front."""
    data = bytearray(path.read_bytes()[:_moov_end(path)])
    moov = next((b for b in _boxes(data, 0, len(data)) if b.kind == b"moov"), None)
    if moov is None:
        raise Mp4Error("no moov box before the media (not a fast-start MP4)")
    traks = [b for b in _boxes(data, moov.body, moov.end) if b.kind == b"trak"]
    if len(traks) != 1:
        raise Mp4Error(f"{len(traks)} tracks, one expected")
    trak = traks[0]
    mvhd = _find(data, moov, [b"mvhd"])
    tkhd = _find(data, trak, [b"tkhd"])
    elst = _find(data, trak, [b"edts", b"elst"])
    mdhd = _find(data, trak, [b"mdia", b"mdhd"])
    stbl = _find(data, trak, [b"mdia", b"minf", b"stbl"])
    movie_scale = struct.unpack_from(">I", data, mvhd.body + (20 if data[mvhd.body] else 12))[0]
    media_scale = struct.unpack_from(">I", data, mdhd.body + (20 if data[mdhd.body] else 12))[0]
    deltas, offsets = _durations(data, stbl)
    if not 0 <= sample < len(deltas):
        raise Mp4Error(f"sample {sample} of {len(deltas)}")
    first_shown = min(sum(deltas[:i]) + offsets[i] for i in range(len(deltas)))
    media_time = sum(deltas[:sample]) + offsets[sample]
    media_end = max(sum(deltas[:i]) + offsets[i] + deltas[i] for i in range(len(deltas)))
    shown = (media_end - media_time) * movie_scale // media_scale
    version = data[elst.body]
    (entries,) = struct.unpack_from(">I", data, elst.body + 4)
    if entries != 1:
        raise Mp4Error(f"an edit list of {entries} entries, one expected")
    if version:
        struct.pack_into(">Qq", data, elst.body + 8, shown, media_time)
    else:
        struct.pack_into(">Ii", data, elst.body + 8, shown, media_time)
    _set_duration(data, mvhd, 16, 24, shown)
    _set_duration(data, tkhd, 20, 28, shown)
    with path.open("r+b") as f:
        f.write(data)
    return (media_time - first_shown) / media_scale


def _moov_end(path: Path) -> int:
    """The end of the moov box (everything start_at reads and rewrites lies before it)."""
    with path.open("rb") as f:
        off = 0
        while True:
            head = f.read(16)
            if len(head) < 8:
                raise Mp4Error("no moov box")
            size, kind = struct.unpack_from(">I4s", head)
            if size == 1:
                size = struct.unpack_from(">Q", head, 8)[0]
            if size < 8:
                raise Mp4Error(f"box {kind!r} of size {size}")
            off += size
            if kind == b"moov":
                return off
            f.seek(off)
