"""`cuecast doctor`: the usual GStreamer troubleshooting steps as one command.

Owns the checks (elements and their packages, the native plugin, cameras and their modes, device
permissions, ports, socket directory, stale sockets and leaked shm segments, calibration, encoders, CPU
headroom (estimated from reference costs, and measured: the correction timed here or a running service's own
figures), and a running service's two halves) and their verdicts: each line OK / WARN / FAIL with the fix.
Exit status 1 if anything is FAIL.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass

from cuecast.config import QUALITIES, Config

# Element -> Debian package that provides it.
ELEMENTS = {
    "appsrc": "gstreamer1.0-plugins-base", "appsink": "gstreamer1.0-plugins-base",
    "videotestsrc": "gstreamer1.0-plugins-base", "videoconvert": "gstreamer1.0-plugins-base",
    "videoscale": "gstreamer1.0-plugins-base", "videobalance": "gstreamer1.0-plugins-good",
    "decodebin": "gstreamer1.0-plugins-base", "tee": "gstreamer1.0-tools", "queue": "gstreamer1.0-tools",
    "jpegenc": "gstreamer1.0-plugins-good", "jpegdec": "gstreamer1.0-plugins-good",
    "multipartdemux": "gstreamer1.0-plugins-good", "souphttpsrc": "gstreamer1.0-plugins-good",
    "rtspsrc": "gstreamer1.0-plugins-good", "v4l2src": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good", "shmsink": "gstreamer1.0-plugins-bad",
    "shmsrc": "gstreamer1.0-plugins-bad", "h264parse": "gstreamer1.0-plugins-bad",
    "x264enc": "gstreamer1.0-plugins-ugly", "avdec_h264": "gstreamer1.0-libav",
    "webrtcbin": "gstreamer1.0-plugins-bad", "nicesrc": "gstreamer1.0-nice", "dtlssrtpenc": "gstreamer1.0-plugins-bad",
    "flvmux": "gstreamer1.0-plugins-good", "rtmp2sink": "gstreamer1.0-plugins-bad",
    "rtspclientsink": "gstreamer1.0-rtsp",
}
# Per-frame CPU cost (core-ms) measured on the 2-core reference machine at 1080p (bench/results/).
COST_MS = {"mjpeg_decode": 5.4, "remap": 5.0, "bgr": 1.0, "ring": 1.0, "x264": 14.0, "jpeg720": 8.4,
           "jpeg480": 3.2}


@dataclass(frozen=True)
class Finding:
    level: str  # OK | WARN | FAIL
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level:<5}{self.what}" + (f"\n     fix: {self.fix}" if self.fix else "")


def check_elements() -> Iterator[Finding]:
    from cuecast.core.gst import Gst, element_available

    missing = {e: p for e, p in ELEMENTS.items() if not element_available(e)}
    if missing:
        pkgs = sorted(set(missing.values()))
        yield Finding("FAIL", f"GStreamer elements missing: {', '.join(sorted(missing))}",
                      f"sudo apt-get install {' '.join(pkgs)}")
    else:
        yield Finding("OK", f"GStreamer {Gst.version_string().split()[-1]}: all {len(ELEMENTS)} elements present")
    try:
        import gi

        gi.require_version("GstRtspServer", "1.0")
        yield Finding("OK", "gst-rtsp-server bindings present")
    except (ImportError, ValueError):
        yield Finding("FAIL", "gst-rtsp-server bindings missing", "sudo apt-get install gir1.2-gst-rtsp-server-1.0")


def check_native() -> Iterator[Finding]:
    from cuecast.core import native

    try:
        path = native.load()
    except native.NativeError as e:
        yield Finding("FAIL", str(e), "make setup (or scripts/setup.sh) in the cuecast checkout")
        return
    yield Finding("OK", f"native plugin {path} ({', '.join(native.ELEMENTS)})")


def check_cameras(cfg: Config) -> Iterator[Finding]:
    from cuecast.media.sources import SourceError, parse_source, probe_v4l2

    devices = sorted(glob.glob("/dev/video*"))
    spec = parse_source(cfg.source.uri, device_exists=bool(devices) and "/dev/video0" in devices)
    if not devices:
        level = "FAIL" if spec.kind == "v4l2" else "WARN"
        yield Finding(level, "no camera found (/dev/video* is empty)"
                      + ("; the built-in demo source will stream" if spec.kind == "demo" else ""),
                      "plug in the camera and check `v4l2-ctl --list-devices` (or set source.uri to a file/URL)")
    for dev in devices:
        if not os.access(dev, os.R_OK | os.W_OK):
            yield Finding("FAIL", f"no permission to open {dev}",
                          "sudo usermod -aG video $USER, then log in again (the service user must be in 'video')")
            continue
        try:
            modes = probe_v4l2(dev)
        except SourceError as e:
            yield Finding("WARN", f"{dev}: {e}")
            continue
        if not modes:
            yield Finding("OK", f"{dev}: not a capture device (metadata node)")
            continue
        summary: dict[str, list[str]] = {}
        for m in modes:
            rate = f"@{max(m.fps):.0f}" if m.fps else ""
            summary.setdefault(m.format, []).append(f"{m.width}x{m.height}{rate}")
        text = "; ".join(f"{fmt} {', '.join(sizes[:6])}{' ...' if len(sizes) > 6 else ''}"
                         for fmt, sizes in summary.items())
        yield Finding("OK", f"{dev}: {text}")
    yield Finding("OK", f"source resolves to {spec.describe()}")


def check_camera_controls(cfg: Config) -> Iterator[Finding]:
    """The camera's own settings for billiards: motion blur, flicker, colour drift."""
    from cuecast.media import v4l2
    from cuecast.media.sources import SourceError, parse_source

    try:
        spec = parse_source(cfg.source.uri, device_exists=os.path.exists("/dev/video0"))
    except SourceError:
        return
    if spec.kind != "v4l2" or not os.path.exists(spec.location):
        return
    try:
        with v4l2.Camera(spec.location) as cam:
            values = {c.name: c.value for c in cam.controls()}
    except v4l2.CameraError as e:
        yield Finding("WARN", f"camera controls of {spec.location} not readable: {e}")
        return
    interval_ms = 1000 / cfg.source.fps
    ae = values.get("auto_exposure")
    if ae is not None and ae != 1:
        yield Finding("WARN", "auto exposure is on: the camera picks long exposures indoors and a ball at 5 m/s "
                              "smears across centimetres",
                      f"PUT /api/camera {{\"controls\": {{\"auto_exposure\": 1, \"exposure_time_absolute\": "
                      f"{int(interval_ms * 10 / 2)}}}}} (half the frame interval; raise gain if too dark)")
    exposure = values.get("exposure_time_absolute")
    if ae == 1 and exposure is not None and exposure / 10 > interval_ms:
        yield Finding("WARN", f"exposure {exposure / 10:.1f} ms is longer than the frame interval "
                              f"{interval_ms:.1f} ms: the camera delivers {1000 / (exposure / 10):.0f} fps, "
                              f"not {cfg.source.fps}",
                      f"set exposure_time_absolute to at most {int(interval_ms * 10)}")
    plf = values.get("power_line_frequency")
    if plf == 0:
        yield Finding("WARN", "power-line frequency filter disabled: lights on the mains make bands and flicker",
                      "set power_line_frequency to 1 (50 Hz: Europe, most of Asia) or 2 (60 Hz: the Americas)")
    if values.get("white_balance_automatic") == 1:
        yield Finding("WARN", "automatic white balance is on: ball colours drift as players lean over the table",
                      "set white_balance_automatic=0 and white_balance_temperature for the venue's lights")
    yield Finding("OK", f"{spec.location}: {len(values)} camera controls read")


