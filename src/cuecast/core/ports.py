"""TCP ports: bind a listening socket with a clear error, and find which process holds a port (Linux /proc)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path


class PortError(Exception):
    """A port cannot be used; the message names the port and, if found, the process holding it."""


def _inodes_listening_on(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(inode)
    return inodes


def port_holder(port: int) -> str | None:
    """'PID (name)' of a process listening on the TCP port, if it can be found."""
    inodes = _inodes_listening_on(port)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                if os.readlink(f"{fd_dir}/{fd}") in targets:
                    name = Path(f"/proc/{pid}/comm").read_text().strip()
                    return f"PID {pid} ({name})"
        except OSError:
            continue
    return "another process (not visible to this user)"


def bind_tcp(host: str, port: int, what: str) -> socket.socket:
    """A listening socket on host:port, or a PortError naming the port and its holder."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            holder = port_holder(port)
            who = f" by {holder}" if holder else ""
            raise PortError(f"{what}: port {port} is already in use{who}; stop it or choose another port") from None
        if e.errno == errno.EACCES:
            raise PortError(f"{what}: no permission to bind port {port} (ports below 1024 need root)") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise PortError(f"{what}: address {host} is not on this machine; check the bind address") from None
        raise PortError(f"{what}: cannot listen on {host}:{port}: {e.strerror}") from None
    sock.setblocking(False)
    return sock


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct free TCP ports (held open together so none is handed out twice); for tests and benches."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
