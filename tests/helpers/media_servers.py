"""Real media servers for the publish tests: nginx with the RTMP module (RTMP + HLS), and an RTSP server
that accepts RECORD (gst-rtsp-server, as MediaMTX would), both on loopback ports."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import gi

gi.require_version("GstRtspServer", "1.0")
from gi.repository import GstRtspServer  # noqa: E402

from cuecast.core.gst import GLib, Gst  # noqa: E402

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


class Nginx:
    """nginx-rtmp re-serving what is published to rtmp://127.0.0.1:PORT/live/NAME as RTMP and HLS."""

    def __init__(self, root: Path, rtmp_port: int, http_port: int) -> None:
        self.root, self.rtmp_port, self.http_port = root, rtmp_port, http_port
        (root / "hls").mkdir(parents=True, exist_ok=True)
        user = "user root;" if os.geteuid() == 0 else ""  # workers must write the HLS files in our temp dir
        self.conf = root / "nginx.conf"
        self.conf.write_text(f"""
load_module {RTMP_MODULE};
daemon off; worker_processes 1; {user}
pid {root}/nginx.pid; error_log {root}/error.log info;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{rtmp_port};
  application live {{ live on; hls on; hls_path {root}/hls; hls_fragment 1s; hls_playlist_length 6s; }} }} }}
http {{ access_log off; client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
  server {{ listen 127.0.0.1:{http_port};
    location /hls {{ root {root}; types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }} }} }} }}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["nginx", "-c", str(self.conf), "-p", str(self.root)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", self.rtmp_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {self.rtmp_port}: {(self.root / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def rtmp_url(self, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{name}"

    def hls_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls/{name}.m3u8"


class RtspRecordServer:
    """Accepts RTSP RECORD on rtsp://127.0.0.1:PORT/NAME and counts the H.264 frames received."""

    def __init__(self, port: int, mount: str = "/table") -> None:
        self.port, self.mount = port, mount
        self.frames = 0
        self.caps: Gst.Caps | None = None
        self._loop = GLib.MainLoop(GLib.MainContext.new())
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ctx = self._loop.get_context()
        server = GstRtspServer.RTSPServer()
        server.set_address("127.0.0.1")
        server.set_service(str(self.port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        factory.set_launch("( rtph264depay name=depay0 ! h264parse ! video/x-h264,alignment=au "
                           "! appsink name=sink emit-signals=true sync=false )")
        factory.connect("media-configure", self._on_media)
        server.get_mount_points().add_factory(self.mount, factory)
        server.attach(ctx)
        self._server = server
        self._thread = threading.Thread(target=self._loop.run, daemon=True)
        self._thread.start()

    def _on_media(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        sink = media.get_element().get_by_name_recurse_up("sink")
        sink.connect("new-sample", self._on_sample)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        self.caps = sample.get_caps()
        self.frames += 1
        return Gst.FlowReturn.OK

    def size(self) -> tuple[int, int] | None:
        if self.caps is None:
            return None
        s = self.caps.get_structure(0)
        return s.get_value("width"), s.get_value("height")

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def stop(self) -> None:
        self._loop.quit()
