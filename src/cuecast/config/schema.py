"""The config model: every section and key (pydantic, unknown keys rejected, every number bounded), which
keys apply live (LIVE), and the consistency rules between sections. No I/O here."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Fields marked so are applied to a running service by SIGHUP (and listed as such); any other change is
# reported as needing a restart. The one place that says what can change live.
LIVE: dict[str, Any] = {"live": True}


class ConfigError(Exception):
    """A configuration problem a person can fix; the message names the key and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ReconnectConfig(_Model):
    """Backoff for a source that fails or drops: first retry after `initial_delay`, doubling up to `max_delay`."""

    # Capped low by default: a camera that comes back is streaming again within ~2 s.
    initial_delay: float = Field(0.25, ge=0.05, le=60)
    max_delay: float = Field(1.5, ge=0.1, le=600)


class SourceConfig(_Model):
    """Where frames come from and the size/rate of the main path."""

    uri: str = Field(
        "auto",
        description="auto | demo | test:PATTERN | v4l2:///dev/videoN | FILE | file://FILE | rtsp://.. | http(s)://..",
    )
    width: int = Field(1920, ge=64, le=7680)
    height: int = Field(1080, ge=48, le=4320)
    fps: int = Field(30, ge=1, le=120)
    format: Literal["auto", "MJPG", "YUYV", "raw"] = "auto"
    loop: bool = True
    reconnect: ReconnectConfig = ReconnectConfig()

    @field_validator("width")
    @classmethod
    def _even_width(cls, v: int) -> int:
        if v % 8:
            raise ValueError(f"width {v} must be a multiple of 8 (I420 planes need aligned rows)")
        return v

    @field_validator("height")
    @classmethod
    def _even_height(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"height {v} must be even (I420 chroma is half height)")
        return v


View = Literal["camera", "table"]
VIEW_HELP = "camera: the corrected camera picture; table: the playing surface top-down (needs table.calibration)"


class ShmConfig(_Model):
    """Raw BGR frames in shared memory for the vision backend."""

    enabled: bool = True
    view: View = Field("camera", description=VIEW_HELP)
    socket: Path = Path("/tmp/camera-backend")
    width: int | None = Field(None, ge=64, le=7680, description="default: the source width")
    height: int | None = Field(None, ge=48, le=4320, description="default: the source height")
    group: str | None = Field(None, description="group owning the socket and segments (mode 0660)")
    buffers: int | None = Field(None, ge=2, le=32, description="frames of room in the shared-memory area for a "
                                "backend that is behind for a moment; default: 0.2 s of frames at the source "
                                "rate, at least 6 (6 at 30 fps, 12 at 60, 24 at 120)")


class FisheyeConfig(_Model):
    """Fisheye correction. Without a calibration the element is not in the pipeline at all (zero cost);
    the demo source brings its own."""

    calibration: Path | None = Field(None, description="camera.yaml from `cuecast calibrate solve`")
    dir: Path | None = Field(None, description="where the viewer's guided calibration keeps the lens files it "
                             "applies (each kept, for revert); default: a lens folder next to the config file, "
                             "or /var/lib/cuecast/lens")
    balance: float | None = Field(None, ge=0.0, le=1.0, description="default: from the calibration file")
    fov_scale: float | None = Field(None, ge=0.1, le=10.0, description="default: from the calibration file")
    enabled: bool = Field(True, description="correct frames; false passes them through", json_schema_extra=LIVE)
    kernel: Literal["auto", "avx2", "plain-c"] = Field(
        "auto", description="pixel kernels of the native elements (correction, the backend's BGR): auto is AVX2 "
        "where the CPU has it; plain-c is the Raspberry Pi's path")


