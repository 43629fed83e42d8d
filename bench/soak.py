"""`make soak`: the service at full load for SOAK_MINUTES (default 10): RSS growth, file descriptors,
frame rates and pipeline restarts over time, as a table and a plot (bench/results/soak.md, soak.png).

Targets (issue 9): RSS growth <= 5 % after warm-up, fd count flat, 0 pipeline restarts, outputs at nominal
fps throughout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.common import RESULTS, free_ports, make_mjpeg_clip, service_env, start_service, stop, table, write_report
from bench.mjpeg import CLIP, wait_port
from cuecast.media.demo import demo_calibration_path

MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
SAMPLE_S = 10
WARMUP_S = 30


def main() -> None:
    make_mjpeg_clip(CLIP)
    duration = MINUTES * 60
    ports = free_ports(4)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as d:
        sock = Path(d) / "soak"
        proc = start_service("--source", str(CLIP), "--calibration", str(demo_calibration_path()),
                             "--shm-socket", str(sock), env_extra=service_env(ports), log=Path(d) / "soak.log")
        api = f"http://127.0.0.1:{ports[0]}"
        clients: list[subprocess.Popen[str]] = []
        try:
            wait_port(ports[0])
            clients.append(subprocess.Popen([sys.executable, "-m", "cuecast", "consume", "--socket", str(sock)],
                                            stdout=subprocess.DEVNULL, text=True))
            url = f"rtsp://127.0.0.1:{ports[3]}/high"
            clients += [subprocess.Popen(["ffmpeg", "-nostdin", "-v", "quiet", "-rtsp_transport", t, "-i", url,
                                          "-f", "null", "-"], text=True) for t in ("tcp", "udp")]
            clients.append(subprocess.Popen([sys.executable, str(Path(__file__).with_name("readers.py")),
                                             str(duration + WARMUP_S + 60), f"{ports[1]}:10", f"{ports[2]}:3"],
                                            stdout=subprocess.DEVNULL, text=True))
            p = psutil.Process(proc.pid)
            t0 = time.monotonic()
            last = httpx.get(f"{api}/api/status", timeout=5).json()
            p.cpu_percent(None)
            while time.monotonic() - t0 < duration + WARMUP_S:
                time.sleep(SAMPLE_S)
                st = httpx.get(f"{api}/api/status", timeout=5).json()
                o, lo = st["outputs"], last["outputs"]
                rows.append({
                    "t": time.monotonic() - t0, "rss": p.memory_info().rss / 2**20, "fds": p.num_fds(),
                    "cpu": p.cpu_percent(None),
                    "src_fps": (st["source"]["frames"] - last["source"]["frames"]) / SAMPLE_S,
                    "medium_fps": o["mjpeg_medium"]["fps"], "low_fps": o["mjpeg_low"]["fps"],
                    "shm_fps": (o["shm"]["frames_sent"] - lo["shm"]["frames_sent"]) / SAMPLE_S,
                    "restarts": st["pipeline"]["restarts"],
                })
                last = st
        finally:
            for c in clients:
                c.terminate()
            stop(proc)
    steady = [r for r in rows if r["t"] > WARMUP_S]
    rss0, rss1 = steady[0]["rss"], steady[-1]["rss"]
    growth = 100 * (rss1 - rss0) / rss0
    fds = [r["fds"] for r in steady]
    summary = [
        ["duration after warm-up (min)", f"{(steady[-1]['t'] - steady[0]['t']) / 60:.1f}", f"{MINUTES:g}"],
        ["RSS start -> end (MiB)", f"{rss0:.0f} -> {rss1:.0f} ({growth:+.1f}%)", "<= +5%"],
        ["file descriptors min / max", f"{min(fds)} / {max(fds)}", "flat"],
        ["pipeline restarts", f"{steady[-1]['restarts']}", "0"],
        ["source fps min", f"{min(r['src_fps'] for r in steady):.1f}", ">= 29.5"],
        ["shm fps min", f"{min(r['shm_fps'] for r in steady):.1f}", ">= 29.5"],
        ["MJPEG 8001 fps min", f"{min(r['medium_fps'] for r in steady):.1f}", ">= 29.5"],
        ["MJPEG 8002 fps min", f"{min(r['low_fps'] for r in steady):.1f}", ">= 14.8"],
        ["CPU % median", f"{sorted(r['cpu'] for r in steady)[len(steady) // 2]:.0f}", ""],
    ]
    (RESULTS / "soak.json").write_text(json.dumps(rows))
    plot = RESULTS / "soak.png"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        ts = [r["t"] / 60 for r in rows]
        ax[0].plot(ts, [r["rss"] for r in rows], label="RSS MiB")
        ax[0].plot(ts, [r["fds"] for r in rows], label="fds")
        ax[0].legend()
        for key in ("src_fps", "shm_fps", "medium_fps", "low_fps"):
            ax[1].plot(ts, [r[key] for r in rows], label=key)
        ax[1].set_xlabel("minutes")
        ax[1].legend()
        fig.savefig(plot, dpi=80)
        picture = f"\n\n![soak]({plot.name})"
    except ImportError:
        picture = "\n\n(matplotlib not installed: no plot)"
    write_report("soak", "Soak at full load", table(["measure", "value", "target"], summary) + picture)


if __name__ == "__main__":
    main()
