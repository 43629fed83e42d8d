"""WebRTC bench: glass-to-browser latency over WebRTC next to MJPEG (same run, same camera, same page),
connect-to-first-frame time, and service CPU with 0, 1 and 3 WebRTC viewers (one encoder, shared payloading).

Glass: an MJPEG-over-HTTP camera (tests/helpers/timecode.py) stamps each frame with the wall-clock ms it was
made; headless Chromium reads the stamp back off the displayed picture (video: per presented frame; MJPEG
<img>: per animation frame, so up to ~16 ms late) and subtracts it from its own clock (same machine).
"""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from tests.helpers.browser import Browser
from tests.helpers.service import wait_http
from tests.helpers.timecode import TimecodeCamera, collect_js

from bench.common import (
    cpu_percent,
    free_ports,
    percentile,
    save_plot,
    service_env,
    start_service,
    stop,
    table,
    window,
    write_report,
)

WINDOW_S = window(20, 4)
CPU_WINDOW_S = window(10, 2)
FLAGS = ["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
         "--autoplay-policy=no-user-gesture-required"]
DECODED_JS = """(async () => { const pc = window.cuecast.pc; if (!pc) return 0; let n = 0;
  (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp') n = s.framesDecoded || 0; }); return n; })()"""
# Extra real viewers in the same page: each a peer connection that POSTs its own offer and decodes.
EXTRA_VIEWER_JS = """(async () => {
  const pc = new RTCPeerConnection(); pc.addTransceiver('video', {direction: 'recvonly'});
  const v = document.createElement('video'); v.muted = true; v.autoplay = true; document.body.append(v);
  pc.ontrack = e => { v.srcObject = new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
                           setTimeout(r, 2000); });
  const r = await fetch('/whep/high', {method: 'POST', headers: {'content-type': 'application/sdp'},
                                       body: pc.localDescription.sdp});
  await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
  (window.extra = window.extra || []).push(pc); return r.status;
})()"""


def collect(browser: Browser, element: str, seconds: float) -> list[float]:
    browser.eval(collect_js(element))
    time.sleep(seconds)
    return list(browser.eval("window.latencies"))


def main() -> None:
    camera = TimecodeCamera(1280, 720, 30).start()
    ports = free_ports(3)
    env = service_env(ports) | {"CUECAST_WEBRTC__ADDRESSES": "[127.0.0.1]", "CUECAST_WEBRTC__MAX_VIEWERS": "4"}
    api = f"http://127.0.0.1:{ports[0]}"
    with TemporaryDirectory() as tmp:
        proc = start_service("--source", camera.url, "--width", "1280", "--height", "720",
                             "--shm-socket", str(Path(tmp) / "sock"), env_extra=env)
        browser = Browser(FLAGS)
        try:
            wait_http(f"{api}/healthz")
            cpu0, _ = cpu_percent(proc.pid, CPU_WINDOW_S)
            t0 = time.monotonic()
            browser.goto(f"{api}/?mode=webrtc")
            browser.wait_for(f"{DECODED_JS}.then(n => n > 0)", timeout=30)
            first_frame_s = time.monotonic() - t0
            time.sleep(2)
            webrtc = collect(browser, "video", WINDOW_S)
            cpu1, _ = cpu_percent(proc.pid, CPU_WINDOW_S)
            for _ in range(2):
                browser.eval(EXTRA_VIEWER_JS)
            time.sleep(3)
            cpu3, _ = cpu_percent(proc.pid, CPU_WINDOW_S)
            browser.goto(f"{api}/")  # the viewer's MJPEG mode (medium, 720p30), same camera and page code
            browser.wait_for("document.getElementById('stream').naturalWidth > 0", timeout=30)
            time.sleep(2)
            mjpeg = collect(browser, "stream", WINDOW_S)
        finally:
            browser.close()
            stop(proc)
            camera.stop()

    def row(name: str, lat: list[float]) -> list[object]:
        return [name, len(lat), f"{percentile(lat, 50):.0f}", f"{percentile(lat, 95):.0f}",
                f"{percentile(lat, 99):.0f}", f"{max(lat):.0f}" if lat else "-"]

    body = table(["path (720p30)", "frames read", "p50 ms", "p95 ms", "p99 ms", "max ms"],
                 [row("WebRTC (H.264, viewer's video)", webrtc), row("MJPEG medium (viewer's img)", mjpeg)])
    body += (f"\n\nTarget: WebRTC glass-to-browser p50 <= 150 ms on loopback -> "
             f"{'met' if webrtc and percentile(webrtc, 50) <= 150 else 'MISSED'} "
             f"(ratio to MJPEG p50 in the same run: {percentile(webrtc, 50) / max(1.0, percentile(mjpeg, 50)):.2f}).\n")
    body += f"Page open -> first WebRTC frame decoded: {first_frame_s:.2f} s.\n\n"
    body += table(["WebRTC viewers", "service CPU % of a core"],
                  [[0, f"{cpu0:.0f}"], [1, f"{cpu1:.0f}"], [3, f"{cpu3:.0f}"]])
    body += f"\n\n3 viewers / 1 viewer CPU: {cpu3 / max(cpu1, 1e-6):.2f} (one encoder, one payloader).\n"

    def draw(ax: Any) -> None:
        ax.hist([webrtc, mjpeg], bins=40, label=["WebRTC", "MJPEG"])
        ax.set_xlabel("glass-to-browser latency (ms)")
        ax.legend()

    body += "\n" + save_plot("webrtc_latency", draw) + "\n"
    write_report("webrtc", "WebRTC: glass-to-browser latency and viewer cost", body)


if __name__ == "__main__":
    main()