class TableConfig(_Model):
    """The table view: the playing surface top-down, in millimetres (`cuecast calibrate table`)."""

    calibration: Path | None = Field(None, description="table.yaml from `cuecast calibrate table` (the demo source "
                                     "brings its own)")
    px_per_mm: float = Field(0.75, ge=0.1, le=5.0, description="table view resolution")
    margin_mm: float = Field(60.0, ge=0.0, le=500.0, description="border around the playing surface in the view")
    drift_px: float = Field(8.0, ge=1.0, le=200.0, description="warn when the table moved this much in the picture")
    drift_interval: float = Field(60.0, ge=2.0, le=3600.0, description="seconds between two drift checks")


CONTROL_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class CameraConfig(_Model):
    """The camera's own controls (V4L2, set in the device: exposure, gain, white balance, focus, power-line
    frequency), by the names `v4l2-ctl --list-ctrls` prints. Applied every time the camera is opened (start,
    replug, capture restart); a named profile's values are applied over `controls`."""

    controls: dict[str, int] = Field(default_factory=dict, description="name: value, e.g. auto_exposure: 1")
    profiles: dict[str, dict[str, int]] = Field(default_factory=dict, description="named sets of controls")
    profile: str | None = Field(None, description="the profile in use (a key of profiles)")

    @field_validator("controls")
    @classmethod
    def _names(cls, v: dict[str, int]) -> dict[str, int]:
        for name in v:
            if not re.match(CONTROL_NAME, name):
                raise ValueError(f"{name!r} is not a V4L2 control name (lower case, e.g. exposure_time_absolute)")
        return v

    @model_validator(mode="after")
    def _profile_known(self) -> CameraConfig:
        if self.profile is not None and self.profile not in self.profiles:
            raise ValueError(f"profile {self.profile!r} is not one of profiles: {sorted(self.profiles) or 'none'}")
        return self

    def effective(self) -> dict[str, int]:
        """What is applied to the device: controls, then the active profile's values over them."""
        return {**self.controls, **(self.profiles.get(self.profile, {}) if self.profile else {})}


class ControlsConfig(_Model):
    """Picture controls, the videobalance ranges."""

    brightness: float = Field(0.0, ge=-1.0, le=1.0)
    contrast: float = Field(1.0, ge=0.0, le=2.0)
    saturation: float = Field(1.0, ge=0.0, le=2.0)
    hue: float = Field(0.0, ge=-1.0, le=1.0)


class MjpegStreamConfig(_Model):
    """One MJPEG quality: encoded once per frame, the same bytes to every client."""

    enabled: bool = True
    view: View = Field("camera", description=VIEW_HELP)
    port: int | None = Field(None, ge=1, le=65535, description="its own HTTP port; None: only via the API")
    width: int = Field(1280, ge=64, le=7680)
    height: int = Field(720, ge=48, le=4320)
    fps: int = Field(30, ge=1, le=120)
    quality: int = Field(80, ge=1, le=100, description="JPEG quality", json_schema_extra=LIVE)
    max_clients: int = Field(10, ge=1, le=1000)


def _stream(port: int | None, width: int, height: int, fps: int, max_clients: int = 10) -> MjpegStreamConfig:
    return MjpegStreamConfig(port=port, width=width, height=height, fps=fps, max_clients=max_clients)


class Quality(StrEnum):
    """The MJPEG qualities (the keys of mjpeg:), the one place they are named."""

    low = "low"
    medium = "medium"
    high = "high"


QUALITIES: tuple[str, ...] = tuple(q.value for q in Quality)


class MjpegConfig(_Model):
    """HTTP MJPEG outputs: medium on :8001, low on :8002, high (1920x1080) through the API only."""

    client_timeout: float = Field(10.0, ge=0.5, le=600, description="drop a client that reads nothing this long",
                                  json_schema_extra=LIVE)
    medium: MjpegStreamConfig = _stream(8001, 1280, 720, 30)
    low: MjpegStreamConfig = _stream(8002, 640, 480, 15)
    high: MjpegStreamConfig = _stream(None, 1920, 1080, 15, max_clients=3)


