"""Shared-memory outputs: packed frames plus the metadata trailer (frame.py) through shmsink.

Owns the socket's life (stale sockets unlinked, leaked /dev/shm segments of dead producers removed, mode
0660 with an optional group, removal at stop) and the branch: `valve ! cuecastpack ! shmsink`, all native,
the valve open only while a reader is connected. Two outputs are built from it: the vision backend's (BGR,
in the tee's own thread: no queue, no thread hop between the correction and the backend) and the internal
ring the streaming process reads (I420, behind a leaky queue: viewers never hold up the backend). The packer
writes straight into shmsink's memory and drops a frame when a reader holds every block, so shmsink never
waits.
"""

from __future__ import annotations

import grp
import logging
import math
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

from cuecast.core.gst import GLib, Gst
from cuecast.media.pipeline import DemandGate, OutputPipeline, queue_name
from cuecast.protocol.frame import Geometry, buffer_size

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
SEGMENT_RE = re.compile(r"^shmpipe\.\s*(\d+)\.\s*\d+$")
SOCKET_MODE = 0o660
PRIVATE_MODE = 0o600
ROOM_S = 0.2  # the shared area's default room: this long at the source rate
MIN_BUFFERS, MAX_BUFFERS = 6, 32  # MAX_BUFFERS: also the most shm.buffers accepts


class ShmError(Exception):
    """A shared-memory set-up problem; the message names the path and the fix."""


