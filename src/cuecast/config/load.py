"""Loading the config: the file's search order, YAML + CUECAST_* environment + CLI flags merged, old key names
migrated (with a warning), and error messages that name the key path and, where known, the YAML line."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cuecast.config.schema import MOVED_TO_H264, Config, ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "CUECAST_"
ENV_CONFIG = "CUECAST_CONFIG"
# CUECAST_ variables that are not config keys: the config file, the native plugin's (its folder, plain-C
# kernels forced), the bench's and the test camera's (cuecast-testcam sets them for the programs it runs).
ENV_NOT_CONFIG = frozenset({
    ENV_CONFIG, "CUECAST_NATIVE_DIR", "CUECAST_BENCH_QUICK", "CUECAST_BENCH_RESULTS",
    "CUECAST_TESTCAM_SOCKET", "CUECAST_TESTCAM_STATE", "CUECAST_TESTCAM_DEVICES",
})
SYSTEM_CONFIG = Path("/etc/cuecast/cuecast.yaml")


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path | None  # the file it came from, None for built-in defaults
    warnings: list[str] = field(default_factory=list)  # old key names that still work, and their new names


def find_config_file(cli_path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """Search order: --config, $CUECAST_CONFIG, /etc/cuecast/cuecast.yaml, else built-in defaults."""
    if cli_path:
        return Path(cli_path)
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    if SYSTEM_CONFIG.is_file():
        return SYSTEM_CONFIG
    return None


def _line_index(text: str) -> dict[tuple[str, ...], str]:
    """Map each key path in a YAML document to where it is ("line N")."""
    lines: dict[tuple[str, ...], str] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = f"line {key.start_mark.line + 1}"
                walk(value, sub)

    if root is not None:
        walk(root, ())
    return lines


SECRET_KEYS = ("token", "password")


def _secret(path: tuple[str, ...]) -> bool:
    """A key whose value is never shown back (in errors, check-config, logs)."""
    return any(p in SECRET_KEYS for p in path)


def _format_errors(err: ValidationError, origin: str, lines: Mapping[tuple[str, ...], str]) -> str:
    msgs = []
    for e in err.errors():
        path = tuple(str(p) for p in e["loc"])
        key = ".".join(path) or "(top level)"
        where = ""
        for n in range(len(path), 0, -1):
            if path[:n] in lines:
                where = f" ({lines[path[:n]]})"
                break
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling against config/cuecast.example.yaml"
        elif "input" in e and e["type"] not in ("missing",) and not _secret(path):
            msg = f"{msg} (got {e['input']!r})"
        msgs.append(f"  {key}{where}: {msg}")
    return f"invalid configuration in {origin}:\n" + "\n".join(msgs)


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML:{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (source:, shm:, ...)")
    return data, _line_index(text)


def _set_path(data: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(path)} cannot be set, {part} is not a section")
        node = child
    node[path[-1]] = value


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """CUECAST_<SECTION>__<KEY>=value -> {section: {key: value}}; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_CONFIG:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(path) < 2 or not all(path):
            raise ConfigError(
                f"environment variable {name}: expected CUECAST_<SECTION>__<KEY>, e.g. CUECAST_SOURCE__URI"
            )
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        _set_path(out, path, value, f"environment variable {name}")
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(result.get(k), dict):
            result[k] = _merge(result[k], v)
        else:
            result[k] = v
    return result


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """File (searched as documented) < environment < CLI overrides; raises ConfigError naming the key."""
    env = os.environ if env is None else env
    file = find_config_file(path, env)
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], str] = {}
    origin = "built-in defaults"
    if file is not None:
        data, lines = _read_yaml(file)
        origin = str(file)
    env_data = env_overrides(env)
    if env_data:
        origin += " + CUECAST_* environment"
        for name in env:
            if name.startswith(ENV_PREFIX) and name != ENV_CONFIG:
                lines[tuple(p.lower() for p in name[len(ENV_PREFIX):].split("__"))] = f"from {name}"
    # Start from the full defaults so a partial section (mjpeg.low: {port: 9000}) keeps that section's
    # own defaults (640x480@15) instead of the field defaults of its model.
    warnings = _migrate(data, origin, lines) + _migrate(env_data, "the environment", lines)
    for w in warnings:
        log.warning("%s", w)
    merged = _merge(_merge(_merge(Config().model_dump(), data), env_data), overrides or {})
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin, lines)) from None
    return LoadedConfig(cfg, file, warnings)


def _migrate(data: dict[str, Any], origin: str, lines: dict[tuple[str, ...], str]) -> list[str]:
    """Rename keys of earlier versions in place (rtsp.fps -> h264.fps, degrade.priority's rtsp -> h264);
    returns one warning per renamed key."""
    warnings = []
    rtsp = data.get("rtsp")
    if isinstance(rtsp, dict):
        for key in MOVED_TO_H264:
            if key in rtsp:
                h264 = data.setdefault("h264", {})
                if isinstance(h264, dict) and key not in h264:
                    h264[key] = rtsp[key]
                    if ("rtsp", key) in lines:
                        lines[("h264", key)] = lines[("rtsp", key)]
                del rtsp[key]
                warnings.append(f"{origin}: rtsp.{key} is now h264.{key} (the encoder RTSP, WebRTC, publishing and "
                                "replay share); it still works, rename it")
    degrade = data.get("degrade")
    if isinstance(degrade, dict) and isinstance(degrade.get("priority"), list) and "rtsp" in degrade["priority"]:
        degrade["priority"] = ["h264" if p == "rtsp" else p for p in degrade["priority"]]
        warnings.append(f"{origin}: degrade.priority names rtsp; it is now h264 (every H.264 output); it still "
                        "works, rename it")
    return warnings
