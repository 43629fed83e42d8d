"""Command line: `cuecast serve | check-config | consume | calibrate | camera | doctor | encoders |
install-service | uninstall-service` (and the two worker processes `serve` starts: `_capture`, `_stream`).

Owns argument parsing and which command runs; exit codes are core.errors' (0 success, 1 runtime failure,
2 bad input with a one-paragraph message and no traceback).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cuecast import __version__
from cuecast.config import ConfigError, dump_config, load_config
from cuecast.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from cuecast.core.log import setup_logging

log = logging.getLogger("cuecast")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI flags that override config keys."""
    o: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            o.setdefault(section, {})[key] = value

    put("source", "uri", getattr(args, "source", None))
    put("source", "width", getattr(args, "width", None))
    put("source", "height", getattr(args, "height", None))
    put("source", "fps", getattr(args, "fps", None))
    put("shm", "socket", getattr(args, "shm_socket", None))
    put("fisheye", "calibration", getattr(args, "calibration", None))
    if getattr(args, "no_fisheye", False):
        put("fisheye", "enabled", False)
    put("log", "level", getattr(args, "log_level", None))
    put("log", "format", getattr(args, "log_format", None))
    return o


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"cuecast: error: {message}", file=sys.stderr)
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    try:
        loaded = load_config(args.config, overrides=overrides)
    except ConfigError as e:
        return _fail(str(e))
    cfg = loaded.config
    setup_logging(cfg.log.level, cfg.log.format, role="supervisor")
    from cuecast.supervisor.main import serve  # no GStreamer in the supervisor

    return serve(cfg, loaded.path, overrides)


def cmd_capture(_args: argparse.Namespace) -> int:
    from cuecast.capture.main import main as capture_main

    return capture_main()


def cmd_stream(_args: argparse.Namespace) -> int:
    from cuecast.streaming.main import main as stream_main

    return stream_main()


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.file, overrides=_overrides(args))
    except ConfigError as e:
        return _fail(str(e))
    from cuecast.media.sources import SourceError, parse_source

    try:
        spec = parse_source(loaded.config.source.uri)
    except SourceError as e:
        return _fail(f"source.uri: {e}")
    origin = loaded.path or "built-in defaults"
    print(f"# effective configuration from {origin}; source resolves to {spec.describe()}")
    print(dump_config(loaded.config), end="")
    return EXIT_OK


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def cmd_consume(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "WARNING")
    from cuecast.consumer import GStreamerFrameConsumer

    socket_path = args.socket
    if socket_path is None:
        try:
            socket_path = load_config(args.config).config.shm.socket
        except ConfigError as e:
            return _fail(str(e))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    total = 0
    window: list[float] = []
    window_frames = 0
    t_report = time.monotonic()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    print(f"waiting for frames on {socket_path} ...", flush=True)
    with GStreamerFrameConsumer(socket_path) as consumer:
        while not stop.is_set():
            got = consumer.read(timeout=0.2)
            now = time.monotonic()
            if got is not None:
                frame, info = got
                total += 1
                window_frames += 1
                window.append((consumer.last_received_ns - info.capture_ns) / 1e6)
                if args.frames and total >= args.frames:
                    print(f"received {total} frames, {frame.shape[1]}x{frame.shape[0]}", flush=True)
                    return EXIT_OK
            if now - t_report >= 1.0:
                fps = window_frames / (now - t_report)
                size = f"{frame.shape[1]}x{frame.shape[0]}" if total else "-"
                lat = (f"latency p50 {_percentile(window, 50):.1f} ms p99 {_percentile(window, 99):.1f} ms"
                       if window else "latency -")
                state = "connected" if consumer.connected else "waiting for producer"
                print(f"frames {total}  fps {fps:.1f}  size {size}  {lat}  ({state})", flush=True)
                window, window_frames, t_report = [], 0, now
            if deadline and now > deadline:
                return _fail(f"timed out after {args.timeout} s with {total} frames", EXIT_FAILURE)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config, overrides=_overrides(args))
    except ConfigError as e:
        print(f"FAIL configuration: {e}")
        return EXIT_FAILURE
    from cuecast.cli.doctor import run

    print(f"cuecast {__version__} doctor, config: {loaded.path or 'built-in defaults'}")
    findings = run(loaded.config)
    for f in findings:
        print(f.line())
    fails = sum(f.level == "FAIL" for f in findings)
    warns = sum(f.level == "WARN" for f in findings)
    print(f"\n{fails} FAIL, {warns} WARN, {len(findings) - fails - warns} OK")
    return EXIT_FAILURE if fails else EXIT_OK


