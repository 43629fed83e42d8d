"""Replay bench: what keeping the last seconds costs, and how fast a clip is written.

Same run, same source (the 1080p30 camera-like MJPEG clip), the service at its defaults otherwise:
- A: replay off, one RTSP player (ffmpeg -f null): the encoder runs for that player;
- B: replay on (30 s kept), nobody watching: the encoder runs for the ring.
A is measured before and after B (the machine is shared): B / A is the price of replay beyond the encoder.
In B: the ring's memory against seconds x the stream's measured bitrate, the streaming process's RSS growth,
and the wall time of POST /api/clips for 30 s (the file complete when it answers), checked with ffprobe.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil

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
from bench.rtsp import player

WINDOW_S = window(10, 2)
SECONDS = int(window(30, 5))
WRITES = int(window(3, 1))


def streaming_rss_mib(pid: int) -> float:
    for c in psutil.Process(pid).children():
        if "_stream" in c.cmdline():
            return c.memory_info().rss / 2**20
    return float("nan")


def status(api: str) -> dict:
    return httpx.get(f"{api}/api/status", timeout=10).json()


def run_a(d: Path, tag: str) -> list[float]:
    ports = free_ports(4)
    proc = start_service("--source", str(CLIP), "--shm-socket", str(d / f"a{tag}"), env_extra=service_env(ports),
                         log=d / f"a{tag}.log")
    try:
        wait_port(ports[3])
        client = [player(f"rtsp://127.0.0.1:{ports[3]}/high")]
        time.sleep(4)
        cpus = [cpu_percent(proc.pid, WINDOW_S)[0] for _ in range(2)]
        stop_all(client)
        return cpus
    finally:
        stop(proc)


def run_b(d: Path) -> tuple[list[float], dict[str, float], list[float], dict]:
    ports = free_ports(4)
    env = {**service_env(ports), "CUECAST_REPLAY__ENABLED": "true", "CUECAST_REPLAY__DIR": str(d / "clips"),
           "CUECAST_REPLAY__SECONDS": str(SECONDS)}
    proc = start_service("--source", str(CLIP), "--shm-socket", str(d / "b"), env_extra=env, log=d / "b.log")
    api = f"http://127.0.0.1:{ports[0]}"
    try:
        wait_port(ports[0])
        while status(api)["replay"]["seconds_held"] < 1:
            time.sleep(0.2)
        rss0 = streaming_rss_mib(proc.pid)
        st0, t0 = status(api), time.monotonic()
        while status(api)["replay"]["seconds_held"] < SECONDS:
            time.sleep(0.5)
        cpus = [cpu_percent(proc.pid, WINDOW_S)[0] for _ in range(2)]
        st1, t1 = status(api), time.monotonic()
        h0, h1 = st0["outputs"]["h264"], st1["outputs"]["h264"]
        bitrate = (h1["bytes_encoded"] - h0["bytes_encoded"]) / (t1 - t0)  # bytes per second, measured
        mem = {"held_s": st1["replay"]["seconds_held"], "held_bytes": st1["replay"]["bytes_held"],
               "bitrate": bitrate, "rss_growth": streaming_rss_mib(proc.pid) - rss0}
        writes, clip = [], {}
        for _ in range(WRITES):
            w0 = time.monotonic()
            r = httpx.post(f"{api}/api/clips", json={"seconds": SECONDS, "label": "bench"}, timeout=60)
            writes.append(time.monotonic() - w0)
            r.raise_for_status()
            clip = r.json()
            time.sleep(1)
        path = d / "clips" / f"{clip['id']}.mp4"
        probe = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "stream=codec_name,width,height,"
             "nb_frames", "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout)["streams"][0]
        return cpus, mem, writes, {**clip, **probe}
    finally:
        stop(proc)


def main() -> None:
    make_mjpeg_clip(CLIP)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        a = run_a(d, "1")
        b, mem, writes, clip = run_b(d)
        a += run_a(d, "2")
    ratio = statistics.median(b) / statistics.median(a)
    ring_ratio = mem["held_bytes"] / (SECONDS * mem["bitrate"])
    rows = [
        ["CPU %, replay off, 1 RTSP player (A, before and after B)", spread(a), ""],
        ["CPU %, replay on, nobody watching (B)", spread(b), ""],
        ["B / A (medians)", f"{ratio:.2f}", "<= 1.05"],
        [f"ring: seconds held (asked {SECONDS})", f"{mem['held_s']:.1f}", f"{SECONDS} .. {SECONDS} + 1 key interval"],
        ["ring: MiB held", f"{mem['held_bytes'] / 2**20:.1f}", ""],
        ["stream bitrate, measured (Mbit/s)", f"{mem['bitrate'] * 8 / 1e6:.2f}", "h264.bitrate_kbps 4000"],
        ["ring bytes / (seconds x measured bitrate)", f"{ring_ratio:.2f}", "<= 1.2"],
        ["streaming process RSS growth while the ring filled (MiB)", f"{mem['rss_growth']:.1f}", ""],
        [f"POST /api/clips {SECONDS} s: wall time to a complete file (s), min/median/max of {WRITES}",
         spread(writes, "{:.2f}"), "<= 1 s"],
        ["clip: duration (s), size (MiB)", f"{clip['duration']:.2f}, {clip['bytes'] / 2**20:.1f}",
         f"{SECONDS} .. {SECONDS} + 1"],
        ["clip: ffprobe", f"{clip['codec_name']} {clip['width']}x{clip['height']}, {clip['nb_frames']} frames",
         "h264 1920x1080"],
    ]
    body = ("Source: 1080p30 MJPEG clip (camera-like, detailed; no lens correction: it costs both sides the "
            f"same), 1920x1080@30 H.264 4 Mbit/s, key frame every 30 frames; {WINDOW_S} s CPU windows, % of one "
            "core for the whole service (supervisor and "
            "both processes).\n\n" + table(["measure", "value", "target"], rows))
    write_report("replay", "Instant replay", body)


if __name__ == "__main__":
    main()
