"""Pixel values of the generated world: known functions of map position.

Everything the world generator writes comes from these functions, so a test can state
exactly what any window must hold. All functions are vectorised over numpy arrays
(scalars work too) and evaluate at the position they are given, which for a raster is
the pixel's CENTRE.

Sentinel-2 reflectance (`s2_dn`), in the harmonised convention (DN = 10000 x
reflectance, i.e. before the +1000 ``BOA_ADD_OFFSET`` of baseline 04.00 and later)::

    tri(u) = | (u mod 16000) - 8000 |                     # metres, in [0, 8000]
    dn(band, x, y) = base[band] + gx[band] * tri(x - px[band]) + gy[band] * tri(y - py[band])

with UTM easting ``x`` and northing ``y`` in metres (northing with the southern false
northing, i.e. the values of the scene's own CRS) and the constants of `S2_BAND_PARAMS`
(gradients 0.2 or 0.4 DN per metre, phases multiples of 1,000 m). Values lie in
[base, base + 6400] ⊂ [300, 8900]. The function is piecewise linear with "fold" lines
where ``x - px`` or ``y - py`` is a multiple of 8000 m (`s2_fold_distance`). Because the
gradients are multiples of 0.2 DN/m, the value at any 10, 20 or 60 m pixel centre is an
exact integer, and bilinear interpolation of a 20 m or 60 m band onto 10 m pixel
centres reproduces `s2_dn` at those centres exactly wherever no fold line lies between
the source pixel centres involved (more than one source pixel away from a fold).

SCL (`scl_class`): vegetation (4) everywhere, except inside the scene's feature
rectangles (later features win) and beyond its no-data edge (0).

Copernicus DEM (`dem_elevation`, `dem_slope_percent`) with the WGS 84 meridian arc
length ``m(φ)`` (metres from the equator along a meridian) and the prime-vertical radius
``N(φ)``::

    z(lon, lat) = 300 + Z(m(lat) mod 4000) + 0.03 * N(lat) * cos(lat) * tri_λ(lon)

``Z`` is piecewise linear over four 1,000 m strips with northward gradients
+0.02, +0.20, -0.08, -0.14 (continuous, period 4,000 m of ground distance), and
``tri_λ`` is the distance in radians to the nearest multiple of 0.02° of longitude (a
triangle wave with period 0.02°, so the east–west gradient is ±0.03 everywhere). The
slope in percent is therefore about 3.6 %, 20.2 %, 8.5 % and 14.3 % in the four strips
(`dem_slope_percent` gives it exactly: 100 · |∇z| with ∇ in metres on the ground).

ESA WorldCover (`worldcover_class`): one class per 0.01° x 0.01° block; the 2021 (v200)
map differs from the 2020 (v100) map in a third of the blocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from gedidata.domain import quality
from gedidata.sources.profiles import BAND_RESOLUTION

__all__ = [
    "DEM_BASE_ELEVATION",
    "DEM_EAST_GRADIENT",
    "DEM_NORTH_GRADIENTS",
    "DEM_STRIP_M",
    "S2_BANDS",
    "S2_BAND_PARAMS",
    "S2_BAND_RESOLUTION",
    "S2_FOLD_PERIOD_M",
    "SCL_CLASSES",
    "VERSION",
    "WORLDCOVER_BLOCK_DEG",
    "WORLDCOVER_CLASSES",
    "BandParams",
    "NodataEdge",
    "SclRect",
    "dem_elevation",
    "dem_gradient",
    "dem_slope_percent",
    "dem_strip",
    "meridian_arc",
    "s2_dn",
    "s2_dn_exact",
    "s2_fold_distance",
    "scene_nodata",
    "scl_class",
    "worldcover_class",
]

VERSION = 1
"""Version of the formulas below; bump it when a value changes (generated files are redone)."""

# --------------------------------------------------------------------------- Sentinel-2

S2_BANDS: tuple[str, ...] = tuple(band for band in BAND_RESOLUTION if band != "SCL")
"""The twelve L2A reflectance bands (B10 is not in L2A)."""

S2_BAND_RESOLUTION: dict[str, int] = dict(BAND_RESOLUTION)
"""Pixel size in metres of each L2A asset as distributed."""

S2_FOLD_PERIOD_M = 16_000
"""Period of the triangle wave of `s2_dn`; fold lines every half period (8,000 m)."""


class BandParams(NamedTuple):
    """Constants of `s2_dn` for one band (DN, DN per metre, metres)."""

    base: int
    gx: float
    gy: float
    px: int
    py: int


S2_BAND_PARAMS: dict[str, BandParams] = {
    "B01": BandParams(1500, 0.2, 0.2, 0, 3000),
    "B02": BandParams(400, 0.2, 0.4, 1000, 0),
    "B03": BandParams(650, 0.4, 0.2, 2000, 5000),
    "B04": BandParams(300, 0.4, 0.4, 3000, 1000),
    "B05": BandParams(900, 0.2, 0.4, 4000, 6000),
    "B06": BandParams(1800, 0.4, 0.2, 5000, 2000),
    "B07": BandParams(2100, 0.2, 0.2, 6000, 7000),
    "B08": BandParams(2500, 0.4, 0.4, 7000, 4000),
    "B8A": BandParams(2300, 0.2, 0.4, 500, 7500),
    "B09": BandParams(700, 0.4, 0.2, 1500, 2500),
    "B11": BandParams(1200, 0.2, 0.4, 2500, 6500),
    "B12": BandParams(800, 0.4, 0.4, 3500, 500),
}
"""``base, gx, gy, px, py`` of every band; all distinct, so every band differs."""


def _tri(u: np.ndarray) -> np.ndarray:
    half = S2_FOLD_PERIOD_M / 2
    return np.abs(np.mod(u, S2_FOLD_PERIOD_M) - half)


def _params(band: str) -> BandParams:
    try:
        return S2_BAND_PARAMS[band.upper()]
    except KeyError:
        raise ValueError(f"unknown Sentinel-2 band {band!r}; expected one of {S2_BANDS}") from None


def s2_dn_exact(band: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The real-valued (float64) harmonised DN of `s2_dn` at UTM (x, y), unrounded."""
    p = _params(band)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # gx, gy are 0.2 or 0.4: multiply by the integer 1 or 2 and divide by 5 so that
    # integer results are exact in floating point.
    kx = round(p.gx * 5)
    ky = round(p.gy * 5)
    return p.base + (kx * _tri(x - p.px)) / 5.0 + (ky * _tri(y - p.py)) / 5.0


