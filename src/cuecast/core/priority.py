"""The scheduling priority a process runs at: niceness, or SCHED_RR where asked and allowed (CAP_SYS_NICE)."""

from __future__ import annotations

import os


def set_priority(nice: int, realtime: bool = False, rt_priority: int = 10) -> str:
    """Run this process (and every thread it starts from now on) at `nice`, or SCHED_RR when asked and
    allowed. Call before any thread starts. Returns what was applied, for the log and the status."""
    applied = []
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if nice != current:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        applied.append(f"nice {nice}")
    except PermissionError:
        applied.append(f"nice {os.getpriority(os.PRIO_PROCESS, 0)} (nice {nice} needs CAP_SYS_NICE)")
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(rt_priority))
            applied.append(f"SCHED_RR {rt_priority}")
        except PermissionError:
            applied.append("SCHED_RR refused (needs CAP_SYS_NICE)")
    return ", ".join(applied)
