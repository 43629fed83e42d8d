"""The degradation policy on simulated counters: lowest priority first, the top group never, one step per
settle period; back up as soon as the lag is gone and the box has the CPU the step costs (measured), a
larger margin after a step up that brought lag back, and `recover_after` only where CPU is not measured."""

from __future__ import annotations

import pytest

from cuecast.streaming import degrade
from cuecast.streaming.degrade import Degrader, EntryCounters, Group, Rated


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


COST = 0.01  # CPU seconds per frame of every output in the simulation


class Sim:
    """Outputs whose delivered rate is capped by a CPU budget the test sets, and the box's idle CPU: `spare`
    cores besides what the outputs use (None: CPU not measured)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, spare: float | None = 1.0) -> None:
        self.clock = Clock()
        monkeypatch.setattr(degrade.time, "monotonic", self.clock)
        self.counts = {"shm": 0, "h264": 0, "mjpeg medium": 0, "mjpeg low": 0}
        self.cpu = dict.fromkeys(self.counts, 0.0)
        self.fps = {"shm": 30, "h264": 30, "mjpeg medium": 30, "mjpeg low": 15}
        self.overloaded = False
        self.spare = spare
        self.idle = 0.0
        self.pushed = self.entered = 0
        outs = {n: self._rated(n, f) for n, f in self.fps.items()}
        self.groups = [Group("shm", [outs["shm"]]), Group("h264", [outs["h264"]]),
                       Group("mjpeg", [outs["mjpeg medium"], outs["mjpeg low"]])]
        idle = (lambda: self.idle) if spare is not None else (lambda: None)
        self.d = Degrader(self.groups, EntryCounters(lambda: self.pushed, lambda: self.entered, lambda: 0,
                                                     box_idle=idle), min_fps=5, recover_after=10)

    def _rated(self, name: str, fps: int) -> Rated:
        def count() -> int:
            return self.counts[name]

        def set_fps(value: int) -> None:
            self.fps[name] = value

        return Rated(name, fps, lambda: True, count, set_fps, lambda: self.cpu[name])

    def second(self) -> None:
        """One second of streaming: overloaded while the MJPEG rates are above half (no idle CPU then), every
        output lags."""
        self.clock.t += 1
        self.pushed += 30
        self.entered += 30
        heavy = self.overloaded and self.fps["mjpeg medium"] > 15
        for n, f in self.fps.items():
            self.counts[n] += int(f * (0.7 if heavy else 1.0))
            self.cpu[n] += f * COST
        self.idle += 0.0 if self.overloaded else (self.spare or 0.0)
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
    for _ in range(int(degrade.SETTLE_S) + 2):  # back up as soon as the lag is gone: not recover_after (10 s)
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


def test_a_step_up_waits_for_the_cpu_it_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calm, but the box has less idle CPU than the step costs: it stays down and says what it waits for."""
    sim = Sim(monkeypatch, spare=0.2)  # mjpeg at 15 + 7 fps uses 0.22 cores: back up needs 1.25x + 0.1
    sim.overloaded = True
    for _ in range(5):
        sim.second()
    assert sim.fps["mjpeg medium"] == 15
    sim.overloaded = False
    for _ in range(30):
        sim.second()
    assert sim.fps["mjpeg medium"] == 15 and sim.d.steps_up == 0
    waiting = sim.d.status()["step_up"]["waiting_for"]
    assert "mjpeg back up needs 0.38 idle cores" in waiting and "the box has 0.20" in waiting, waiting
    assert sim.d.status()["outputs"]["mjpeg medium"]["cpu_cores"] == 0.15
    sim.spare = 1.0
    for _ in range(3):
        sim.second()
    assert sim.fps["mjpeg medium"] == 30


def test_a_step_up_that_brought_lag_back_needs_more_headroom_not_more_time(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Sim(monkeypatch)
    sim.overloaded = True
    for _ in range(5):
        sim.second()
    sim.spare = 1.0
    # The box shows idle CPU (another load comes and goes), but MJPEG at full rate overloads it again.
    margin = sim.d.margin
    for _ in range(8):
        sim.idle += 1.0  # idle CPU seen while the overload holds at the lowered rate
        sim.second()
    assert sim.d.steps_up >= 1 and sim.fps["mjpeg medium"] == 15, "stepped up, lag came back, down again"
    assert sim.d.margin == margin * degrade.MARGIN_GROWTH


def test_without_cpu_measures_it_falls_back_to_recover_after(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Sim(monkeypatch, spare=None)
    sim.overloaded = True
    for _ in range(5):
        sim.second()
    sim.overloaded = False
    for _ in range(8):
        sim.second()
    assert sim.fps["mjpeg medium"] == 15 and "CPU not measured" in sim.d.status()["step_up"]["waiting_for"]
    for _ in range(4):
        sim.second()
    assert sim.fps["mjpeg medium"] == 30
