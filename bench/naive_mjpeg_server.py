"""The baseline cuecast is measured against: a naive MJPEG server that encodes once per client.

This is the common hand-made approach (OpenCV capture + per-client resize + imencode in each handler).
Usage: python bench/naive_mjpeg_server.py CLIP PORT
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

SIZE = (1280, 720)
QUALITY = 80


class Latest:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frame: np.ndarray = np.zeros((1, 1, 3), np.uint8)
        self.seq = 0

    def newer_than(self, seq: int) -> bool:
        return self.seq > seq


def capture(clip: str, latest: Latest) -> None:
    while True:
        cap = cv2.VideoCapture(clip)
        fps = cap.get(cv2.CAP_PROP_FPS) or 30
        t_next = time.monotonic()
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            with latest.cond:
                latest.frame, latest.seq = frame, latest.seq + 1
                latest.cond.notify_all()
            t_next += 1 / fps
            time.sleep(max(0.0, t_next - time.monotonic()))
        cap.release()


def main() -> None:
    clip, port = sys.argv[1], int(sys.argv[2])
    latest = Latest()
    threading.Thread(target=capture, args=(clip, latest), daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            seen = 0
            try:
                while True:
                    with latest.cond:
                        latest.cond.wait_for(functools.partial(latest.newer_than, seen))
                        frame, seen = latest.frame, latest.seq
                    small = cv2.resize(frame, SIZE)
                    jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                     + jpg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
