"""Window placement on a raster grid (pure functions, no I/O).

A sample is a 32 x 32 window on the Sentinel-2 item's own 10 m grid, at whole-pixel
offsets (no resampling of the 10 m bands), placed so the footprint lies inside the
central 2 x 2 pixels (rows/cols 15-16).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine

WINDOW_SIZE = 32
CENTRE = (15, 16)
"""Rows/cols of the central 2 x 2 pixels that must hold the footprint."""


@dataclass(frozen=True)
class PixelWindow:
    """A window in pixel coordinates of a north-up grid."""

    col_off: int
    row_off: int
    width: int = WINDOW_SIZE
    height: int = WINDOW_SIZE

    def transform(self, grid: Affine) -> Affine:
        """The affine transform of the window's own pixel grid."""
        return grid @ Affine.translation(self.col_off, self.row_off)

    def bounds(self, grid: Affine) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        left, top = grid @ (self.col_off, self.row_off)
        right, bottom = grid @ (self.col_off + self.width, self.row_off + self.height)
        return min(left, right), min(bottom, top), max(left, right), max(bottom, top)


def window_offsets(
    xs: np.ndarray, ys: np.ndarray, grid: Affine, size: int = WINDOW_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Column and row offsets of the windows whose central 2 x 2 pixels hold (x, y).

    Of the (up to four) aligned windows that qualify, this is the one whose centre is
    nearest to the point: the pixel edge nearest to the point becomes the window's
    centre line, which puts the point in pixel size/2 - 1 or size/2 (15 or 16 for 32).
    """
    if grid.b != 0 or grid.d != 0:
        raise ValueError(f"only north-up grids are supported, got {grid!r}")
    cols, rows = ~grid @ (np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
    half = size // 2
    return (
        np.floor(cols + 0.5).astype(np.int64) - half,
        np.floor(rows + 0.5).astype(np.int64) - half,
    )


def window_for_point(x: float, y: float, grid: Affine, size: int = WINDOW_SIZE) -> PixelWindow:
    """The grid-aligned `size` x `size` window whose central 2 x 2 pixels hold (x, y)."""
    col_offs, row_offs = window_offsets(np.array([x]), np.array([y]), grid, size)
    return PixelWindow(int(col_offs[0]), int(row_offs[0]), size, size)
