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
