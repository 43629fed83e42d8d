"""The H.264 appsrc feed's timestamps: a steady grid that re-anchors forward on a stall and never goes back."""

from __future__ import annotations

from typing import Any

from cuecast.core.gst import Gst
from cuecast.streaming.outputs.h264 import MAX_DRIFT_NS, AppsrcFeed


class _Clock:
    def __init__(self) -> None:
        self.now = 0

    def get_time(self) -> int:
        return self.now


class _Appsrc:
    """The four appsrc calls AppsrcFeed makes, recorded (no pipeline: this is about the arithmetic)."""

    def __init__(self) -> None:
        self.clock = _Clock()
        self.pushed: list[int] = []

    def get_property(self, _name: str) -> int:
        return 0

    def set_property(self, _name: str, _value: Any) -> None:
        pass

    def get_clock(self) -> _Clock:
        return self.clock

    def get_base_time(self) -> int:
        return 0

    def emit(self, _signal: str, buf: Gst.Buffer) -> None:
        self.pushed.append(buf.pts)


def test_feed_stamps_a_steady_grid_and_reanchors_forward_after_a_stall() -> None:
    src = _Appsrc()
    feed = AppsrcFeed("t", src)
    caps = Gst.Caps.from_string("video/x-h264")
    step = Gst.SECOND // 30
    jitter = [0, 3, -4, 6, -2, 0, 5, -5]  # ms of arrival jitter: the stamps stay on the grid
    for i, j in enumerate(jitter):
        src.clock.now = Gst.SECOND + i * step + j * Gst.MSECOND
        buf = Gst.Buffer.new_wrapped(b"x")
        buf.duration = step
        feed.push(buf, caps)
    assert src.pushed == [Gst.SECOND + i * step for i in range(len(jitter))]
    # A 2 s stall, then a burst: re-anchored at arrival, and never before the last stamp.
    last = src.pushed[-1]
    src.clock.now += 2 * Gst.SECOND
    for _ in range(3):
        buf = Gst.Buffer.new_wrapped(b"x")
        buf.duration = step
        feed.push(buf, caps)
    assert src.pushed[-3] >= src.clock.now - MAX_DRIFT_NS and src.pushed[-3] > last
    assert all(b > a for a, b in zip(src.pushed, src.pushed[1:], strict=False))
