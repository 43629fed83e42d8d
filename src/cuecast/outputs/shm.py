"""Shared-memory output for the vision backend: packed BGR frames plus a metadata trailer via shmsink.

Owns the socket's life (stale sockets unlinked, leaked /dev/shm segments of dead producers removed,
mode 0660 with an optional group, removal at stop) and the one I420->BGR conversion of the service,
done with cv2.cvtColor straight into the outgoing buffer (cheaper than videoconvert, measured).
"""

from __future__ import annotations

import grp
import logging
import os
import re
import socket
import stat
import threading
from pathlib import Path

import cv2
import numpy as np

from cuecast.frame import TRAILER_SIZE, FrameInfo, buffer_size
from cuecast.gst import Gst, MapError, mapped
from cuecast.pipeline import CapturePipeline, DemandGate, FrameMeta

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
SEGMENT_RE = re.compile(r"^shmpipe\.\s*(\d+)\.\s*\d+$")
SOCKET_MODE = 0o660


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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leaked_segments(shm_dir: Path = SHM_DIR) -> list[Path]:
    """Remove shmsink segments (/dev/shm/shmpipe.PID.N) whose producer process is gone."""
    removed = []
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


class ShmOutput:
    """Branch: I420 from the tee -> BGR + trailer -> shmsink."""

    name = "shm"

    def __init__(
        self, socket_path: Path, width: int, height: int, fps: int, buffers: int = 6, group: str | None = None
    ) -> None:
        self.socket_path = Path(socket_path)
        self.width, self.height, self.fps = width, height, fps
        self.gate = DemandGate(fps, fps, lambda: self.clients > 0)
        self.buffers = buffers
        self.group = group
        self._gid = self._resolve_group(group)
        self._frames: CapturePipeline | None = None
        self._appsrc: Gst.Element | None = None
        self._sink: Gst.Element | None = None
        self._allocator: Gst.Allocator | None = None
        self._scratch: np.ndarray | None = None
        self._lock = threading.Lock()
        self.frames_sent = 0
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
        return "appsink name=shm_in emit-signals=true sync=false async=false max-buffers=1 drop=true qos=false"

    def extra(self) -> str:
        size = buffer_size(self.width, self.height)
        caps = f"video/x-raw,format=BGR,width={self.width},height={self.height},framerate={self.fps}/1"
        return (
            f"appsrc name=shm_src is-live=true format=time block=false max-buffers=2 leaky-type=downstream "
            f"caps={caps} ! shmsink name=shm_sink socket-path=\"{self.socket_path}\" "
            f"wait-for-connection=false sync=false async=false shm-size={size * self.buffers} "
            f"perms={SOCKET_MODE}"
        )

    def attach(self, pipeline: Gst.Pipeline, frames: CapturePipeline) -> None:
        self._frames = frames
        self._appsrc = pipeline.get_by_name("shm_src")
        # No consumer connected: no colour conversion, no copy (work only for outputs somebody consumes).
        self.gate.install(pipeline, f"q_{self.name}")
        pipeline.get_by_name("shm_in").connect("new-sample", self._on_sample)
        sink = pipeline.get_by_name("shm_sink")
        self._sink = sink
        sink.connect("client-connected", self._on_client, 1)
        sink.connect("client-disconnected", self._on_client, -1)

    def active(self) -> bool:
        return self.clients > 0

    def set_fps(self, fps: int) -> None:
        self.gate.set_fps(fps)

    def _on_client(self, _sink: Gst.Element, _fd: int, delta: int) -> None:
        self.clients = max(0, self.clients + delta)
        log.info("shm consumer %s (%d connected)", "connected" if delta > 0 else "left", self.clients)

    def started(self) -> None:
        self._allocator = self._shm_allocator()
        # shmsink created the socket when it started; make it 0660 (group-shared, never world-writable).
        try:
            os.chmod(self.socket_path, SOCKET_MODE)
            if self._gid is not None:
                os.chown(self.socket_path, -1, self._gid)
                for seg in own_segments():
                    os.chown(seg, -1, self._gid)
        except OSError as e:
            log.warning("could not set mode/group on %s: %s", self.socket_path, e)
        log.info("shared memory: %s, BGR %dx%d", self.socket_path, self.width, self.height)

    def _shm_allocator(self) -> Gst.Allocator | None:
        """shmsink's own allocator: frames written straight into the shared area, no extra copy."""
        if self._sink is None:
            return None
        caps = Gst.Caps.from_string(f"video/x-raw,format=BGR,width={self.width},height={self.height}")
        query = Gst.Query.new_allocation(caps, True)
        if not self._sink.get_static_pad("sink").query(query) or query.get_n_allocation_params() == 0:
            return None
        allocator, _params = query.parse_nth_allocation_param(0)
        return allocator

    def _new_buffer(self, size: int) -> Gst.Buffer:
        if self._allocator is not None:
            buf = Gst.Buffer.new_allocate(self._allocator, size, None)
            if buf is not None:  # None when the shared area is full (a consumer holds many frames)
                return buf
        return Gst.Buffer.new_allocate(None, size, None)

    def stopped(self) -> None:
        self._appsrc = None
        self._sink = None
        self._allocator = None
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

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        appsrc, frames = self._appsrc, self._frames
        if sample is None or appsrc is None or frames is None:
            return Gst.FlowReturn.OK
        inbuf = sample.get_buffer()
        s = sample.get_caps().get_structure(0)
        in_w, in_h = s.get_int("width")[1], s.get_int("height")[1]
        meta = frames.frame_meta(inbuf) or FrameMeta(inbuf.offset, 0, 0, False)
        w, h = self.width, self.height
        out = self._new_buffer(buffer_size(w, h))
        try:
            with mapped(inbuf, Gst.MapFlags.READ) as src, mapped(out, Gst.MapFlags.WRITE) as dst_mem:
                yuv = np.frombuffer(src, np.uint8, count=in_w * in_h * 3 // 2).reshape(in_h * 3 // 2, in_w)
                dst = np.ndarray((h, w, 3), np.uint8, buffer=dst_mem)
                if (in_w, in_h) == (w, h):
                    cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420, dst=dst)
                else:
                    with self._lock:
                        if self._scratch is None or self._scratch.shape[:2] != (in_h, in_w):
                            self._scratch = np.empty((in_h, in_w, 3), np.uint8)
                        cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420, dst=self._scratch)
                        cv2.resize(self._scratch, (w, h), dst=dst, interpolation=cv2.INTER_AREA)
                info = FrameInfo(meta.seq, meta.capture_ns, meta.capture_wall_ns, w, h, meta.placeholder)
                trailer = np.ndarray((TRAILER_SIZE,), np.uint8, buffer=dst_mem, offset=w * h * 3)
                trailer[:] = np.frombuffer(info.pack(), np.uint8)
        except MapError:
            return Gst.FlowReturn.OK
        out.pts = inbuf.pts
        out.duration = inbuf.duration
        out.offset = inbuf.offset
        self.frames_sent += 1
        appsrc.emit("push-buffer", out)
        return Gst.FlowReturn.OK
