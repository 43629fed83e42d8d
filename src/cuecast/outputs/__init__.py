"""Outputs hanging off the tee: shared memory (more to come: RTSP, MJPEG)."""
