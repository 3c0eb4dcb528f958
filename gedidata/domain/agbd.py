"""The `AGBD Raster` of a sample (SPEC §4 step 7), pure numpy.

A disk of 12.5 m radius (the GEDI footprint) centred on the footprint, on the window
grid, all-touched: every pixel whose square shares area with the disk holds ``agbd``,
every other pixel `AGBD_NODATA` (-9999).

Method: an exact geometric test, not a rasterized polygon. A pixel is touched when the
distance from the disk centre to the nearest point of the pixel's square is less than
the radius (strictly: a square that meets the circle in a single point shares no area
with it). A polygon approximation of the circle (e.g. shapely's buffer fed to
``rasterio.features.rasterize(all_touched=True)``) lies inside the true circle and can
miss a pixel the disk just reaches; the exact test has no such error and needs no GDAL.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from affine import Affine

from gedidata.domain.geometry import WINDOW_SIZE
from gedidata.domain.schema import AGBD_NODATA

FOOTPRINT_RADIUS_M = 12.5
"""Radius of a GEDI footprint (25 m diameter)."""


def agbd_disk(
    x: float,
    y: float,
    window_transform: Affine,
    agbd: float,
    radius_m: float = FOOTPRINT_RADIUS_M,
    size: int = WINDOW_SIZE,
) -> np.ndarray:
    """``(1, size, size)`` float32: `agbd` on the all-touched disk at (x, y), else -9999.

    (x, y) is in the window's CRS; `window_transform` maps the window's (col, row) to
    that CRS and must be north-up (no rotation). Pixels outside the window are not
    represented; a disk entirely outside gives an all -9999 raster.
    """
    t = window_transform
    if t.b != 0 or t.d != 0:
        raise ValueError(f"only north-up window transforms are supported, got {t!r}")
    if not radius_m > 0:
        raise ValueError(f"radius_m must be > 0, got {radius_m}")
    edges = np.arange(size + 1, dtype=np.float64)
    # pixel column c spans x between edge c and edge c + 1 (either order, sign of t.a)
    x_edges = t.c + t.a * edges
    y_edges = t.f + t.e * edges
    dx = _distance_to_intervals(float(x), x_edges[:-1], x_edges[1:])
    dy = _distance_to_intervals(float(y), y_edges[:-1], y_edges[1:])
    touched = dy[:, None] ** 2 + dx[None, :] ** 2 < radius_m**2
    raster = np.full((1, size, size), AGBD_NODATA, dtype=np.float32)
    raster[0][touched] = np.float32(agbd)
    return raster


def _distance_to_intervals(
    value: float, start: npt.NDArray[np.float64], end: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Distance from `value` to each closed interval between `start` and `end`."""
    low, high = np.minimum(start, end), np.maximum(start, end)
    return np.maximum(np.maximum(low - value, value - high), 0.0)
