"""Test media made on the spot with ffmpeg (no binary fixtures in the repo)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_video(path: Path, *, seconds: float = 1.0, fps: int = 10, size: str = "320x240",
               audio: bool = False) -> Path:
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=duration={seconds}"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(fps), str(path)]
    subprocess.run(cmd, check=True, timeout=60)
    return path