def check_ports(cfg: Config, running: dict | None = None) -> Iterator[Finding]:
    from cuecast.core.ports import PortError, bind_tcp

    wanted = []
    if cfg.http.enabled:
        wanted.append(("http.port", cfg.http.bind, cfg.http.port))
    for q in QUALITIES:
        qc = getattr(cfg.mjpeg, q)
        if qc.enabled and qc.port:
            wanted.append((f"mjpeg.{q}.port", cfg.http.bind, qc.port))
    if cfg.rtsp.enabled:
        wanted.append(("rtsp.port", cfg.rtsp.bind, cfg.rtsp.port))
    for key, host, port in wanted:
        try:
            bind_tcp(host, port, key).close()
            yield Finding("OK", f"port {port} ({key}) is free")
        except PortError as e:
            if running is not None:
                yield Finding("OK", f"port {port} ({key}) is served by the running cuecast")
            else:
                yield Finding("FAIL", str(e), f"stop the other program or set {key} to a free port")


def check_shm(cfg: Config, running: dict | None = None) -> Iterator[Finding]:
    from cuecast.capture.shm import SEGMENT_RE, SHM_DIR, pid_alive, socket_alive

    if not cfg.shm.enabled:
        yield Finding("OK", "shared memory output disabled")
        return
    sock = cfg.shm.socket
    if not sock.parent.is_dir():
        yield Finding("FAIL", f"socket directory {sock.parent} does not exist", f"mkdir -p {sock.parent}")
    elif not os.access(sock.parent, os.W_OK | os.X_OK):
        yield Finding("FAIL", f"socket directory {sock.parent} is not writable by this user",
                      "run as the service user or change shm.socket")
    else:
        yield Finding("OK", f"socket directory {sock.parent} is writable")
    if sock.exists():
        if socket_alive(sock):
            if running is not None:
                yield Finding("OK", f"{sock} is served by the running cuecast")
            else:
                yield Finding("WARN", f"{sock} is served by a running producer (cuecast already running?)")
        else:
            yield Finding("WARN", f"stale socket {sock} (its producer is gone)", "nothing: cuecast removes it at start")
    leaked = []
    for name in os.listdir(SHM_DIR) if SHM_DIR.is_dir() else []:
        m = SEGMENT_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            leaked.append(name)
    if leaked:
        yield Finding("WARN", f"{len(leaked)} leaked shared-memory segment(s) in {SHM_DIR} from dead producers",
                      "nothing: cuecast removes them at start")
    else:
        yield Finding("OK", "no leaked shared-memory segments")


