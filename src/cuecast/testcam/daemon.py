"""The test camera daemon: owns every device's state, so that all the processes that open a device see the
same camera, and paces its frames.

Per device: the control values (uvcvideo's clamping, inactive controls refused with EACCES, menus with
ERANGE/EINVAL), the one file handle allowed to configure and stream (vb2/uvc privileges: EBUSY for the
others), the stream's format and rate, plugged or not (unplug: ENODEV on open handles, ENOENT on open;
replug: a new device with its controls back at their defaults, as real cameras come back). The stream runs
in its own thread per device: each frame is written into a slot of a shared-memory store and announced on
the streaming handle's socket with its sequence number and CLOCK_MONOTONIC timestamp; an exposure longer
than the frame interval (manual exposure) stretches the interval, as UVC cameras do.

The LD_PRELOAD library (native/testcam/shim.c) speaks the wire protocol described there; `cuecast-testcam`
(cli.py) runs the daemon and sends it the admin commands (unplug, replug, busy, free, corrupt).
"""

from __future__ import annotations

import errno
import itertools
import logging
import mmap
import os
import re
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from cuecast.testcam.picture import HOLD_S, Frames
from cuecast.testcam.spec import FOURCCS, TYPES, Device

log = logging.getLogger("cuecast.testcam")

SLOTS = 8
PAGE = 4096
NOTE = struct.Struct("<QQIIII")  # seq, ts_ns, slot, bytesused, flags, pad
SLOT_HDR = struct.Struct("<QII")  # seq, bytesused, pad
STORE_HDR = struct.Struct("<IIII")  # magic, unplugged, slots, slot_size
MAGIC = 0x4D414354  # "TCAM"
FLAG_INACTIVE, FLAG_UPDATE = 0x0010, 0x0008
NUMBERS = 600  # distinct frame numbers painted before they repeat (20 s at 30 fps)


class Store:
    """A device's frame store under /dev/shm: a header page, then SLOTS slots (header + frame data)."""

    def __init__(self, path: Path, slot_size: int) -> None:
        self.path = path
        self.slot_size = slot_size
        size = PAGE + SLOTS * slot_size
        with open(path, "w+b") as f:
            f.truncate(size)
            self.mm = mmap.mmap(f.fileno(), size)
        STORE_HDR.pack_into(self.mm, 0, MAGIC, 0, SLOTS, slot_size)

    def write(self, seq: int, data: bytes) -> int:
        slot = seq % SLOTS
        off = PAGE + slot * self.slot_size
        n = min(len(data), self.slot_size - SLOT_HDR.size)
        SLOT_HDR.pack_into(self.mm, off, 2**64 - 1, 0, 0)  # being written: no reader takes it as seq
        self.mm[off + SLOT_HDR.size:off + SLOT_HDR.size + n] = data[:n]
        SLOT_HDR.pack_into(self.mm, off, seq, n, 0)
        return slot

    def unplug(self) -> None:
        STORE_HDR.pack_into(self.mm, 0, MAGIC, 1, SLOTS, self.slot_size)

    def close(self) -> None:
        self.mm.close()
        self.path.unlink(missing_ok=True)


class Client:
    """One open() of a device: its event socket (the program's fd) and, once connected, its control socket."""

    def __init__(self, cid: int, camera: Camera, conn: socket.socket, pid: int) -> None:
        self.id, self.camera, self.conn, self.pid = cid, camera, conn, pid
        self.generation = camera.generation  # a handle opened before an unplug stays dead after the replug
        self.lock = threading.Lock()

    def notify(self, seq: int, ts_ns: int, slot: int, used: int, flags: int) -> None:
        with self.lock:
            try:
                self.conn.sendall(NOTE.pack(seq, ts_ns, slot, used, flags, 0))
            except OSError:
                pass


