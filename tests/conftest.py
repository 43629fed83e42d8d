"""Shared fixtures: a factory for the real service, started as a subprocess and stopped by PID."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.service import ServiceProcess

ARTIFACTS = Path(__file__).parent / "artifacts"
_counter = itertools.count()


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        svc = ServiceProcess(list(args), tmp_path / f"service-{next(_counter)}.log", env=env)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.close()


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "camera-backend"


# -- the suite leaves the checkout as it found it (caches belong in ignored or temporary folders) ---------------

def _tree_state() -> set[str] | None:
    import subprocess

    root = Path(__file__).parents[1]
    r = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                       capture_output=True, text=True)
    return set(r.stdout.splitlines()) if r.returncode == 0 else None


_TREE_AT_START: set[str] | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _TREE_AT_START
    _TREE_AT_START = _tree_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A test that kills a capture process with SIGKILL leaves its shared-memory segments; the next capture
    # process removes them at start, and so does the suite at its end (nothing left in /dev/shm).
    from cuecast.capture.shm import clean_leaked_segments

    clean_leaked_segments()
    after = _tree_state()
    if _TREE_AT_START is None or after is None:
        return
    changed = sorted(after - _TREE_AT_START)
    if changed:
        print("\nthe test run changed the checkout (tracked or not ignored):\n  " + "\n  ".join(changed))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
