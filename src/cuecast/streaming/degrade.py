"""Graceful degradation: when the box cannot keep up, lower the rate of the lowest-priority outputs first.

Owns the policy, not the mechanics: once a second it compares what each active output delivered with what
it should have (its current rate, capped by what entered the pipeline) and what the pipeline entry had to
drop. Under pressure it halves the rate of the lowest-priority output group that somebody consumes
(MJPEG, then H.264 for RTSP/WebRTC/publishing, never the top one: shared memory by default), one step at a
time with a settle period between steps.

It steps back up as soon as the lag is gone, measured, not after a fixed wait: once calm for a settle
period, a group goes back up when the box's idle CPU covers what the step costs (doubling a group's rate
costs about the CPU its threads use now, read from their schedstat) times a margin. A step up that still
brought lag back raises that margin (the estimate was optimistic), so the next try waits for more headroom,
not for longer. Without those measures (no /proc) it falls back to `recover_after` seconds of calm. The
state, why it stepped down and what a step up waits for are in /api/status under "degradation".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

SETTLE_S = 3.0  # after a change, let the rates settle before judging again
STRIKES = 2  # seconds in a row with lag before a step down: a one-off hiccup changes nothing
WARMUP_S = 3.0  # an output that just got its first consumer is still starting up (encoder, first frames)
LAG_RATIO = 0.9  # an output delivering under 90 % of what it should is lagging
ENTRY_DROP_RATIO = 0.05  # over 5 % of the frames dropped at the pipeline entry: the common stages lag
# Threads waiting for a CPU, summed, in seconds per second: ~0.4 at full load on the 2-core reference box,
# over 1 when the box is starved. With the source short of its rate, that tells "starved" from "slow camera".
STARVED_RUN_DELAY = 1.0
MARGIN = 1.25  # a step up needs the box's idle CPU to cover its measured cost this many times over ...
MARGIN_GROWTH = 1.5  # ... raised by this much each time a step up brought lag back
MAX_MARGIN = 6.0
RESERVE_CORES = 0.1  # ... plus this much CPU left for everything else
STEP_UP_MAX_WAIT = 0.5  # ... and our threads waiting for a CPU less than this (s/s): idle cores we cannot
# use (another process pinned us, cgroup quota) do not count
SMOOTHING = 0.5  # weight of the newest second in the CPU measures (exponential average)


@dataclass
class Rated:
    """One output as the policy sees it."""

    name: str
    configured_fps: int
    active: Callable[[], bool]
    delivered: Callable[[], int]  # frames processed so far (monotonic counter)
    set_fps: Callable[[int], None]
    cpu_s: Callable[[], float | None] = lambda: None  # CPU seconds its threads used so far (None: unknown)
    fps: int = 0
    cpu_cores: float | None = None  # what its threads use now, in cores (smoothed)
    _last: int = 0
    _last_cpu: float | None = None
    _active_since: float | None = None

    def __post_init__(self) -> None:
        self.fps = self.configured_fps


@dataclass
class Group:
    """Outputs degraded together (all MJPEG qualities; the H.264 branch; shared memory)."""

    name: str
    outputs: list[Rated]
    level: int = 0  # 0: configured rates; each level halves them (down to min_fps)

    def active(self) -> bool:
        return any(o.active() for o in self.outputs)

    def step_up_cost(self) -> float | None:
        """Cores one step up would add: doubling the rate doubles the work its threads do now."""
        costs = [o.cpu_cores for o in self.outputs if o.active()]
        if not costs or any(c is None for c in costs):
            return None
        return float(sum(c for c in costs if c is not None))


@dataclass
class EntryCounters:
    """The pipeline entry's counters, and what tells a slow source from a starved one."""

    pushed: Callable[[], int]
    entered: Callable[[], int]
    idle: Callable[[], int]
    nominal_fps: Callable[[], float] = lambda: 0.0
    run_delay: Callable[[], float] = lambda: 0.0  # seconds our threads waited for a CPU, cumulative
    box_idle: Callable[[], float | None] = lambda: None  # the box's idle CPU seconds (all cores), cumulative


