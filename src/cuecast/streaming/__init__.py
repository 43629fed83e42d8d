"""THE STREAMING PROCESS: reads the capture process's ring and serves people: MJPEG, RTSP, WebRTC, publishing,
instant replay (outputs/), the HTTP API and viewer (web/), and the degradation that keeps it within the box."""
