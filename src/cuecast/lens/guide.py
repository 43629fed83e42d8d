"""Guidance while capturing checkerboard views: where the board has been (a coverage map over the image and
the tilts seen), what is still missing in words, when a view is worth keeping (the board is still and the
view adds coverage), and when coverage is complete. Pure numpy/OpenCV; used by `calibrate capture` and the
viewer's guided calibration alike, so both ask for the same views.

Complete means: corners seen in every cell of a COLS x ROWS grid (the periphery is where a fisheye bends
most and where an unseen region makes the map extrapolate), the board tilted each way (left, right, up,
down: tilts separate the focal length from the distance), and at least MIN_VIEWS views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

COLS, ROWS = 4, 3  # the coverage grid over the image
MIN_VIEWS = 14  # with full coverage: the map error's p95 goes below 1 px on the synthetic lens (tests)
TILTS = ("left", "right", "up", "down")
TILT_RATIO = 1.12  # one side of the board's outline this much longer than the opposite one: tilted
STILL_FRACTION = 0.004  # corners moved less than this fraction of the diagonal since the last look: still
DUPLICATE_FRACTION = 0.03  # a view whose corners moved less than 3% of the diagonal is a near-duplicate
ROW_NAMES = ("top", "middle", "bottom")
FREE_VIEWS = 6  # the first views are kept wherever the board is (a solve needs six); later ones must add


def cell_name(row: int, col: int) -> str:
    """Words for a grid cell: 'top-left corner', 'bottom edge, left of centre', 'centre'."""
    horizontal = ("left", "left of centre", "right of centre", "right")[col]
    if ROWS == 3 and row == 1:
        return "left edge" if col == 0 else "right edge" if col == COLS - 1 else f"centre ({horizontal})"
    vertical = ROW_NAMES[0] if row == 0 else ROW_NAMES[-1]
    if col in (0, COLS - 1):
        return f"{vertical}-{horizontal} corner"
    return f"{vertical} edge, {horizontal}"


def tilt_of(corners: np.ndarray) -> set[str]:
    """Which way the board is tilted, from its outline: a side clearly longer than its opposite one. The
    board's own corner order gives the sides, whatever its rotation in the image."""
    return _tilts(corners, None)


def _tilts(corners: np.ndarray, board: tuple[int, int] | None) -> set[str]:
    pts = corners.reshape(-1, 2)
    if board is None:  # unknown layout: by image position
        xs, ys = pts[:, 0], pts[:, 1]
        left = ys[xs <= np.percentile(xs, 15)]
        right = ys[xs >= np.percentile(xs, 85)]
        top = xs[ys <= np.percentile(ys, 15)]
        bottom = xs[ys >= np.percentile(ys, 85)]
        sides = (np.ptp(left), np.ptp(right), np.ptp(top), np.ptp(bottom))
    else:
        cols, rows = board
        g = pts.reshape(rows, cols, 2)
        # The outline's four sides, named by where they lie in the image (the board may be turned).
        edges = [g[:, 0], g[:, -1], g[0, :], g[-1, :]]
        lengths = [float(np.linalg.norm(e[-1] - e[0])) for e in edges]
        mids = [e.mean(axis=0) for e in edges]
        # Pair the opposite sides (first column / last column, first row / last row), then name each pair
        # by whether it runs mostly vertically (left/right) or horizontally (top/bottom) in the image.
        a_vertical = abs((edges[0][-1] - edges[0][0])[1]) > abs((edges[0][-1] - edges[0][0])[0])
        pair_lr, pair_tb = ((0, 1), (2, 3)) if a_vertical else ((2, 3), (0, 1))
        left_i, right_i = sorted(pair_lr, key=lambda i: mids[i][0])
        top_i, bottom_i = sorted(pair_tb, key=lambda i: mids[i][1])
        sides = (lengths[left_i], lengths[right_i], lengths[top_i], lengths[bottom_i])
    out = set()
    left, right, top, bottom = (max(float(s), 1e-6) for s in sides)
    if left / right > TILT_RATIO:
        out.add("left")  # the left side is nearer the camera
    elif right / left > TILT_RATIO:
        out.add("right")
    if top / bottom > TILT_RATIO:
        out.add("up")
    elif bottom / top > TILT_RATIO:
        out.add("down")
    return out


