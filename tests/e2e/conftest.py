"""Headless Chromium for the browser tests: one per test, with the flags the test module asks for
(`BROWSER_FLAGS`, e.g. autoplay or WebRTC on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.browser import Browser


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    b = Browser(getattr(request.module, "BROWSER_FLAGS", None))
    yield b
    b.close()