class Camera:
    def __init__(self, dev: Device, runtime: Path, send_log: Any = None) -> None:
        self.dev = dev
        self.send_log = send_log  # benches: CLOCK_MONOTONIC ns each frame number went out, slot number % len
        self.runtime = runtime
        self.lock = threading.RLock()
        self.frames = Frames(dev.picture)
        self.plugged = True
        self.generation = 0
        self.busy_by: str | None = None
        self.owner: Client | None = None
        self.clients: set[Client] = set()
        self.corrupt_left = 0
        self.frames_sent = 0
        self._stream: threading.Thread | None = None
        self._stop = threading.Event()
        self._reset()

    # -- state ---------------------------------------------------------------------------------------
    def _reset(self) -> None:
        """Power-on state: controls at their defaults, the first format's first size and rate."""
        self.values = {c.name: c.default for c in self.dev.controls}
        f = self.dev.formats[0]
        self.fourcc, self.width, self.height, self.fps = f.fourcc, f.sizes[0].width, f.sizes[0].height, \
            f.sizes[0].fps[0]
        slot = max(fmt.sizeimage(s) for fmt in self.dev.formats for s in fmt.sizes) + SLOT_HDR.size
        self.generation += 1
        minor = self.dev.minor
        self.store = Store(Path("/dev/shm") / f"cuecast-testcam-{os.getpid()}-{minor}-{self.generation}",
                           (slot + PAGE - 1) // PAGE * PAGE)

    def inactive(self, name: str) -> bool:
        c = self.dev.control(name)
        return bool(c and c.active_when and any(self.values.get(m) != v for m, v in c.active_when.items()))

    def flags(self, name: str) -> int:
        flags = FLAG_INACTIVE if self.inactive(name) else 0
        if any(name in c.active_when for c in self.dev.controls):
            flags |= FLAG_UPDATE  # changing it changes other controls' flags (uvc sets it on masters)
        return flags

    def level_pct(self) -> int:
        """The picture's level from brightness, gain and (manual) exposure, in steps of 5 %."""
        level = 1.0
        b = self.dev.control("brightness")
        if b:
            level *= 1 + (self.values[b.name] - b.default) / max(1, b.max - b.min)
        g = self.dev.control("gain")
        if g and g.default > 0:
            level *= self.values[g.name] / g.default
        e = self.dev.control("exposure_time_absolute")
        if e and e.default > 0 and not self.inactive(e.name):
            level *= self.values[e.name] / e.default
        return int(max(10, min(300, round(level * 20) * 5)))

    def period_s(self) -> float:
        """The frame interval: the rate's, or the manual exposure time when that is longer."""
        period = 1.0 / self.fps
        e = self.dev.control("exposure_time_absolute")
        if e and not self.inactive(e.name):
            period = max(period, self.values[e.name] * 100e-6)  # V4L2: units of 100 us
        return period

    def may_configure(self, client: Client) -> int:
        if not self.plugged:
            return errno.ENODEV
        if self.busy_by is not None or (self.owner is not None and self.owner is not client):
            return errno.EBUSY
        return 0

    # -- the stream ----------------------------------------------------------------------------------
    def start_stream(self, client: Client) -> None:
        self.stop_stream()
        self._stop = threading.Event()
        self._stream = threading.Thread(target=self._run, args=(client, self._stop), daemon=True,
                                        name=f"testcam-{self.dev.minor}")
        self._stream.start()

    def stop_stream(self) -> None:
        self._stop.set()
        t, self._stream = self._stream, None
        if t is not None and t is not threading.current_thread():
            t.join(2)

    def _run(self, client: Client, stop: threading.Event) -> None:
        try:
            self._produce(client, stop)
        except Exception:  # noqa: BLE001 - a camera that cannot make frames says why, loudly
            log.exception("test camera %s: the stream stopped", self.dev.path)

    def _produce(self, client: Client, stop: threading.Event) -> None:
        seq = 0
        next_t = time.monotonic()
        while not stop.is_set():
            with self.lock:
                fourcc, w, h, level, period = self.fourcc, self.width, self.height, self.level_pct(), self.period_s()
                corrupt = self.corrupt_left > 0
                if corrupt:
                    self.corrupt_left -= 1
                store = self.store
            scene = seq // max(1, round(HOLD_S / period)) % self.frames.scenes(w, h)
            data = self.frames.frame(fourcc, w, h, level, seq % NUMBERS, scene)
            if corrupt:  # as a flaky camera sends: the JPEG cut short and garbled
                data = data[: len(data) // 2] + b"\x00" * 64
            delay = next_t - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            ts = time.monotonic_ns()
            slot = store.write(seq, data)
            client.notify(seq, ts, slot, len(data), 0)  # unflagged, as a flaky camera sends it
            if self.send_log is not None:
                self.send_log[(seq % NUMBERS) % len(self.send_log)] = ts
            self.frames_sent += 1
            seq += 1
            next_t += period
            if time.monotonic() - next_t > period:  # fell behind (a stall): keep the cadence from now
                next_t = time.monotonic()

    # -- what a program asks ---------------------------------------------------------------------------
    def describe(self) -> str:
        d = self.dev
        lines = [f"PATH {d.path}", f"CARD {d.card}", f"BUS usb-0000:00:14.0-{d.minor + 1}", f"MINOR {d.minor}",
                 f"STORE {self.store.path}"]
        for f in d.formats:
            lines.append(f"FMT {f.fourcc} {int(f.compressed)} {FOURCCS[f.fourcc][0]}")
            for s in f.sizes:
                lines.append(f"SIZE {s.width} {s.height} {f.sizeimage(s)} {' '.join(str(r) for r in s.fps)}")
        for c in d.controls:
            lines.append(f"CTRL {c.id} {TYPES[c.type]} {c.min} {c.max} {c.step} {c.default} {c.label}")
            for k, v in sorted(c.menu.items()):
                lines.append(f"MENU {k} {v}")
        return "\n".join(lines) + "\nEND\n"

    def request(self, client: Client, words: list[str]) -> str:
        with self.lock:
            return self._request(client, words)

    def _request(self, client: Client, words: list[str]) -> str:
        op = words[0]
        if not self.plugged or client.camera is not self or client.generation != self.generation:
            return f"ERR {errno.ENODEV}"
        if op in ("SFMT", "PARM", "ACQUIRE", "STREAMON"):
            err = self.may_configure(client)
            if err:
                return f"ERR {err}"
            self.owner = client
            if op == "SFMT":
                self.fourcc, self.width, self.height = words[1], int(words[2]), int(words[3])
            elif op == "PARM":
                self.fps = int(words[1])
            elif op == "STREAMON":
                self.start_stream(client)
            return "OK"
        if op == "STREAMOFF":
            if self.owner is client:
                self.stop_stream()
            return "OK"
        if op == "RELEASE":
            if self.owner is not None and self.owner is not client:
                return f"ERR {errno.EBUSY}"
            if self.owner is client:
                self.stop_stream()
                self.owner = None
            return "OK"
        c = self.dev.control(int(words[1])) if op.endswith("CTRL") else None
        if c is None:
            return f"ERR {errno.EINVAL}"
        if op == "QCTRL":
            return f"OK {self.flags(c.name)}"
        if op == "GCTRL":
            return f"OK {self.values[c.name]}"
        if op in ("SCTRL", "TCTRL"):
            value = int(words[2])
            if c.type == "menu":
                if not c.min <= value <= c.max:
                    return f"ERR {errno.ERANGE}"
                if value not in c.menu:
                    return f"ERR {errno.EINVAL}"
            value = c.clamp(value)
            if self.inactive(c.name):  # uvcvideo refuses a control its master (auto mode) overrides
                return f"ERR {errno.EACCES}"
            if op == "SCTRL":
                self.values[c.name] = value
            return f"OK {value}"
        return f"ERR {errno.ENOTTY}"

    def closed(self, client: Client) -> None:
        with self.lock:
            self.clients.discard(client)
            if self.owner is client:
                self.stop_stream()
                self.owner = None

    # -- admin ---------------------------------------------------------------------------------------
    def unplug(self) -> None:
        with self.lock:
            if not self.plugged:
                return
            self.plugged = False
            (self.runtime / f"{self.dev.minor}.unplugged").touch()
            self.store.unplug()
            self.stop_stream()
            self.owner = None
            for c in list(self.clients):
                try:
                    c.conn.shutdown(socket.SHUT_RDWR)  # the program's poll sees the device go
                except OSError:
                    pass

    def replug(self, node: str | None = None) -> str:
        """Plug the camera back in; `node` (/dev/videoN): it comes back under that number, as a real camera
        does when another took its old one (its by-id name still points at it). "" when done, else the error."""
        renamed = self.runtime / f"{self.dev.minor}.renamed"
        if node is not None and node != self.dev.path:
            m = re.fullmatch(r"/dev/video(\d+)", node)
            if m is None:
                return f"replug --as takes a /dev/videoN node, not {node!r}"
        with self.lock:
            if self.plugged:
                return "" if node is None else f"{self.dev.path} is plugged in: unplug it first"
            if node is None or node == self.dev.path:
                renamed.unlink(missing_ok=True)
            else:
                tmp = renamed.with_suffix(".tmp")
                tmp.write_text(f"{node} {int(m.group(1))}\n")  # type: ignore[union-attr]
                tmp.replace(renamed)
            old = self.store
            self._reset()
            old.close()
            self.busy_by = None
            self.plugged = True
            (self.runtime / f"{self.dev.minor}.unplugged").unlink(missing_ok=True)
        return ""


class Daemon:
    """The unix socket server: OPEN (a program's open()), CTL (its control socket), ADMIN (the CLI)."""

    def __init__(self, devices: list[Device], sock_path: Path, runtime: Path, send_log: Any = None) -> None:
        self.cameras = {d.path: Camera(d, runtime, send_log) for d in devices}
        for d in devices:
            if d.by_id:
                self.cameras[d.by_id] = self.cameras[d.path]
        self.runtime = runtime
        self.sock_path = sock_path
        self.clients: dict[int, Client] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        sock_path.unlink(missing_ok=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(sock_path))
        self.server.listen(64)
        self._thread = threading.Thread(target=self._accept, daemon=True, name="testcam-accept")

    def start(self) -> Daemon:
        self._thread.start()
        return self

    def close(self) -> None:
        try:
            self.server.close()
        finally:
            self.sock_path.unlink(missing_ok=True)
            for cam in set(self.cameras.values()):
                cam.stop_stream()
                cam.store.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="testcam-conn").start()

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        try:
            first = f.readline().decode(errors="replace").split()
            if not first:
                return
            if first[0] == "OPEN" and len(first) >= 2:
                self._open(conn, f, first[1], int(first[2]) if len(first) > 2 else 0)
            elif first[0] == "CTL" and len(first) == 2:
                self._control(conn, f, int(first[1]))
            elif first[0] == "ADMIN":
                conn.sendall((self.admin(first[1:]) + "\n").encode())
        except (OSError, ValueError) as e:
            log.debug("connection ended: %s", e)
        finally:
            f.close()
            conn.close()

    def _open(self, conn: socket.socket, f: object, path: str, pid: int) -> None:
        cam = self.cameras.get(path)
        if cam is None or not cam.plugged:
            conn.sendall(f"ERR {errno.ENOENT}\n".encode())
            return
        cid = next(self._ids)
        client = Client(cid, cam, conn, pid)
        with cam.lock:
            cam.clients.add(client)
            text = cam.describe()
        with self._lock:
            self.clients[cid] = client
        conn.sendall(f"{text}CLIENT {cid}\n".encode())
        try:
            while conn.recv(4096):  # the program never writes here: this returns when it closes the fd
                pass
        finally:
            cam.closed(client)
            with self._lock:
                self.clients.pop(cid, None)

    def _control(self, conn: socket.socket, f: object, cid: int) -> None:
        with self._lock:
            client = self.clients.get(cid)
        if client is None:
            conn.sendall(f"ERR {errno.ENODEV}\n".encode())
            return
        conn.sendall(b"OK\n")
        for raw in f:  # type: ignore[attr-defined]
            words = raw.decode(errors="replace").split()
            answer = client.camera.request(client, words) if words else f"ERR {errno.EINVAL}"
            conn.sendall((answer + "\n").encode())

    def admin(self, words: list[str]) -> str:
        if words and words[0] == "list":
            return "OK " + " ".join(sorted({c.dev.path for c in self.cameras.values()}))
        if len(words) < 2 or words[1] not in self.cameras:
            return f"ERR no such test camera {words[1] if len(words) > 1 else ''}; have: " + \
                ", ".join(sorted(self.cameras))
        cam = self.cameras[words[1]]
        op = words[0]
        if op == "unplug":
            cam.unplug()
        elif op == "replug":
            error = cam.replug(words[2] if len(words) > 2 else None)
            if error:
                return f"ERR {error}"
        elif op == "busy":
            with cam.lock:
                cam.busy_by = "cuecast-testcam busy"
        elif op == "free":
            with cam.lock:
                cam.busy_by = None
        elif op == "corrupt":
            with cam.lock:
                cam.corrupt_left = int(words[2]) if len(words) > 2 else 1
        elif op == "status":
            with cam.lock:
                return (f"OK plugged={int(cam.plugged)} streaming={int(cam._stream is not None)} "
                        f"owner={cam.owner.pid if cam.owner else 0} frames_sent={cam.frames_sent} "
                        + " ".join(f"{k}={v}" for k, v in cam.values.items()))
        else:
            return f"ERR unknown command {op!r}: unplug, replug, busy, free, corrupt, status"
        return "OK"
