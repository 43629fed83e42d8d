"""Finding the playing surface in a corrected frame, to sub-pixel accuracy, and noticing when it moved.

Owns the auto-detection behind `cuecast calibrate table`: the felt's colour (sampled at the picture's centre)
gives a rough outline of the playing surface; each of its four sides is then measured again where the felt
meets the cushion, at many places along the side (away from the pockets, where the cushion line breaks), to a
fraction of a pixel (where a felt-to-cushion colour ramp crosses half way), and a robust line is fitted to
each side; the corners are where neighbouring lines meet. The same line measurement, started from a saved
calibration, tells how far the table has moved in the picture (`drift`). Pure OpenCV/numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cuecast.table.model import TableError

SAMPLES_PER_SIDE = 48
SEARCH_PX = 14  # how far across the rough outline the felt's edge is looked for
SKIP_ENDS = 0.12  # corner pockets: the cushion line is broken near each corner
SKIP_MIDDLE = 0.07  # side pockets: and around the middle of the long sides
MIN_FELT_FRACTION = 0.05


@dataclass(frozen=True)
class Detection:
    corners: tuple[tuple[float, float], ...]  # TL, TR, BR, BL
    residual_px: float  # RMS distance of the measured edge points from their fitted lines
    points: int  # edge points used


def felt_colour(bgr: np.ndarray) -> np.ndarray:
    """The felt's colour: the median of the picture's central region (the table fills the middle)."""
    h, w = bgr.shape[:2]
    centre = bgr[int(h * 0.4):int(h * 0.6), int(w * 0.4):int(w * 0.6)].reshape(-1, 3)
    return np.median(centre, axis=0)


def rough_outline(bgr: np.ndarray, felt: np.ndarray) -> np.ndarray:
    """Four rough corners (TL, TR, BR, BL) of the felt region around the picture's centre."""
    h, w = bgr.shape[:2]
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    felt_lab = cv2.cvtColor(felt.reshape(1, 1, 3).astype(np.uint8), cv2.COLOR_BGR2LAB).astype(np.float32)[0, 0]
    dist = np.linalg.norm(lab - felt_lab, axis=2)
    mask = (dist < 22).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    # The region covering most of the picture's centre (a ball may sit right at its middle).
    centre = labels[int(h * 0.4):int(h * 0.6), int(w * 0.4):int(w * 0.6)].ravel()
    centre = centre[centre > 0]
    centre_label = int(np.bincount(centre).argmax()) if len(centre) else 0
    if centre_label == 0 or stats[centre_label, cv2.CC_STAT_AREA] < MIN_FELT_FRACTION * h * w:
        raise TableError("no playing surface found: the picture's centre should show the table's felt "
                         "(point the camera at the table, or give the corners with --corners)")
    region = (labels == centre_label).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea)).reshape(-1, 2).astype(np.float64)
    # Pockets cut the felt's corners (and the middle of the long sides): the outline's four longest straight
    # runs are the cushions; their lines meet where the corners would be.
    poly = cv2.approxPolyDP(hull.astype(np.float32).reshape(-1, 1, 2), 0.004 * cv2.arcLength(
        hull.astype(np.float32).reshape(-1, 1, 2), True), True).reshape(-1, 2).astype(np.float64)
    if len(poly) < 4:
        raise TableError("the felt region is not four-sided: is the whole table in the picture?")
    edges = [(poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))]
    longest = sorted(range(len(edges)), key=lambda i: -np.hypot(*(edges[i][1] - edges[i][0])))[:4]
    sides = [edges[i] for i in sorted(longest)]  # in outline order
    lines = [(a, (b - a) / np.hypot(*(b - a))) for a, b in sides]
    try:
        quad = np.array([_intersect(lines[k - 1], lines[k]) for k in range(4)])
    except TableError:
        raise TableError("the felt region is not four-sided: is the whole table in the picture?") from None
    if not (np.all(quad >= -0.1 * w) and np.all(quad[:, 0] <= 1.1 * w) and np.all(quad[:, 1] <= 1.1 * h)):
        raise TableError("the felt region is not four-sided: is the whole table in the picture?")
    return order_corners(quad)


def order_corners(pts: np.ndarray) -> np.ndarray:
    """TL, TR, BR, BL as seen in the image."""
    s, d = pts.sum(axis=1), pts[:, 0] - pts[:, 1]
    return np.array([pts[np.argmin(s)], pts[np.argmax(d)], pts[np.argmax(s)], pts[np.argmin(d)]])


