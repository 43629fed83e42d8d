"""Fisheye correction: the camera model (model.py), undistortion maps (maps.py), the GStreamer element
(element.py), the calibration toolchain (calibration.py) and the synthetic demo scene (demo.py)."""
