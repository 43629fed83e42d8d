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
        """Open file descriptors of the process serving HTTP (the streaming process)."""
        return self.proc.child("streaming").num_fds()

    def rss_mib(self) -> float:
        return self.proc.child("streaming").memory_info().rss / 2**20

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
        # What describes the streams is protected with them; the token is never shown.
        assert httpx.get(f"{api}/api/status", timeout=5).status_code == 401
        assert httpx.get(f"{api}/metrics", timeout=5).status_code == 401
        st = httpx.get(f"{api}/api/status", headers={"authorization": f"Bearer {token}"}, timeout=5)
        assert st.status_code == 200 and token not in st.text
        # RTSP too: the token is the password of user cuecast; without it, 401.
        url = f"rtsp://127.0.0.1:{s.ports['rtsp']}/high"
        probe = ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=codec_name", "-of", "csv"]
        probed = subprocess.run([*probe, url], capture_output=True, text=True, timeout=30)
        assert probed.returncode != 0 and "401" in probed.stderr, probed.stderr
        allowed = subprocess.run([*probe, url.replace("rtsp://", f"rtsp://cuecast:{token}@")], capture_output=True,
                            text=True, timeout=30)
        assert allowed.returncode == 0 and "h264" in allowed.stdout, allowed.stderr
        assert token not in s.proc.log()
        checked = run_cli("check-config", env={"CUECAST_AUTH__TOKEN": token})
        assert token not in checked.stdout and "***" in checked.stdout
    finally:
        s.proc.close()


