"""HTTP MJPEG bench: CPU vs clients on :8001, source->client latency, and the naive baseline.

Source: a 1080p30 MJPEG clip (camera-like). Clients are curl processes (cheap, real HTTP) so the bench's
own reading does not weigh on the service. The naive per-client-encode server runs on the same clip in
the same run, so the comparison is a ratio on the same machine at the same time.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    QUICK,
    cpu_percent,
    curl_clients,
    free_ports,
    make_mjpeg_clip,
    percentile,
    save_plot,
    service_env,
    start_service,
    stop,
    stop_all,
    table,
    wait_port,
    window,
    write_report,
)

WINDOW_S = window(10, 1)
WARMUP_S = window(3, 1)
CLIENT_COUNTS = (0, 1, 5, 10, 20)
NAIVE_COUNTS = (1, 5, 10) if not QUICK else (10,)  # 20 per-client encodes of 720p30 do not fit two cores at all
CLIP = Path(tempfile.gettempdir()) / "cuecast-bench-1080p30-mjpeg.mkv"


def measure_latency(port: int, seconds: float) -> tuple[list[float], float]:
    """Arrival time of each part minus its X-Capture-Ns (CLOCK_MONOTONIC, same machine)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    buf, lat, n = b"", [], 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        buf += s.recv(1 << 20)
        now = time.monotonic_ns()
        while True:
            i = buf.find(b"X-Capture-Ns: ")
            if i < 0:
                break
            j = buf.find(b"\r\n", i)
            if j < 0:
                break
            cap = int(buf[i + 14:j])
            # the part counts as arrived once its whole JPEG is here
            k = buf.find(b"Content-Length: ", 0, i)
            length = int(buf[k + 16:buf.find(b"\r\n", k)]) if k >= 0 else 0
            end = buf.find(b"\r\n\r\n", j) + 4 + length
            if end > len(buf):
                break
            if cap:
                lat.append((now - cap) / 1e6)
            n += 1
            buf = buf[end:]
    s.close()
    return lat, n / seconds


def cuecast_runs(tmp: Path) -> tuple[dict[int, float], list[float], float]:
    ports = free_ports(3)
    env = service_env(ports) | {"CUECAST_MJPEG__HIGH__ENABLED": "false"}
    proc = start_service("--source", str(CLIP), "--shm-socket", str(tmp / "sock"), log=tmp / "http.log",
                         env_extra=env)
    cpu: dict[int, float] = {}
    try:
        wait_port(ports[1])
        time.sleep(WARMUP_S)
        for n in CLIENT_COUNTS:
            clients = curl_clients(f"http://127.0.0.1:{ports[1]}/", n)
            time.sleep(2)
            cpu[n], _ = cpu_percent(proc.pid, WINDOW_S)
            stop_all(clients)
            time.sleep(1)
        lat, fps = measure_latency(ports[1], window(20, 3))
    finally:
        stop(proc)
    return cpu, lat, fps


def naive_run(clients: int) -> tuple[float, float]:
    port = free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("naive_mjpeg_server.py")), str(CLIP),
                             str(port)])
    try:
        wait_port(port)
        time.sleep(WARMUP_S)
        readers = curl_clients(f"http://127.0.0.1:{port}/", clients - 1)
        time.sleep(2)
        import threading

        res: dict[str, tuple[float, float]] = {}
        t = threading.Thread(target=lambda: res.update(cpu=cpu_percent(proc.pid, WINDOW_S)))
        t.start()
        _lat, fps = measure_latency_naive(port, WINDOW_S)
        t.join()
        stop_all(readers)
        return res["cpu"][0], fps
    finally:
        stop(proc)


def measure_latency_naive(port: int, seconds: float) -> tuple[None, float]:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    n, buf = 0, b""
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        buf += s.recv(1 << 20)
        c = buf.count(b"--frame\r\n")
        if c:
            n += c
            buf = buf[buf.rfind(b"--frame\r\n") + 9:]
    s.close()
    return None, n / seconds


def main() -> None:
    make_mjpeg_clip(CLIP)
    with tempfile.TemporaryDirectory() as d:
        cpu, lat, fps = cuecast_runs(Path(d))
    naive = {n: naive_run(n) for n in NAIVE_COUNTS}
    naive_cpu, naive_fps = naive[10]
    per_client = (cpu[20] - cpu[1]) / 19
    rows = [[f"cuecast, {n} clients on :8001", f"{cpu[n]:.1f}", ""] for n in CLIENT_COUNTS]
    rows += [
        ["cuecast, CPU per extra client (20 vs 1)", f"{per_client:.2f}", "<= 0.5"],
        *[[f"naive per-client-encode server, {n} clients (fps per client {naive[n][1]:.1f})", f"{naive[n][0]:.1f}",
           ""] for n in NAIVE_COUNTS],
        ["naive / cuecast CPU at 10 clients", f"{naive_cpu / max(cpu[10], 0.1):.1f}x", ">= 10x"],
        ["naive / cuecast marginal CPU of 10 clients (vs 0 clients)",
         f"{(naive_cpu) / max(cpu[10] - cpu[0], 0.1):.1f}x", ""],
    ]
    lat_rows = [["source -> client latency p50 (ms)", f"{percentile(lat, 50):.1f}", ""],
                ["source -> client latency p99 (ms)", f"{percentile(lat, 99):.1f}", "<= 50"],
                ["frames per second received by the latency client", f"{fps:.1f}", "30"]]
    body = (
        f"Source: 1080p30 MJPEG clip (camera-like), medium output 1280x720@30 q80; {WINDOW_S} s windows; "
        "clients are curl processes; CPU is % of one core for the whole service process.\n\n"
        + table(["scenario", "CPU %", "target"], rows) + "\n\n" + table(["measure", "value", "target"], lat_rows)
    )
    def cpu_plot(ax: Any) -> None:
        ax.plot(list(CLIENT_COUNTS), [cpu[n] for n in CLIENT_COUNTS], "o-", label="cuecast (encode once)")
        ax.plot(list(NAIVE_COUNTS), [naive[n][0] for n in NAIVE_COUNTS], "s--", color="red",
                label="naive per-client encode")
        ax.set_xlabel("MJPEG clients on :8001")
        ax.set_ylabel("service CPU, % of one core")
        ax.legend()

    def lat_plot(ax: Any) -> None:
        ax.hist(lat, bins=40)
        ax.set_xlabel("source -> client latency (ms), 720p30")
        ax.set_ylabel("frames")

    body += save_plot("mjpeg_cpu_vs_clients", cpu_plot) + save_plot("mjpeg_latency", lat_plot)
    write_report("mjpeg", "HTTP MJPEG fan-out", body)


if __name__ == "__main__":
    main()
