"""The "NO SIGNAL" placeholder: frames that keep every output alive while the source is down.

Owns drawing the placeholder (same size as the source, I420, with the time since the signal was lost),
re-drawn once a second and reused in between, so it costs almost nothing while it runs, and the feeder
thread that pushes it at the configured rate once real frames stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

# With no real frame for this long, the outputs get "NO SIGNAL" frames at the configured rate instead.
PLACEHOLDER_AFTER_S = 0.5
# At start-up the source gets this long to deliver its first frame before NO SIGNAL is shown.
PLACEHOLDER_AT_START_S = 1.5

BACKGROUND_BGR = (40, 40, 40)


class Placeholder:
    def __init__(self, width: int, height: int, source: str) -> None:
        self.width, self.height, self.source = width, height, source
        self._cached_second = -1
        self._frame: np.ndarray | None = None

    def frame(self, lost_for_s: float) -> np.ndarray:
        """I420 (h*3/2, w) uint8; the same array until the shown second changes."""
        second = int(lost_for_s)
        if self._frame is None or second != self._cached_second:
            self._cached_second = second
            self._frame = self._draw(second)
        return self._frame

    def _draw(self, second: int) -> np.ndarray:
        w, h = self.width, self.height
        img = np.full((h, w, 3), BACKGROUND_BGR, np.uint8)
        scale = h / 360
        lines = [("NO SIGNAL", 2.2 * scale, (255, 255, 255), int(4 * scale) or 1),
                 (f"source lost {_duration(second)} ago", 0.9 * scale, (200, 200, 200), max(1, int(2 * scale))),
                 (self.source[:80], 0.6 * scale, (160, 160, 160), max(1, int(scale))),
                 (time.strftime("%Y-%m-%d %H:%M:%S"), 0.6 * scale, (160, 160, 160), max(1, int(scale)))]
        y = int(h * 0.38)
        for text, size, colour, thick in lines:
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, thick)
            cv2.putText(img, text, ((w - tw) // 2, y), cv2.FONT_HERSHEY_SIMPLEX, size, colour, thick, cv2.LINE_AA)
            y += int(th * 2.0)
        return cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds // 60 % 60} min"


class NoSignalFeeder:
    """Keeps every output fed while the source is down: NO SIGNAL frames at `fps` on a thread of its own.

    `last_frame()` is the monotonic time of the newest real frame (None before the first); `push(buf,
    capture_ns)` feeds one placeholder frame."""

    def __init__(self, width: int, height: int, fps: int, source: str, last_frame: Callable[[], float | None],
                 push: Callable[[object, int], None]) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.source = source
        self._last_frame = last_frame
        self._push = push
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_mono = time.monotonic()
        self.signal_lost_mono: float | None = None
        self.frames = 0

    def start(self) -> None:
        self.started_mono = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="placeholder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self) -> None:
        from cuecast.core.gst import GLib, Gst

        card = Placeholder(self.width, self.height, self.source)
        period = 1.0 / self.fps
        next_t = time.monotonic()
        shown: object = None
        shown_bytes: GLib.Bytes | None = None
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            next_t += period
            if next_t < time.monotonic() - 1:  # fell far behind (suspended): resync
                next_t = time.monotonic() + period
            last = self._last_frame()
            now = time.monotonic()
            if last is None and now - self.started_mono < PLACEHOLDER_AT_START_S:
                continue
            if last is not None and now - last < PLACEHOLDER_AFTER_S:
                if self.signal_lost_mono is not None and self.frames:
                    log.info("source %s: signal back after %.1f s", self.source, now - self.signal_lost_mono)
                    self.signal_lost_mono = None
                continue
            if self.signal_lost_mono is None:
                self.signal_lost_mono = last if last is not None else now
                log.warning("source %s: no signal; outputs show a placeholder", self.source)
            frame = card.frame(now - self.signal_lost_mono)
            if frame is not shown:  # the card changes once a second: copy it into GLib memory only then
                shown, shown_bytes = frame, GLib.Bytes.new(frame.tobytes())
            self._push(Gst.Buffer.new_wrapped_bytes(shown_bytes), time.monotonic_ns())
            self.frames += 1
