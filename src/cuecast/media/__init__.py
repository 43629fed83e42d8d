"""GStreamer building blocks both worker processes use: source URIs and the source runner (camera, file,
network, the ring), the output pipeline and its branches, the NO SIGNAL placeholder, V4L2 controls and the
built-in demo camera."""