class RtspUser(_Model):
    name: str = Field(min_length=1)
    password: str = Field(min_length=1)


class H264Config(_Model):
    """The one H.264 encoder, shared by RTSP, WebRTC, publishing and replay; it runs only while one of them
    needs it."""

    view: View = Field("camera", description=VIEW_HELP)
    width: int | None = Field(None, ge=64, le=7680, description="default: the source width")
    height: int | None = Field(None, ge=48, le=4320, description="default: the source height")
    fps: int = Field(30, ge=1, le=120)
    bitrate_kbps: int = Field(4000, ge=100, le=100_000)
    keyframe_interval: int = Field(30, ge=1, le=600, description="frames between key frames")
    encoder: Literal["auto", "x264", "openh264", "v4l2", "vaapi", "nvenc"] = "auto"


# Keys that lived under rtsp: before the h264: section existed; a config that still has them keeps loading.
MOVED_TO_H264 = tuple(H264Config.model_fields)


class RtspConfig(_Model):
    """RTSP playback of the H.264 stream (h264:)."""

    enabled: bool = True
    bind: str = Field("0.0.0.0", description="127.0.0.1: this machine only; 0.0.0.0: the whole LAN")
    port: int = Field(8554, ge=1, le=65535)
    mount: str = Field("/high", pattern=r"^/[A-Za-z0-9._~/-]*$")
    session_timeout: int = Field(60, ge=5, le=3600, description="seconds before a silent client is removed")
    users: list[RtspUser] = Field(default_factory=list, description="basic auth; empty: no authentication")


class WebRtcConfig(_Model):
    """WebRTC playback of the H.264 stream (WHEP: POST /whep/high on the API port), from the h264: encoder."""

    enabled: bool = True
    max_viewers: int = Field(4, ge=1, le=100, description="more get 503")
    connect_timeout: float = Field(15.0, ge=2, le=120, description="end a session not connected this long")
    addresses: list[str] = Field(default_factory=list, description="IPv4 addresses offered as ICE host "
                                 "candidates; empty: 127.0.0.1 and every interface's")

    @field_validator("addresses")
    @classmethod
    def _ipv4(cls, v: list[str]) -> list[str]:
        import ipaddress

        for a in v:
            try:
                ipaddress.IPv4Address(a)
            except ValueError:
                raise ValueError(f"{a!r} is not an IPv4 address") from None
        return v


class PublishTarget(_Model):
    """Push the H.264 stream to a media server that re-serves it (nginx-rtmp, MediaMTX, ...)."""

    url: str = Field(pattern=r"^(rtmps?|rtsps?)://[^/\s]+(/\S*)?$",
                     description="rtmp://host[:port]/app/stream or rtsp://host[:port]/path")
    enabled: bool = True


class ReplayConfig(_Model):
    """Instant replay: the last seconds of the H.264 stream in memory, saved as MP4 clips on request."""

    enabled: bool = Field(False, description="keeps the H.264 encoder running all the time")
    seconds: float = Field(60.0, ge=5.0, le=600.0, description="how much is kept in memory")
    dir: Path = Field(Path("/var/lib/cuecast/clips"), description="where clips are written")
    max_clips: int = Field(200, ge=1, le=100_000, description="the oldest go beyond this many")
    max_bytes: int = Field(2 * 2**30, ge=2**20, le=2**42, description="the oldest go beyond this many bytes")


class EventsConfig(_Model):
    """Events from the backend (POST /api/events: a shot at frame N, with its clip), kept on disk."""

    dir: Path | None = Field(None, description="where events are kept; default: an events folder in replay.dir")
    max_events: int = Field(10_000, ge=10, le=1_000_000, description="the oldest go beyond this many")


OutputGroup = Literal["shm", "h264", "mjpeg"]
DEFAULT_PRIORITY: tuple[OutputGroup, ...] = ("shm", "h264", "mjpeg")


