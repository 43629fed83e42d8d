"""Writing back to the config file what was changed live (controls, camera, table), keeping its comments; and
showing a config with its secrets masked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cuecast.config.schema import CameraConfig, Config, ControlsConfig


def save_controls(path: Path, controls: ControlsConfig) -> None:
    """Write the `controls:` section into a config file, keeping its comments and everything else."""
    _save_section(path, "controls", controls.model_dump())


def save_camera(path: Path, camera: CameraConfig) -> None:
    """Write the `camera:` section (the device's controls and profiles) into a config file."""
    _save_section(path, "camera", camera.model_dump())


def save_table_path(path: Path, table_path: Path) -> None:
    """Write `table.calibration: TABLE_PATH` into a config file, keeping its comments and everything else."""
    _save_section(path, "table", {"calibration": str(table_path)})


def save_lens_path(path: Path, lens_path: Path | None) -> None:
    """Write `fisheye.calibration: LENS_PATH` into a config file, keeping its comments and everything else."""
    _save_section(path, "fisheye", {"calibration": None if lens_path is None else str(lens_path)})


def _save_section(path: Path, name: str, values: Mapping[str, Any]) -> None:
    """Set keys of one section in a config file (made if missing), keeping its comments and the rest; written
    to a temporary file and renamed, with the file's permissions."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    rt = YAML()
    rt.preserve_quotes = True
    data = rt.load(path.read_text()) if path.exists() else None
    if data is None:
        data = CommentedMap()
    section = data.get(name)
    if not isinstance(section, dict):
        section = CommentedMap()
        data[name] = section
    for key, value in values.items():
        section[key] = value
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        rt.dump(data, f)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)


def mask_url(url: str) -> str:
    """The URL with any user:password@ part masked (for logs and status)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def dump_config(cfg: Config) -> str:
    """The effective configuration as YAML (what check-config prints); secrets are masked."""
    data = cfg.model_dump(mode="json")
    if data["auth"]["token"]:
        data["auth"]["token"] = "***"
    for user in data["rtsp"]["users"]:
        user["password"] = "***"
    for target in data["publish"]:
        target["url"] = mask_url(target["url"])
    return yaml.safe_dump(data, sort_keys=False)
