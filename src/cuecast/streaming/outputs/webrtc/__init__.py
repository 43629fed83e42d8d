"""WebRTC: one webrtcbin per viewer fed by the shared H.264 encoder (branch.py), WHEP over HTTP."""
