"""MJPEG: one JPEG encoder per quality (branch.py) and its multipart HTTP fan-out (http.py)."""