def cmd_encoders(_args: argparse.Namespace) -> int:
    from cuecast.streaming.encoders import report

    probes, pick = report()
    print(f"{'encoder':<14}{'element':<15}{'kind':<10}status")
    for p in probes:
        print(f"{p.kind.name:<14}{p.kind.element:<15}{'hardware' if p.kind.hardware else 'software':<10}{p.detail}")
    print(f"\nauto picks: {pick}")
    return EXIT_OK


def cmd_install_service(args: argparse.Namespace) -> int:
    from cuecast.supervisor import systemd

    return systemd.install(not args.no_start, args.dry_run)


def cmd_uninstall_service(_args: argparse.Namespace) -> int:
    from cuecast.supervisor import systemd

    return systemd.uninstall()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cuecast", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"cuecast {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--source", help="auto | demo | test:PATTERN | v4l2:///dev/videoN | FILE | rtsp:// | http://")
        sp.add_argument("--width", type=int)
        sp.add_argument("--height", type=int)
        sp.add_argument("--fps", type=int)
        sp.add_argument("--shm-socket", dest="shm_socket", type=Path)
        sp.add_argument("--calibration", type=Path, help="camera.yaml for fisheye correction")
        sp.add_argument("--no-fisheye", dest="no_fisheye", action="store_true",
                        help="start with fisheye correction switched off (pass-through)")
        sp.add_argument("--log-level", dest="log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        type=str.upper)
        sp.add_argument("--log-format", dest="log_format", choices=["text", "json"])

    serve = sub.add_parser("serve", help="run the service (a capture process and a streaming process)")
    serve.add_argument("--config", type=Path, help="YAML config (default: $CUECAST_CONFIG, /etc/cuecast/cuecast.yaml)")
    common(serve)
    serve.set_defaults(func=cmd_serve)

    # The two worker processes `serve` starts (not for direct use).
    sub.add_parser("_capture", help=argparse.SUPPRESS).set_defaults(func=cmd_capture)
    sub.add_parser("_stream", help=argparse.SUPPRESS).set_defaults(func=cmd_stream)

    check = sub.add_parser("check-config", help="validate a config file and print the effective config")
    check.add_argument("file", nargs="?", type=Path)
    common(check)
    check.set_defaults(func=cmd_check_config)

    consume = sub.add_parser("consume", help="read frames from shared memory like the vision backend does")
    consume.add_argument("--socket", type=Path, help="default: shm.socket from the config")
    consume.add_argument("--config", type=Path)
    consume.add_argument("--frames", type=int, help="exit 0 after N frames")
    consume.add_argument("--timeout", type=float, help="give up (exit 1) after this many seconds")
    consume.add_argument("--log-level", dest="log_level", type=str.upper)
    consume.set_defaults(func=cmd_consume)

    from cuecast.cli.calibrate import add_parser as add_calibrate
    from cuecast.cli.camera import add_parser as add_camera

    add_calibrate(sub)

    inst = sub.add_parser("install-service", help="install and start the systemd service (root)")
    inst.add_argument("--no-start", action="store_true", help="install only")
    inst.add_argument("--dry-run", action="store_true", help="print the config and unit it would write; change nothing")
    inst.set_defaults(func=cmd_install_service)
    uninst = sub.add_parser("uninstall-service", help="stop and remove the systemd service (root)")
    uninst.set_defaults(func=cmd_uninstall_service)

    add_camera(sub)

    doctor = sub.add_parser("doctor", help="check this machine and the config; OK/WARN/FAIL with fixes")
    doctor.add_argument("--config", type=Path)
    common(doctor)
    doctor.set_defaults(func=cmd_doctor)

    enc = sub.add_parser("encoders", help="list the H.264 encoders this machine has and what auto picks")
    enc.set_defaults(func=cmd_encoders)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
