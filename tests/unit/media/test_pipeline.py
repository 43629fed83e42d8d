"""The demand gate on its own: it drops without demand and lowers the rate on a schedule."""

from __future__ import annotations

from cuecast.core.gst import Gst
from cuecast.media.pipeline import DemandGate


class _Info:
    def __init__(self, pts: int) -> None:
        self.buf = Gst.Buffer.new_wrapped(b"x")
        self.buf.pts = pts

    def get_buffer(self) -> Gst.Buffer:
        return self.buf


def test_gate_drops_without_demand_and_lowers_the_rate() -> None:
    want = [False]
    gate = DemandGate(30, 30, lambda: want[0])
    frame = Gst.SECOND // 30
    assert gate.probe(None, _Info(0)) == Gst.PadProbeReturn.DROP
    want[0] = True
    passed = [gate.probe(None, _Info(i * frame)) == Gst.PadProbeReturn.OK for i in range(30)]
    assert all(passed) and gate.passed_count() == 30
    gate.set_fps(10)
    passed = [gate.probe(None, _Info((30 + i) * frame)) == Gst.PadProbeReturn.OK
              for i in range(90)]
    assert 29 <= sum(passed) <= 31, "10 of 30 fps: about a third"
    gate.set_fps(30)
    assert gate.probe(None, _Info(200 * frame)) == Gst.PadProbeReturn.OK
