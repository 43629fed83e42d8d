"""camera.yaml: ours and OpenCV FileStorage load; scaling to other sizes; errors name the file and field."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cuecast.lens.model import CalibrationError, FisheyeModel, load_model
from cuecast.media.demo import demo_calibration_path

K = np.array([[900.0, 0, 959.5], [0, 900.0, 539.5], [0, 0, 1]])
D = np.array([0.03, -0.012, 0.004, -0.0008])


def test_round_trip(tmp_path: Path) -> None:
    m = FisheyeModel(K, D, (1920, 1080), rms=0.21, balance=0.3, fov_scale=1.2)
    m.save(tmp_path / "camera.yaml")
    back = load_model(tmp_path / "camera.yaml")
    assert np.allclose(back.K, K) and np.allclose(back.D, D)
    assert back.image_size == (1920, 1080) and back.rms == 0.21 and back.balance == 0.3 and back.fov_scale == 1.2
    assert back.created


def test_opencv_filestorage_is_accepted(tmp_path: Path) -> None:
    """Calibrations written by other tools with cv2.FileStorage load the same."""
    path = str(tmp_path / "opencv.yaml")
    fs = cv2.FileStorage(path, cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 1920)
    fs.write("image_height", 1080)
    fs.write("camera_matrix", K)
    fs.write("distortion_coefficients", D.reshape(4, 1))
    fs.release()
    m = load_model(path)
    assert np.allclose(m.K, K) and np.allclose(m.D, D) and m.image_size == (1920, 1080)


def test_scaling_keeps_the_model_and_refuses_other_aspect() -> None:
    m = FisheyeModel(K, D, (1920, 1080)).scaled_to(1280, 720)
    assert np.isclose(m.K[0, 0], 600) and np.isclose(m.K[0, 2], 639.5) and np.isclose(m.K[1, 2], 359.5)
    # A point projects to the same place relative to the image size.
    pt = np.array([[[0.3, -0.2]]])
    full = cv2.fisheye.distortPoints(pt, K, D)[0, 0]
    small = cv2.fisheye.distortPoints(pt, m.K, m.D)[0, 0]
    assert np.allclose((small + 0.5) * 1.5 - 0.5, full, atol=1e-6)
    with pytest.raises(CalibrationError, match=r"1920x1080.*640x480.*calibrate at this aspect ratio"):
        FisheyeModel(K, D, (1920, 1080)).scaled_to(640, 480)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("K: [[1,0,0],[0,1,0],[0,0,1]]\nimage_size: [640, 480]\n", "missing field D"),
        ("K: [[1,0,0],[0,1,0]]\nD: [0,0,0,0]\nimage_size: [640, 480]\n", "K must have 9 numbers"),
        ("K: [[1,0,0],[0,1,0],[0,0,1]]\nD: [0,0,0]\nimage_size: [640, 480]\n", "D must have 4 numbers"),
        ("K: [[1,0,0],[0,1,0],[0,0,1]]\nD: [0,0,0,0]\nimage_size: big\n", "image_size must be [width, height]"),
        ("K: [[1,0,0],[0,1,0],[0,0,1]]\nD: [a,0,0,0]\nimage_size: [640, 480]\n", "D must be numbers"),
        ("K: [[1,0,0],[0,1,0],[0,0,1]]\nD: [0,0,0,0]\nimage_size: [640, 480]\nbalance: 3\n", "balance"),
        ("just text", "must be a mapping"),
        ("K: [unclosed\n", "not valid YAML"),
        ("foo: 1\n", "missing field K"),
    ],
)
def test_malformed_files_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(CalibrationError) as e:
        load_model(f)
    assert expected in str(e.value) and str(f) in str(e.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"nope\.yaml does not exist"):
        load_model(tmp_path / "nope.yaml")


def test_bundled_demo_lens_loads() -> None:
    m = load_model(demo_calibration_path())
    assert m.image_size == (1920, 1080) and m.D.shape == (4,)
