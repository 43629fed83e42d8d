"""The degradation policy on simulated counters: lowest priority first, the top group never, one step per
settle period, recovery after a calm period, and a longer wait after a recovery that brought lag back."""

from __future__ import annotations

import pytest

from cuecast.streaming import degrade
from cuecast.streaming.degrade import Degrader, EntryCounters, Group, Rated


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Sim:
    """Outputs whose delivered rate is capped by a CPU budget the test sets."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = Clock()
        monkeypatch.setattr(degrade.time, "monotonic", self.clock)
        self.counts = {"shm": 0, "h264": 0, "mjpeg medium": 0, "mjpeg low": 0}
        self.fps = {"shm": 30, "h264": 30, "mjpeg medium": 30, "mjpeg low": 15}
        self.overloaded = False
        self.pushed = self.entered = 0
        outs = {n: self._rated(n, f) for n, f in self.fps.items()}
        self.groups = [Group("shm", [outs["shm"]]), Group("h264", [outs["h264"]]),
                       Group("mjpeg", [outs["mjpeg medium"], outs["mjpeg low"]])]
        self.d = Degrader(self.groups, EntryCounters(lambda: self.pushed, lambda: self.entered, lambda: 0),
                          min_fps=5, recover_after=10)


    def _rated(self, name: str, fps: int) -> Rated:
        def count() -> int:
            return self.counts[name]

        def set_fps(value: int) -> None:
            self.fps[name] = value

        return Rated(name, fps, lambda: True, count, set_fps)
    def second(self) -> None:
        """One second of streaming: overloaded while the MJPEG rates are above half, every output lags."""
        self.clock.t += 1
        self.pushed += 30
        self.entered += 30
        heavy = self.overloaded and self.fps["mjpeg medium"] > 15
        for n, f in self.fps.items():
            self.counts[n] += int(f * (0.7 if heavy else 1.0))
        self.d.tick()


def test_lowers_mjpeg_first_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Sim(monkeypatch)
    for _ in range(3):
        sim.second()
    assert not sim.d.degraded
    sim.overloaded = True
    for _ in range(3):
        sim.second()
    assert sim.fps["mjpeg medium"] == 15 and sim.fps["mjpeg low"] == 7
    assert sim.fps["shm"] == 30 and sim.fps["h264"] == 30
    st = sim.d.status()
    assert st["degrading"] and "shm delivered" in st["reason"]
    for _ in range(30):  # stays degraded while the load would lag again... and is calm at this level
        sim.second()
    sim.overloaded = False
    for _ in range(20):
        sim.second()
    assert sim.fps["mjpeg medium"] == 30 and not sim.d.degraded and sim.d.status()["reason"] is None
    last = sim.d.status()["last_step_down"]  # why it stepped down stays visible after the recovery
    assert "shm delivered" in last["why"] and last["lowered"].startswith("mjpeg to ") and last["s_ago"] > 0


def test_never_lowers_the_top_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Sim(monkeypatch)
    sim.d.tick()
    for _ in range(60):  # lag that nothing fixes: every group but the first goes down to min_fps
        sim.clock.t += 1
        sim.pushed += 30
        sim.entered += 30
        for n in sim.counts:
            sim.counts[n] += 10
        sim.d.tick()
    assert sim.fps["shm"] == 30
    assert sim.fps["h264"] == 5 and sim.fps["mjpeg medium"] == 5 and sim.fps["mjpeg low"] == 5
    assert sim.d.status()["degrading"]


def test_recovery_that_brings_lag_back_waits_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Sim(monkeypatch)
    sim.overloaded = True
    for _ in range(5):
        sim.second()
    assert sim.fps["mjpeg medium"] == 15
    hold = sim.d._hold
    for _ in range(16):  # calm for recover_after: it steps up, lag returns at once, it steps down again
        sim.second()
    assert sim.d.steps_up >= 1 and sim.fps["mjpeg medium"] == 15
    assert sim.d._hold == 2 * hold
