"""Source URI parsing and early checks: each accepted form, and clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from cuecast.media.sources import SourceError, check_source, parse_source, source_fragment


@pytest.mark.parametrize(
    ("uri", "kind", "location"),
    [
        ("v4l2:///dev/video0", "v4l2", "/dev/video0"),
        ("v4l2:///dev/video2", "v4l2", "/dev/video2"),
        ("/dev/video1", "v4l2", "/dev/video1"),
        ("/srv/clips/table.mp4", "file", "/srv/clips/table.mp4"),
        ("clips/table.mkv", "file", "clips/table.mkv"),
        ("file:///srv/my%20clip.mp4", "file", "/srv/my clip.mp4"),
        ("rtsp://user:pw@10.0.0.5:554/stream1", "rtsp", "rtsp://user:pw@10.0.0.5:554/stream1"),
        ("http://cam.local/mjpeg", "http", "http://cam.local/mjpeg"),
        ("https://cam.local/video", "http", "https://cam.local/video"),
        ("test:smpte", "test", "smpte"),
        ("test:ball", "test", "ball"),
        ("demo", "demo", "pool-table"),
    ],
)
def test_accepted_forms(uri: str, kind: str, location: str) -> None:
    spec = parse_source(uri)
    assert (spec.kind, spec.location) == (kind, location)


def test_auto_prefers_camera_then_demo() -> None:
    assert parse_source("auto", device_exists=True).kind == "v4l2"
    spec = parse_source("auto", device_exists=False)
    assert spec.kind == "demo" and spec.fell_back


def test_bad_forms_are_explained() -> None:
    with pytest.raises(SourceError, match="unknown test pattern 'smtpe'.*smpte"):
        parse_source("test:smtpe")
    with pytest.raises(SourceError, match="unsupported scheme 'ftp'"):
        parse_source("ftp://host/x.mp4")
    with pytest.raises(SourceError, match="empty"):
        parse_source("  ")


def test_missing_file_and_camera_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"video file .*nope\.mp4 does not exist"):
        check_source(parse_source(str(tmp_path / "nope.mp4")))
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(SourceError, match="empty"):
        check_source(parse_source(str(empty)))
    with pytest.raises(SourceError, match=r"camera /dev/video99 not found.*v4l2-ctl"):
        check_source(parse_source("v4l2:///dev/video99"))


def test_v4l2_fragments_request_the_chosen_format() -> None:
    spec = parse_source("v4l2:///dev/video0")
    assert "image/jpeg,width=1280,height=720,framerate=30/1 ! jpegdec" in source_fragment(spec, 1280, 720, 30, "MJPG")
    assert "format=YUY2" in source_fragment(spec, 640, 480, 15, "YUYV")


def test_driver_timing_counts_sequence_gaps_and_interval_jitter() -> None:
    """The driver's buffer sequence skips the frames it dropped; a new stream starts its sequence again."""
    from cuecast.core.gst import Gst
    from cuecast.media.runner import DriverTiming, SourceStatus

    st = SourceStatus("v4l2", "/dev/video0")
    timing = DriverTiming(st)
    period = 33_333_333
    for seq in [0, 2, 3, 6, 7]:  # v4l2src's +1 from the second buffer on; frames 4 and 5 dropped
        timing.add(seq, seq * period)
    assert st.camera_drops == 2
    assert st.frame_interval_ms is not None and st.frame_interval_jitter_ms is not None
    assert 33 < st.frame_interval_ms < 60 and st.frame_interval_jitter_ms > 10  # the gap shows as jitter
    timing.reset()
    timing.add(0, 10 * period)  # reopened: sequence 0 again, no drop counted
    timing.add(Gst.BUFFER_OFFSET_NONE, Gst.CLOCK_TIME_NONE)  # a source without them: nothing counted
    assert st.camera_drops == 2
    steady = DriverTiming(SourceStatus("v4l2", "/dev/video0"))
    for seq in range(100):
        steady.add(seq, seq * period + (seq % 2) * 100_000)  # 0.1 ms of jitter
    assert abs(steady.status.frame_interval_ms - 33.333) < 0.01  # type: ignore[operator]
    assert steady.status.frame_interval_jitter_ms is not None and steady.status.frame_interval_jitter_ms < 0.2
