"""Waiting on a condition instead of a fixed sleep: returns as soon as it holds, fails only after a margin a
busy machine cannot break."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, interval: float = 0.1) -> bool:
    """True as soon as `cond()` holds; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())
