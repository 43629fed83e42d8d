"""Example vision backend: read corrected frames from cuecast's shared memory and find the balls.

    python examples/find_balls.py [--socket /tmp/camera-backend] [--frames 30]

Prints each ball's position once a second: in millimetres on the table when the frames carry the table's
geometry (the demo source brings its own; `cuecast calibrate table` makes one for a real table), in either
view (`shm.view: camera` or `table`), else in pixels of the corrected frame. It is deliberately simple:
colour masks and centroids, which is all the synthetic demo table needs. `detect_balls` is importable.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from cuecast.consumer import GStreamerFrameConsumer
from cuecast.media.demo import STATIC_BALLS

COLOUR_TOLERANCE = 60  # summed |B-b| + |G-g| + |R-r|
MIN_AREA = 40  # pixels


def detect_balls(frame: np.ndarray, balls: tuple = STATIC_BALLS) -> dict[str, tuple[float, float]]:
    """Centroid of the largest blob of each ball's colour, in pixels of `frame` (BGR)."""
    found: dict[str, tuple[float, float]] = {}
    img = frame.astype(np.int16)
    for ball in balls:
        dist = np.abs(img - np.array(ball.bgr, np.int16)).sum(axis=2)
        mask = (dist < COLOUR_TOLERANCE).astype(np.uint8)
        n, _labels, stats, centroids = cv2.connectedComponentsWithStats(mask)
        if n <= 1:
            continue
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        if stats[best, cv2.CC_STAT_AREA] >= MIN_AREA:
            found[ball.name] = (float(centroids[best][0]), float(centroids[best][1]))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", default="/tmp/camera-backend")
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames (0: run until Ctrl-C)")
    args = ap.parse_args()
    seen = 0
    last_print = 0.0
    with GStreamerFrameConsumer(args.socket) as consumer:
        while not args.frames or seen < args.frames:
            got = consumer.read(timeout=5)
            if got is None:
                print("no frame yet (is `cuecast serve` running?)", file=sys.stderr)
                continue
            frame, info = got
            seen += 1
            if time.monotonic() - last_print >= 1 or (args.frames and seen == args.frames):
                last_print = time.monotonic()
                balls = detect_balls(frame)
                if info.geometry.calibrated:  # the same two calls in the camera view and the table view
                    text = "  ".join(f"{name}=({x:.0f} mm,{y:.0f} mm)" for name, (x, y) in
                                     sorted((n, info.to_mm(*p)) for n, p in balls.items()))
                else:
                    text = "  ".join(f"{name}=({x:.1f},{y:.1f})" for name, (x, y) in sorted(balls.items()))
                print(f"frame {info.seq} ({info.view} view): {text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
