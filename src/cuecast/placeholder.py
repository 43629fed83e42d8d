"""The "NO SIGNAL" placeholder: frames that keep every output alive while the source is down.

Owns drawing the placeholder (same size as the source, I420, with the time since the signal was lost),
re-drawn once a second and reused in between, so it costs almost nothing while it runs.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

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
