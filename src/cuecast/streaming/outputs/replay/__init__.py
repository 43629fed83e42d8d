"""Instant replay: the rolling H.264 buffer and clip writer (branch.py) and the clips API (http.py)."""
