"""The bench's latency camera: an HTTP MJPEG camera that the service's CPU cannot slow down.

A real camera does not share the host's CPU, so this one must not either:
- it runs in its own process, at real-time priority (SCHED_FIFO) where the machine allows it;
- its frames are encoded ahead: FRAMES pictures of a high-detail scene, each with its number painted through
  the demo fisheye lens (tests/helpers/timecode.py LensCode), so the number reads straight after cuecast's
  correction and at known spots in the raw picture;
- when it sends frame number k it writes CLOCK_MONOTONIC ns into slot k of a small file under /dev/shm (the
  send log); a reader that sees number k at time t measures t - log[k]. A slot is rewritten only FRAMES frames
  later (over 2 s at 60 fps), far beyond any latency measured.

`BenchCamera(...).start()` runs it as a child process and ends it in `stop()` (also at interpreter exit, so an
interrupted bench leaves no camera behind to serve the next one).

Run alone: python -m bench.camera WIDTH HEIGHT FPS LOG_PATH  (prints "ready PORT POLICY" when serving).
"""

from __future__ import annotations

import atexit
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

BOUNDARY = "frameboundary"
FRAMES = 128
QUALITY = 80
RT_PRIORITY = 20
ROOT = Path(__file__).resolve().parents[1]


def send_log(path: Path, create: bool = False) -> np.ndarray:
    """The FRAMES int64 slots of the send log (CLOCK_MONOTONIC ns of the latest send of each number)."""
    size = FRAMES * 8
    if create:
        with open(path, "wb") as f:
            f.write(b"\0" * size)
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), size)
    return np.frombuffer(mm, np.int64, count=FRAMES)


def realtime() -> str:
    """Real-time priority for this process where allowed; the policy that is in force, for the report."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
        return f"SCHED_FIFO {RT_PRIORITY}"
    except (PermissionError, OSError):
        try:
            os.nice(-10)
            return "nice -10"
        except PermissionError:
            return "SCHED_OTHER"


def encode_frames(width: int, height: int) -> list[bytes]:
    import cv2

    sys.path.insert(0, str(ROOT))
    from tests.helpers.timecode import LensCode, detailed_scene

    code = LensCode(width, height)
    background = detailed_scene(width, height)
    out = []
    for k in range(FRAMES):
        img = background.copy()
        code.paint(img, k)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes())
    return out


class Clock:
    """The camera's one clock: frame n goes out at t0 + n / fps, whoever reads it."""

    def __init__(self, frames: list[bytes], fps: int, log: np.ndarray) -> None:
        self.frames, self.fps, self.log = frames, fps, log
        self.n = -1
        self.cond = threading.Condition()

    def run(self) -> None:
        next_t = time.monotonic()
        n = 0
        while True:
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self.cond:
                self.log[n % FRAMES] = time.monotonic_ns()
                self.n = n
                self.cond.notify_all()
            n += 1
            next_t += 1 / self.fps

    def wait_next(self, after: int) -> int:
        with self.cond:
            self.cond.wait_for(lambda: self.n > after, timeout=2)
            return self.n


def die_with_parent() -> None:
    """End this camera when the bench that started it dies (even by kill -9): never a stray camera."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def serve(width: int, height: int, fps: int, log_path: Path) -> None:
    die_with_parent()
    policy = realtime()
    frames = encode_frames(width, height)
    clock = Clock(frames, fps, send_log(log_path, create=True))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            n = clock.n
            try:
                while True:
                    n = clock.wait_next(n)
                    jpg = frames[n % FRAMES]
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}"
                                     "\r\n\r\n".encode() + jpg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=clock.run, daemon=True).start()
    print(f"ready {server.server_address[1]} {policy}", flush=True)
    server.serve_forever()


class BenchCamera:
    """The camera process, seen from the bench: its URL, its send log, and which priority it got."""

    def __init__(self, width: int = 1920, height: int = 1080, fps: int = 30) -> None:
        self.width, self.height, self.fps = width, height, fps
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
        self.log_path = shm / f"cuecast-bench-camera-{os.getpid()}-{id(self)}"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.policy = ""

    def start(self, timeout: float = 120) -> BenchCamera:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.camera", str(self.width), str(self.height),
                                      str(self.fps), str(self.log_path)], stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=ROOT)
        atexit.register(self.stop)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            line = self.proc.stdout.readline()
            if line.startswith("ready "):
                break
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError("the bench camera did not start")
        _, port, self.policy = line.strip().split(" ", 2)
        self.url = f"http://127.0.0.1:{port}/"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> BenchCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
