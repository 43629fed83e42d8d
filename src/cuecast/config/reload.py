"""The reload plan: which keys changed between two configs, and which of them apply live (SIGHUP) or need a
restart; `reread` is the SIGHUP step every process shares."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cuecast.config.load import load_config
from cuecast.config.schema import Config, ConfigError

log = logging.getLogger(__name__)


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths whose values differ between two dumped configs."""
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, path + ".")
        elif a != b:
            keys.append(path)
    return keys


def live_key(path: str) -> str | None:
    """The live-changeable key covering a key path ("controls" for "controls.brightness"), or None."""
    model: type[BaseModel] | None = Config
    for i, part in enumerate(path.split(".")):
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return None
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("live"):
            return ".".join(path.split(".")[: i + 1])
        ann = info.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return None


def reload_plan(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """What a reload from `old` to `new` changes: (keys applied live, keys that need a restart)."""
    live: list[str] = []
    restart: list[str] = []
    for key in changed_keys(old.model_dump(), new.model_dump()):
        covering = live_key(key)
        if covering is None:
            restart.append(key)
        elif covering not in live:
            live.append(covering)
    return live, restart


def reread(path: Path | None, overrides: dict[str, Any]) -> Config | None:
    """SIGHUP: the config file read again with the same CLI overrides; None (and the reason logged) when it
    is invalid, and the running config stays."""
    try:
        return load_config(path, overrides=overrides).config
    except ConfigError as e:
        log.error("SIGHUP: config not reloaded, it is invalid (the running config stays):\n%s", e)
        return None
