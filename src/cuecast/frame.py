"""Per-frame metadata and its wire form in shared memory (no GStreamer, no numpy needed).

Each shared-memory buffer is the BGR image (height*width*3 bytes, tightly packed) followed by a
64-byte trailer. Raw-video readers that expect exactly the image size (gst-launch `shmsrc ! video/x-raw`)
ignore the tail; the consumer library reads it to learn the frame size from the producer and to get the
sequence number, capture time and source state with each frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"CUECAST1"
# magic, trailer size, width, height, channels, flags, seq, capture monotonic ns, capture wall ns
_LAYOUT = struct.Struct("<8sIIIIIQqq")
TRAILER_SIZE = 64
FLAG_PLACEHOLDER = 1  # the source is down; this is a "NO SIGNAL" frame

assert _LAYOUT.size <= TRAILER_SIZE


@dataclass(frozen=True)
class FrameInfo:
    """What a consumer knows about a frame besides its pixels."""

    seq: int  # producer's frame counter, +1 per frame entering the pipeline
    capture_ns: int  # CLOCK_MONOTONIC ns when the source produced the frame (same machine)
    capture_wall_ns: int  # the same instant as wall-clock (time.time_ns) for logs across machines
    width: int
    height: int
    placeholder: bool = False  # True while the source is down

    def pack(self) -> bytes:
        head = _LAYOUT.pack(
            MAGIC, TRAILER_SIZE, self.width, self.height, 3,
            FLAG_PLACEHOLDER if self.placeholder else 0, self.seq, self.capture_ns, self.capture_wall_ns,
        )
        return head.ljust(TRAILER_SIZE, b"\0")

    @classmethod
    def unpack(cls, buf: bytes | memoryview) -> FrameInfo | None:
        """Read the trailer at the end of a buffer; None if it is not a cuecast frame."""
        if len(buf) < TRAILER_SIZE:
            return None
        tail = bytes(buf[len(buf) - TRAILER_SIZE: len(buf) - TRAILER_SIZE + _LAYOUT.size])
        magic, size, w, h, ch, flags, seq, cap, wall = _LAYOUT.unpack(tail)
        if magic != MAGIC or size != TRAILER_SIZE or ch != 3 or len(buf) != w * h * 3 + TRAILER_SIZE:
            return None
        return cls(seq, cap, wall, w, h, bool(flags & FLAG_PLACEHOLDER))


def buffer_size(width: int, height: int) -> int:
    """Bytes of one shared-memory frame: packed BGR plus the trailer."""
    return width * height * 3 + TRAILER_SIZE
