"""Bench helpers: start the real service, sample a process's CPU and RSS, print and write tables.

`make bench` runs every scenario at full length into bench/results/. `CUECAST_BENCH_QUICK=1` runs each for a
few seconds (what `make test` does, so a broken bench fails CI: tests/integration/test_bench_quick.py) and
`CUECAST_BENCH_RESULTS=DIR` writes the tables there instead.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import psutil

# Before anything loads GStreamer plugins: importing matplotlib's FreeType extension after them aborted the
# process (a library loaded twice under different versions).
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cuecast.core.ports import free_ports  # noqa: F401 - re-exported for the benches

RESULTS = Path(os.environ.get("CUECAST_BENCH_RESULTS") or Path(__file__).parent / "results")
QUICK = os.environ.get("CUECAST_BENCH_QUICK") == "1"


def window(full: float, quick: float = 3) -> float:
    """A measuring window (or a count): `full` in `make bench`, `quick` in the quick form."""
    return quick if QUICK else full


def gap_around(arrivals_ms: Sequence[float], t_event: float, t_end: float) -> float:
    """The backend's longest wait (ms) from one second before an event (CLOCK_MONOTONIC s) to t_end: between
    consecutive frames, and from the last frame to t_end, so frames that stop for good count as one long gap
    (not as no gap at all)."""
    t0, t1 = (t_event - 1) * 1000, t_end * 1000
    before = [t for t in arrivals_ms if t < t0]
    inside = [t for t in arrivals_ms if t0 <= t <= t1]
    times = before[-1:] + inside
    if not times:
        return float("inf")
    return max([b - a for a, b in zip(times, times[1:], strict=False)] + [t1 - times[-1]])


_last_log: Path | None = None  # the newest service's log: quoted when what it should make does not appear


def start_service(*args: str, log: Path | None = None, env_extra: dict[str, str] | None = None
                  ) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUECAST_")}
    env.update(env_extra or {"CUECAST_HTTP__ENABLED": "false", "CUECAST_MJPEG__MEDIUM__ENABLED": "false",
                              "CUECAST_MJPEG__LOW__ENABLED": "false", "CUECAST_MJPEG__HIGH__ENABLED": "false",
                              "CUECAST_RTSP__ENABLED": "false"})
    out = open(log, "wb") if log else subprocess.DEVNULL
    global _last_log
    _last_log = log
    return subprocess.Popen([sys.executable, "-m", "cuecast", "serve", *args], stdout=out, stderr=subprocess.STDOUT,
                            env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            tail = _last_log.read_text(errors="replace")[-2000:] if _last_log and _last_log.exists() else ""
            raise TimeoutError(f"{path} did not appear" + (f"; the last service's log ({_last_log}) ends:\n{tail}"
                                                          if tail else ""))
        time.sleep(0.02)


def wait_port(port: int, timeout: float = 30) -> None:
    """Wait until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} not listening")


def _tree(pid: int) -> list[psutil.Process]:
    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds so far of a process and each process below it (cuecast serve: supervisor and workers)."""
    out = {}
    for proc in _tree(pid):
        try:
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def cpu_percent(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU % of one core over the window, RSS MiB at its end) for a process and every process below it."""
    t0 = time.monotonic()
    c0 = tree_cpu_seconds(pid)
    time.sleep(seconds)
    c1 = tree_cpu_seconds(pid)
    wall = time.monotonic() - t0
    used = sum(v - c0.get(k, 0.0) for k, v in c1.items())
    rss = 0.0
    for proc in _tree(pid):
        try:
            rss += proc.memory_info().rss
        except psutil.Error:
            pass
    return 100.0 * used / wall, rss / 2**20


def percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """min / median / max of repeated measurements."""
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(name: str, title: str, body: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    stamp += f", commit {commit()}"
    text = f"## {title}\n\n_measured {stamp} on {machine()}{' (quick form)' if QUICK else ''}_\n\n{body}\n"
    path.write_text(text)
    print(text, flush=True)
    return path


def commit() -> str:
    """The commit measured (with -dirty when the checkout has changes)."""
    root = Path(__file__).resolve().parents[1]
    rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    # Changes to what the bench itself writes (its results, the README's table) do not make the code dirty.
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":!bench/results", ":!README.md"], capture_output=True, text=True)
    return (rev.stdout.strip() or "unknown") + ("-dirty" if dirty.stdout.strip() else "")


def machine() -> str:
    """The machine a result comes from, in a few words: cores, CPU model, memory."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " ".join(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores{', ' + model if model else ''}, {psutil.virtual_memory().total / 2**30:.0f} GiB"


def make_mjpeg_clip(path: Path, seconds: int = 10, size: str = "1920x1080", fps: int = 30) -> Path:
    """A camera-like 1080p30 MJPEG clip (what a USB camera delivers), made once and reused."""
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
             "-c:v", "mjpeg", "-q:v", "4", "-pix_fmt", "yuvj420p", str(path)],
            check=True, timeout=300,
        )
    return path


def service_env(ports: list[int]) -> dict[str, str]:
    """Servers on the given loopback ports: api, medium, low[, rtsp]; RTSP off without a fourth port; the capture
    process at SCHED_RR, as the installed service (NICE_ONLY turns that off)."""
    api, medium, low = ports[:3]
    env = {"CUECAST_HTTP__BIND": "127.0.0.1", "CUECAST_HTTP__PORT": str(api),
           "CUECAST_MJPEG__MEDIUM__PORT": str(medium), "CUECAST_MJPEG__LOW__PORT": str(low),
           "CUECAST_RTSP__BIND": "127.0.0.1",
           # as the installed service runs: `cuecast install-service` turns priority.realtime on (SCHED_RR)
           "CUECAST_PRIORITY__REALTIME": "true"}
    if len(ports) > 3:
        env["CUECAST_RTSP__PORT"] = str(ports[3])
    else:
        env["CUECAST_RTSP__ENABLED"] = "false"
    return env


NICE_ONLY = {"CUECAST_PRIORITY__REALTIME": "false"}  # the capture process at nice -5 only, as `make run` runs it


class RtspPlayer:
    """A real RTSP player (ffmpeg, decoding to nothing) for `seconds` of stream. Its progress goes to a file, not
    a pipe: ffmpeg writes a line twice a second, and an unread pipe fills (64 KB) after about six minutes and
    stops the player (the 10-minute run's player once "got" 19.8 fps that way)."""

    def __init__(self, url: str, transport: str, seconds: float) -> None:
        self.seconds = seconds
        self._err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(["ffmpeg", "-nostdin", "-rtsp_transport", transport, "-i", url,
                                      "-t", str(seconds), "-f", "null", "-"],
                                     stdout=subprocess.DEVNULL, stderr=self._err)

    def fps(self, timeout: float = 60) -> float:
        """Frames decoded over the window; a player not ended `timeout` s after it is ended (it stalled) and
        what it decoded counts."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.seek(0)
        frames = [int(x) for x in re.findall(r"frame=\s*(\d+)", self._err.read())]
        self._err.close()
        return frames[-1] / self.seconds if frames else 0.0


def curl_clients(url: str, n: int) -> list[subprocess.Popen[bytes]]:
    """n real HTTP clients (curl) that read the stream and throw it away."""
    return [subprocess.Popen(["curl", "-s", "-o", "/dev/null", url]) for _ in range(n)]


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def save_plot(name: str, draw: Callable[[Any], None]) -> str:
    """Call draw(ax) on a fresh figure and save bench/results/NAME.png; returns a Markdown image line."""
    fig, ax = plt.subplots(figsize=(7, 4))
    draw(ax)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{name}.png", dpi=80)
    plt.close(fig)
    return f"\n\n![{name}]({name}.png)"
