"""Spine bench: shm latency at 1080p30, service CPU with one consumer, start-to-first-frame, and what a
backend sees across a service restart (SIGTERM, the service gone, a new one started, as `systemctl restart`).

Baseline in the same run: a plain gst-launch pipeline doing the same job (testsrc -> BGR -> shmsink),
so the CPU figure is also stated as a ratio that survives a noisy machine.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    cpu_percent,
    percentile,
    save_plot,
    spread,
    start_service,
    stop,
    table,
    wait_for,
    window,
    write_report,
)
from cuecast.consumer import GStreamerFrameConsumer

SECONDS = window(20, 3)
REPEATS = int(window(3, 1))
SOURCE = ("--source", "test:ball", "--width", "1920", "--height", "1080", "--fps", "30")


def start_to_first_frame(tmp: Path) -> list[float]:
    times = []
    for i in range(REPEATS):
        sock = tmp / f"first-{i}"
        with GStreamerFrameConsumer(sock, reconnect_interval=0.02) as c:
            t0 = time.monotonic()
            proc = start_service(*SOURCE, "--shm-socket", str(sock))
            try:
                if c.get_frame(timeout=20) is None:
                    raise RuntimeError("no frame within 20 s")
                times.append(time.monotonic() - t0)
            finally:
                stop(proc)
    return times


def restart_gaps(tmp: Path) -> tuple[list[float], list[float], list[float]]:
    """A backend reading all along while the service restarts: (frame gap, stop time, new start to first
    frame) per run, seconds. The consumer is the library's, with its default retry."""
    gaps, stops, starts = [], [], []
    sock = tmp / "restart"
    proc = start_service(*SOURCE, "--shm-socket", str(sock))
    try:
        with GStreamerFrameConsumer(sock) as c:
            if c.get_frame(timeout=20) is None:
                raise RuntimeError("no frame within 20 s")
            for _ in range(REPEATS):
                time.sleep(1.0)
                seq = c.frames_received
                t_term = time.monotonic()
                last = c.last_received_ns / 1e9
                stop(proc)
                t_gone = time.monotonic()
                proc = start_service(*SOURCE, "--shm-socket", str(sock))
                deadline = t_gone + 20
                while c.frames_received <= seq or c.last_received_ns / 1e9 < t_gone:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the consumer did not resume within 20 s")
                    time.sleep(0.002)
                first = c.last_received_ns / 1e9
                gaps.append(first - last)
                stops.append(t_gone - t_term)
                starts.append(first - t_gone)
    finally:
        stop(proc)
    return gaps, stops, starts


def latency_and_cpu(tmp: Path) -> tuple[list[float], float, float, float]:
    sock = tmp / "lat"
    proc = start_service(*SOURCE, "--shm-socket", str(sock), log=tmp / "lat.log")
    try:
        wait_for(sock)
        lat: list[float] = []
        with GStreamerFrameConsumer(sock) as c:
            c.get_frame(timeout=10)
            time.sleep(2)  # warm-up
            t_end = time.monotonic() + SECONDS
            n0 = c.frames_received
            cpu, rss = None, None
            import threading

            result: dict[str, tuple[float, float]] = {}
            sampler = threading.Thread(target=lambda: result.update(cpu=cpu_percent(proc.pid, SECONDS - 1)))
            sampler.start()
            while time.monotonic() < t_end:
                got = c.read(timeout=1)
                if got is not None:
                    lat.append((c.last_received_ns - got[1].capture_ns) / 1e6)
            fps = (c.frames_received - n0) / SECONDS
            sampler.join()
            cpu, rss = result["cpu"]
        return lat, fps, cpu, rss
    finally:
        stop(proc)


def baseline_cpu(tmp: Path) -> float:
    """gst-launch doing the same work by hand (videotestsrc ball 1080p30 -> videoconvert BGR -> shmsink)."""
    sock = tmp / "baseline"
    cmd = (
        "gst-launch-1.0 -q videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=1920,height=1080,"
        f"framerate=30/1 ! videoconvert ! video/x-raw,format=BGR ! shmsink socket-path={sock} "
        "wait-for-connection=false sync=false shm-size=100000000"
    )
    proc = subprocess.Popen(cmd.split(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(sock)
        with GStreamerFrameConsumer(sock, width=1920, height=1080) as c:
            c.get_frame(timeout=10)
            time.sleep(2)
            cpu, _ = cpu_percent(proc.pid, SECONDS - 1)
        return cpu
    finally:
        stop(proc)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        firsts = start_to_first_frame(tmp)
        gaps, stops, starts = restart_gaps(tmp)
        lat, fps, cpu, rss = latency_and_cpu(tmp)
        base = baseline_cpu(tmp)
    rows = [
        ["start to first frame (s), min/median/max of 3", spread(firsts, "{:.2f}"), "<= 2 s"],
        [f"service restart: backend's frame gap (s), min/median/max of {len(gaps)}", spread(gaps, "{:.2f}"), ""],
        ["  ... of it, stopping the old service (s)", spread(stops, "{:.2f}"), ""],
        ["  ... of it, new service started to the backend's first frame (s)", spread(starts, "{:.2f}"), "<= 1 s"],
        ["shm latency p50 (ms)", f"{percentile(lat, 50):.2f}", ""],
        ["shm latency p99 (ms)", f"{percentile(lat, 99):.2f}", "<= 5 ms"],
        ["shm latency max (ms)", f"{max(lat):.2f}", ""],
        ["frames received per s", f"{fps:.1f}", "30"],
        ["service CPU, 1 consumer (% of a core)", f"{cpu:.1f}", ""],
        ["baseline gst-launch testsrc->videoconvert BGR->shmsink (% of a core)", f"{base:.1f}", ""],
        ["service / baseline CPU", f"{cpu / base:.2f}", ""],
        ["service RSS (MiB)", f"{rss:.0f}", ""],
    ]
    body = (
        f"Source `test:ball` 1920x1080@30, one `GStreamerFrameConsumer`, {SECONDS} s after a 2 s warm-up. "
        "Latency is capture time (carried in the frame trailer) to the consumer holding a numpy copy.\n\n"
        + table(["measure", "value", "target"], rows)
    )
    def hist(ax: Any) -> None:
        ax.hist(lat, bins=40)
        ax.set_xlabel("capture -> consumer latency (ms), 1080p30 shared memory")
        ax.set_ylabel("frames")

    body += save_plot("spine_latency", hist)
    write_report("spine", "Spine: shared-memory output at 1080p30", body)


if __name__ == "__main__":
    main()