def socket_alive(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pid_alive(pid: int) -> bool:
    """True while a process runs (a zombie, dead but not yet reaped by its parent, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def clean_leaked_segments(shm_dir: Path = SHM_DIR) -> list[Path]:
    """Remove shmsink segments (/dev/shm/shmpipe.PID.N) whose producer process is gone."""
    removed: list[Path] = []
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return removed
    for name in names:
        m = SEGMENT_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            try:
                (shm_dir / name).unlink()
                removed.append(shm_dir / name)
            except OSError:
                pass
    return removed


def own_segments(shm_dir: Path = SHM_DIR) -> list[Path]:
    """This process's shmsink segments."""
    pid = os.getpid()
    out = []
    try:
        for name in os.listdir(shm_dir):
            m = SEGMENT_RE.match(name)
            if m and int(m.group(1)) == pid:
                out.append(shm_dir / name)
    except OSError:
        pass
    return out


def prepare_socket_path(path: Path) -> None:
    """Check the directory, unlink a stale socket, refuse one a live producer still serves."""
    directory = path.parent
    if not directory.is_dir():
        raise ShmError(f"shm.socket {path}: directory {directory} does not exist; create it or change shm.socket")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ShmError(f"shm.socket {path}: directory {directory} is not writable by this user")
    if path.exists() or path.is_symlink():
        mode = path.lstat().st_mode
        if not stat.S_ISSOCK(mode):
            raise ShmError(f"shm.socket {path} exists and is not a socket; remove it or choose another path")
        if socket_alive(path):
            raise ShmError(
                f"shm.socket {path} is in use by a running producer (another cuecast?); stop it or "
                "choose another shm.socket"
            )
        log.info("removing stale socket %s left by a producer that is gone", path)
        path.unlink()
    for seg in clean_leaked_segments():
        log.info("removed leaked shared-memory segment %s", seg)


def default_buffers(fps: int) -> int:
    """Blocks in the shared area when the config leaves it out: room for ROOM_S of frames at the source rate, so a
    backend behind for a moment (a GC pause, a busy core) loses no frame at 60 or 120 fps either."""
    return min(MAX_BUFFERS, max(MIN_BUFFERS, math.ceil(ROOM_S * fps)))


class ShmOutput:
    """Branch: [valve] -> [videoscale] -> cuecastpack (BGR or I420 + trailer) -> shmsink."""

    def __init__(
        self, socket_path: Path, width: int, height: int, fps: int, buffers: int = 6, group: str | None = None,
        *, name: str = "shm", fmt: str = "BGR", queued: bool = False, mode: int = SOCKET_MODE,
        source_size: tuple[int, int] | None = None, wanted: Callable[[], bool] | None = None,
        geometry: Geometry | None = None, view: str = "camera", max_fps: int | None = None, kernel: str = "auto",
    ) -> None:
        self.name = name
        self.kernel = kernel
        self.queued = queued
        self.view = view
        self.socket_path = Path(socket_path)
        self.width, self.height, self.fps = width, height, fps
        self.fmt = fmt
        self.mode = mode
        self.source_size = source_size  # the view's size, when it may differ from the output's (None: same)
        self.buffers = buffers
        self.group = group
        self.geometry = geometry or Geometry()
        self._wanted = wanted or (lambda: True)  # a further condition besides a connected reader
        # A queued branch may carry fewer frames than the source gives (the ring: only what the people-facing
        # outputs use), thinned in its own thread before anything is packed.
        self.gate = DemandGate(max_fps, fps, lambda: True) if queued and max_fps and max_fps < fps else None
        self._gid = self._resolve_group(group)
        self._frames: OutputPipeline | None = None
        self._valve: Gst.Element | None = None
        self._pack: Gst.Element | None = None
        self._rate_id = 0
        self._rate_last: tuple[float, int] = (0.0, 0)
        self.fps_measured = 0.0
        self.clients = 0

    @staticmethod
    def _resolve_group(group: str | None) -> int | None:
        if group is None:
            return None
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            raise ShmError(f"shm.group {group!r} does not exist; create it (groupadd) or unset it") from None

    def prepare(self) -> None:
        prepare_socket_path(self.socket_path)

    def fragment(self) -> str:
        n = self.name
        scale = ""
        if self.source_size is not None and self.source_size != (self.width, self.height):
            scale = f"videoscale ! video/x-raw,width={self.width},height={self.height},pixel-aspect-ratio=1/1 ! "
        size = buffer_size(self.width, self.height, self.fmt)
        return (
            f"valve name={n}_valve drop=true ! {scale}cuecastpack name={n}_pack kernel={self.kernel} "
            f"! video/x-raw,format={self.fmt} ! shmsink name={n}_sink socket-path=\"{self.socket_path}\" "
            f"wait-for-connection=false sync=false async=false shm-size={size * self.buffers} perms={self.mode}"
        )

    def attach(self, pipeline: Gst.Pipeline, frames: OutputPipeline) -> None:
        self._frames = frames
        n = self.name
        self._valve = pipeline.get_by_name(f"{n}_valve")
        self._pack = pipeline.get_by_name(f"{n}_pack")
        self._pack.set_property("geometry", GLib.Bytes.new(self.geometry.pack()))
        sink = pipeline.get_by_name(f"{n}_sink")
        sink.connect("client-connected", self._on_client, 1)
        sink.connect("client-disconnected", self._on_client, -1)
        if self.gate is not None:
            self.gate.install(pipeline, queue_name(self))

    def active(self) -> bool:
        return self.clients > 0 and self._wanted()

    def refresh(self) -> None:
        """Open the valve while a reader is connected and wanted (any thread); tell the pipeline entry."""
        if self._valve is not None:
            self._valve.set_property("drop", not self.active())
        if self._frames is not None:
            self._frames.refresh_demand()

    def set_geometry(self, geometry: Geometry) -> None:
        """The view and millimetre mapping written into every frame's trailer from now on."""
        self.geometry = geometry
        if self._pack is not None:
            self._pack.set_property("geometry", GLib.Bytes.new(geometry.pack()))

    def _on_client(self, _sink: Gst.Element, _fd: int, delta: int) -> None:
        self.clients = max(0, self.clients + delta)
        self.refresh()
        log.info("%s reader %s (%d connected)", self.name, "connected" if delta > 0 else "left", self.clients)

    @property
    def pack_ms(self) -> float | None:
        """Mean wall time of packing a frame (BGR conversion + trailer, the native element's own measure)."""
        if self._pack is None or not self._pack.get_property("frames"):
            return None
        return float(self._pack.get_property("mean-us")) / 1000

    @property
    def frames_sent(self) -> int:
        return int(self._pack.get_property("frames")) if self._pack is not None else 0

    @property
    def frames_dropped(self) -> int:
        """Frames not delivered because a reader held every block of the shared area."""
        return int(self._pack.get_property("dropped")) if self._pack is not None else 0

    def _sample_rate(self) -> bool:
        now, frames = time.monotonic(), self.frames_sent
        last_t, last_n = self._rate_last
        if last_t and now > last_t:
            self.fps_measured = max(0.0, (frames - last_n) / (now - last_t))
        self._rate_last = (now, frames)
        return True

    def started(self) -> None:
        # shmsink created the socket when it started; make it 0660 (group-shared, never world-writable).
        try:
            os.chmod(self.socket_path, self.mode)
            if self._gid is not None:
                os.chown(self.socket_path, -1, self._gid)
                for seg in own_segments():
                    os.chown(seg, -1, self._gid)
        except OSError as e:
            log.warning("could not set mode/group on %s: %s", self.socket_path, e)
        self._rate_last = (0.0, 0)
        self._rate_id = GLib.timeout_add_seconds(1, self._sample_rate)
        log.info("%s: %s, %s %dx%d", self.name, self.socket_path, self.fmt, self.width, self.height)

    def stopped(self) -> None:
        if self._rate_id:
            GLib.source_remove(self._rate_id)
            self._rate_id = 0
        self._valve = None
        self._pack = None
        # shmsink unlinks both on a clean stop; make sure, so nothing is left behind.
        try:
            if self.socket_path.is_socket():
                self.socket_path.unlink()
        except OSError:
            pass
        for seg in own_segments():
            try:
                seg.unlink()
            except OSError:
                pass
        self.clients = 0
        self.fps_measured = 0.0

    def stats(self) -> dict[str, object]:
        return {
            "socket": str(self.socket_path), "format": self.fmt, "width": self.width, "height": self.height,
            "clients": self.clients, "fps": round(self.fps_measured, 1), "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped, "buffers": self.buffers,
            "bytes_sent": self.frames_sent * buffer_size(self.width, self.height, self.fmt),
            "view": self.geometry.view,
        }
