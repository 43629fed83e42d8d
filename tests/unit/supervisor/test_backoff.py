"""The supervisor's restart backoff on its own: at once after a long healthy run, later after each quick
failure, and it gives up after MAX_FAILURES within the window."""

from __future__ import annotations

from cuecast.supervisor.main import FAILURES_WINDOW_S, MAX_FAILURES, RESTART_DELAYS_S, Backoff


def test_quick_failures_wait_longer_and_then_give_up() -> None:
    b = Backoff()
    delays = [b.failed(100.0 + i) for i in range(MAX_FAILURES)]
    assert delays == list(RESTART_DELAYS_S[:MAX_FAILURES]) and delays[0] == 0.0
    assert delays == sorted(delays)
    assert b.given_up and b.recent == MAX_FAILURES


def test_a_long_healthy_run_starts_again_at_once() -> None:
    b = Backoff()
    for i in range(MAX_FAILURES - 1):
        b.failed(100.0 + i)
    assert not b.given_up
    assert b.failed(100.0 + FAILURES_WINDOW_S + 10) == 0.0  # the old failures left the window
    assert b.recent == 1 and not b.given_up
