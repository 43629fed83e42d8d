"""The table geometry and its view, without GStreamer: sizes, presets, the file, the millimetre mapping in both
views, and the errors a person gets for a table that cannot be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cuecast.protocol.frame import FrameInfo
from cuecast.table.model import PRESETS, TableError, TableGeometry, TableView, load_table, parse_size

CORNERS = ((300.0, 200.0), (1600.0, 230.0), (1560.0, 880.0), (320.0, 850.0))


def test_size_presets_and_custom_sizes() -> None:
    assert parse_size("9ft") == PRESETS["9ft"] == (2540.0, 1270.0)
    assert parse_size("7FT") == (1981.0, 991.0)
    assert parse_size("2000x1000") == (2000.0, 1000.0)
    for bad, words in (("10ft", "use 7ft"), ("1000x2000", "long side first"), ("50x20", "use 7ft"), ("x", "use")):
        with pytest.raises(TableError, match=words):
            parse_size(bad)


def test_view_size_margin_and_mm_mapping() -> None:
    """(W + 2 margin) x (H + 2 margin) at px_per_mm, each rounded down to even; mm = px / px_per_mm - margin."""
    view = TableView(TableGeometry(CORNERS, (2540.0, 1270.0), (1920, 1080)), 0.75, 60.0)
    assert view.size == (1994, 1042)  # 1995 and 1042.5 rounded down to even
    assert view.view_of_mm(0, 0) == (45.0, 45.0)
    x, y = view.mm_of_view(45.0 + 0.75 * 2540, 45.0)
    assert (float(x), float(y)) == pytest.approx((2540.0, 0.0))


def test_homography_takes_corners_to_the_table_rectangle() -> None:
    g = TableGeometry(CORNERS, (2540.0, 1270.0), (1920, 1080))
    H = g.homography()
    for (x, y), want in zip(CORNERS, [(0, 0), (2540, 0), (2540, 1270), (0, 1270)], strict=True):
        p = H @ np.array([x, y, 1.0])
        assert p[:2] / p[2] == pytest.approx(want, abs=1e-6)
    # Table view pixels -> camera pixels lands the view's corner pixels on the table's corners.
    view = TableView(g, 0.5, 100.0)
    p = view.view_to_camera() @ np.array([*view.view_of_mm(2540, 1270), 1.0])
    assert p[:2] / p[2] == pytest.approx(CORNERS[2], abs=1e-6)


def test_frame_info_converts_pixels_to_mm_in_both_views() -> None:
    """A backend gets the mapping with each frame: table view by two numbers, camera view by the homography."""
    g = TableGeometry(CORNERS, (2540.0, 1270.0), (1920, 1080))
    view = TableView(g, 0.75, 60.0)
    table = FrameInfo(1, 0, 0, *view.size, geometry=view.frame_geometry("table"))
    camera = FrameInfo(1, 0, 0, 1920, 1080, geometry=view.frame_geometry("camera"))
    packed = FrameInfo.unpack(b"\0" * (table.image_size()) + table.pack())
    assert packed is not None and packed.geometry.view == "table"
    assert packed.to_mm(45.0 + 750, 45.0 + 300) == pytest.approx((1000.0, 400.0), abs=1e-3)
    assert packed.to_px(1000.0, 400.0) == pytest.approx((795.0, 345.0), abs=1e-3)
    cam = FrameInfo.unpack(b"\0" * camera.image_size() + camera.pack())
    assert cam is not None and cam.view == "camera"
    assert cam.to_mm(*CORNERS[1]) == pytest.approx((2540.0, 0.0), abs=0.05)  # float32 homography in the trailer
    back = cam.to_px(2540.0, 1270.0)
    assert back == pytest.approx(CORNERS[2], abs=0.05)
    with pytest.raises(ValueError, match="calibrate the table"):
        FrameInfo(1, 0, 0, 64, 48).to_mm(1, 1)


def test_table_file_round_trip_and_scaling(tmp_path: Path) -> None:
    g = TableGeometry(CORNERS, (2235.0, 1118.0), (1920, 1080))
    path = tmp_path / "table.yaml"
    g.save(path)
    back = load_table(path)
    assert np.allclose(back.corners, g.corners, atol=1e-3) and back.size_mm == g.size_mm and back.created
    half = back.scaled_to(960, 540)
    assert half.corners[0] == pytest.approx((149.75, 99.75))  # pixel centres kept


@pytest.mark.parametrize(("text", "words"), [
    ("corners: [[1, 2]]\nsize_mm: [2540, 1270]\nimage_size: [1920, 1080]\n", "4 [x, y] pairs"),
    ("corners: [[0,0],[100,0],[100,100],[0,100]]\nsize_mm: [5, 5]\nimage_size: [1920, 1080]\n", "size_mm"),
    ("corners: [[0,0],[0,500],[500,500],[500,0]]\nsize_mm: [2540, 1270]\nimage_size: [1920, 1080]\n",
     "counter-clockwise"),
    ("corners: [[0,0],[500,500],[500,0],[0,500]]\nsize_mm: [2540, 1270]\nimage_size: [1920, 1080]\n", "convex"),
    ("just text\n", "mapping"),
])
def test_bad_table_files_name_the_problem(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "table.yaml"
    path.write_text(text)
    with pytest.raises(TableError) as e:
        load_table(path)
    assert words in str(e.value) and str(path) in str(e.value)


def test_missing_table_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="cuecast calibrate table"):
        load_table(tmp_path / "nope.yaml")
