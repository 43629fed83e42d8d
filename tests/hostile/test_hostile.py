"""Hostile conditions. Each case says what it proves and checks nothing was lost: the other consumers kept
their rate, the service kept running, and file descriptors returned to their baseline."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from cuecast.consumer import GStreamerFrameConsumer
from tests.helpers.mjpeg_client import MjpegReader, raw_request
from tests.helpers.service import ServiceProcess, http_env, run_cli, wait_http


class Svc:
    def __init__(self, tmp: Path, **env: str) -> None:
        e, self.ports = http_env(CUECAST_MJPEG__CLIENT_TIMEOUT="3", **env)
        self.sock = tmp / "sock"
        self.proc = ServiceProcess(["--source", "test:ball", "--width", "1280", "--height", "720",
                                    "--shm-socket", str(self.sock)], tmp / "svc.log", env=e)
        self.api = f"http://127.0.0.1:{self.ports['api']}"
        wait_http(f"{self.api}/healthz")

    def fds(self) -> int:
        return psutil.Process(self.proc.pid).num_fds()

    def rss_mib(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def status(self) -> dict:
        return httpx.get(f"{self.api}/api/status", timeout=5).json()


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Svc]:
    s = Svc(tmp_path)
    yield s
    s.proc.close()


def settle_fds(s: Svc, baseline: int, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    n = s.fds()
    while n > baseline + 3 and time.monotonic() < deadline:
        time.sleep(0.3)
        n = s.fds()
    return n


def test_stalled_and_slow_clients_next_to_normal_ones(svc: Svc) -> None:
    """A client that never reads and one that reads a frame a second cannot slow 8 normal ones; the
    stalled one is dropped after client_timeout; memory stays bounded."""
    port = svc.ports["medium"]
    rss0 = svc.rss_mib()
    stalled = MjpegReader(port, rcvbuf=4096)
    slow = socket.create_connection(("127.0.0.1", port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    normal = [MjpegReader(port) for _ in range(8)]
    for r in normal:
        r.start()
    time.sleep(1)
    best: list[float] = []
    for _ in range(2):
        t0 = time.monotonic()
        for _s in range(8):
            slow.recv(4096)  # one small read a second
            time.sleep(1)
        fps = [r.frames_between(t0, t0 + 8) / 8 for r in normal]
        best = fps
        if min(fps) >= 29:
            break
    assert min(best) >= 29, best
    deadline = time.monotonic() + 30
    while svc.status()["outputs"]["mjpeg_medium"]["clients"] > 9 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert svc.status()["outputs"]["mjpeg_medium"]["clients"] <= 9  # the stalled one is gone
    assert "read nothing for 3 s" in svc.proc.log()
    assert svc.rss_mib() < rss0 + 150
    for r in normal:
        r.close()
    stalled.close()
    slow.close()


def test_connection_flood_gets_503_and_leaks_nothing(tmp_path: Path) -> None:
    """500 connections in 10 s to a stream port and the API, some half-open, some garbage: the limit answers
    503, the service survives, and its file descriptors return to the baseline."""
    s = Svc(tmp_path, CUECAST_HTTP__MAX_CONNECTIONS_PER_IP="40")
    try:
        time.sleep(1)
        baseline = s.fds()
        rng = random.Random(1)
        held: list[socket.socket] = []
        statuses: list[bytes] = []
        t_end = time.monotonic() + 10
        for i in range(500):
            port = s.ports["medium"] if i % 2 else s.ports["api"]
            c = socket.socket()
            c.settimeout(5)
            c.connect(("127.0.0.1", port))
            kind = rng.random()
            if kind < 0.3:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half-open: headers never finished
            elif kind < 0.5:
                c.sendall(bytes(rng.getrandbits(8) for _ in range(200)) + b"\r\n\r\n")  # garbage
            else:
                path = b"/" if port == s.ports["medium"] else b"/stream/video?quality=low"
                c.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    statuses.append(c.recv(64).split(b"\r\n", 1)[0])
                except OSError:
                    pass
            held.append(c)
            time.sleep(max(0.0, (t_end - time.monotonic()) / max(1, 500 - i)))
        assert any(b" 503 " in st for st in statuses), statuses[-5:]
        assert s.proc.proc.poll() is None
        assert httpx.get(f"{s.api}/healthz", timeout=5).status_code == 200
        for c in held:
            c.close()
        assert settle_fds(s, baseline) <= baseline + 3
    finally:
        s.proc.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /%ZZ%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
        b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/status?" + b"q=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /api/controls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{{{{{",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "GET /\u00e9 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    ],
)
def test_malformed_http_gets_4xx_never_5xx(svc: Svc, request_bytes: bytes) -> None:
    for port in (svc.ports["api"], svc.ports["medium"]):
        answer = raw_request(port, request_bytes, timeout=5)
        if not answer:
            continue  # the server may simply close a connection it cannot parse
        status_line = answer.split(b"\r\n", 1)[0]
        code = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
        assert 200 <= code < 500 and code != 0, (port, status_line)
        if code == 200:
            assert port == svc.ports["medium"] or b"/api/status" in request_bytes, status_line
    assert svc.proc.proc.poll() is None


def test_consumer_churn_and_a_consumer_killed_mid_frame(svc: Svc) -> None:
    """50 consumers connecting and leaving, one killed with SIGKILL while reading: the others keep ~30 fps."""
    with GStreamerFrameConsumer(svc.sock) as steady:
        assert steady.get_frame(timeout=10) is not None
        victim = subprocess.Popen([sys.executable, "-m", "cuecast", "consume", "--socket", str(svc.sock)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = steady.frames_received
        t0 = time.monotonic()
        for i in range(50):
            with GStreamerFrameConsumer(svc.sock) as c:
                c.get_frame(timeout=5)
            if i == 10:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
        elapsed = time.monotonic() - t0
        fps = (steady.frames_received - start) / elapsed
        assert fps >= 25, fps
        assert steady.get_frame(timeout=2) is not None
    assert svc.proc.proc.poll() is None


def test_producer_killed_and_restarted_five_times(tmp_path: Path) -> None:
    """kill -9 the service five times: the shm consumer resumes by itself each time; MJPEG and RTSP clients
    reconnect like real players and get pictures again."""
    e, ports = http_env()
    sock = tmp_path / "sock"
    args = ["--source", "test:ball", "--width", "640", "--height", "480", "--shm-socket", str(sock)]
    with GStreamerFrameConsumer(sock) as c:
        for round_ in range(5):
            svc = ServiceProcess(args, tmp_path / f"svc{round_}.log", env=e)
            try:
                wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
                assert c.read(timeout=10) is not None, svc.log()
                r = raw_request(ports["medium"], b"GET /snapshot.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
                assert r.startswith(b"HTTP/1.1 200"), r[:100]
                rtsp = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i",
                                       f"rtsp://127.0.0.1:{e['CUECAST_RTSP__PORT']}/high", "-frames:v", "1", "-f",
                                       "null", "-"], capture_output=True, timeout=30)
                assert rtsp.returncode == 0, rtsp.stderr
            finally:
                svc.kill()
                svc.close()
    leaked = [n for n in os.listdir("/dev/shm") if n.startswith("shmpipe.")]
    svc = ServiceProcess(args, tmp_path / "final.log", env=e)
    try:
        wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
        assert not [n for n in os.listdir("/dev/shm") if n in leaked and n.startswith("shmpipe.")]
    finally:
        svc.close()


@pytest.mark.parametrize(
    "yaml_text",
    [
        "source: [1, 2\n", "source:\n  fps: -3\n", "source:\n  fps: lots\n", "shm:\n  buffers: 1e9\n",
        "http:\n  port: 70000\n", "mjpeg:\n  low:\n    quality: 0\n", "nonsense: true\n", "\t\tbad indent",
        "rtsp:\n  users: [{name: a}]\n", "auth:\n  token: short\n", "source:\n  uri: 42\n",
        "controls:\n  brightness: .nan\n",
    ],
)
def test_bad_config_exits_2_with_the_field_and_no_traceback(tmp_path: Path, yaml_text: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    r = run_cli("serve", "--config", str(cfg), timeout=30)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and str(cfg) in r.stderr
    assert "cuecast: error:" in r.stderr


def test_tokens_guard_changes_and_streams(tmp_path: Path) -> None:
    token = "s3cret-token-0123456789"
    s = Svc(tmp_path, CUECAST_AUTH__TOKEN=token, CUECAST_AUTH__PROTECT_STREAMS="true")
    try:
        api = s.api
        assert httpx.put(f"{api}/api/controls", json={"contrast": 1.2}, timeout=5).status_code == 401
        bad = httpx.put(f"{api}/api/controls", json={"contrast": 1.2}, headers={"authorization": "Bearer nope"},
                        timeout=5)
        assert bad.status_code == 401
        ok = httpx.put(f"{api}/api/controls", json={"contrast": 1.2},
                       headers={"authorization": f"Bearer {token}"}, timeout=5)
        assert ok.status_code == 200
        assert httpx.get(f"{api}/snapshot.jpg", timeout=5).status_code == 401
        assert httpx.get(f"{api}/snapshot.jpg?token={token}", timeout=10).status_code == 200
        medium = f"http://127.0.0.1:{s.ports['medium']}"
        assert httpx.get(f"{medium}/snapshot.jpg", timeout=5).status_code == 401
        assert httpx.get(f"{medium}/snapshot.jpg", headers={"authorization": f"Bearer {token}"},
                         timeout=10).status_code == 200
        assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200
        assert token not in httpx.get(f"{api}/api/status", timeout=5).text
        assert token not in s.proc.log()
        r = run_cli("check-config", env={"CUECAST_AUTH__TOKEN": token})
        assert token not in r.stdout and "***" in r.stdout
    finally:
        s.proc.close()


def test_without_a_token_changes_come_from_loopback_only() -> None:
    """The guard itself: a LAN address is refused (403), loopback accepted; checked on the ASGI level since
    the tests cannot send from another host."""
    import asyncio

    from cuecast.web.guard import Guard

    calls = []

    async def app(scope, receive, send) -> None:
        calls.append(scope["client"][0])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = Guard(app, token=None, protect_streams=False, stream_server=False, max_connections=10, max_per_ip=5,
                  max_query_bytes=100)
    sent = []

    async def send(msg) -> None:
        sent.append(msg)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    for ip in ("192.168.1.20", "127.0.0.1"):
        scope = {"type": "http", "method": "PUT", "path": "/api/controls", "client": (ip, 1234), "headers": [],
                 "query_string": b""}
        asyncio.run(guard(scope, receive, send))
    starts = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert starts == [403, 200] and calls == ["127.0.0.1"]


def test_slowloris_partial_headers_are_closed(tmp_path: Path) -> None:
    """A client that trickles its request headers is disconnected after http.header_timeout; a normal request
    on another connection is served meanwhile."""
    s = Svc(tmp_path, CUECAST_HTTP__HEADER_TIMEOUT="2")
    try:
        slow = []
        for port in (s.ports["api"], s.ports["medium"]):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            c.settimeout(10)
            slow.append(c)
        t0 = time.monotonic()
        assert httpx.get(f"{s.api}/healthz", timeout=5).status_code == 200
        for c in slow:
            for _ in range(3):
                try:
                    c.sendall(b"a")  # a byte now and then, never the end of the headers
                except OSError:
                    break
                time.sleep(0.5)
            assert c.recv(1024) == b""  # closed by the server
            c.close()
        assert time.monotonic() - t0 < 9
        assert "request headers not complete within 2 s" in s.proc.log()
    finally:
        s.proc.close()


def test_api_fuzzing_with_schemathesis(svc: Svc, tmp_path: Path) -> None:
    """schemathesis against the app's own OpenAPI: no server errors, every response matches the schema
    (the endless MJPEG stream is left out: a fuzzer cannot read it to the end). WHEP is fuzzed on its own
    without the "schema-valid body accepted" check: any string is schema-valid, few strings are SDP offers.
    It runs in a temporary folder: its cache never lands in the checkout."""
    exe = Path(sys.executable).with_name("schemathesis")
    common = [str(exe), "run", f"{svc.api}/openapi.json", "-n", "40", "--seed", "1"]
    runs = [["--checks", "all", "--exclude-path", "/stream/video", "--exclude-path-regex", "^/whep/"],
            ["--checks", "all", "--exclude-checks", "positive_data_acceptance", "--include-path-regex", "^/whep/"]]
    for extra in runs:
        r = subprocess.run(common + extra, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.hostile.schemathesis_hooks",
                                "PYTHONPATH": str(Path(__file__).parents[2])})
        assert r.returncode == 0, r.stdout[-4000:]
    assert svc.proc.proc.poll() is None