def test_without_a_token_changes_come_from_loopback_only() -> None:
    """The guard itself: a LAN address is refused (403), loopback accepted; checked on the ASGI level since
    the tests cannot send from another host."""
    import asyncio

    from cuecast.streaming.web.guard import Guard

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
    (the endless MJPEG stream and the events' live feed are left out: a fuzzer cannot read them to the end).
    WHEP and the table are fuzzed on their own without the "schema-valid body accepted" check: any string is
    schema-valid, few strings are SDP offers, and few sets of four points are a table.
    It runs in a temporary folder: its cache never lands in the checkout."""
    exe = Path(sys.executable).with_name("schemathesis")
    common = [str(exe), "run", f"{svc.api}/openapi.json", "-n", "40", "--seed", "1"]
    semantic, preview, camera = "^/(whep/|api/table)", "/api/table/preview.jpg", "^/api/camera"
    runs = [["--checks", "all", "--exclude-path", "/stream/video", "--exclude-path", "/api/events/stream",
             "--exclude-path-regex",
             "^/(whep/|api/table|api/camera)"],
            ["--checks", "all", "--exclude-checks", "positive_data_acceptance", "--include-path-regex", semantic,
             "--exclude-path", preview],
            # No V4L2 camera behind this service (a test pattern): /api/camera answers its documented 503, which
            # the server-error check would count; everything else about it is checked.
            ["--checks", "all", "--exclude-checks", "not_a_server_error,positive_data_acceptance",
             "--include-path-regex", camera],
            # Over-long query strings get 414 from the guard before validation (schemathesis wants 4xx from
            # its own list there): the preview's strings are fuzzed for everything else.
            ["--checks", "all", "--exclude-checks", "positive_data_acceptance,negative_data_rejection",
             "--include-path", preview]]
    for extra in runs:
        r = subprocess.run(common + extra, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.hostile.schemathesis_hooks",
                                "PYTHONPATH": str(Path(__file__).parents[2])})
        assert r.returncode == 0, r.stdout[-4000:]
    assert svc.proc.proc.poll() is None


def test_a_rejected_token_is_never_echoed(tmp_path: Path) -> None:
    """A token refused by the config (too short) is named by its key, never printed back."""
    secret = "hunter2-secret"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"auth:\n  token: {secret}\n")
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2 and "auth.token" in r.stderr and secret not in r.stderr + r.stdout
    r = run_cli("serve", "--config", str(cfg), timeout=30)
    assert r.returncode == 2 and "auth.token" in r.stderr and secret not in r.stderr + r.stdout
    cfg.write_text("auth:\n  protect_streams: true\n")
    r = run_cli("check-config", str(cfg))
    assert r.returncode == 2 and "auth.protect_streams needs auth.token" in r.stderr


@pytest.mark.parametrize(("body", "status", "words"), [
    (b'{"brightness": 1e999}', 422, "finite"),
    (b'{"brightness": -1e400}', 422, "finite"),
    (b'{"brightness": NaN}', 422, "finite"),
    (b'{"contrast": Infinity}', 422, "finite"),
    (b'{"brightness": 1e308}', 422, "less than or equal"),
    (b'{"brightness": 0.1, "brightness": 0.2}', 400, "duplicate key 'brightness'"),
    (b"[" * 2000 + b"]" * 2000, 400, "nested 2000 levels"),
    (b'{"brightness": {"a": {"b": [1, 2, {"c": 3}]}}}', 422, "brightness"),
    (b"\xff\xfe not json", 400, "parsing the body"),
])
def test_hostile_json_bodies_get_4xx_naming_the_problem(svc: Svc, body: bytes, status: int, words: str) -> None:
    """Non-finite numbers, huge exponents, deep nesting and duplicate keys: a 4xx that says what is wrong
    (the field, for a bad number), never a 500; the controls are unchanged."""
    before = httpx.get(f"{svc.api}/api/controls", timeout=5).json()
    r = httpx.put(f"{svc.api}/api/controls", content=body, headers={"content-type": "application/json"}, timeout=5)
    assert r.status_code == status, r.text
    assert words in r.text
    if status == 422 and words == "finite":
        assert r.json()["detail"][0]["loc"][-1] in ("brightness", "contrast"), r.text
    assert httpx.get(f"{svc.api}/api/controls", timeout=5).json() == before


def test_wrong_content_types_on_every_endpoint_with_a_body(svc: Svc) -> None:
    """Every endpoint that takes a body refuses another content type with 415 naming the one it wants."""
    spec = httpx.get(f"{svc.api}/openapi.json", timeout=5).json()
    tried = 0
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            wanted = list((op.get("requestBody") or {}).get("content", {}))
            if not wanted:
                continue
            url = svc.api + path.replace("{session}", "x")
            for ctype, body in (("text/plain", b"hello"), ("application/x-www-form-urlencoded", b"a=1"),
                                ("application/json" if "application/json" not in wanted else "text/csv", b"{}")):
                r = httpx.request(method.upper(), url, content=body, headers={"content-type": ctype}, timeout=10)
                assert r.status_code == 415, (method, path, ctype, r.status_code, r.text)
                assert any(w in r.text for w in wanted), r.text
                tried += 1
    assert tried >= 6


def test_dns_rebinding_cannot_change_settings(tmp_path: Path) -> None:
    """A page on another site whose name now points at 127.0.0.1 (DNS rebinding) sends Host/Origin of that
    site: its changes are refused (403 naming http.allowed_hosts); the box's own names work, and so does a
    name the config allows."""
    s = Svc(tmp_path, CUECAST_HTTP__ALLOWED_HOSTS="[table1.club.example]")
    try:
        port = s.ports["api"]
        url = f"{s.api}/api/controls"
        body = {"contrast": 1.1}
        for headers in ({"host": f"evil.example:{port}"},
                        {"host": f"127.0.0.1:{port}", "origin": f"http://evil.example:{port}"}):
            r = httpx.put(url, json=body, headers=headers, timeout=5)
            assert r.status_code == 403 and "http.allowed_hosts" in r.text, r.text
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"table1.club.example:{port}"):
            r = httpx.put(url, json=body, headers={"host": host, "origin": f"http://{host}"}, timeout=5)
            assert r.status_code == 200, (host, r.text)
        # Viewing is not a change: the viewer page and its streams load from any name.
        assert httpx.get(f"{s.api}/", headers={"host": f"evil.example:{port}"}, timeout=5).status_code == 200
    finally:
        s.proc.close()
