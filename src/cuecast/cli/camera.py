"""`cuecast camera [list|get NAME...|set NAME=VALUE...|modes]`: the camera's own controls from a shell.

Through the running service when one answers on this config's API port (so the service keeps what is set,
and it never fights the service for the device), else straight at the device of source.uri."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cuecast.config import Config, ConfigError, load_config


def _api(cfg: Config, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The service's answer; None when no service answers; SystemExit with its message when it refuses."""
    if not cfg.http.enabled:
        return None
    headers = {"Content-Type": "application/json", **cfg.auth.bearer_headers()}
    req = urllib.request.Request(f"http://127.0.0.1:{cfg.http.port}{path}", method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("detail", detail)
        except ValueError:
            pass
        raise SystemExit(f"cuecast camera: {detail}") from None
    except OSError:
        return None


def _device(cfg: Config) -> str:
    from cuecast.media.sources import SourceError, parse_source

    try:
        spec = parse_source(cfg.source.uri, device_exists=os.path.exists("/dev/video0"))
    except SourceError as e:
        raise SystemExit(f"cuecast camera: {e}") from None
    if spec.kind != "v4l2":
        raise SystemExit(f"cuecast camera: the source is {spec.describe()}, not a V4L2 camera")
    return spec.location


def _status(cfg: Config) -> dict[str, Any]:
    got = _api(cfg, "GET", "/api/camera")
    if got is not None:
        return dict(got)
    from cuecast.media import v4l2

    path = _device(cfg)
    try:
        with v4l2.Camera(path) as cam:
            return {"path": path, **cam.info(), "modes": cam.modes(),
                    "controls": [c.as_dict() for c in cam.controls()]}
    except v4l2.CameraError as e:
        raise SystemExit(f"cuecast camera: {e}") from None


def _line(c: dict[str, Any]) -> str:
    rng = (", ".join(f"{k}={v}" for k, v in c["menu"].items()) if c.get("menu")
           else f"{c['min']}..{c['max']} step {c['step']}")
    flags = f"  [{', '.join(c['flags'])}]" if c["flags"] else ""
    active = c.get("active_when") or {}
    when = f" (active when {', '.join(f'{k}={v}' for k, v in active.items())})" if active else ""
    return f"{c['name']:32} {c['value']!s:>6}   {rng}, default {c['default']}{flags}{when}"


def cmd_camera(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config).config
    except ConfigError as e:
        print(f"cuecast camera: {e}", file=sys.stderr)
        return 2
    action = args.action or "list"
    if action == "set":
        values: dict[str, int] = {}
        for item in args.items:
            name, sep, value = item.partition("=")
            if not sep or not value.lstrip("-").isdigit():
                print(f"cuecast camera set: {item!r}: expected NAME=WHOLE_NUMBER", file=sys.stderr)
                return 2
            values[name] = int(value)
        got = _api(cfg, "PUT", "/api/camera", {"controls": values})
        if got is None:
            from cuecast.media import v4l2

            try:
                with v4l2.Camera(_device(cfg)) as cam:
                    got = {"controls": v4l2.apply(cam, values), "persisted_to": None}
            except v4l2.CameraError as e:
                print(f"cuecast camera: {e}", file=sys.stderr)
                return 1
            print("(no service running: set in the device only, not saved)")
        for k, v in got["controls"].items():
            print(f"{k}={v}")
        return 0
    st = _status(cfg)
    if action == "modes":
        for m in st["modes"]:
            print(f"{m['format']} {m['width']}x{m['height']} @ {', '.join(f'{r:g}' for r in m['fps'])} fps")
        return 0
    controls = {c["name"]: c for c in st["controls"]}
    if action == "get":
        for name in args.items:
            if name not in controls:
                print(f"cuecast camera: no control {name!r}; has: {', '.join(sorted(controls))}", file=sys.stderr)
                return 1
            print(f"{name}={controls[name]['value']}")
        return 0
    print(f"{st['path']}: {st['card']} ({st['driver']}, {st['bus']})")
    for c in st["controls"]:
        print(_line(c))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    cam = sub.add_parser("camera", help="the camera's own controls: list | get NAME | set NAME=VALUE | modes")
    cam.add_argument("action", nargs="?", choices=["list", "get", "set", "modes"])
    cam.add_argument("items", nargs="*", help="control names (get) or NAME=VALUE (set)")
    cam.add_argument("--config", type=Path)
    cam.set_defaults(func=cmd_camera)