def check_calibration(cfg: Config) -> Iterator[Finding]:
    from cuecast.lens.model import CalibrationError, load_model

    if cfg.fisheye.calibration is None:
        yield Finding("OK", "no fisheye calibration configured (correction off, zero cost)")
        return
    try:
        model = load_model(cfg.fisheye.calibration)
        model.scaled_to(cfg.source.width, cfg.source.height)
    except CalibrationError as e:
        yield Finding("FAIL", str(e), "run `cuecast calibrate solve` or fix fisheye.calibration")
        return
    rms = f", RMS {model.rms:.2f} px" if model.rms is not None else ""
    yield Finding("OK", f"calibration {cfg.fisheye.calibration} valid for {cfg.source.width}x{cfg.source.height}{rms}")


def check_encoders(cfg: Config) -> Iterator[Finding]:
    from cuecast.streaming.encoders import EncoderError, choose

    if not cfg.h264_wanted:
        yield Finding("OK", "RTSP, WebRTC and publishing disabled: no H.264 encoder needed")
        return
    users = [name for name, on in (("RTSP", cfg.rtsp.enabled), ("WebRTC", cfg.webrtc.enabled),
                                   ("publishing", any(t.enabled for t in cfg.publish))) if on]
    try:
        kind, why = choose(cfg.h264.encoder)
        yield Finding("OK", f"H.264 encoder {kind.element} ({why}) for {', '.join(users)}")
    except EncoderError as e:
        yield Finding("FAIL", f"{e} (needed for {', '.join(users)})")


