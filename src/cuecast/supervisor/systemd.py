"""systemd integration: sd_notify (READY, WATCHDOG, STATUS, STOPPING) and install/uninstall of the unit.

Owns talking to $NOTIFY_SOCKET without a dependency (one datagram per message), and `cuecast
install-service` / `uninstall-service`: a dedicated `cuecast` user in the `video` group, the config at
/etc/cuecast/cuecast.yaml (the packaged example, if none exists), the unit (cuecast/data/cuecast.service),
enable and start. `--dry-run` shows what would be written, changing nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

UNIT_PATH = Path("/etc/systemd/system/cuecast.service")
CONFIG_PATH = Path("/etc/cuecast/cuecast.yaml")
SERVICE_USER = "cuecast"
INSTALLED_SOCKET = "/run/cuecast/camera-backend"


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not run by systemd (no $NOTIFY_SOCKET)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(addr)
            s.sendall(message.encode())
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd gave us, or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 2


def _unit_template() -> str:
    return files("cuecast").joinpath("data/cuecast.service").read_text()


def render_unit(exec_path: str) -> str:
    return _unit_template().replace("@EXEC@", exec_path)


def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def example_config() -> str:
    """The commented example config shipped in the package, as the service runs it: the socket where the service
    keeps it, and the capture process at SCHED_RR (the unit grants CAP_SYS_NICE for it; measured in `make bench`:
    the backend's p99 2-4 ms lower than at nice alone on a 2-core box)."""
    text = files("cuecast").joinpath("data/cuecast.example.yaml").read_text()
    text = text.replace("socket: /tmp/camera-backend", f"socket: {INSTALLED_SOCKET}")
    return text.replace("  realtime: false", "  realtime: true ", 1)


def install(start: bool = True, dry_run: bool = False) -> int:
    exe = shutil.which("cuecast") or str(Path(sys.executable).with_name("cuecast"))
    if dry_run:
        print(f"# would write {CONFIG_PATH} (if it does not exist yet):")
        print(example_config())
        print(f"# would write {UNIT_PATH}:")
        print(render_unit(exe))
        return 0
    if os.geteuid() != 0:
        print("install-service needs root: sudo cuecast install-service", file=sys.stderr)
        return 2
    try:
        subprocess.run(["id", SERVICE_USER], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group",
              "--groups", "video", SERVICE_USER])
    CONFIG_PATH.parent.mkdir(parents=True, exist_ok=True)
    if not CONFIG_PATH.exists():
        CONFIG_PATH.write_text(example_config())
        print(f"wrote {CONFIG_PATH} (shared memory at {INSTALLED_SOCKET})")
    shutil.chown(CONFIG_PATH, group=SERVICE_USER)
    os.chmod(CONFIG_PATH, 0o660)  # the API saves picture controls into it
    shutil.chown(CONFIG_PATH.parent, group=SERVICE_USER)
    os.chmod(CONFIG_PATH.parent, 0o2770)
    UNIT_PATH.write_text(render_unit(exe))
    print(f"wrote {UNIT_PATH}")
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").exists():
        print("systemd is not running here: start it later with `systemctl enable --now cuecast`")
        return 0
    _run(["systemctl", "daemon-reload"])
    if start:
        _run(["systemctl", "enable", "--now", "cuecast"])
    return 0


def uninstall() -> int:
    if os.geteuid() != 0:
        print("uninstall-service needs root: sudo cuecast uninstall-service", file=sys.stderr)
        return 2
    if shutil.which("systemctl") and Path("/run/systemd/system").exists():
        subprocess.run(["systemctl", "disable", "--now", "cuecast"], check=False)
    if UNIT_PATH.exists():
        UNIT_PATH.unlink()
        print(f"removed {UNIT_PATH} (kept {CONFIG_PATH} and the {SERVICE_USER} user)")
    if shutil.which("systemctl") and Path("/run/systemd/system").exists():
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return 0
