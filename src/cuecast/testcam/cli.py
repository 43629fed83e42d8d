"""`cuecast-testcam`: run a program with test cameras visible, and act on them while it runs.

  cuecast-testcam run --spec FILE [--socket PATH] -- CMD [ARGS...]
  cuecast-testcam unplug|replug|busy|free|status PATH [--socket PATH]
  cuecast-testcam corrupt PATH [N]

`run` starts the daemon (at real-time priority where allowed, so the camera keeps its timing whatever the
program does), then CMD with the LD_PRELOAD library, and exits with CMD's status. The other commands talk to
the daemon of a running `run`: its socket is $CUECAST_TESTCAM_SOCKET (set for CMD and its children), or
--socket, or the default."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from cuecast.testcam.spec import SpecError, load

DEFAULT_SOCKET = Path(tempfile.gettempdir()) / "cuecast-testcam.sock"
LIBRARY = "libcuecast-testcam.so"
RT_PRIORITY = 30
SEND_LOG_SLOTS = 128


def library_path() -> Path:
    here = Path(__file__).resolve().parents[1] / "_native" / LIBRARY
    override = os.environ.get("CUECAST_NATIVE_DIR")
    path = Path(override) / LIBRARY if override else here
    if not path.is_file():
        raise SystemExit(f"cuecast-testcam: {path} is missing: build it with `make setup` (scripts/setup.sh)")
    return path


def socket_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("CUECAST_TESTCAM_SOCKET") or DEFAULT_SOCKET)


def realtime() -> str:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(RT_PRIORITY))
        return f"SCHED_FIFO {RT_PRIORITY}"
    except (PermissionError, OSError):
        return "SCHED_OTHER (no CAP_SYS_NICE)"


def run(args: argparse.Namespace) -> int:
    from cuecast.testcam.daemon import Daemon

    try:
        devices = load(Path(args.spec))
    except SpecError as e:
        print(f"cuecast-testcam: {e}", file=sys.stderr)
        return 2
    if not args.cmd:
        print("cuecast-testcam run: give the command after --", file=sys.stderr)
        return 2
    lib = library_path()
    runtime = Path(tempfile.mkdtemp(prefix="cuecast-testcam-"))
    sock = socket_path(args.socket)
    policy = realtime()  # the daemon's threads (started below) inherit it; CMD does not (RESET_ON_FORK)
    send_log = None
    if args.send_log:  # 128 int64 slots: when frame number n went out, in slot n % 128 (CLOCK_MONOTONIC ns)
        import mmap

        import numpy as np

        with open(args.send_log, "w+b") as f:
            f.truncate(SEND_LOG_SLOTS * 8)
            send_log = np.frombuffer(mmap.mmap(f.fileno(), SEND_LOG_SLOTS * 8), np.int64)
    daemon = Daemon(devices, sock, runtime, send_log).start()
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(x for x in (str(lib), env.get("LD_PRELOAD", "")) if x)
    env["CUECAST_TESTCAM_SOCKET"] = str(sock)
    env["CUECAST_TESTCAM_STATE"] = str(runtime)
    env["CUECAST_TESTCAM_DEVICES"] = ";".join(f"{d.path}|{d.by_id or '-'}|{d.minor}" for d in devices)
    if args.verbose:
        print(f"cuecast-testcam: {', '.join(d.path for d in devices)} on {sock} ({policy})", file=sys.stderr)
    proc = subprocess.Popen(args.cmd, env=env)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: proc.send_signal(s))
    try:
        return proc.wait()
    finally:
        daemon.close()
        shutil.rmtree(runtime, ignore_errors=True)


def admin(args: argparse.Namespace) -> int:
    words = [args.command, args.path, *([str(args.count)] if args.command == "corrupt" else []),
             *([args.as_node] if getattr(args, "as_node", None) else [])]
    sock = socket_path(args.socket)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(sock))
            s.sendall(("ADMIN " + " ".join(words) + "\n").encode())
            answer = s.makefile("rb").readline().decode().strip()
    except OSError as e:
        print(f"cuecast-testcam: no running `cuecast-testcam run` at {sock} ({e})", file=sys.stderr)
        return 1
    if not answer.startswith("OK"):
        print(f"cuecast-testcam: {answer[4:] if answer.startswith('ERR') else answer}", file=sys.stderr)
        return 1
    if answer[3:]:
        print(answer[3:])
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cuecast-testcam", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run CMD with the spec's cameras visible")
    r.add_argument("--spec", required=True)
    r.add_argument("--socket")
    r.add_argument("-v", "--verbose", action="store_true")
    r.add_argument("--send-log", help="benches: a file where each frame number's send time is written")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    for name in ("unplug", "replug", "busy", "free", "status", "corrupt"):
        a = sub.add_parser(name)
        a.add_argument("path")
        if name == "corrupt":
            a.add_argument("count", nargs="?", type=int, default=1)
        if name == "replug":
            a.add_argument("--as", dest="as_node", metavar="NODE",
                           help="come back as another /dev/videoN (the by-id name follows it)")
        a.add_argument("--socket")
    args = p.parse_args(argv)
    if args.command == "run":
        if args.cmd and args.cmd[0] == "--":
            args.cmd = args.cmd[1:]
        return run(args)
    return admin(args)


if __name__ == "__main__":
    sys.exit(main())