@dataclass
class Degrader:
    groups: list[Group]  # highest priority first
    entry: EntryCounters
    min_fps: int
    recover_after: float
    enabled: bool = True
    reason: str | None = None
    since: float | None = None
    steps_down: int = 0
    steps_up: int = 0
    last_down: tuple[float, str, str] | None = None  # (when, why, what was lowered): kept after recovery
    margin: float = MARGIN
    idle_cores: float | None = None  # the box's idle CPU now, in cores (smoothed)
    cpu_wait: float | None = None  # seconds per second our threads waited for a CPU (smoothed)
    waiting_for: str | None = None  # what the next step up waits for, in words
    _calm_since: float = field(default_factory=time.monotonic)
    _settle_until: float = 0.0
    _last_up: float | None = None
    _last_t: float = field(default_factory=time.monotonic)
    _last_entry: tuple[int, int, int] = (0, 0, 0)
    _last_delay: float = 0.0
    _last_idle: float | None = None
    _strikes: int = 0

    def __post_init__(self) -> None:
        self._last_delay = self.entry.run_delay()
        self._last_idle = self.entry.box_idle()

    @property
    def degraded(self) -> bool:
        return any(g.level for g in self.groups)

    def tick(self) -> None:
        """Called once a second."""
        now = time.monotonic()
        dt = max(1e-3, now - self._last_t)
        self._last_t = now
        pushed, entered, idle = self.entry.pushed(), self.entry.entered(), self.entry.idle()
        d_pushed = pushed - self._last_entry[0]
        d_entered = entered - self._last_entry[1]
        d_idle = idle - self._last_entry[2]
        self._last_entry = (pushed, entered, idle)
        entered_fps = d_entered / dt
        delay = self.entry.run_delay()
        waiting = (delay - self._last_delay) / dt
        self._last_delay = delay
        self.cpu_wait = _smooth(self.cpu_wait, waiting)
        box_idle = self.entry.box_idle()
        if box_idle is not None and self._last_idle is not None:
            self.idle_cores = _smooth(self.idle_cores, (box_idle - self._last_idle) / dt)
        self._last_idle = box_idle
        problems: list[str] = []
        nominal = self.entry.nominal_fps()
        if nominal and d_pushed / dt < LAG_RATIO * nominal and waiting > STARVED_RUN_DELAY:
            problems.append(f"the source delivers {d_pushed / dt:.1f} of {nominal:g} fps while threads wait "
                            f"for a CPU ({waiting:.1f} s/s)")
        offered = d_pushed - d_idle
        if offered >= max(5.0, nominal * dt / 2) and (offered - d_entered) / offered > ENTRY_DROP_RATIO:
            problems.append(f"{offered - d_entered} of {offered} frames dropped at the pipeline entry "
                            "(correction cannot keep up)")
        for g in self.groups:
            for o in g.outputs:
                count = o.delivered()
                rate = (count - o._last) / dt
                o._last = count
                cpu = o.cpu_s()
                if cpu is not None and o._last_cpu is not None:
                    o.cpu_cores = _smooth(o.cpu_cores, (cpu - o._last_cpu) / dt)
                o._last_cpu = cpu
                if not o.active():
                    o._active_since = None
                    continue
                if o._active_since is None:
                    o._active_since = now
                if now - o._active_since < WARMUP_S:
                    continue
                expected = min(o.fps, entered_fps)
                if expected >= 1 and rate < LAG_RATIO * expected:
                    problems.append(f"{o.name} delivered {rate:.1f} of {expected:.1f} fps")
        if not self.enabled or now < self._settle_until:
            return
        if problems:
            self._calm_since = now
            self._strikes += 1
            if self._strikes < STRIKES:
                return
            self._strikes = 0
            if self._last_up is not None and now - self._last_up < SETTLE_S + 3:
                self.margin = min(self.margin * MARGIN_GROWTH, MAX_MARGIN)  # that step up was too optimistic
                log.info("the step up brought lag back: a step up now needs %.2gx its cost idle", self.margin)
            self._last_up = None
            self._step_down("; ".join(problems), now)
        else:
            self._strikes = 0
            if not self.degraded:
                self.reason = None
        self.waiting_for = None
        if not problems and self.degraded and self._may_step_up(now):
            self._step_up(now)

    def _may_step_up(self, now: float) -> bool:
        """Calm for a settle period, and the box has the CPU the step costs (or, unmeasured, recover_after)."""
        calm = now - self._calm_since
        if calm < SETTLE_S:
            self.waiting_for = "calm for a few seconds"
            return False
        g = next((g for g in self.groups if g.level), None)
        cost = g.step_up_cost() if g is not None else None
        if g is None or cost is None or self.idle_cores is None:
            if calm >= self.recover_after:
                return True
            self.waiting_for = f"{self.recover_after - calm:.0f} s more without lag (CPU not measured)"
            return False
        need = self.margin * cost + RESERVE_CORES
        if self.cpu_wait is not None and self.cpu_wait > STEP_UP_MAX_WAIT:
            self.waiting_for = (f"our threads wait {self.cpu_wait:.2f} s/s for a CPU (idle cores elsewhere are "
                                "not ours to use)")
            return False
        if self.idle_cores >= need:
            return True
        self.waiting_for = (f"{g.name} back up needs {need:.2f} idle cores ({self.margin:.2g}x its "
                            f"{cost:.2f}), the box has {self.idle_cores:.2f}")
        return False

    def _step_down(self, why: str, now: float) -> None:
        # Lowest priority first; the top group is protected.
        for g in reversed(self.groups[1:]):
            if g.active() and any(o.fps > self.min_fps for o in g.outputs):
                g.level += 1
                self._apply(g)
                self.steps_down += 1
                self.reason = why
                self.last_down = (now, why, f"{g.name} to {self._rates(g)}")
                self.since = self.since or now
                self._settle_until = now + SETTLE_S
                log.warning("degrading: %s -> %s at %s", why, g.name, self._rates(g))
                return
        if self.reason != why:
            log.warning("cannot keep up and nothing left to lower: %s", why)
        self.reason = why

    def _step_up(self, now: float) -> None:
        for g in self.groups:
            if g.level:
                g.level -= 1
                self._apply(g)
                self.steps_up += 1
                self._last_up = now
                self._calm_since = now
                self._settle_until = now + SETTLE_S
                log.info("recovering: %s back to %s (idle %s cores)", g.name, self._rates(g),
                         "?" if self.idle_cores is None else f"{self.idle_cores:.2f}")
                if not self.degraded:
                    self.reason, self.since = None, None
                return

    def _apply(self, g: Group) -> None:
        for o in g.outputs:
            o.fps = max(min(self.min_fps, o.configured_fps), o.configured_fps >> g.level)
            o.set_fps(o.fps)

    @staticmethod
    def _rates(g: Group) -> str:
        return ", ".join(f"{o.name} {o.fps} fps" for o in g.outputs)

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "degrading": self.degraded,
            "reason": self.reason,
            "since_s": round(time.monotonic() - self.since, 1) if self.since else None,
            "priority": [g.name for g in self.groups],
            "steps_down": self.steps_down, "steps_up": self.steps_up,
            "last_step_down": {"s_ago": round(time.monotonic() - self.last_down[0], 1), "why": self.last_down[1],
                               "lowered": self.last_down[2]} if self.last_down else None,
            "step_up": {"waiting_for": self.waiting_for, "margin": round(self.margin, 2),
                        "idle_cores": None if self.idle_cores is None else round(self.idle_cores, 2),
                        "cpu_wait": None if self.cpu_wait is None else round(self.cpu_wait, 2)},
            "outputs": {o.name: {"fps_configured": o.configured_fps, "fps_target": o.fps,
                                 "cpu_cores": None if o.cpu_cores is None else round(o.cpu_cores, 3)}
                        for g in self.groups for o in g.outputs},
        }


def _smooth(old: float | None, new: float) -> float:
    return new if old is None else SMOOTHING * new + (1 - SMOOTHING) * old