def cpu_estimate(cfg: Config, mjpeg_source: bool = True) -> float:
    """Rough % of one core with every configured output busy, scaled from the 1080p reference costs."""
    scale = cfg.source.width * cfg.source.height / (1920 * 1080)
    fps = cfg.source.fps
    ms = (COST_MS["mjpeg_decode"] if mjpeg_source else 0.0) * scale * fps
    if cfg.fisheye.calibration is not None:
        ms += COST_MS["remap"] * scale * fps
    if cfg.shm.enabled:
        ms += COST_MS["bgr"] * scale * fps
    ms += COST_MS["ring"] * scale * fps  # the hand-over to the streaming process, while people watch
    if cfg.h264_wanted:
        ms += COST_MS["x264"] * scale * cfg.h264.fps
    for q, key in (("medium", "jpeg720"), ("low", "jpeg480"), ("high", "jpeg720")):
        qc = getattr(cfg.mjpeg, q)
        if qc.enabled:
            ms += COST_MS[key] * (qc.width * qc.height) / (1280 * 720) * qc.fps / (2 if q == "high" else 1)
    return ms / 10.0  # core-ms per second -> % of one core


def check_cpu(cfg: Config) -> Iterator[Finding]:
    cores = os.cpu_count() or 1
    est = cpu_estimate(cfg)
    budget = 80.0 * cores
    text = f"CPU estimate with every output busy: ~{est:.0f}% of {100 * cores}% ({cores} cores)"
    if est > budget:
        yield Finding("WARN", text, "lower source.fps or sizes, disable outputs nobody uses, or use a hardware encoder")
    else:
        yield Finding("OK", text)


MEASURE_FRAMES = 30


