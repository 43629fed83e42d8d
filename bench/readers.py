"""Many MJPEG readers in one cheap process (selectors, raw sockets): per-client fps as JSON on stdout.

Usage: python bench/readers.py SECONDS PORT:COUNT [PORT:COUNT ...]
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from typing import Any

MARKER = b"--cuecastframe\r\n"


def main() -> None:
    seconds = float(sys.argv[1])
    sel = selectors.DefaultSelector()
    clients: list[dict[str, Any]] = []
    for spec in sys.argv[2:]:
        port, count = (int(x) for x in spec.split(":"))
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            s.setblocking(False)
            c = {"port": port, "frames": 0, "tail": b"", "sock": s}
            clients.append(c)
            sel.register(s, selectors.EVENT_READ, c)
    warm_end = time.monotonic() + 2
    while time.monotonic() < warm_end:
        for key, _ in sel.select(0.1):
            key.data["sock"].recv(1 << 20)
    t0 = time.monotonic()
    for c in clients:
        c["frames"] = 0
    while time.monotonic() - t0 < seconds:
        for key, _ in sel.select(0.1):
            c = key.data
            data = c["tail"] + c["sock"].recv(1 << 20)
            c["frames"] += data.count(MARKER)
            c["tail"] = data[-(len(MARKER) - 1):]
    elapsed = time.monotonic() - t0
    print(json.dumps([{"port": c["port"], "fps": c["frames"] / elapsed} for c in clients]))


if __name__ == "__main__":
    main()
