"""The AGBD raster: a 12.5 m disk, all-touched, on the window grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine

from gedidata.domain.agbd import agbd_disk
from gedidata.domain.geometry import PixelWindow, window_for_point

GRID = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5100000.0)  # a UTM tile grid, 10 m


def expected_touched(
    x: float, y: float, transform: Affine, radius: float = 12.5, size: int = 32
) -> set[tuple[int, int]]:
    """Independent check: pixel by pixel, the distance from (x, y) to the nearest point
    of the pixel's square (clamping the point into the square) is below the radius."""
    touched = set()
    for row in range(size):
        for col in range(size):
            x0, y0 = transform @ (col, row)
            x1, y1 = transform @ (col + 1, row + 1)
            nearest_x = min(max(x, min(x0, x1)), max(x0, x1))
            nearest_y = min(max(y, min(y0, y1)), max(y0, y1))
            if math.hypot(x - nearest_x, y - nearest_y) < radius:
                touched.add((row, col))
    return touched


def touched_of(raster: np.ndarray, agbd: float) -> set[tuple[int, int]]:
    rows, cols = np.nonzero(raster[0] == np.float32(agbd))
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


def test_footprint_at_a_pixel_centre() -> None:
    window = PixelWindow(1000, 2000)
    transform = window.transform(GRID)
    x, y = transform @ (15.5, 15.5)  # centre of pixel (15, 15)
    raster = agbd_disk(x, y, transform, 123.4)
    assert raster.shape == (1, 32, 32)
    assert raster.dtype == np.float32
    # neighbours: nearest edge 5 m away; diagonal corners 7.07 m; two pixels away 15 m
    expected = {(r, c) for r in (14, 15, 16) for c in (14, 15, 16)}
    assert expected_touched(x, y, transform) == expected
    assert touched_of(raster, 123.4) == expected
    assert set(np.unique(raster).tolist()) == {np.float32(123.4), -9999.0}


def test_footprint_at_a_pixel_corner() -> None:
    transform = PixelWindow(0, 0).transform(GRID)
    x, y = transform @ (16, 16)  # the corner shared by pixels (15..16, 15..16)
    raster = agbd_disk(x, y, transform, 50.0)
    # 4 x 4 block rows/cols 14-17 without its corners (those are 14.1 m away)
    block = {(r, c) for r in range(14, 18) for c in range(14, 18)}
    expected = block - {(14, 14), (14, 17), (17, 14), (17, 17)}
    assert len(expected) == 12
    assert expected_touched(x, y, transform) == expected
    assert touched_of(raster, 50.0) == expected
    assert int((raster == -9999.0).sum()) == 1024 - 12


def test_tangent_pixel_is_not_touched() -> None:
    transform = PixelWindow(0, 0).transform(GRID)
    # centre 12.5 m west of the edge between cols 17 and 18: col 18 only meets the circle
    x, y = transform @ (18 - 1.25, 15.5)
    touched = touched_of(agbd_disk(x, y, transform, 1.0), 1.0)
    assert (15, 17) in touched
    assert (15, 18) not in touched
    x, y = transform @ (18 - 1.2499, 15.5)
    assert (15, 18) in touched_of(agbd_disk(x, y, transform, 1.0), 1.0)


@pytest.mark.parametrize("seed", range(6))
def test_matches_independent_check_and_polygon_rasterization(seed: int) -> None:
    rng = np.random.default_rng(seed)
    px, py = 600000.0 + rng.uniform(0, 5000), 5100000.0 - rng.uniform(0, 5000)
    window = window_for_point(px, py, GRID)
    transform = window.transform(GRID)
    raster = agbd_disk(px, py, transform, 7.5)
    expected = expected_touched(px, py, transform)
    assert touched_of(raster, 7.5) == expected
    # the footprint lies in the central 2 x 2, so the disk reaches rows/cols 13..18 only
    rows = {r for r, _ in expected}
    assert min(rows) >= 13 and max(rows) <= 18
    # GDAL's all-touched on a fine polygon agrees unless a pixel is within 1 cm of tangent
    disk = shapely.Point(px, py).buffer(12.5, quad_segs=256)
    polygon = rasterio.features.rasterize(
        [(disk, 1)], out_shape=(32, 32), transform=transform, all_touched=True, fill=0
    )
    if not _near_tangent(px, py, transform):
        assert set(zip(*np.nonzero(polygon), strict=True)) == expected


def _near_tangent(x: float, y: float, transform: Affine) -> bool:
    inner = expected_touched(x, y, transform, radius=12.49)
    outer = expected_touched(x, y, transform, radius=12.51)
    return inner != outer


def test_disk_clipped_by_the_window_edge() -> None:
    transform = PixelWindow(0, 0).transform(GRID)
    x, y = transform @ (0.5, 31.5)  # bottom-left pixel centre
    touched = touched_of(agbd_disk(x, y, transform, 3.0), 3.0)
    assert touched == {(30, 0), (30, 1), (31, 0), (31, 1)}
    far = agbd_disk(x - 1000, y, transform, 3.0)
    assert (far == -9999.0).all()


def test_south_up_and_other_sizes() -> None:
    # a grid with positive e (rows go north) gives the same pixels, mirrored
    transform = Affine(10.0, 0.0, 0.0, 0.0, 10.0, 0.0)
    x, y = transform @ (4.5, 4.5)
    raster = agbd_disk(x, y, transform, 2.0, size=9)
    assert raster.shape == (1, 9, 9)
    assert touched_of(raster, 2.0) == {(r, c) for r in (3, 4, 5) for c in (3, 4, 5)}
    with pytest.raises(ValueError, match="north-up"):
        agbd_disk(0.0, 0.0, Affine.rotation(10) @ transform, 1.0)
