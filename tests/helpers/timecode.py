"""Glass-to-screen latency: a camera whose every frame shows, as a row of black/white blocks, the wall-clock
millisecond it was made, and the browser-side code that reads it back from what the page displays."""

from __future__ import annotations

import time

import cv2
import numpy as np

from cuecast.testcam.lenscode import LENS_BITS, LENS_BLOCK, LensCode, read_code  # noqa: F401 - re-exported
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
