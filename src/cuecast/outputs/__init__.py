"""The outputs: shared memory (the backend and the internal ring), MJPEG, the one H.264 encoder and what it
feeds (RTSP, WebRTC, publishing, instant replay)."""
