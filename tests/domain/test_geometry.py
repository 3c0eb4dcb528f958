"""Window placement: whole-pixel offsets, footprint inside the central 2 x 2 pixels."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from gedidata.domain.geometry import PixelWindow, window_for_point, window_offsets

GRID = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 6500040.0)  # the PC fixture's 10 m grid


@pytest.mark.parametrize(
    ("x", "y", "col_off", "row_off"),
    [
        # pixel (col 100, row 200) spans x 301000..301010, y 6498040..6498030
        (301002.0, 6498038.0, 84, 184),  # upper-left quarter of the pixel -> pixel 16, 16
        (301008.0, 6498032.0, 85, 185),  # lower-right quarter -> pixel 15, 15
        (301005.0, 6498035.0, 85, 185),  # exact centre rounds half up -> pixel 15, 15
        (301000.0, 6498040.0, 84, 184),  # on the pixel corner: pixel (100, 200) is col 16
    ],
)
def test_hand_computed_offsets(x, y, col_off, row_off):
    window = window_for_point(x, y, GRID)
    assert (window.col_off, window.row_off) == (col_off, row_off)


def test_point_always_in_central_pixels():
    rng = np.random.default_rng(0)
    xs = 300000 + rng.uniform(0, 109800, 20000)
    ys = 6500040 - rng.uniform(0, 109800, 20000)
    col_offs, row_offs = window_offsets(xs, ys, GRID)
    cols, rows = ~GRID @ (xs, ys)
    assert set(np.floor(cols).astype(int) - col_offs) <= {15, 16}
    assert set(np.floor(rows).astype(int) - row_offs) <= {15, 16}


def test_window_transform_and_bounds():
    window = PixelWindow(84, 184)
    transform = window.transform(GRID)
    assert transform == Affine(10.0, 0.0, 300840.0, 0.0, -10.0, 6498200.0)
    assert window.bounds(GRID) == (300840.0, 6497880.0, 301160.0, 6498200.0)


def test_rotated_grid_is_refused():
    with pytest.raises(ValueError, match="north-up"):
        window_for_point(0.0, 0.0, Affine(10, 1, 0, 0, -10, 0))
