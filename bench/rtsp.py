"""RTSP bench: encoder cost per 1080p frame, service CPU with 0/1/3 clients, connect-to-first-frame time.

Source: the 1080p30 MJPEG clip (camera-like). Clients are ffmpeg decoders (`-f null`); their CPU is not
the service's. "3 clients cost the same as 1" is stated as a ratio measured in the same run.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import (
    cpu_percent,
    free_ports,
    make_mjpeg_clip,
    service_env,
    spread,
    start_service,
    stop,
    stop_all,
    table,
    window,
    write_report,
)
from bench.mjpeg import CLIP, wait_port

WINDOW_S = window(10, 2)
FIRST_FRAME_TRIES = int(window(5, 1))


def encoder_alone_ms(frames: int = 300) -> float:
    """x264enc as configured, alone on 1080p I420 frames: CPU ms per frame (user+sys of gst-launch)."""
    import resource

    cmd = ("gst-launch-1.0 -q videotestsrc num-buffers={n} pattern=ball ! video/x-raw,format=I420,width=1920,"
           "height=1080,framerate=30/1 ! {enc} ! fakesink")
    base = cmd.format(n=frames, enc="identity")
    enc = cmd.format(n=frames, enc="x264enc tune=zerolatency speed-preset=ultrafast bitrate=4000 key-int-max=30")

    def cpu_of(c: str) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(c.split(), check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    return (cpu_of(enc) - cpu_of(base)) / frames * 1000


def player(url: str, transport: str = "tcp") -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ffmpeg", "-nostdin", "-v", "quiet", "-rtsp_transport", transport, "-i", url,
                             "-f", "null", "-"])


FIRST_FRAME_CLIENTS = {
    # A GStreamer player: RTSP handshake, first key frame, decode.
    "gst-launch rtspsrc latency=0": "gst-launch-1.0 -q rtspsrc location={url} latency=0 protocols=tcp "
                                    "! rtph264depay ! avdec_h264 ! fakesink num-buffers=1",
    # ffmpeg as is: adds its own stream probing (analyzeduration) before the first frame.
    "ffmpeg (default probing)": "ffmpeg -nostdin -v quiet -rtsp_transport tcp -i {url} -frames:v 1 -f null -",
}


def first_frame_s(cmd: str) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd.split(), check=True, timeout=30)
    return time.monotonic() - t0


def main() -> None:
    make_mjpeg_clip(CLIP)
    enc_ms = encoder_alone_ms()
    ports = free_ports(4)
    url = f"rtsp://127.0.0.1:{ports[3]}/high"
    with tempfile.TemporaryDirectory() as d:
        proc = start_service("--source", str(CLIP), "--shm-socket", str(Path(d) / "s"),
                             env_extra=service_env(ports), log=Path(d) / "rtsp.log")
        try:
            wait_port(ports[3])
            time.sleep(3)
            cpu0, _ = cpu_percent(proc.pid, WINDOW_S)
            clients = [player(url)]
            time.sleep(3)
            cpu1, _ = cpu_percent(proc.pid, WINDOW_S)
            clients += [player(url, "udp"), player(url)]
            time.sleep(3)
            cpu3, _ = cpu_percent(proc.pid, WINDOW_S)
            stop_all(clients)
            time.sleep(3)
            firsts = {name: [first_frame_s(cmd.format(url=url)) for _ in range(FIRST_FRAME_TRIES)]
                      for name, cmd in FIRST_FRAME_CLIENTS.items()}
        finally:
            stop(proc)
    rows = [
        ["x264enc ultrafast alone, CPU ms per 1080p frame", f"{enc_ms:.1f}", ""],
        ["service CPU %, 0 RTSP clients", f"{cpu0:.1f}", "encoder idle"],
        ["service CPU %, 1 client", f"{cpu1:.1f}", ""],
        ["service CPU %, 3 clients (tcp, udp, tcp)", f"{cpu3:.1f}", ""],
        ["3 clients / 1 client CPU", f"{cpu3 / cpu1:.2f}", "~1.0"],
        ["encoder share of one client ((1 - 0) clients, % of a core)", f"{cpu1 - cpu0:.1f}", ""],
    ]
    rows += [[f"connect to first decoded frame (s), {name}, min/median/max of {FIRST_FRAME_TRIES}",
              spread(times, "{:.2f}"), "<= 1 s"] for name, times in firsts.items()]
    body = ("Source: 1080p30 MJPEG clip; RTSP 1920x1080@30, 4 Mbit/s, key frame every 30 frames. Players are "
            f"`ffmpeg -f null`; {WINDOW_S} s windows; CPU is % of one core for the service process.\n\n"
            + table(["measure", "value", "target"], rows))
    write_report("rtsp", "RTSP H.264", body)


if __name__ == "__main__":
    main()
