"""One module or folder per people-facing output: its branch on the output pipeline, its HTTP or RTSP side,
and its own status entry."""