def measure_correction_ms(width: int, height: int, kernel: str = "auto") -> tuple[float, str]:
    """The correction's wall time per frame on this box, measured: MEASURE_FRAMES frames of the demo lens at
    width x height through cuecastremap (the native element the capture process runs)."""
    from cuecast.core import native
    from cuecast.core.gst import GLib, Gst
    from cuecast.lens.maps import build_maps, remap_table
    from cuecast.media.demo import demo_model

    native.load()
    p = Gst.parse_launch(f"appsrc name=src format=time block=true max-buffers=2 caps=video/x-raw,format=I420,"
                         f"width={width},height={height},framerate=30/1 ! cuecastremap name=r kernel={kernel} "
                         "! fakesink sync=false")
    remap = p.get_by_name("r")
    remap.set_property("map", GLib.Bytes.new(remap_table(build_maps(demo_model(), width, height, chroma=True),
                                                          (width, height))))
    p.set_state(Gst.State.PLAYING)
    src = p.get_by_name("src")
    frame = bytes(width * height * 3 // 2)
    for i in range(MEASURE_FRAMES):
        buf = Gst.Buffer.new_wrapped(frame)
        buf.pts = i * Gst.SECOND // 30
        src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    p.get_bus().timed_pop_filtered(30 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    ms = float(remap.get_property("mean-us")) / 1000
    used = str(remap.get_property("kernel"))
    p.set_state(Gst.State.NULL)
    return ms, used


def check_headroom(cfg: Config, status: dict | None) -> Iterator[Finding]:
    """What this box can sustain, measured: a running service's own per-process figures, else the correction
    timed here at the configured size."""
    budget = 1000.0 / cfg.source.fps
    if status is not None:
        procs = status.get("processes", {})
        cap = procs.get("capture", {}).get("headroom") or {}
        stream = procs.get("streaming", {}).get("headroom") or {}
        box = status.get("box") or {}
        busy = cap.get("busy_percent")
        text = (f"headroom: the backend's path uses {busy}% of its {cap.get('frame_budget_ms')} ms frame "
                f"(correction {cap.get('correction_ms')} ms, packing {cap.get('pack_ms')} ms); threads waiting "
                f"for a CPU: capture {cap.get('waiting_for_cpu_s_per_s')} s/s, streaming "
                f"{stream.get('waiting_for_cpu_s_per_s')} s/s; box {box.get('idle_percent')}% idle "
                f"({box.get('idle_cores')} of {box.get('cores')} cores)")
        short = (busy or 0) > 80 or (cap.get("waiting_for_cpu_s_per_s") or 0) > 0.2 or stream.get("degrading")
        yield Finding("WARN" if short else "OK", text + (", outputs degraded" if stream.get("degrading") else ""),
                      "lower source.fps or sizes, or disable outputs nobody uses" if short else "")
        return
    if cfg.fisheye.calibration is None and not cfg.source.uri.startswith(("demo", "auto")):
        return
    try:
        ms, kernel = measure_correction_ms(cfg.source.width, cfg.source.height, cfg.fisheye.kernel)
    except Exception as e:  # noqa: BLE001 - the native check above names the cause
        yield Finding("WARN", f"could not time the correction here: {e}")
        return
    share = 100 * ms / budget
    text = (f"headroom, measured here: the correction takes {ms:.1f} ms per {cfg.source.width}x"
            f"{cfg.source.height} frame ({kernel}), {share:.0f}% of a frame at {cfg.source.fps} fps "
            f"(up to ~{1000 / ms:.0f} fps)")
    yield Finding("WARN" if share > 60 else "OK", text,
                  "lower source.fps or the size: the correction alone would fill the frame time" if share > 60 else "")


def running_status(cfg: Config) -> dict | None:
    """/api/status of a cuecast serving this config on this machine, if one answers."""
    if not cfg.http.enabled:
        return None
    import json
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{cfg.http.port}/api/status", headers=cfg.auth.bearer_headers())
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            data = json.loads(r.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "processes" in data else None


def check_service(cfg: Config, status: dict | None) -> Iterator[Finding]:
    """A running service's two halves: the capture process (the backend's path) and the streaming process."""
    if status is None:
        yield Finding("OK", "no cuecast running on this config's ports")
        return
    procs = status.get("processes", {})
    cap, stream = procs.get("capture", {}), procs.get("streaming", {})
    src = status.get("source") or {}
    shm = status.get("outputs", {}).get("shm", {})
    if cap.get("state") == "running":
        size = f"{src.get('width')}x{src.get('height')}"
        yield Finding("OK", f"capture process pid {cap.get('pid')} ({cap.get('priority')}), source "
                            f"{src.get('kind')} {src.get('state')} {size}, backend {shm.get('fps', 0)} fps to "
                            f"{shm.get('clients', 0)} reader(s), restarts {cap.get('restarts', 0)}")
    else:
        yield Finding("FAIL", f"capture process not answering (pid {cap.get('pid')}, restarts {cap.get('restarts')})",
                      "see the service log: journalctl -u cuecast")
    yield Finding("OK", f"streaming process pid {stream.get('pid')} ({stream.get('priority')}), restarts "
                        f"{stream.get('restarts', 0)}")
    if not status.get("healthy"):
        yield Finding("WARN", f"no signal from the source ({src.get('last_error') or src.get('state')})",
                      "check the camera (cable, address, credentials)")


def run(cfg: Config) -> list[Finding]:
    findings: list[Finding] = []
    status = running_status(cfg)
    for check in (check_elements, check_native, lambda: check_cameras(cfg), lambda: check_camera_controls(cfg),
                  lambda: check_ports(cfg, status),
                  lambda: check_shm(cfg, status), lambda: check_calibration(cfg), lambda: check_encoders(cfg),
                  lambda: check_cpu(cfg), lambda: check_headroom(cfg, status), lambda: check_service(cfg, status)):
        try:
            findings.extend(check())
        except Exception as e:  # noqa: BLE001 - a broken check must not hide the others
            findings.append(Finding("FAIL", f"check failed unexpectedly: {e}"))
    return findings
