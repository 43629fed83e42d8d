"""A minimal raw-socket MJPEG client for tests: counts frames, can stall, can read slowly."""

from __future__ import annotations

import socket
import threading
import time


class MjpegReader(threading.Thread):
    """Reads http://127.0.0.1:port/path and counts JPEG parts (by boundary) with their arrival times."""

    def __init__(self, port: int, path: str = "/", rcvbuf: int | None = None) -> None:
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.times: list[float] = []
        self.status_line = b""
        self.headers = b""
        self.stop_flag = threading.Event()
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

    def run(self) -> None:
        buf = b""
        marker = b"--cuecastframe\r\n"
        try:
            while not self.stop_flag.is_set():
                chunk = self.sock.recv(262144)
                if not chunk:
                    break
                buf += chunk
                if not self.headers and b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.status_line, _, self.headers = head.partition(b"\r\n")
                n = buf.count(marker)
                if n:
                    now = time.monotonic()
                    self.times.extend([now] * n)
                    buf = buf[buf.rfind(marker) + len(marker):]
        except OSError:
            pass

    def frames_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in self.times if t0 <= t < t1)

    def close(self) -> None:
        self.stop_flag.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return whatever the server answers until it closes, goes quiet, or has sent a whole
    response (its Content-Length reached: a kept-alive connection is not waited out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and (len(out) > 4096 or _complete(out)):
                    break
        except TimeoutError:
            pass
        return out


def _complete(response: bytes) -> bool:
    """True once a response with a Content-Length header has its whole body."""
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return False