def s2_dn(band: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Harmonised uint16 DN (before any +1000 offset) of ``band`` at the pixel centre (x, y).

    ``x``/``y`` are UTM easting/northing in metres in the scene's CRS (broadcast
    together). See the module docstring for the formula.
    """
    return np.rint(s2_dn_exact(band, x, y)).astype(np.uint16)


def s2_fold_distance(band: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance in metres from (x, y) to the nearest fold line of ``band``'s ramps.

    Where this exceeds the source pixel size (20 or 60 m) plus the target pixel's half
    size, bilinear resampling of the band reproduces `s2_dn` exactly.
    """
    p = _params(band)
    half = S2_FOLD_PERIOD_M / 2
    dx = np.mod(np.asarray(x, dtype=np.float64) - p.px, half)
    dy = np.mod(np.asarray(y, dtype=np.float64) - p.py, half)
    return np.minimum(np.minimum(dx, half - dx), np.minimum(dy, half - dy))


SCL_CLASSES: dict[int, str] = dict(quality.SCL_CLASSES)
"""Sentinel-2 L2A scene classification values (the product's, from `gedidata.domain.quality`)."""


class SclRect(NamedTuple):
    """An SCL class over a rectangle in UTM metres (pixel centres inside are that class)."""

    scl: int
    xmin: float
    ymin: float
    xmax: float
    ymax: float


class NodataEdge(NamedTuple):
    """Half-plane without data: pixels whose centre has ``(x-x0)*nx + (y-y0)*ny > 0``."""

    x0: float
    y0: float
    nx: float
    ny: float


