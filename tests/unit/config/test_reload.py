"""The SIGHUP reload plan: which changed keys apply live and which need a restart."""

from __future__ import annotations

from cuecast.config import Config, changed_keys, reload_plan


def test_changed_keys_and_reload_plan() -> None:
    assert changed_keys({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 1, "c": 3}, "e": 1}) == ["a.c", "d", "e"]
    old = Config()
    dump = old.model_dump()
    new = Config.model_validate({**dump, "controls": {**dump["controls"], "brightness": 0.5},
                                 "mjpeg": {**dump["mjpeg"], "client_timeout": 3.0},
                                 "replay": {**dump["replay"], "seconds": 30.0}})
    live, restart = reload_plan(old, new)
    assert live == ["controls", "mjpeg.client_timeout"], "live keys, each covering key once"
    assert restart == ["replay.seconds"]
