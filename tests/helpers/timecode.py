"""Glass-to-screen latency: a camera whose every frame shows, as a row of black/white blocks, the wall-clock
millisecond it was made, and the browser-side code that reads it back from what the page displays."""

from __future__ import annotations

import time

import cv2
import numpy as np

from tests.helpers.mjpeg_server import MjpegCamera

BITS, CHECK_BITS, BLOCK, X0, Y0 = 40, 8, 24, 16, 16
MOD = 2**BITS


def stamp(img: np.ndarray, ms: int) -> None:
    """Draw `ms` (mod 2^40) and its check value (ms mod 251) as blocks at the top left."""
    value = ms % MOD
    bits = [(value >> i) & 1 for i in range(BITS)] + [((value % 251) >> i) & 1 for i in range(CHECK_BITS)]
    for i, bit in enumerate(bits):
        x = X0 + i * BLOCK
        img[Y0:Y0 + BLOCK, x:x + BLOCK] = 255 if bit else 0


class TimecodeCamera(MjpegCamera):
    """An MJPEG-over-HTTP camera (like an IP camera) whose frames carry their capture time."""

    def frame(self, n: int) -> bytes:
        img = np.full((self.height, self.width, 3), (40, 120, 40), np.uint8)
        cv2.circle(img, ((n * 8) % self.width, self.height // 2), 30, (255, 255, 255), -1)
        stamp(img, int(time.time() * 1000))
        return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


# Installs window.latencies (ms, one per new frame shown) for the element with id `el`: a <video> is read on
# each presented frame (requestVideoFrameCallback), an <img> (MJPEG) on each animation frame.
_COLLECT_JS = """((id) => {
  const B = BLOCK, X0 = XZERO, Y0 = YZERO, N = NBITS, C = NCHECK, MOD = 2 ** N;
  const el = document.getElementById(id);
  const c = document.createElement('canvas'); c.width = X0 + (N + C) * B; c.height = Y0 + B;
  const g = c.getContext('2d', {willReadFrequently: true});
  window.latencies = []; let last = -1;
  function read() {
    const w = el.videoWidth || el.naturalWidth;
    if (!w) return;
    g.drawImage(el, 0, 0, c.width, c.height, 0, 0, c.width, c.height);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let v = 0, check = 0;
    for (let i = 0; i < N + C; i++) {
      const x = X0 + i * B + B / 2, y = Y0 + B / 2;
      const bit = d[(y * c.width + x) * 4] > 128 ? 1 : 0;
      if (i < N) v += bit * 2 ** i; else check += bit * 2 ** (i - N);
    }
    if (v % 251 !== check || v === last) return;
    last = v;
    window.latencies.push((Date.now() % MOD) - v);
  }
  if (el.requestVideoFrameCallback) {
    const onFrame = () => { read(); el.requestVideoFrameCallback(onFrame); };
    el.requestVideoFrameCallback(onFrame);
  } else {
    const onTick = () => { read(); requestAnimationFrame(onTick); };
    requestAnimationFrame(onTick);
  }
  return true;
})(ELEMENT)"""


def collect_js(element_id: str) -> str:
    """JS that starts collecting latencies for the page element `element_id` ("video" or "stream")."""
    values = {"BLOCK": BLOCK, "XZERO": X0, "YZERO": Y0, "NBITS": BITS, "NCHECK": CHECK_BITS,
              "ELEMENT": f'"{element_id}"'}
    js = _COLLECT_JS
    for name, value in values.items():
        js = js.replace(name, str(value))
    return js


# -- through the lens: a camera whose code reads straight after cuecast's fisheye correction ----------------

LENS_BLOCK = 24
LENS_BITS = BITS + CHECK_BITS


def read_code(img: np.ndarray, centres: np.ndarray) -> int | None:
    """The ms value painted at `centres` (x, y per block, in this picture's pixels), None if unreadable."""
    xs = np.clip(np.rint(centres[:, 0]).astype(int), 0, img.shape[1] - 1)
    ys = np.clip(np.rint(centres[:, 1]).astype(int), 0, img.shape[0] - 1)
    grey = img[ys, xs].astype(int).sum(axis=1) if img.ndim == 3 else img[ys, xs].astype(int) * 3
    bits = (grey > 3 * 128).astype(int)
    value = int(sum(int(b) << i for i, b in enumerate(bits[:BITS])))
    check = int(sum(int(b) << i for i, b in enumerate(bits[BITS:])))
    return value if value % 251 == check else None


class LensCode:
    """Where a number painted *through the demo fisheye lens* lands: corrected with that lens (cuecast
    `--calibration` = the demo lens) the code is a straight row of blocks at `corrected_centres`; in the raw
    picture the same blocks are at `raw_centres`. `paint` draws a number into a raw (lens) picture, `read_code`
    reads it back from either. Geometry only: the bench's camera process (bench/camera.py) and its readers
    (bench/shm_reader.py) both use it."""

    def __init__(self, width: int = 1920, height: int = 1080) -> None:
        from cuecast.fisheye.demo import demo_model
        from cuecast.fisheye.maps import output_matrix

        m = demo_model().scaled_to(width, height)
        P = output_matrix(m)
        b = LENS_BLOCK
        x0, y0 = (width - LENS_BITS * b) // 2, height // 2 - 4 * b
        centres = np.array([(x0 + k * b + b / 2, y0 + b / 2) for k in range(LENS_BITS)], np.float32)
        self.corrected_centres = centres
        mx, my = cv2.fisheye.initUndistortRectifyMap(m.K, m.D, np.eye(3), P, (width, height), cv2.CV_32FC1)
        iy, ix = np.rint(centres[:, 1]).astype(int), np.rint(centres[:, 0]).astype(int)
        self.raw_centres = np.stack([mx[iy, ix], my[iy, ix]], axis=1)
        # Which block each camera pixel near the code shows: undistort every pixel of the code's bounding box.
        corners = np.array([(x0, y0), (x0 + LENS_BITS * b, y0), (x0, y0 + b), (x0 + LENS_BITS * b, y0 + b)])
        raw = np.stack([mx[np.clip(corners[:, 1], 0, height - 1), np.clip(corners[:, 0], 0, width - 1)],
                        my[np.clip(corners[:, 1], 0, height - 1), np.clip(corners[:, 0], 0, width - 1)]], 1)
        bx0, by0 = (int(v) - 2 * b for v in raw.min(axis=0))
        bx1, by1 = (int(v) + 2 * b for v in raw.max(axis=0))
        bx0, by0, bx1, by1 = max(0, bx0), max(0, by0), min(width, bx1), min(height, by1)
        gx, gy = np.meshgrid(np.arange(bx0, bx1, dtype=np.float32), np.arange(by0, by1, dtype=np.float32))
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1).reshape(-1, 1, 2)
        und = cv2.fisheye.undistortPoints(pts, m.K, m.D, R=np.eye(3), P=P).reshape(gy.shape + (2,))
        col = np.floor((und[..., 0] - x0) / b).astype(int)
        inside = (und[..., 1] >= y0) & (und[..., 1] < y0 + b) & (col >= 0) & (col < LENS_BITS)
        self._box = (bx0, by0, bx1, by1)
        self._mask = inside
        self._index = col[inside]

    def paint(self, img: np.ndarray, value: int) -> None:
        """Draw `value` (mod 2^40, with its check bits) into the raw picture `img`, through the lens."""
        value %= MOD
        bits = np.array([(value >> i) & 1 for i in range(BITS)] + [((value % 251) >> i) & 1 for i in range(CHECK_BITS)])
        bx0, by0, bx1, by1 = self._box
        region = img[by0:by1, bx0:bx1]
        region[self._mask] = (bits[self._index] * 255).astype(np.uint8)[:, None]


def detailed_scene(width: int, height: int) -> np.ndarray:
    """High-detail content (fine noise, edges, text everywhere): hard for JPEG and H.264, like a real table
    under strong light, not the easy demo picture."""
    rng = np.random.default_rng(7)
    img = cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8), (width, height),
                     interpolation=cv2.INTER_NEAREST)
    img = cv2.addWeighted(img, 0.95, rng.integers(0, 256, (height, width, 3), dtype=np.uint8), 0.05, 0)
    for x in range(0, width, 40):
        cv2.line(img, (x, 0), (x, height), (255, 255, 255), 1)
    for y in range(0, height, 40):
        cv2.line(img, (0, y), (width, y), (0, 0, 0), 1)
    for y in range(30, height, 60):
        cv2.putText(img, "cuecast high detail 0123456789" * 3, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    (255, 255, 0), 1, cv2.LINE_AA)
    return img
