"""What every output's status entry has in common: the same fields for every output (enabled, clients, fps,
frames_sent, frames_dropped, bytes_sent), then its own; and the rate meter an output samples once a second."""

from __future__ import annotations

import time
from typing import Any


class RateMeter:
    """Frames per second of a counter, sampled once a second."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None
        self.fps = 0.0

    def sample(self, count: int) -> None:
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            self.fps = max(0.0, (count - self._last[1]) / (now - self._last[0]))
        self._last = (now, count)


COMMON = ("clients", "fps", "frames_sent", "frames_dropped", "bytes_sent")


def entry_from(enabled: bool, stats: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An entry from an output's own stats dict: its common fields first, the rest after `extra`."""
    rest = {k: v for k, v in stats.items() if k not in COMMON and k not in extra}
    return output_entry(enabled, stats.get("clients", 0), stats.get("fps", 0.0), stats.get("frames_sent", 0),
                        stats.get("frames_dropped", 0), stats.get("bytes_sent", 0), **extra, **rest)


def output_entry(enabled: bool, clients: int = 0, fps: float = 0.0, frames_sent: int = 0, frames_dropped: int = 0,
                 bytes_sent: int = 0, **extra: Any) -> dict[str, Any]:
    """One output in /api/status and /metrics: the same fields for every output, then its own."""
    return {"enabled": enabled, "clients": clients, "fps": round(fps, 1), "frames_sent": frames_sent,
            "frames_dropped": frames_dropped, "bytes_sent": bytes_sent, **extra}
