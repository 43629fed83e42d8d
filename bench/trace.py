"""Where the backend's time goes, by GStreamer's own tracers: the capture process's elements, 1080p30, correction
on, idle and with every people-facing output watched.

Runs the service with GST_TRACERS="latency(flags=pipeline+element);interlatency" and reads the capture
process's `element-latency` records (time from an element's sink pad to the buffer leaving its src pad,
including what runs downstream in the same thread for a tee) from the debug log. The streaming process's
records are left out: they are not on the backend's path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.backend import Load, finish, reader
from bench.common import free_ports, percentile, service_env, stop, table, wait_for, wait_port, window, write_report
from cuecast.media.demo import demo_calibration_path

SECONDS = window(12, 3)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECORD = re.compile(r"element-latency, element-id=\(string\)\S+, element=\(string\)([^,]+), src=\(string\)[^,]+, "
                    r"time=\(guint64\)(\d+)")
# What each element of the capture pipeline is (pipeline.py, outputs/shm.py).
ROLES = {
    "cuecast_entry": "entry valve (demand)", "cuecast_fisheye": "cuecastremap: the correction (native)",
    "cuecast_balance": "videobalance (passthrough at default saturation/hue)",
    "cuecast_tee": "tee (the shm branch runs inside it, then the ring's queue)",
    "shm_valve": "shm valve", "shm_pack": "cuecastpack: I420 -> BGR + trailer into shared memory (native)",
    "q_ring": "ring queue (its own thread)", "ring_pack": "cuecastpack: I420 copy into the ring",
}


def traced(tmp: Path, load: bool) -> dict[str, list[float]]:
    ports = free_ports(4)
    sock = tmp / f"trace-{load}"
    log = tmp / f"trace-{load}.gstlog"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUECAST_")}
    env.update(service_env(ports))
    env.update({"GST_TRACERS": "latency(flags=pipeline+element);interlatency", "GST_DEBUG": "GST_TRACER:7",
                "GST_DEBUG_FILE": str(log), "GST_DEBUG_NO_COLOR": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "cuecast", "serve", "--source", "test:ball", "--calibration",
                             str(demo_calibration_path()), "--shm-socket", str(sock)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    capture_pid = ""
    try:
        wait_for(sock, 30)
        wait_port(ports[0])
        import httpx

        capture_pid = str(httpx.get(f"http://127.0.0.1:{ports[0]}/api/status", timeout=5).json()
                          ["processes"]["capture"]["pid"])
        extra = Load(ports, SECONDS + 6) if load else None
        time.sleep(3)
        finish(reader(sock, SECONDS, "none"))
        if extra is not None:
            extra.result()
    finally:
        stop(proc)
    out: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text(errors="replace").splitlines():
        line = ANSI.sub("", line)
        fields = line.split()
        if len(fields) > 2 and fields[1] == capture_pid and (m := RECORD.search(line)):
            out[m.group(1)].append(int(m.group(2)) / 1e6)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        idle = traced(Path(d), False)
        busy = traced(Path(d), True)
    rows = []
    for name, role in ROLES.items():
        a, b = idle.get(name, []), busy.get(name, [])
        if not a and not b:
            continue
        fmt = lambda v: f"{percentile(v, 50):.2f} / {percentile(v, 99):.2f}" if v else "-"  # noqa: E731
        rows.append([name, role, fmt(a), fmt(b)])
    body = ("1920x1080@30 test source, demo lens correction on, one shm reader; full load adds 2 RTSP clients and "
            "10 + 3 MJPEG readers. Per element of the capture process, ms p50 / p99 (tracers on: add ~10 %).\n\n"
            + table(["element", "does", "idle", "full load"], rows))
    write_report("trace", "Capture path per element (GStreamer latency tracer)", body)


if __name__ == "__main__":
    main()
