"""Graceful degradation: when the box cannot keep up, lower the rate of the lowest-priority outputs first.

Owns the policy, not the mechanics: once a second it compares what each active output delivered with what
it should have (its current rate, capped by what entered the pipeline) and what the pipeline entry had to
drop. Under pressure it halves the rate of the lowest-priority output group that somebody consumes
(MJPEG, then H.264 for RTSP/WebRTC/publishing, never the top one: shared memory by default), one step at a
time with a settle period between steps; after `recover_after` seconds without pressure it gives one step
back, highest priority first, and waits twice as long before the next try when that brought pressure back.
The state and the reason are in /api/status under "degradation".
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
MAX_HOLD_FACTOR = 8


@dataclass
class Rated:
    """One output as the policy sees it."""

    name: str
    configured_fps: int
    active: Callable[[], bool]
    delivered: Callable[[], int]  # frames processed so far (monotonic counter)
    set_fps: Callable[[int], None]
    fps: int = 0
    _last: int = 0
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


@dataclass
class EntryCounters:
    """The pipeline entry's counters, and what tells a slow source from a starved one."""

    pushed: Callable[[], int]
    entered: Callable[[], int]
    idle: Callable[[], int]
    nominal_fps: Callable[[], float] = lambda: 0.0
    run_delay: Callable[[], float] = lambda: 0.0  # seconds our threads waited for a CPU, cumulative


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
    _hold: float = 0.0
    _calm_since: float = field(default_factory=time.monotonic)
    _settle_until: float = 0.0
    _last_up: float | None = None
    _last_t: float = field(default_factory=time.monotonic)
    _last_entry: tuple[int, int, int] = (0, 0, 0)
    _last_delay: float = 0.0
    _strikes: int = 0

    def __post_init__(self) -> None:
        self._hold = self.recover_after
        self._last_delay = self.entry.run_delay()

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
                self._hold = min(self._hold * 2, self.recover_after * MAX_HOLD_FACTOR)  # that step up was too much
            self._last_up = None
            self._step_down("; ".join(problems), now)
        else:
            self._strikes = 0
            if not self.degraded:
                self.reason = None
        if not problems and self.degraded and now - self._calm_since >= self._hold:
            self._step_up(now)

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
                log.info("recovering: %s back to %s", g.name, self._rates(g))
                if not self.degraded:
                    self.reason, self.since = None, None
                    self._hold = self.recover_after
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
            "outputs": {o.name: {"fps_configured": o.configured_fps, "fps_target": o.fps}
                        for g in self.groups for o in g.outputs},
        }
