"""The calibration guide on boards whose place and tilt are known (the test camera's renderer's geometry, no
pictures): cells and tilts are named as a person would, a board is kept only when still and new, and
coverage is complete only with every cell, every tilt and enough views."""

from __future__ import annotations

import numpy as np

from cuecast.lens.guide import COLS, MIN_VIEWS, ROWS, Coverage, Picker, cell_name, tilt_of
from cuecast.testcam.board import BOARD, SIZE, BoardRenderer, _pose_at, tour


def corners_at(x: float, y: float, tilt: tuple[float, float, float] = (0, 0, 0)) -> np.ndarray:
    r = BoardRenderer(pictures=False)
    return r.true_corners(_pose_at((x, y), 0.45, np.array(tilt, float), facing=True))


def test_cells_are_named_as_a_person_would() -> None:
    assert cell_name(0, 0) == "top-left corner" and cell_name(ROWS - 1, COLS - 1) == "bottom-right corner"
    assert cell_name(1, 0) == "left edge" and cell_name(0, 1) == "top edge, left of centre"
    assert len({cell_name(r, c) for r in range(ROWS) for c in range(COLS)}) == ROWS * COLS


def test_tilts_are_read_from_the_board_outline() -> None:
    cov = Coverage(SIZE, BOARD)
    assert cov.gain(corners_at(0, 0)) and "tilted" not in " ".join(cov.gain(corners_at(0, 0)))
    # Turned about its vertical axis, the side that comes nearer the camera looks longer: that is its tilt.
    assert "tilted right" in cov.gain(corners_at(0, 0, (0, 0.5, 0)))  # +y rotation: the right side comes nearer
    assert "tilted left" in cov.gain(corners_at(0, 0, (0, -0.5, 0)))
    assert "tilted up" in cov.gain(corners_at(0, 0, (0.5, 0, 0)))  # +x rotation: the top edge comes nearer
    assert "tilted down" in cov.gain(corners_at(0, 0, (-0.5, 0, 0)))
    assert tilt_of(corners_at(0, 0)) == set()


def test_a_view_is_kept_when_still_and_new_and_coverage_completes() -> None:
    picker = Picker(SIZE, BOARD)
    keep, why = picker.consider(None)
    assert not keep and "no 9x6 board in sight" in why and "10x7 squares" in why
    a = corners_at(-0.6, -0.35)
    assert picker.consider(a) == (False, "board found: hold it still")
    moving = a + 6.0
    assert picker.consider(moving) == (False, "hold the board still")
    keep, why = picker.consider(moving + 0.1)
    assert keep and why.startswith("adds "), why
    picker.keep(moving + 0.1)
    picker.consider(moving)
    keep, why = picker.consider(moving)
    assert not keep and why.startswith("already have this view"), why
    words = picker.coverage.missing()
    assert any("move the board to the" in w for w in words) and any("towards the camera" in w for w in words)

    renderer = BoardRenderer(pictures=False)
    for pose in tour(renderer):
        c = renderer.true_corners(pose)
        picker.consider(c)
        keep, _ = picker.consider(c)
        if keep:
            picker.keep(c)
        if picker.coverage.complete:
            break
    cov = picker.coverage
    assert cov.complete and cov.missing() == [] and cov.views >= MIN_VIEWS and cov.fraction == 1.0
    assert (cov.cells > 0).all() and all(cov.tilts.values())
    assert cov.to_json()["complete"] is True


def test_a_point_of_the_corrected_picture_moves_with_the_lens() -> None:
    """The table's corners are in the corrected picture: a new lens moves them to where the same point of the
    felt now lands (raw -> corrected under the new lens), and back under the old one."""
    from cuecast.lens.maps import corrected_to_raw, output_matrix, raw_to_corrected
    from cuecast.lens.model import FisheyeModel
    from cuecast.testcam.board import TRUE_D, TRUE_K

    a = FisheyeModel(TRUE_K, TRUE_D, SIZE)
    b = FisheyeModel(TRUE_K * np.array([[1.05, 1, 1], [1, 1.05, 1], [1, 1, 1]]), -2 * TRUE_D, SIZE)
    pa, pb = output_matrix(a, 0.0), output_matrix(b, 0.0)
    corners = np.array([[200.0, 120.0], [760.0, 110.0], [780.0, 430.0], [190.0, 440.0]])
    raw = corrected_to_raw(corners, a, pa)
    assert np.abs(raw_to_corrected(raw, a, pa) - corners).max() < 1e-3
    moved = raw_to_corrected(raw, b, pb)
    assert np.abs(moved - corners).max() > 2  # another lens puts the felt elsewhere in its corrected picture
    back = raw_to_corrected(corrected_to_raw(moved, b, pb), a, pa)
    assert np.abs(back - corners).max() < 1e-3
