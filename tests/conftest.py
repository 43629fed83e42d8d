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