@dataclass
class Coverage:
    """Where corners have been seen (a COLS x ROWS grid of counts) and which tilts, over kept views."""

    size: tuple[int, int]
    board: tuple[int, int] | None = None
    cells: np.ndarray = field(default_factory=lambda: np.zeros((ROWS, COLS), int))
    tilts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TILTS, 0))
    views: int = 0

    def cells_of(self, corners: np.ndarray) -> np.ndarray:
        w, h = self.size
        pts = corners.reshape(-1, 2)
        hit = np.zeros((ROWS, COLS), int)
        cols = np.clip((pts[:, 0] * COLS / w).astype(int), 0, COLS - 1)
        rows = np.clip((pts[:, 1] * ROWS / h).astype(int), 0, ROWS - 1)
        np.add.at(hit, (rows, cols), 1)
        return hit > 0

    def gain(self, corners: np.ndarray) -> list[str]:
        """What this view would add: names of new cells and tilts (empty: nothing new)."""
        new = self.cells_of(corners) & (self.cells == 0)
        out = [cell_name(int(r), int(c)) for r, c in zip(*np.nonzero(new), strict=True)]
        out += [f"tilted {t}" for t in sorted(_tilts(corners, self.board)) if not self.tilts[t]]
        return out

    def add(self, corners: np.ndarray) -> None:
        self.cells += self.cells_of(corners)
        for t in _tilts(corners, self.board):
            self.tilts[t] += 1
        self.views += 1

    @property
    def fraction(self) -> float:
        """Share of what complete coverage asks for that is there (cells, tilts, views), 0..1."""
        parts = [float((self.cells > 0).mean()), sum(1 for t in TILTS if self.tilts[t]) / len(TILTS),
                 min(1.0, self.views / MIN_VIEWS)]
        return float(np.mean(parts))

    @property
    def complete(self) -> bool:
        return bool((self.cells > 0).all()) and all(self.tilts.values()) and self.views >= MIN_VIEWS

    def missing(self) -> list[str]:
        """What to do next, in words, most useful first (empty when complete)."""
        tips = [f"move the board to the {cell_name(int(r), int(c))} of the picture"
                for r, c in zip(*np.nonzero(self.cells == 0), strict=True)]
        words = {"left": "turn the board so its left side comes towards the camera",
                 "right": "turn the board so its right side comes towards the camera",
                 "up": "tilt the board's top edge towards the camera",
                 "down": "tilt the board's bottom edge towards the camera"}
        tips += [words[t] for t in TILTS if not self.tilts[t]]
        if not tips and self.views < MIN_VIEWS:
            tips.append(f"{MIN_VIEWS - self.views} more view(s): move the board anywhere, at another angle")
        return tips

    def to_json(self) -> dict[str, Any]:
        return {"grid": [COLS, ROWS], "cells": self.cells.tolist(), "tilts": dict(self.tilts), "views": self.views,
                "min_views": MIN_VIEWS, "fraction": round(self.fraction, 3), "complete": self.complete,
                "missing": self.missing()}


class Picker:
    """Decides, look by look, whether the board in view is worth keeping: it is still (the corners moved
    less than STILL_FRACTION of the diagonal since the last look: no motion blur), it is not a near-duplicate
    of a kept view, and it adds coverage (or coverage lacks only views)."""

    def __init__(self, size: tuple[int, int], board: tuple[int, int] | None = None) -> None:
        self.coverage = Coverage(size, board)
        self.kept: list[np.ndarray] = []
        self._last: np.ndarray | None = None
        self.diag = float(np.hypot(*size))

    def consider(self, corners: np.ndarray | None) -> tuple[bool, str]:
        """(keep it?, why or why not, in words)."""
        last, self._last = self._last, corners
        if corners is None:
            if self.coverage.board is None:
                return False, "no board in sight: hold the whole board in the picture"
            c, r = self.coverage.board
            return False, (f"no {c}x{r} board in sight: hold the whole board in the picture, lit evenly (if it "
                           f"is, check the board size: inner corners, a board of {c + 1}x{r + 1} squares is {c}x{r})")
        if last is None or last.shape != corners.shape:
            return False, "board found: hold it still"
        moved = float(np.mean(np.linalg.norm((corners - last).reshape(-1, 2), axis=1)))
        if moved > STILL_FRACTION * self.diag:
            return False, "hold the board still"
        if any(float(np.mean(np.linalg.norm((corners - k).reshape(-1, 2), axis=1))) < DUPLICATE_FRACTION * self.diag
               for k in self.kept):
            return False, "already have this view: " + (self.coverage.missing() or ["move the board"])[0]
        gain = self.coverage.gain(corners)
        places_missing = not (self.coverage.cells > 0).all() or not all(self.coverage.tilts.values())
        if not gain and places_missing and self.coverage.views >= FREE_VIEWS:
            return False, "this view adds nothing new: " + self.coverage.missing()[0]
        return True, ("adds " + ", ".join(gain)) if gain else "adds a view"

    def keep(self, corners: np.ndarray) -> None:
        self.kept.append(corners)
        self.coverage.add(corners)