class DegradeConfig(_Model):
    """When the box cannot keep up, lower the rate of the lowest-priority outputs first."""

    enabled: bool = True
    priority: list[OutputGroup] = Field(
        default_factory=lambda: list(DEFAULT_PRIORITY),
        description="highest first; the first is never lowered; h264 covers every H.264 output")
    min_fps: int = Field(5, ge=1, le=60, description="no output is lowered below this")
    recover_after: float = Field(10.0, ge=2, le=600, description="where CPU is not measured: seconds without lag "
                                 "before a rate goes back up")
    thread_priorities: bool = Field(True, description="run lower-priority outputs' threads at a higher niceness "
                                    "(+5 per step), so contention hits them first")

    @field_validator("priority")
    @classmethod
    def _all_once(cls, v: list[str]) -> list[str]:
        if sorted(v) != ["h264", "mjpeg", "shm"]:
            raise ValueError("list shm, h264 and mjpeg, each once, highest priority first")
        return v


class PriorityConfig(_Model):
    """Scheduling: the vision backend's path runs before everything that serves people."""

    capture_nice: int = Field(-5, ge=-20, le=19, description="the capture process (camera, correction, the "
                              "backend's shared memory); below 0 needs CAP_SYS_NICE (root, or the systemd unit), "
                              "else it stays at the service's own")
    streaming_nice: int = Field(10, ge=0, le=19, description="added to the service's niceness for the streaming "
                                "process (encoders, HTTP, RTSP, WebRTC, publishing)")
    realtime: bool = Field(False, description="run the capture process SCHED_RR where CAP_SYS_NICE allows it")


class HttpConfig(_Model):
    """The API and viewer (FastAPI), and where every HTTP server binds."""

    enabled: bool = True
    bind: str = Field("0.0.0.0", description="127.0.0.1: this machine only; 0.0.0.0: the whole LAN")
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(65536, ge=1024, le=16 * 2**20)
    max_connections: int = Field(200, ge=1, le=10_000, description="open requests per server; more get 503")
    max_connections_per_ip: int = Field(30, ge=1, le=10_000, description="open requests per client address")
    max_query_bytes: int = Field(2048, ge=64, le=65536)
    header_timeout: float = Field(10.0, ge=0.5, le=300, description="close clients that send headers slower")
    allowed_hosts: list[str] = Field(default_factory=list, description="more names this box is reached by "
                                     "(e.g. cuecast.local); changes are refused from pages on any other host")


class AuthConfig(_Model):
    """Who may change settings (and optionally watch). Without a token, changes are accepted from this
    machine only (loopback)."""

    token: str | None = Field(None, min_length=16, description="bearer token for state-changing requests")
    token_file: Path | None = Field(None, description="read the token from this file instead")
    protect_streams: bool = Field(False, description="streams, snapshots, WebRTC, RTSP (user `cuecast`, the token "
                                  "as password), /api/status and /metrics need the token too (?token=... for <img>)")

    def resolved_token(self) -> str | None:
        if self.token_file is not None:
            try:
                text = self.token_file.read_text().strip()
            except OSError as e:
                raise ValueError(f"auth.token_file {self.token_file}: {e.strerror}") from None
            if len(text) < 16:
                raise ValueError(f"auth.token_file {self.token_file}: the token must be at least 16 characters")
            return text
        return self.token

    def bearer_headers(self) -> dict[str, str]:
        """The Authorization header a local client (doctor, `cuecast camera`) sends; none without a token (or an
        unreadable token file: the request then says 401 itself)."""
        try:
            token = self.resolved_token()
        except ValueError:
            token = None
        return {"Authorization": f"Bearer {token}"} if token else {}


class LogConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", json_schema_extra=LIVE)
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class Config(_Model):
    """The whole service configuration."""

    source: SourceConfig = SourceConfig()
    shm: ShmConfig = ShmConfig()
    fisheye: FisheyeConfig = FisheyeConfig()
    controls: ControlsConfig = Field(default_factory=ControlsConfig, json_schema_extra=LIVE)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    table: TableConfig = TableConfig()
    http: HttpConfig = HttpConfig()
    auth: AuthConfig = AuthConfig()
    mjpeg: MjpegConfig = MjpegConfig()
    h264: H264Config = H264Config()
    rtsp: RtspConfig = RtspConfig()
    webrtc: WebRtcConfig = WebRtcConfig()
    degrade: DegradeConfig = DegradeConfig()
    priority: PriorityConfig = PriorityConfig()
    replay: ReplayConfig = ReplayConfig()
    events: EventsConfig = EventsConfig()
    publish: list[PublishTarget] = Field(default_factory=list, description="media servers to push H.264 to")
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if (self.shm.width is None) != (self.shm.height is None):
            raise ValueError("shm.width and shm.height must be set together (or both left out)")
        if self.auth.token is not None and self.auth.token_file is not None:
            raise ValueError("set auth.token or auth.token_file, not both")
        if self.auth.protect_streams and self.auth.token is None and self.auth.token_file is None:
            raise ValueError("auth.protect_streams needs auth.token or auth.token_file: without a token nothing "
                             "can be protected")
        if (self.h264.width is None) != (self.h264.height is None):
            raise ValueError("h264.width and h264.height must be set together (or both left out)")
        ports: dict[int, str] = {}
        named = [("http.port", self.http.port if self.http.enabled else None)]
        named.append(("rtsp.port", self.rtsp.port if self.rtsp.enabled else None))
        named += [(f"mjpeg.{q}.port", getattr(self.mjpeg, q).port if getattr(self.mjpeg, q).enabled else None)
                  for q in QUALITIES]
        for key, port in named:
            if port is None:
                continue
            if port in ports:
                raise ValueError(f"{key} and {ports[port]} both use port {port}")
            ports[port] = key
        return self

    def views(self) -> dict[str, str]:
        """Each output's view: {"shm": "camera", "mjpeg_medium": "table", "h264": ...} (enabled outputs only)."""
        out: dict[str, str] = {"shm": self.shm.view} if self.shm.enabled else {}
        out.update({f"mjpeg_{q}": getattr(self.mjpeg, q).view for q in QUALITIES
                    if getattr(self.mjpeg, q).enabled})
        if self.h264_wanted:
            out["h264"] = self.h264.view
        return out

    @property
    def h264_wanted(self) -> bool:
        """The one H.264 encoder is needed when RTSP, WebRTC, replay or a publish target is enabled."""
        return (self.rtsp.enabled or self.webrtc.enabled or self.replay.enabled
                or any(t.enabled for t in self.publish))

    @property
    def people_fps(self) -> int:
        """The highest rate a people-facing output runs at (MJPEG qualities, the H.264 encoder). The internal
        ring to the streaming process carries no more: at source.fps 60 the backend gets 60 frames a second,
        the streaming process 30 (by default), and never copies a frame no output would use."""
        rates = [getattr(self.mjpeg, q).fps for q in QUALITIES if getattr(self.mjpeg, q).enabled]
        if self.h264_wanted:
            rates.append(self.h264.fps)
        return min(self.source.fps, max(rates, default=self.source.fps))

    def lens_dir(self, config_path: Path | None) -> Path:
        if self.fisheye.dir is not None:
            return self.fisheye.dir
        return config_path.parent / "lens" if config_path is not None else Path("/var/lib/cuecast/lens")

    @property
    def events_dir(self) -> Path:
        return self.events.dir if self.events.dir is not None else self.replay.dir / "events"

    @property
    def h264_size(self) -> tuple[int, int]:
        if self.h264.width is not None and self.h264.height is not None:
            return self.h264.width, self.h264.height
        return self.source.width, self.source.height