def scene_nodata(x: np.ndarray, y: np.ndarray, edge: NodataEdge | None) -> np.ndarray:
    """True where the pixel centre (x, y) lies beyond the scene's no-data edge."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, y.shape)
    if edge is None:
        return np.zeros(shape, dtype=bool)
    return np.broadcast_to((x - edge.x0) * edge.nx + (y - edge.y0) * edge.ny > 0.0, shape)


def scl_class(
    x: np.ndarray,
    y: np.ndarray,
    features: Iterable[SclRect] = (),
    nodata_edge: NodataEdge | None = None,
) -> np.ndarray:
    """uint8 SCL at pixel centres (x, y): vegetation (4) unless a feature or the edge applies.

    A pixel belongs to a feature when ``xmin <= x < xmax`` and ``ymin <= y < ymax``;
    features are applied in order (later ones win); the no-data edge (class 0) wins
    over everything.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, y.shape)
    out = np.full(shape, 4, dtype=np.uint8)
    for f in features:
        inside = (x >= f.xmin) & (x < f.xmax) & (y >= f.ymin) & (y < f.ymax)
        out[np.broadcast_to(inside, shape)] = f.scl
    out[scene_nodata(x, y, nodata_edge)] = 0
    return out


# --------------------------------------------------------------------------- CopDEM

_WGS84_A = 6_378_137.0
_WGS84_F = 1.0 / 298.257223563
_WGS84_E2 = _WGS84_F * (2.0 - _WGS84_F)

DEM_BASE_ELEVATION = 300.0
"""Elevation (m) at the start of every strip period on a longitude fold line."""

DEM_STRIP_M = 1_000.0
"""Ground length (m, along the meridian) of one slope strip."""

DEM_NORTH_GRADIENTS: tuple[float, ...] = (0.02, 0.20, -0.08, -0.14)
"""Northward gradient (m/m) of the four strips of one 4,000 m period (they sum to 0)."""

DEM_EAST_GRADIENT = 0.03
"""Magnitude (m/m) of the east–west gradient everywhere."""

_DEM_LON_PERIOD_DEG = 0.02

# Meridian arc series coefficients (Helmert / standard series in e²).
_E2 = _WGS84_E2
_E4 = _E2 * _E2
_E6 = _E4 * _E2
_A0 = 1.0 + 3.0 / 4.0 * _E2 + 45.0 / 64.0 * _E4 + 175.0 / 256.0 * _E6
_A2 = 3.0 / 8.0 * (_E2 + 3.0 / 4.0 * _E4 + 15.0 / 128.0 * _E6)
_A4 = 15.0 / 256.0 * (_E4 + 3.0 / 4.0 * _E6)
_A6 = 35.0 / 3072.0 * _E6


def meridian_arc(lat: np.ndarray) -> np.ndarray:
    """WGS 84 meridian arc length (m) from the equator to latitude ``lat`` (degrees), signed."""
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    return (
        _WGS84_A
        * (1.0 - _E2)
        * (_A0 * phi - _A2 * np.sin(2 * phi) + _A4 * np.sin(4 * phi) - _A6 * np.sin(6 * phi))
    )


def _meridional_radius(phi: np.ndarray) -> np.ndarray:
    return _WGS84_A * (1.0 - _E2) / (1.0 - _E2 * np.sin(phi) ** 2) ** 1.5


def _prime_vertical_radius(phi: np.ndarray) -> np.ndarray:
    return _WGS84_A / np.sqrt(1.0 - _E2 * np.sin(phi) ** 2)


_STRIP_STARTS = np.concatenate(
    [[0.0], np.cumsum(np.asarray(DEM_NORTH_GRADIENTS) * DEM_STRIP_M)[:-1]]
)


