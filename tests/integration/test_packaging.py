"""What an installed cuecast (a wheel, not this checkout) and its processes do on their own: the example config
travels inside the package, install-service shows what it would write, a broken websockets package on the
machine changes nothing, and an HTTP server that dies takes its process down with an error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers.service import ServiceProcess, http_env, wait_http

ROOT = Path(__file__).parents[2]


def test_wheel_carries_the_example_and_install_service_shows_it(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next(wheels.glob("cuecast-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # The dependencies come from this venv; cuecast itself only from the wheel.
    deps = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "fastapi").is_dir())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CUECAST_")}, "PYTHONPATH": deps}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import cuecast; print(cuecast.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert where.returncode == 0 and str(venv) in where.stdout, where.stdout + where.stderr
    example = Path(where.stdout.strip()).parent / "data" / "cuecast.example.yaml"
    assert example.is_file()
    cli = str(venv / "bin" / "cuecast")
    r = subprocess.run([cli, "check-config", str(example)], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([cli, "install-service", "--dry-run"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "would write /etc/cuecast/cuecast.yaml" in r.stdout
    assert "socket: /run/cuecast/camera-backend" in r.stdout and "priority:" in r.stdout  # the whole example
    assert "realtime: true" in r.stdout  # the installed service's capture process at SCHED_RR
    assert f"ExecStart={cli} serve" in r.stdout and "AmbientCapabilities=CAP_SYS_NICE" in r.stdout


def test_a_broken_websockets_package_changes_nothing(tmp_path: Path) -> None:
    """Debian's python3-websockets (10.x) seen through system site-packages broke uvicorn's websocket
    auto-detection and every server task died. Nothing here speaks websockets, so nothing loads it."""
    broken = tmp_path / "broken" / "websockets"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError(\"cannot import name 'ServerProtocol' from "
                                        "'websockets.server' (a too old websockets)\")\n")
    env, ports = http_env(PYTHONPATH=f"{broken.parent}:{ROOT}")
    svc = ServiceProcess(["--source", "test:ball", "--width", "640", "--height", "480", "--shm-socket",
                          str(tmp_path / "sock")], tmp_path / "svc.log", env=env)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        r = httpx.get(f"http://127.0.0.1:{ports['medium']}/snapshot.jpg", timeout=10)
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        assert "ServerProtocol" not in svc.log() and "Traceback" not in svc.log()
    finally:
        svc.terminate()
        svc.close()


def test_a_server_that_dies_ends_its_process_with_an_error(tmp_path: Path) -> None:
    """The streaming process started as the supervisor does, but its API socket cannot serve (a UDP socket):
    the server task ends, and the process exits 1 saying which server stopped and why, instead of running on
    with ports that never answer."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    (runtime / "config.json").write_text(json.dumps({"path": None, "overrides": {}}))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    env, _ports = http_env()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CUECAST_")}, **env,
           "_CUECAST_RUNTIME_DIR": str(runtime), "_CUECAST_LISTEN_FDS": f"http.port={udp.fileno()}",
           "CUECAST_SOURCE__URI": "test:ball", "CUECAST_SOURCE__WIDTH": "320", "CUECAST_SOURCE__HEIGHT": "240"}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "cuecast", "_stream"], capture_output=True, text=True, env=env,
                       pass_fds=[udp.fileno()], timeout=60)
    udp.close()
    assert r.returncode == 1, r.stderr
    assert "the API server stopped unexpectedly" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 30