def _edge_points(score: np.ndarray, a: np.ndarray, b: np.ndarray, long_side: bool) -> np.ndarray:
    """Sub-pixel points where `score` (1 on felt, 0 on the cushion) crosses 0.5 across the side a->b."""
    d = b - a
    length = float(np.hypot(*d))
    tangent = d / length
    normal = np.array([tangent[1], -tangent[0]])  # points outwards for a clockwise (image) outline
    ts = np.linspace(SKIP_ENDS, 1 - SKIP_ENDS, SAMPLES_PER_SIDE)
    if long_side:
        ts = ts[np.abs(ts - 0.5) > SKIP_MIDDLE]
    offsets = np.arange(-SEARCH_PX, SEARCH_PX + 0.5, 0.5)
    found = []
    for t in ts:
        base = a + t * d
        line = base[None, :] + offsets[:, None] * normal[None, :]
        vals = cv2.remap(score, line[:, 0].astype(np.float32).reshape(1, -1),
                         line[:, 1].astype(np.float32).reshape(1, -1), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).ravel()
        # From the felt side outwards: the first crossing of 0.5, interpolated.
        inside = vals >= 0.5
        idx = np.nonzero(inside[:-1] & ~inside[1:])[0]
        if len(idx) == 0:
            continue
        i = idx[np.argmin(np.abs(offsets[idx]))]
        f = (vals[i] - 0.5) / (vals[i] - vals[i + 1])
        found.append(base + (offsets[i] + f * (offsets[i + 1] - offsets[i])) * normal)
    return np.array(found)


def _fit(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    vx, vy, x0, y0 = cv2.fitLine(points.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    direction, origin = np.array([vx, vy], np.float64), np.array([x0, y0], np.float64)
    normal = np.array([-direction[1], direction[0]])
    dist = (points - origin) @ normal
    return origin, direction, float(np.sqrt(np.mean(dist ** 2)))


def _intersect(l1: tuple[np.ndarray, np.ndarray], l2: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (p, r), (q, s) = l1, l2
    denom = r[0] * s[1] - r[1] * s[0]
    if abs(denom) < 1e-9:
        raise TableError("two sides of the table are parallel in the picture: the outline is wrong")
    t = ((q[0] - p[0]) * s[1] - (q[1] - p[1]) * s[0]) / denom
    return p + t * r


def refine(bgr: np.ndarray, rough: np.ndarray, felt: np.ndarray | None = None) -> Detection:
    """The playing surface's corners measured along each side of a rough outline (TL, TR, BR, BL)."""
    felt = felt_colour(bgr) if felt is None else felt
    img = bgr.astype(np.float32)
    # The cushion's colour: just outside the rough outline's sides.
    centre = rough.mean(axis=0)
    outside = []
    for k in range(4):
        a, b = rough[k], rough[(k + 1) % 4]
        for t in np.linspace(0.2, 0.8, 9):
            p = a + t * (b - a)
            out = p + (p - centre) / np.linalg.norm(p - centre) * (SEARCH_PX * 0.8)
            x, y = int(round(out[0])), int(round(out[1]))
            if 0 <= y < bgr.shape[0] and 0 <= x < bgr.shape[1]:
                outside.append(img[y, x])
    cushion = np.median(np.array(outside), axis=0) if outside else np.zeros(3)
    span = felt - cushion
    if float(span @ span) < 100:
        raise TableError("the felt and the cushions look the same colour here: give the corners with --corners")
    score = np.clip(((img - cushion) @ span) / float(span @ span), -0.5, 1.5).astype(np.float32)
    lines, residuals, count = [], [], 0
    for k in range(4):
        a, b = rough[k], rough[(k + 1) % 4]
        pts = _edge_points(score, a, b, long_side=np.hypot(*(b - a)) > np.hypot(*(rough[(k + 2) % 4] - b)))
        if len(pts) < 6:
            raise TableError(f"the table's {('top', 'right', 'bottom', 'left')[k]} side could not be measured: "
                             "is it in the picture and not covered?")
        origin, direction, rms = _fit(pts)
        lines.append((origin, direction))
        residuals.append(rms)
        count += len(pts)
    corners = [_intersect(lines[(k - 1) % 4], lines[k]) for k in range(4)]  # TL from left & top, ...
    res = float(np.sqrt(np.mean(np.square(residuals))))
    return Detection(tuple((float(x), float(y)) for x, y in corners), res, count)


def detect_table(bgr: np.ndarray) -> Detection:
    """Find the playing surface in a corrected BGR frame: rough outline by the felt's colour, then sub-pixel
    cushion lines. Raises TableError saying what to do when it cannot."""
    felt = felt_colour(bgr)
    rough = rough_outline(bgr, felt)
    first = refine(bgr, rough, felt)
    # Once more from the better outline: the search then straddles the true edge everywhere.
    return refine(bgr, np.array(first.corners), felt)


def drift(bgr: np.ndarray, corners: tuple[tuple[float, float], ...]) -> float:
    """How far (pixels, the largest corner) the table's outline in this frame is from `corners`."""
    found = refine(bgr, np.array(corners, np.float64))
    return float(max(np.hypot(a[0] - b[0], a[1] - b[1]) for a, b in zip(found.corners, corners, strict=True)))
