"""The MP4 edit list that makes a clip start on the asked frame, on files mp4mux really writes: ffprobe and
ffmpeg see exactly the frames from the asked one on (the same frames, decoded from the key frame before)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cuecast.streaming.outputs.replay.mp4 import Mp4Error, start_at


def make_mp4(path: Path, frames: int = 60) -> None:
    subprocess.run(["gst-launch-1.0", "-q", "videotestsrc", f"num-buffers={frames}", "pattern=ball", "!",
                    "video/x-raw,width=160,height=90,framerate=30/1", "!", "x264enc", "tune=zerolatency",
                    "key-int-max=30", "!", "h264parse", "!", "mp4mux", "faststart=true", "!", "filesink",
                    f"location={path}"], check=True, timeout=60)


def frame_hashes(path: Path) -> list[str]:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "framemd5", "-"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def test_presentation_starts_on_the_asked_frame(tmp_path: Path) -> None:
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    make_mp4(whole)
    cut.write_bytes(whole.read_bytes())
    skipped = start_at(cut, 40)  # key frames at 0 and 30: 40 needs decoding from 30
    assert abs(skipped - 40 / 30) < 1e-3
    assert cut.stat().st_size == whole.stat().st_size  # rewritten in place: nothing moved
    full = frame_hashes(whole)
    assert frame_hashes(cut) == full[40:]
    duration = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                               str(cut)], capture_output=True, text=True, check=True, timeout=30).stdout
    assert abs(float(duration) - 20 / 30) < 0.01


def test_what_is_not_an_mp4_mux_file_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0\0\0\x10ftypisom\0\0\0\0" + bytes(100))
    with pytest.raises(Mp4Error):
        start_at(junk, 1)
    whole = tmp_path / "whole.mp4"
    make_mp4(whole, 10)
    with pytest.raises(Mp4Error, match="sample 10 of 10"):
        start_at(whole, 10)
