"""How loaded this process and the box are, measured (never estimated): CPU of this process, the time its
threads spent runnable but waiting for a CPU (Linux schedstat: the direct sign that the box is short of CPU),
and the box's idle share. `/api/status` and `cuecast doctor` show it as each process's headroom."""

from __future__ import annotations

import glob
import os
import time

import psutil


def thread_run_delay_s() -> float:
    """Total time this process's threads spent runnable but waiting for a CPU (Linux schedstat), seconds."""
    total = 0
    for path in glob.glob("/proc/self/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def box_idle_s() -> float | None:
    """The box's idle CPU time so far, all cores together (idle + iowait in /proc/stat), seconds; None
    where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class LoadMeter:
    """Rates between two `sample()` calls (call it about once a second; the first call primes it)."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)
        psutil.cpu_percent(None)
        self._last = (time.monotonic(), thread_run_delay_s())
        self.cpu_percent = 0.0  # this process, percent of one core
        self.waiting = 0.0  # seconds per second its threads waited for a CPU
        self.box_idle_percent = 100.0  # the whole box, percent of all its cores together

    def sample(self) -> None:
        now, delay = time.monotonic(), thread_run_delay_s()
        dt = now - self._last[0]
        if dt < 0.2:  # too soon for a rate that means anything: keep the last one
            return
        self.waiting = max(0.0, (delay - self._last[1]) / dt)
        self._last = (now, delay)
        self.cpu_percent = self._proc.cpu_percent(None)
        self.box_idle_percent = max(0.0, 100.0 - psutil.cpu_percent(None))

    def status(self) -> dict[str, float]:
        return {"cpu_percent": round(self.cpu_percent, 1), "waiting_for_cpu_s_per_s": round(self.waiting, 3)}


def box_status(meter: LoadMeter) -> dict[str, float | int]:
    """The box: its cores and how much of them is idle (what else could still run here)."""
    cores = os.cpu_count() or 1
    return {"cores": cores, "idle_percent": round(meter.box_idle_percent, 1),
            "idle_cores": round(cores * meter.box_idle_percent / 100, 2)}
