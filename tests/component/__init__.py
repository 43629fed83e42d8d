"""GStreamer-level component tests: the native elements and the correction in real pipelines on test
frames, against OpenCV references; no service started."""
