"""Fisheye lens: the camera model (model.py), undistortion maps (maps.py) and the calibration toolchain
(calibration.py)."""
