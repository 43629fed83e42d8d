"""A tiny HTTP MJPEG "IP camera" for tests: multipart/x-mixed-replace JPEG frames on loopback."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "frameboundary"


class MjpegCamera:
    """Serves a moving test picture at `fps` on http://127.0.0.1:PORT/ until stop()."""

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30, port: int = 0) -> None:
        self.width, self.height, self.fps = width, height, fps
        # "up": MJPEG; "booting": 503 with an HTML page; "login": 200 with an HTML page (streams end at once)
        self.mode = "up"
        self._stop = threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if camera.mode != "up":  # booting: an error page, as real IP cameras answer meanwhile
                    page = b"<html><body><h1>Camera is starting</h1></body></html>"
                    self.send_response(503 if camera.mode == "booting" else 200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                n = 0
                next_t = time.monotonic()
                try:
                    while not camera._stop.is_set() and camera.mode == "up":
                        jpg = camera.frame(n)
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n".encode()
                            + jpg + b"\r\n"
                        )
                        n += 1
                        # A steady rate like a camera's: the schedule, not the time spent making the frame.
                        next_t += 1 / camera.fps
                        delay = next_t - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        else:
                            next_t = time.monotonic()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def frame(self, n: int) -> bytes:
        img = np.zeros((self.height, self.width, 3), np.uint8)
        img[:, :] = (40, 120, 40)
        x = (n * 8) % self.width
        cv2.circle(img, (x, self.height // 2), 30, (255, 255, 255), -1)
        return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()

    def start(self) -> MjpegCamera:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
