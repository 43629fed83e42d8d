"""Synthetic checkerboard views through a known fisheye lens: ground truth for calibration tests (the test
camera's own board renderer, cuecast.testcam.board)."""

from cuecast.testcam.board import BOARD, SIZE, SQUARE, TRUE_D, TRUE_K, BoardRenderer, Pose, poses

__all__ = ["BOARD", "SIZE", "SQUARE", "TRUE_D", "TRUE_K", "BoardRenderer", "Pose", "poses"]
