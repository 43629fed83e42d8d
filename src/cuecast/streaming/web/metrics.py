"""/metrics: the Prometheus view of the status, read at scrape time (one collector over Service.status())."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cuecast.streaming.service import Service


class StatusCollector:
    """Prometheus view of Service.status(), read at scrape time."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Any:
        st = self.service.status()
        yield GaugeMetricFamily("cuecast_uptime_seconds", "Seconds since the service started", st["uptime_s"])
        yield GaugeMetricFamily("cuecast_cpu_percent", "Process CPU, percent of one core", st["cpu_percent"])
        yield GaugeMetricFamily("cuecast_source_up", "1 while frames flow from the source", int(st["healthy"]))
        src = st["source"] or {}
        yield CounterMetricFamily("cuecast_source_frames", "Frames received from the source", src.get("frames", 0))
        yield CounterMetricFamily("cuecast_source_attempts", "Source connection attempts", src.get("attempts", 0))
        yield CounterMetricFamily("cuecast_source_corrupt_frames", "Frames the decoder dropped as corrupt",
                                  src.get("corrupt_frames", 0))
        if src.get("kind") == "v4l2":
            yield CounterMetricFamily("cuecast_camera_drops", "Frames the camera's driver dropped (gaps in its "
                                      "buffer sequence: no buffer was free)", src.get("camera_drops", 0))
            for key, metric, what in (
                    ("frame_interval_ms", "cuecast_camera_frame_interval_seconds",
                     "Mean time between the driver's frame timestamps, recent frames"),
                    ("frame_interval_jitter_ms", "cuecast_camera_frame_interval_jitter_seconds",
                     "Standard deviation of the time between the driver's frame timestamps (jitter)")):
                if src.get(key) is not None:
                    yield GaugeMetricFamily(metric, what, src[key] / 1000)
        camera = st.get("camera") or {}
        if camera.get("controls"):
            ctl = GaugeMetricFamily("cuecast_camera_control", "A camera (V4L2) control's value as last read "
                                    "from the device (every 5 s)", labels=["control"])
            for name, value in sorted(camera["controls"].items()):
                ctl.add_metric([name], value)
            yield ctl
        clients = GaugeMetricFamily("cuecast_output_clients", "Connected clients", labels=["output"])
        fps = GaugeMetricFamily("cuecast_output_fps", "Frames per second sent", labels=["output"])
        sent = CounterMetricFamily("cuecast_output_frames_sent", "Frames sent to clients", labels=["output"])
        dropped = CounterMetricFamily("cuecast_output_frames_dropped", "Frames a consumer did not get (slow "
                                      "clients, a full shared area, waiting for a key frame)", labels=["output"])
        nbytes = CounterMetricFamily("cuecast_output_bytes_sent", "Bytes sent to clients", labels=["output"])
        for name, o in st["outputs"].items():  # every output has these fields (service.output_entry)
            if not o["enabled"]:
                continue
            clients.add_metric([name], o["clients"])
            fps.add_metric([name], o["fps"])
            sent.add_metric([name], o["frames_sent"])
            dropped.add_metric([name], o["frames_dropped"])
            nbytes.add_metric([name], o["bytes_sent"])
        yield from (clients, fps, sent, dropped, nbytes)
        degr = st.get("degradation") or {}
        yield GaugeMetricFamily("cuecast_degrading", "1 while outputs run below their configured rate",
                                int(bool(degr.get("degrading"))))
        target = GaugeMetricFamily("cuecast_output_fps_target", "Rate an output runs at now (degradation)",
                                   labels=["output"])
        for name, rates in (degr.get("outputs") or {}).items():
            target.add_metric([name], rates["fps_target"])
        up = GaugeMetricFamily("cuecast_publish_live", "1 while a publish target is live", labels=["url"])
        pub_bytes = CounterMetricFamily("cuecast_publish_bytes", "Bytes pushed to a publish target", labels=["url"])
        failures = CounterMetricFamily("cuecast_publish_failures", "Failed or lost connections", labels=["url"])
        for p in st.get("publish", []):
            up.add_metric([p["url"]], int(p["state"] == "live"))
            pub_bytes.add_metric([p["url"]], p["bytes_sent"])
            failures.add_metric([p["url"]], p["failures"])
        yield from (target, up, pub_bytes, failures)
        rp = st.get("replay") or {}
        if rp.get("enabled"):
            yield CounterMetricFamily("cuecast_replay_clips_written", "Replay clips written", rp["clips_written"])
            yield CounterMetricFamily("cuecast_replay_bytes_written", "Bytes of replay clips written",
                                      rp["bytes_written"])
            yield CounterMetricFamily("cuecast_replay_failures", "Replay clips that could not be written",
                                      rp["failures"])
            yield GaugeMetricFamily("cuecast_replay_seconds_held", "Seconds of H.264 kept for replay",
                                    rp["seconds_held"])
            yield GaugeMetricFamily("cuecast_replay_bytes_held", "Bytes of H.264 kept for replay", rp["bytes_held"])
            yield GaugeMetricFamily("cuecast_replay_clips", "Replay clips on disk", rp["clips"])
        ev = st.get("events") or {}
        posted = CounterMetricFamily("cuecast_events_posted", "Events posted since start", labels=["kind"])
        for kind, n in sorted((ev.get("posted") or {}).items()):
            posted.add_metric([kind], n)
        clips = CounterMetricFamily("cuecast_event_clips", "Clips of events by outcome since start", labels=["status"])
        for status in ("ready", "failed"):
            clips.add_metric([status], (ev.get("clips") or {}).get(status, 0))
        yield posted
        yield clips
        yield GaugeMetricFamily("cuecast_events_kept", "Events kept on disk", ev.get("kept", 0))
        yield GaugeMetricFamily("cuecast_event_listeners", "Live event feed listeners", ev.get("listeners", 0))


def router(service: Service) -> APIRouter:
    r = APIRouter()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatusCollector(service))

    @r.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    return r
