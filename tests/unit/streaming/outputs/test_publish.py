"""Publishing: the pipelines pushed to media servers, and URLs masked wherever they are shown."""

from __future__ import annotations

from cuecast.config import mask_url
from cuecast.streaming.outputs.publish import publish_launch


def test_publish_pipelines_and_masked_urls() -> None:
    assert "rtmp2sink" in publish_launch("rtmp://h/live/t") and "flvmux" in publish_launch("rtmp://h/live/t")
    assert "rtspclientsink" in publish_launch("rtsp://h:8554/t")
    assert mask_url("rtsp://user:secret@h:8554/t") == "rtsp://***@h:8554/t"
    assert mask_url("rtmp://h/live/t") == "rtmp://h/live/t"
