"""The correction element (cuecastremap, with the maps the capture process builds for the demo lens) in real
pipelines: it matches cv2.fisheye's own undistortion, applies brightness/contrast like videobalance in the same
pass, and passes frames through untouched when disabled."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cuecast.core import native
from cuecast.core.gst import GLib, Gst
from cuecast.lens.maps import build_maps, luma_lut, output_matrix, remap_table
from cuecast.media.demo import DemoScene, demo_model

W, H = 960, 540


def run_element(frame: bytes, w: int, h: int, after: str = "",
                luma: tuple[float, float] | None = None, **props: object) -> np.ndarray:
    """Push one I420 frame through appsrc ! cuecastremap (the demo lens's maps, as the capture process
    builds them) [! after] ! appsink and return the output bytes."""
    native.load()
    p = Gst.parse_launch(
        f"appsrc name=src format=time caps=video/x-raw,format=I420,width={w},height={h},framerate=30/1 "
        f"! cuecastremap name=fe {'! ' + after if after else ''} ! appsink name=sink sync=false"
    )
    fe = p.get_by_name("fe")
    fe.set_property("map", GLib.Bytes.new(remap_table(build_maps(demo_model(), w, h, chroma=True), (w, h))))
    lut = luma_lut(*luma) if luma is not None else None
    if lut is not None:
        fe.set_property("luma-lut", GLib.Bytes.new(lut.tobytes()))
    for k, v in props.items():
        fe.set_property(k, v)
    p.set_state(Gst.State.PLAYING)
    src = p.get_by_name("src")
    buf = Gst.Buffer.new_wrapped(frame)
    buf.pts = 0
    src.emit("push-buffer", buf)
    sample = p.get_by_name("sink").emit("try-pull-sample", 10 * Gst.SECOND)
    p.set_state(Gst.State.NULL)
    assert sample is not None
    out = sample.get_buffer()
    ok, mi = out.map(Gst.MapFlags.READ)
    data = np.frombuffer(bytes(mi.data), np.uint8)
    out.unmap(mi)
    return data


def reference(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """cv2.fisheye undistortion of the same frame with float maps: the ground truth."""
    m = demo_model().scaled_to(w, h)
    P = output_matrix(m)
    mx, my = cv2.fisheye.initUndistortRectifyMap(m.K, m.D, np.eye(3), P, (w, h), cv2.CV_32FC1)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@pytest.fixture(scope="module")
def scene() -> DemoScene:
    return DemoScene(W, H)


def test_i420_output_matches_cv2_fisheye_plane_by_plane(scene: DemoScene) -> None:
    i420 = scene.background
    out = run_element(i420.tobytes(), W, H)
    y_out = out[: W * H].reshape(H, W)
    y_ref = reference(i420[:H], W, H)
    diff = np.abs(y_out.astype(int) - y_ref.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 8
    # The whole picture, converted to BGR, matches the BGR reference closely (chroma at half resolution).
    bgr = cv2.cvtColor(out.reshape(H * 3 // 2, W), cv2.COLOR_YUV2BGR_I420)
    ref = reference(scene.background_bgr, W, H)
    assert np.abs(bgr.astype(int) - ref.astype(int)).mean() < 3


def test_brightness_contrast_in_the_pass_match_videobalance(scene: DemoScene) -> None:
    """The luma table in the correction pass gives what a separate videobalance gives, at a fraction of
    the cost (bench/fisheye.py)."""
    i420 = scene.background.tobytes()
    folded = run_element(i420, W, H, luma=(0.1, 1.3))
    separate = run_element(i420, W, H, after="videobalance brightness=0.1 contrast=1.3")
    plain = run_element(i420, W, H)
    y = W * H
    assert np.abs(folded[:y].astype(int) - separate[:y].astype(int)).max() <= 1
    assert np.array_equal(folded[y:], separate[y:])  # chroma untouched by brightness/contrast
    assert np.abs(folded[:y].astype(int) - plain[:y].astype(int)).mean() > 10  # and it did change the picture


def test_disabled_passes_frames_through_untouched(scene: DemoScene) -> None:
    i420 = scene.background
    out = run_element(i420.tobytes(), W, H, enabled=False)
    assert np.array_equal(out, i420.reshape(-1))