def dem_strip(lat: np.ndarray) -> np.ndarray:
    """Index 0–3 of the slope strip (`DEM_NORTH_GRADIENTS`) at latitude ``lat``."""
    period = DEM_STRIP_M * len(DEM_NORTH_GRADIENTS)
    u = np.mod(meridian_arc(lat), period)
    return np.minimum((u // DEM_STRIP_M).astype(np.int64), len(DEM_NORTH_GRADIENTS) - 1)


def _lon_tri(lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (radians) to the nearest multiple of 0.02° of longitude, and its d/dλ sign."""
    lon = np.asarray(lon, dtype=np.float64)
    half = _DEM_LON_PERIOD_DEG / 2
    r = np.mod(lon, _DEM_LON_PERIOD_DEG)
    dist_deg = np.where(r <= half, r, _DEM_LON_PERIOD_DEG - r)
    sign = np.where(r < half, 1.0, -1.0)
    return np.radians(dist_deg), sign


def dem_elevation(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """float32 elevation (m) of the generated Copernicus DEM at (lon, lat) in degrees."""
    lat = np.asarray(lat, dtype=np.float64)
    u = np.mod(meridian_arc(lat), DEM_STRIP_M * len(DEM_NORTH_GRADIENTS))
    k = np.minimum((u // DEM_STRIP_M).astype(np.int64), len(DEM_NORTH_GRADIENTS) - 1)
    north = _STRIP_STARTS[k] + np.asarray(DEM_NORTH_GRADIENTS)[k] * (u - k * DEM_STRIP_M)
    phi = np.radians(lat)
    tri, _ = _lon_tri(lon)
    east = DEM_EAST_GRADIENT * _prime_vertical_radius(phi) * np.cos(phi) * tri
    return (DEM_BASE_ELEVATION + north + east).astype(np.float32)


def dem_gradient(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Analytic (dz/d_east, dz/d_north) of `dem_elevation` in metres per ground metre."""
    lat = np.asarray(lat, dtype=np.float64)
    phi = np.radians(lat)
    k = dem_strip(lat)
    tri, sign = _lon_tri(lon)
    # east term: g * N cosφ * tri(λ);  d/d_east = (1 / (N cosφ)) d/dλ = g * sign
    d_east = DEM_EAST_GRADIENT * sign
    # d/d_north = (1/M) d/dφ;  d(N cosφ)/dφ = -M sinφ exactly on the ellipsoid
    d_north = np.asarray(DEM_NORTH_GRADIENTS)[k] - DEM_EAST_GRADIENT * np.sin(phi) * tri
    d_east, d_north = np.broadcast_arrays(d_east, d_north)
    return d_east.astype(np.float64), d_north.astype(np.float64)


def dem_slope_percent(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Analytic slope of `dem_elevation` in percent: 100 * |∇z|, ∇ in metres on the ground.

    Exact away from the kinks (strip boundaries every 1,000 m of northing, longitude
    fold lines every 0.01°); a slope computed from the rasters on a map grid differs
    from it by the grid's scale factor (UTM: at most ~0.1 % relative).
    """
    d_east, d_north = dem_gradient(lon, lat)
    return 100.0 * np.hypot(d_east, d_north)


# --------------------------------------------------------------------------- WorldCover

WORLDCOVER_CLASSES: tuple[int, ...] = tuple(sorted(set(quality.WORLDCOVER_CLASSES) - {0}))
"""ESA WorldCover class values (0, no data, left out): 10, 20, …, 95, 100."""

WORLDCOVER_BLOCK_DEG = 0.01
"""Side of the constant-class blocks in degrees (120 WorldCover pixels)."""


def worldcover_class(lon: np.ndarray, lat: np.ndarray, year: int) -> np.ndarray:
    """uint8 WorldCover class at (lon, lat) for the 2020 (v100) or 2021 (v200) map.

    With block indices ``i = floor(lon / 0.01)`` and ``j = floor(lat / 0.01)``:
    2020: ``CLASSES[(3 i + 7 j) mod 11]``; 2021: the same, except where
    ``(i + 2 j) mod 3 == 0`` the next class in `WORLDCOVER_CLASSES` (cyclically).
    """
    if year not in (2020, 2021):
        raise ValueError(f"WorldCover exists for 2020 (v100) and 2021 (v200), not {year}")
    i = np.floor(np.asarray(lon, dtype=np.float64) * (1.0 / WORLDCOVER_BLOCK_DEG)).astype(np.int64)
    j = np.floor(np.asarray(lat, dtype=np.float64) * (1.0 / WORLDCOVER_BLOCK_DEG)).astype(np.int64)
    index = np.mod(3 * i + 7 * j, len(WORLDCOVER_CLASSES))
    if year == 2021:
        index = np.where(np.mod(i + 2 * j, 3) == 0, np.mod(index + 1, 11), index)
    return np.asarray(WORLDCOVER_CLASSES, dtype=np.uint8)[index]


def _check() -> None:  # pragma: no cover - sanity of the constants
    for p in S2_BAND_PARAMS.values():
        assert round(p.gx * 5) in (1, 2) and round(p.gy * 5) in (1, 2)
        top = p.base + (p.gx + p.gy) * S2_FOLD_PERIOD_M / 2
        assert p.base >= 200 and top <= 9000
    assert math.isclose(sum(DEM_NORTH_GRADIENTS), 0.0, abs_tol=1e-12)


_check()
