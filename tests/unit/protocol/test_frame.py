"""The shared-memory trailer round-trips, and foreign buffers are not mistaken for cuecast frames."""

from cuecast.protocol.frame import TRAILER_SIZE, FrameInfo, buffer_size


def test_trailer_round_trip() -> None:
    info = FrameInfo(seq=42, capture_ns=123456789, capture_wall_ns=987654321, width=4, height=2, placeholder=True)
    buf = bytes(4 * 2 * 3) + info.pack()
    assert len(buf) == buffer_size(4, 2)
    assert FrameInfo.unpack(buf) == info


def test_foreign_buffers_are_rejected() -> None:
    assert FrameInfo.unpack(bytes(4 * 2 * 3)) is None
    info = FrameInfo(1, 1, 1, 4, 2)
    assert FrameInfo.unpack(bytes(5) + info.pack()) is None  # size disagrees with the trailer
    assert FrameInfo.unpack(bytes(TRAILER_SIZE - 1)) is None
