"""Windowed reads on open rasterio datasets (SPEC §4 steps 2, 4, 5, 6).

Pure functions of already-open datasets: no STAC, no signing, no HDF5. Each one reads
only the pixels a 32 x 32 window needs, so a read over HTTP fetches the few internal
COG tiles under the window instead of the whole scene:

- `read_exact`: a 10 m band on its own grid, a plain windowed read (no resampling).
  `read_exact_many` / `read_resampled_many` read thousands of windows of one dataset
  at once: each internal block is read once per cluster of nearby windows and the
  upsampling runs vectorized over all windows, with the same values as one by one.
- `read_resampled` / `read_scl`: a 20 m or 60 m band onto the 10 m window grid. The
  source window covers the destination plus ``margin_px`` source pixels on every side,
  so the resampling kernel of every edge pixel sees the real neighbours, and the chunk
  is warped with its own transform. The result equals GDAL's warp of the whole band.
- `read_mosaic`: tiles in another CRS (Copernicus DEM, ESA WorldCover in EPSG:4326)
  onto the window grid. Tiles that share a pixel grid are pasted into one source chunk
  before warping, so bilinear interpolation runs across tile seams as over one raster
  (up to four DEM tiles at a corner, two WorldCover tiles at an edge). Near ±180° the
  window's longitudes are unwrapped around its centre and the tiles on the far side are
  shifted by 360°, so the tiles of both sides join into one chunk.
- `read_dem_with_slope`: elevation plus slope (Horn's method) from a mosaic one pixel
  larger on every side, so the slope of edge pixels uses real neighbours.
- `read_mosaic_many` / `read_dem_with_slope_many`: the same for thousands of windows.
  Setting up a GDAL warp costs ~2 ms, a thousand times the warp of a 34 x 34 window, so
  windows whose kernel lies on valid pixels of one tile are resampled together in numpy
  with GDAL's own arithmetic (`_warp_inside_tiles`); the rest go through `read_mosaic`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine
from numpy.typing import DTypeLike
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.warp import reproject, transform
from rasterio.windows import Window

from gedidata.domain.geometry import WINDOW_SIZE, PixelWindow
from gedidata.domain.quality import horn_slope_percent
from gedidata.errors import DatasetReadError
from gedidata.sources.signing import redact

__all__ = [
    "read_dem_with_slope",
    "read_dem_with_slope_many",
    "read_exact",
    "read_exact_many",
    "read_mosaic",
    "read_mosaic_many",
    "read_resampled",
    "read_resampled_many",
    "read_scl",
]

Shape = tuple[int, int]
DEFAULT_SHAPE: Shape = (WINDOW_SIZE, WINDOW_SIZE)

_ALIGN_TOLERANCE = 1e-6
"""Largest misfit, in pixels, for two tiles to count as sharing one pixel grid."""

_APPROX_ERROR = 0.125
"""GDAL's approximate transformer interpolates a row linearly between its exactly
transformed ends while the error at the middle stays below this (pixels), as in
`rasterio.warp.reproject`; beyond it GDAL subdivides, and so do we (by falling back)."""

PREFETCH_BLOCKS = 16
"""Most blocks one read brings in together; their compressed bytes are held at once
(see GDAL_MAX_RAW_BLOCK_CACHE_SIZE in `gedidata.stages.extract.driver.CLOUD_OPTIMIZED_GDAL`)."""

_NEAREST_EPSILON = 1e-10
"""GDAL's nearest neighbour takes ``floor(x + 1e-10)``, so a centre a hair before a
pixel edge counts as past it."""


# ----------------------------------------------------------------------------- public


def read_exact(dataset: DatasetReader, window: PixelWindow, band: int = 1) -> np.ndarray:
    """The pixels of ``window`` (on the dataset's own grid), exactly as stored.

    Parts of the window outside the raster hold the dataset's nodata (0 when it has none).
    """
    return read_exact_many(dataset, [window], band)[0]


def read_exact_many(
    dataset: DatasetReader, windows: Sequence[PixelWindow], band: int = 1
) -> np.ndarray:
    """`read_exact` of many windows of one size at once: ``(N, height, width)``.

    Each internal block under the windows is read once per cluster of nearby windows
    (instead of once per window), which is what makes thousands of windows cheap.
    """
    dtype = np.dtype(dataset.dtypes[band - 1])
    return _read_windows(dataset, windows, _fill_value(dataset.nodata, dtype), dtype, band)


def read_resampled(
    dataset: DatasetReader,
    dst_transform: Affine,
    dst_crs: CRS | str,
    shape: Shape = DEFAULT_SHAPE,
    resampling: Resampling = Resampling.bilinear,
    margin_px: int = 2,
    band: int = 1,
) -> np.ndarray:
    """A band of another resolution (20 m, 60 m) resampled onto the destination grid.

    Reads the source pixels under the destination plus ``margin_px`` source pixels on
    every side (clipped to the raster, like GDAL's own warp of the whole band) and warps
    that chunk. Source nodata is excluded from the kernels as GDAL does; destination
    pixels without data hold the nodata (0 when the dataset has none). The result has the
    dataset's dtype.
    """
    return read_resampled_many(
        dataset, [dst_transform], dst_crs, shape, resampling, margin_px, band
    )[0]


def read_resampled_many(
    dataset: DatasetReader,
    dst_transforms: Sequence[Affine],
    dst_crs: CRS | str,
    shape: Shape = DEFAULT_SHAPE,
    resampling: Resampling = Resampling.bilinear,
    margin_px: int = 2,
    band: int = 1,
) -> np.ndarray:
    """`read_resampled` onto many destination grids of one CRS: ``(N, rows, cols)``.

    Grids that subdivide the dataset's grid (a 10 m window over a 20 m or 60 m band)
    are read together and upsampled in one vectorized kernel; any other grid is warped
    on its own.
    """
    dtype = np.dtype(dataset.dtypes[band - 1])
    nodata = _fill_value(dataset.nodata, dtype)
    out = np.empty((len(dst_transforms), *shape), dtype=dtype)
    same_crs = dataset.crs is not None and dataset.crs == CRS.from_user_input(dst_crs)
    by_factor: dict[int, list[tuple[int, tuple[int, int, int]]]] = {}
    source = dataset.transform  # (a new Affine at every access)
    for index, dst_transform in enumerate(dst_transforms):
        aligned = _grid_alignment(source, dst_transform) if same_crs else None
        if aligned is not None and resampling in (Resampling.bilinear, Resampling.nearest):
            by_factor.setdefault(aligned[0], []).append((index, aligned))
        else:
            out[index] = read_mosaic(
                [dataset], dst_transform, dst_crs, shape, resampling, dtype, nodata, margin_px, band
            )
    for members in by_factor.values():
        indexes = [index for index, _ in members]
        out[indexes] = _upsample_aligned(
            dataset, [aligned for _, aligned in members], shape, resampling, nodata, band
        )
    return out


def read_scl(
    dataset: DatasetReader,
    dst_transform: Affine,
    dst_crs: CRS | str,
    shape: Shape = DEFAULT_SHAPE,
) -> np.ndarray:
    """The 20 m scene classification shown on the 10 m grid (nearest neighbour)."""
    return read_resampled(dataset, dst_transform, dst_crs, shape, Resampling.nearest)


def read_mosaic(
    datasets: Sequence[DatasetReader],
    dst_transform: Affine,
    dst_crs: CRS | str,
    shape: Shape,
    resampling: Resampling,
    dtype: DTypeLike,
    nodata: float,
    margin_px: int = 2,
    band: int = 1,
) -> np.ndarray:
    """Tiles (in any CRS) resampled onto the destination grid and mosaicked.

    For every tile that overlaps the destination's footprint (transformed into the
    tile's CRS), only the source window under the footprint plus ``margin_px`` pixels
    (more when the destination is coarser than the source) is read. Tiles on one pixel
    grid are joined into one source chunk (the first tile's valid value wins where they
    overlap) and warped once, so interpolation is seamless across their edges; tiles on
    different grids are warped separately and the first valid value wins.

    ``nodata`` fills what no tile covers and is the source nodata of the chunks: pixels
    of a tile equal to its own nodata, or to ``nodata``, count as missing. Use NaN for
    floating point data without a nodata value.
    """
    rows, cols = shape
    dtype = np.dtype(dtype)
    out = np.full((rows, cols), nodata, dtype=dtype)
    if not datasets:
        return out
    dst_crs = CRS.from_user_input(dst_crs)
    footprints: dict[str, _Footprint] = {}
    groups: list[_Group] = []
    for dataset in datasets:
        key = dataset.crs.to_wkt() if dataset.crs else ""
        if key not in footprints:
            footprints[key] = _footprint(dst_transform, dst_crs, shape, dataset.crs)
        footprint = footprints[key]
        for shift in _lon_shifts(dataset, footprint):
            grid = Affine.translation(shift, 0.0) @ dataset.transform
            window = _source_window(dataset, grid, footprint, margin_px)
            if window is None:
                continue
            member = _Member(dataset, grid, window)
            for group in groups:
                if group.accepts(member):
                    group.members.append(member)
                    break
            else:
                groups.append(_Group([member]))
    for group in groups:
        if not _is_nodata(out, nodata).any():
            break  # filled by the groups before
        chunk, chunk_transform = group.chunk(nodata, dtype, band)
        warped = np.full((rows, cols), nodata, dtype=dtype)
        reproject(
            chunk,
            warped,
            src_transform=chunk_transform,
            src_crs=group.members[0].dataset.crs,
            src_nodata=nodata,
            dst_transform=dst_transform,
            dst_crs=dst_crs,
            dst_nodata=nodata,
            resampling=resampling,
        )
        take = _is_nodata(out, nodata) & ~_is_nodata(warped, nodata)
        out[take] = warped[take]
    return out


def read_dem_with_slope(
    datasets: Sequence[DatasetReader],
    dst_transform: Affine,
    dst_crs: CRS | str,
    shape: Shape = DEFAULT_SHAPE,
) -> tuple[np.ndarray, np.ndarray]:
    """Elevation (bilinear, m) and slope (%, Horn's method) on the destination grid.

    The DEM is mosaicked onto the grid grown by one pixel on every side, so the slope of
    the edge pixels comes from real neighbours; the spacing is the destination's pixel
    size. Both arrays are float32 with NaN where the DEM has no data.
    """
    _check_square(dst_transform)
    spacing = abs(dst_transform.a)
    rows, cols = shape
    grown = dst_transform @ Affine.translation(-1, -1)
    elevation = read_mosaic(
        datasets, grown, dst_crs, (rows + 2, cols + 2), Resampling.bilinear, np.float32, np.nan
    )
    slope = horn_slope_percent(elevation, spacing_m=spacing)
    return elevation[1:-1, 1:-1].copy(), slope.astype(np.float32)


def read_mosaic_many(
    datasets: Sequence[Sequence[DatasetReader]],
    dst_transforms: Sequence[Affine],
    dst_crs: CRS | str,
    shape: Shape,
    resampling: Resampling,
    dtype: DTypeLike,
    nodata: float,
) -> np.ndarray:
    """`read_mosaic` of many windows (``datasets[k]`` are the tiles of window k): (N, rows, cols).

    A window whose resampling kernel lies on valid pixels of exactly one tile, away from
    ±180°, is resampled with the windows of that tile in one vectorized pass, with GDAL's
    arithmetic (`_warp_inside_tiles`); every other window (tile seams and corners, nodata
    or the raster's edge under the kernel, ±180°) goes through `read_mosaic`. Only
    nearest and bilinear resampling onto grids no coarser than the tiles take the fast
    path; the results equal `read_mosaic`'s (nearest exactly, bilinear to float rounding).
    """
    rows, cols = shape
    dtype = np.dtype(dtype)
    out = np.full((len(dst_transforms), rows, cols), nodata, dtype=dtype)
    if len(datasets) != len(dst_transforms):
        raise ValueError(f"{len(datasets)} lists of tiles for {len(dst_transforms)} windows")
    if not dst_transforms:  # (every window of a chunk may have been rejected already)
        return out
    dst_crs = CRS.from_user_input(dst_crs)
    done = np.zeros(len(dst_transforms), dtype=bool)
    if resampling in (Resampling.nearest, Resampling.bilinear) and cols >= 2:
        done = _warp_inside_tiles(datasets, dst_transforms, dst_crs, resampling, nodata, out)
    for index in np.flatnonzero(~done):
        out[index] = read_mosaic(
            datasets[index], dst_transforms[index], dst_crs, shape, resampling, dtype, nodata
        )
    return out


def read_dem_with_slope_many(
    datasets: Sequence[Sequence[DatasetReader]],
    dst_transforms: Sequence[Affine],
    dst_crs: CRS | str,
    shape: Shape = DEFAULT_SHAPE,
) -> tuple[np.ndarray, np.ndarray]:
    """`read_dem_with_slope` of many windows: elevations and slopes, each (N, rows, cols)."""
    rows, cols = shape
    grown = []
    for dst_transform in dst_transforms:
        _check_square(dst_transform)
        grown.append(dst_transform @ Affine.translation(-1, -1))
    elevation = read_mosaic_many(
        datasets, grown, dst_crs, (rows + 2, cols + 2), Resampling.bilinear, np.float32, np.nan
    )
    spacings = {abs(t.a) for t in dst_transforms}
    if len(spacings) == 1:
        slope = horn_slope_percent(elevation, spacing_m=spacings.pop())
    else:
        slope = np.zeros((len(dst_transforms), rows, cols))
        for index, dst_transform in enumerate(dst_transforms):
            slope[index] = horn_slope_percent(elevation[index], spacing_m=abs(dst_transform.a))
    return elevation[:, 1:-1, 1:-1].copy(), slope.astype(np.float32)


# ----------------------------------------------------------------------------- helpers


def _check_square(dst_transform: Affine) -> None:
    spacing = abs(dst_transform.a)
    square = math.isclose(spacing, abs(dst_transform.e), rel_tol=1e-9)
    if not square or dst_transform.b or dst_transform.d:
        raise ValueError(f"slope needs a north-up grid of square pixels, got {dst_transform!r}")


def _warp_inside_tiles(
    datasets: Sequence[Sequence[DatasetReader]],
    dst_transforms: Sequence[Affine],
    dst_crs: CRS,
    resampling: Resampling,
    nodata: float,
    out: np.ndarray,
) -> np.ndarray:
    """Resample into ``out`` every window GDAL would warp from one tile alone; which ones.

    GDAL's warp of a short window computes, per destination row, the source pixel
    coordinates of the first and last pixel centres exactly and interpolates linearly
    between them (its approximate transformer, while the error at the row's middle is
    below 0.125 px), then applies the kernel: nearest takes ``floor(x + 1e-10)``,
    bilinear the 2 x 2 neighbours with weights from the fractional position. Doing the
    same arithmetic in numpy for thousands of windows at once avoids ~2 ms of warp set-up
    per window; a window is left to GDAL if anything differs from that simple case.
    """
    count, rows, cols = out.shape
    done = np.zeros(count, dtype=bool)
    # destination pixel centres at both ends and in the middle of every row: (N, rows, 3)
    ends = np.array([0.5, (cols - 1) // 2 + 0.5, cols - 0.5])
    centre_rows = np.arange(rows) + 0.5
    coeffs = np.array([t[:6] for t in dst_transforms], dtype=np.float64)  # a b c d e f
    px = ends[None, None, :]
    py = centre_rows[None, :, None]
    xs = coeffs[:, 0, None, None] * px + coeffs[:, 1, None, None] * py + coeffs[:, 2, None, None]
    ys = coeffs[:, 3, None, None] * px + coeffs[:, 4, None, None] * py + coeffs[:, 5, None, None]
    # which windows each tile serves, and the row ends in each tile's CRS (once per CRS)
    users: dict[int, tuple[DatasetReader, list[int]]] = {}
    for index, tiles in enumerate(datasets):
        for dataset in tiles:
            users.setdefault(id(dataset), (dataset, []))[1].append(index)
    projected: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    claims = np.zeros(count, dtype=np.int64)  # tiles whose raster the kernel touches
    plans: list[tuple[DatasetReader, np.ndarray, np.ndarray, np.ndarray]] = []
    for dataset, indexes in users.values():
        if dataset.crs is None:
            claims[indexes] += 2  # no georeferencing to compute with: GDAL's business
            continue
        key = dataset.crs.to_wkt()
        if key not in projected:
            projected[key] = _project(xs, ys, dst_crs, dataset.crs)
        sx, sy = projected[key]
        members = np.asarray(indexes)
        u, v, fits = _row_coordinates(dataset, sx[members], sy[members], cols)
        lo_c, hi_c, lo_r, hi_r = _kernel_support(u, v, resampling)
        touches = (hi_c >= 0) & (lo_c < dataset.width) & (hi_r >= 0) & (lo_r < dataset.height)
        inside = (lo_c >= 0) & (hi_c < dataset.width) & (lo_r >= 0) & (hi_r < dataset.height)
        claims[members[touches]] += 1
        if dataset.crs.is_geographic:  # across ±180° the tiles of both sides join: GDAL
            west, east = sx[members].min(axis=(1, 2)), sx[members].max(axis=(1, 2))
            fits &= east - west < 180.0
        if resampling == Resampling.bilinear:  # a coarser grid widens GDAL's kernel
            fits &= (np.abs(np.diff(u[:, :1, :2], axis=2)).max(axis=(1, 2)) <= 1.0) & (
                np.abs(np.diff(v[:, :2, :1], axis=1)).max(axis=(1, 2)) <= 1.0
            )
        keep = inside & fits
        if keep.any():
            plans.append((dataset, members[keep], u[keep], v[keep]))
    for dataset, members, u, v in plans:
        alone = claims[members] == 1
        members, u, v = members[alone], u[alone], v[alone]
        if len(members):
            values, valid = _kernel(dataset, u, v, resampling, nodata, out.dtype)
            out[members[valid]] = values[valid]
            done[members[valid]] = True
    return done


def _project(
    xs: np.ndarray, ys: np.ndarray, src_crs: CRS, dst_crs: CRS
) -> tuple[np.ndarray, np.ndarray]:
    """Points of any shape from ``src_crs`` into ``dst_crs`` (exactly, by GDAL/PROJ)."""
    if src_crs == dst_crs:
        return xs, ys
    tx, ty = transform(src_crs, dst_crs, xs.ravel(), ys.ravel())
    return np.asarray(tx).reshape(xs.shape), np.asarray(ty).reshape(ys.shape)


def _row_coordinates(
    dataset: DatasetReader, sx: np.ndarray, sy: np.ndarray, cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source pixel coordinates (N, rows, cols) of every destination pixel centre.

    ``sx``/``sy`` (N, rows, 3) are the exact first, middle and last centres of each row
    in the dataset's CRS. As GDAL: ``x[i] = x[0] + (x[-1] - x[0]) / (cols - 1) * i``.
    Also whether every row's middle lies within 0.125 px of that line (else GDAL would
    subdivide the row).
    """
    inverse = ~dataset.transform
    u3 = inverse.a * sx + inverse.b * sy + inverse.c
    v3 = inverse.d * sx + inverse.e * sy + inverse.f
    steps = np.arange(cols, dtype=np.float64)
    du = (u3[..., 2:3] - u3[..., 0:1]) / (cols - 1)
    dv = (v3[..., 2:3] - v3[..., 0:1]) / (cols - 1)
    u = u3[..., 0:1] + du * steps
    v = v3[..., 0:1] + dv * steps
    middle = (cols - 1) // 2
    error = np.abs(u[..., middle] - u3[..., 1]) + np.abs(v[..., middle] - v3[..., 1])
    return u, v, error.max(axis=1) < _APPROX_ERROR


def _kernel_support(
    u: np.ndarray, v: np.ndarray, resampling: Resampling
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First and last source column and row (inclusive) each window's kernel reads."""
    if resampling == Resampling.nearest:
        c = np.floor(u + _NEAREST_EPSILON)
        r = np.floor(v + _NEAREST_EPSILON)
        lo_c, hi_c, lo_r, hi_r = c, c, r, r
    else:
        c = np.floor(u - 0.5)
        r = np.floor(v - 0.5)
        lo_c, hi_c, lo_r, hi_r = c, c + 1, r, r + 1
    axes = (1, 2)
    return (
        lo_c.min(axis=axes).astype(np.int64),
        hi_c.max(axis=axes).astype(np.int64),
        lo_r.min(axis=axes).astype(np.int64),
        hi_r.max(axis=axes).astype(np.int64),
    )


def _kernel(
    dataset: DatasetReader,
    u: np.ndarray,
    v: np.ndarray,
    resampling: Resampling,
    nodata: float,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest or bilinear values at source pixel coordinates ``u``, ``v`` (N, rows, cols),
    and which windows had only valid pixels under the kernel (the others are left out)."""
    lo_c, hi_c, lo_r, hi_r = _kernel_support(u, v, resampling)
    windows = [
        PixelWindow(int(c0), int(r0), int(c1 - c0 + 1), int(r1 - r0 + 1))
        for c0, c1, r0, r1 in zip(lo_c, hi_c, lo_r, hi_r, strict=True)
    ]
    band_dtype = np.dtype(dataset.dtypes[0])
    chunks = _read_windows(dataset, windows, _fill_value(dataset.nodata, band_dtype), band_dtype, 1)
    invalid = (_is_nodata(chunks, dataset.nodata) | _is_nodata(chunks, nodata)).ravel()
    # gathers by flat index (one index array instead of three: ~2x faster)
    _, height, width = chunks.shape
    values = chunks.ravel()
    n = np.arange(len(u))[:, None, None]
    # source pixel (row, col) of window n is at first[n] + row * width + col
    first = (n * height - lo_r[:, None, None]) * width - lo_c[:, None, None]
    if resampling == Resampling.nearest:
        c = np.floor(u + _NEAREST_EPSILON).astype(np.int64)
        r = np.floor(v + _NEAREST_EPSILON).astype(np.int64)
        at = first + r * width + c
        bad = invalid[at].any(axis=(1, 2))
        return values[at].astype(dtype), ~bad
    x, y = u - 0.5, v - 0.5
    c0, r0 = np.floor(x), np.floor(y)
    tc, tr = x - c0, y - r0
    at = first + r0.astype(np.int64) * width + c0.astype(np.int64)
    bad = np.zeros(len(u), dtype=bool)
    total = np.zeros(u.shape)
    for dr, wr in ((0, 1.0 - tr), (1, tr)):
        for dc, wc in ((0, 1.0 - tc), (1, tc)):
            bad |= invalid[at + dr * width + dc].any(axis=(1, 2))
            total += wr * wc * values[at + dr * width + dc]
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        total = np.clip(np.floor(total + 0.5), info.min, info.max)
    return total.astype(dtype), ~bad


def _grid_alignment(src: Affine, dst_transform: Affine) -> tuple[int, int, int] | None:
    """(factor, col offset, row offset) when the destination grid subdivides the source
    grid (same CRS assumed): north-up, source pixel = factor x destination pixel, and
    the destination origin on a destination-sized step from the source origin."""
    if src.b or src.d or dst_transform.b or dst_transform.d:
        return None
    factor = src.a / dst_transform.a
    if not (
        factor >= 1
        and abs(factor - round(factor)) < _ALIGN_TOLERANCE
        and math.isclose(src.e / dst_transform.e, factor, rel_tol=1e-9)
    ):
        return None
    col = (dst_transform.c - src.c) / dst_transform.a
    row = (dst_transform.f - src.f) / dst_transform.e
    if abs(col - round(col)) > _ALIGN_TOLERANCE or abs(row - round(row)) > _ALIGN_TOLERANCE:
        return None
    return round(factor), round(col), round(row)


def _upsample_aligned(
    dataset: DatasetReader,
    aligned: Sequence[tuple[int, int, int]],
    shape: Shape,
    resampling: Resampling,
    nodata: float,
    band: int,
) -> np.ndarray:
    """Bilinear or nearest resampling onto grids that subdivide the source grid.

    The same kernel as GDAL's warper (source coordinate of each destination pixel
    centre, 2 x 2 neighbours, nodata and pixels off the raster left out of the weights,
    half-up rounding for integers) without setting up a warp for a 32 x 32 window;
    ``aligned`` holds (factor, col offset, row offset) of each grid, one factor for all.
    The arithmetic is element-wise, so a grid's values do not depend on the others.
    """
    factor = aligned[0][0]
    rows, cols = shape
    dtype = np.dtype(dataset.dtypes[band - 1])
    col_off = np.array([a[1] for a in aligned], dtype=np.int64)[:, None]
    row_off = np.array([a[2] for a in aligned], dtype=np.int64)[:, None]
    # source pixel coordinates (pixel centres at integers) of the destination centres
    u = (col_off + np.arange(cols) + 0.5) / factor - 0.5  # (N, cols)
    v = (row_off + np.arange(rows) + 0.5) / factor - 0.5  # (N, rows)
    c_near = np.floor(u + 0.5).astype(np.int64)
    r_near = np.floor(v + 0.5).astype(np.int64)
    if resampling == Resampling.nearest:
        chunks, c0, r0 = _padded_reads(dataset, c_near, r_near, 0, nodata, band)
        return _gather(chunks, r_near - r0, c_near - c0).astype(dtype)
    c_lo = np.floor(u).astype(np.int64)
    r_lo = np.floor(v).astype(np.int64)
    tc = (u - c_lo)[:, None, :]
    tr = (v - r_lo)[:, :, None]
    values, c0, r0 = _padded_reads(dataset, c_lo, r_lo, 1, nodata, band)
    valid = ~_is_nodata(values, nodata)
    out = np.full((len(aligned), rows, cols), nodata, dtype=np.float64)
    has = np.zeros(out.shape, dtype=bool)
    # Windows on valid pixels only (nearly all) interpolate along rows, then columns:
    # the same weights, a quarter of the work. (Chunks are padded with nodata up to the
    # largest chunk; only the part a window uses counts.)
    height = (r_lo.max(axis=1) + 2 - r0[:, 0])[:, None, None]
    width = (c_lo.max(axis=1) + 2 - c0[:, 0])[:, None, None]
    used = (np.arange(valid.shape[1])[None, :, None] < height) & (
        np.arange(valid.shape[2])[None, None, :] < width
    )
    whole = (valid | ~used).all(axis=(1, 2))
    if whole.any():
        out[whole] = _bilinear_on_valid(
            values[whole], r_lo[whole] - r0[whole], c_lo[whole] - c0[whole], tr[whole], tc[whole]
        )
        has[whole] = True
    part = np.flatnonzero(~whole)
    if len(part):
        r, c = r_lo[part] - r0[part], c_lo[part] - c0[part]
        chunk, ok = values[part], valid[part]
        total = np.zeros((len(part), rows, cols))
        weight = np.zeros((len(part), rows, cols))
        for dr, wr in ((0, 1.0 - tr[part]), (1, tr[part])):
            for dc, wc in ((0, 1.0 - tc[part]), (1, tc[part])):
                here = _gather(ok, r + dr, c + dc)
                w = wr * wc * here
                total += w * np.where(here, _gather(chunk, r + dr, c + dc), 0.0)
                weight += w
        # As GDAL's warper: a destination pixel whose nearest source pixel is invalid
        # stays nodata, whatever its other neighbours hold.
        near = _gather(ok, r_near[part] - r0[part], c_near[part] - c0[part])
        has_part = (weight > 1e-9) & near
        out_part = out[part]
        out_part[has_part] = total[has_part] / weight[has_part]
        out[part], has[part] = out_part, has_part
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        out[has] = np.clip(np.floor(out[has] + 0.5), info.min, info.max)
    return out.astype(dtype)


def _bilinear_on_valid(
    values: np.ndarray, rows: np.ndarray, cols: np.ndarray, tr: np.ndarray, tc: np.ndarray
) -> np.ndarray:
    """Bilinear interpolation where all four neighbours are valid, separably.

    ``values`` (N, H, W) source chunks; ``rows`` (N, R) / ``cols`` (N, C) the upper-left
    neighbour of each destination row / column in its chunk; ``tr`` (N, R, 1) and
    ``tc`` (N, 1, C) the fractional positions. Returns (N, R, C) float64.
    """
    # gathers by flat index (one index array instead of two or three: ~2x faster)
    count, height, width = values.shape
    n = np.arange(count)[:, None]
    lines = values.reshape(count * height, width)
    upper = n * height + rows  # (N, R): lines of the upper neighbours
    across = lines[upper] * (1.0 - tr) + lines[upper + 1] * tr  # (N, R, W)
    depth = rows.shape[1]
    at = (n[:, :, None] * depth + np.arange(depth)[None, :, None]) * width + cols[:, None, :]
    flat = across.ravel()
    return flat[at] * (1.0 - tc) + flat[at + 1] * tc


def _gather(chunks: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``chunks[n][rows[n]][:, cols[n]]`` for every n: (N, R) x (N, C) -> (N, R, C)."""
    n = np.arange(len(chunks))[:, None, None]
    return chunks[n, rows[:, :, None], cols[:, None, :]]


def _padded_reads(
    dataset: DatasetReader,
    cols: np.ndarray,
    rows: np.ndarray,
    extra: int,
    nodata: float,
    band: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source pixels from the least to the largest (+ ``extra``) of each row of ``rows``
    and ``cols``, as float64 with nodata off the raster and for the dataset's nodata:
    the chunks (N, H, W) and their column and row offsets (N, 1)."""
    c0, r0 = cols.min(axis=1), rows.min(axis=1)
    widths = cols.max(axis=1) + extra - c0 + 1
    heights = rows.max(axis=1) + extra - r0 + 1
    windows = [
        PixelWindow(int(c), int(r), int(w), int(h))
        for c, r, w, h in zip(c0, r0, widths, heights, strict=True)
    ]
    dtype = np.dtype(dataset.dtypes[band - 1])
    data = _read_windows(dataset, windows, nodata, dtype, band)
    # off the raster the chunk already holds `nodata`; inside, the dataset's own nodata
    # becomes `nodata` too
    chunks = np.where(_is_nodata(data, dataset.nodata), nodata, data).astype(np.float64)
    return chunks, c0[:, None], r0[:, None]


def _read_windows(
    dataset: DatasetReader,
    windows: Sequence[PixelWindow],
    fill: float,
    dtype: np.dtype,
    band: int,
) -> np.ndarray:
    """The pixels of every window, ``fill`` off the raster: (N, H, W), H and W the
    largest window size (smaller windows are padded with ``fill`` at the far end).

    Windows are clustered by the internal block under their centre; a cluster reads
    every block its windows touch once (only the part inside the cluster's bounds, and
    no block that none of its windows needs) and each window takes its part of it
    (the full-size windows wholly inside a read all at once). The needed blocks down a
    column are brought in by one read first (`_column_runs`), so that GDAL fetches them
    in parallel.
    """
    boxes = np.array(
        [(w.col_off, w.row_off, w.width, w.height) for w in windows], dtype=np.int64
    ).reshape(-1, 4)
    width, height = (int(boxes[:, k].max()) if len(boxes) else 0 for k in (2, 3))
    out = np.full((len(windows), height, width), fill, dtype=dtype)
    block_rows, block_cols = dataset.block_shapes[band - 1]
    blocks_across = dataset.width // block_cols + 1  # block (i, j) is i * blocks_across + j
    # each window's part on the raster: columns c0..c1, rows r0..r1 (ends excluded)
    c0 = np.maximum(boxes[:, 0], 0)
    r0 = np.maximum(boxes[:, 1], 0)
    c1 = np.minimum(boxes[:, 0] + boxes[:, 2], dataset.width)
    r1 = np.minimum(boxes[:, 1] + boxes[:, 3], dataset.height)
    on = np.flatnonzero((c0 < c1) & (r0 < r1))
    if not len(on):
        return out
    # a cluster: the windows whose centre lies on one block
    centre = (r0 + r1) // 2 // block_rows * blocks_across + (c0 + c1) // 2 // block_cols
    _, cluster = np.unique(centre[on], return_inverse=True)
    by_cluster = np.argsort(cluster, kind="stable")
    members_of = np.split(on[by_cluster], np.flatnonzero(np.diff(cluster[by_cluster])) + 1)
    # the blocks each window touches (with its cluster): one row of `reads` per pair;
    # blocks no window touches are never read, also inside a cluster's bounds
    first_i, last_i = r0[on] // block_rows, (r1[on] - 1) // block_rows
    first_j, last_j = c0[on] // block_cols, (c1[on] - 1) // block_cols
    pairs = [
        np.stack([first_i + di, first_j + dj, cluster], axis=1)[
            (first_i + di <= last_i) & (first_j + dj <= last_j)
        ]
        for di in range(int((last_i - first_i).max()) + 1)
        for dj in range(int((last_j - first_j).max()) + 1)
    ]
    reads = np.unique(np.concatenate(pairs), axis=0)
    run_of, runs = _column_runs(reads[:, 0], reads[:, 1])
    # runs, and the reads in each, in descending file order: /vsicurl/ takes a read that
    # starts where its last download ended as sequential and doubles it into the next tile
    position = reads[:, 0] * blocks_across + reads[:, 1]
    last_of_run = np.zeros(len(runs), dtype=np.int64)
    np.maximum.at(last_of_run, run_of, position)
    order = np.lexsort((reads[:, 2], position, last_of_run[run_of]))[::-1]
    current = -1
    for read in order.tolist():
        i, j, k = reads[read].tolist()
        if run_of[read] != current:
            current = int(run_of[read])
            column, first, last = runs[current]
            if last > first:  # one read across the run: GDAL fetches its blocks together
                height_px = min((last + 1) * block_rows, dataset.height) - first * block_rows
                line = Window(column * block_cols, first * block_rows, 1, height_px)
                _read(dataset, band, line)
        members = members_of[k]
        top, bottom = (
            max(i * block_rows, int(r0[members].min())),
            min((i + 1) * block_rows, int(r1[members].max())),
        )
        left, right = (
            max(j * block_cols, int(c0[members].min())),
            min((j + 1) * block_cols, int(c1[members].max())),
        )
        part = _read(dataset, band, Window(left, top, right - left, bottom - top))
        a0, a1 = np.maximum(c0[members], left), np.minimum(c1[members], right)
        b0, b1 = np.maximum(r0[members], top), np.minimum(r1[members], bottom)
        takes = (a0 < a1) & (b0 < b1)
        # windows of the full size wholly in this part: one gather for all of them
        whole = (
            takes
            & (a0 == boxes[members, 0])
            & (a1 - a0 == width)
            & (b0 == boxes[members, 1])
            & (b1 - b0 == height)
        )
        if whole.any():
            views = np.lib.stride_tricks.sliding_window_view(part, (height, width))
            out[members[whole]] = views[b0[whole] - top, a0[whole] - left]
        rest = takes & ~whole
        for index, x0, x1, y0, y1 in zip(
            members[rest].tolist(),
            a0[rest].tolist(),
            a1[rest].tolist(),
            b0[rest].tolist(),
            b1[rest].tolist(),
            strict=True,
        ):
            col, row = int(boxes[index, 0]), int(boxes[index, 1])
            out[index, y0 - row : y1 - row, x0 - col : x1 - col] = part[
                y0 - top : y1 - top, x0 - left : x1 - left
            ]
    return out


def _read(dataset: DatasetReader, band: int, window: Window) -> np.ndarray:
    """``dataset.read`` of one window; a failure names the dataset by its band, not its
    URL (which may carry a signature), and keeps the dataset for the caller."""
    try:
        return dataset.read(band, window=window)
    except RasterioIOError as error:
        message = redact(str(error))  # (GDAL's message quotes the signed URL)
        raise DatasetReadError(f"reading pixels failed: {message[:250]}", dataset) from None


def _column_runs(
    rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Group blocks (``rows[n]``, ``cols[n]``, repeats allowed) into runs of vertically
    adjacent blocks of one column, at most `PREFETCH_BLOCKS` long: each block's run and
    the runs as (column, first row, last row).

    A read that crosses a run's blocks lets GDAL request those it lacks all at once, in
    parallel (a /vsicurl/ COG), instead of one round trip per block: with the blocks of
    the 10 m bands' tile columns read a column at a time, that is most of them.
    """
    keys, inverse = np.unique(np.stack([cols, rows], axis=1), axis=0, return_inverse=True)
    index = np.arange(len(keys))  # keys: by column, then row
    new_run = np.r_[True, (np.diff(keys[:, 0]) != 0) | (np.diff(keys[:, 1]) != 1)]
    run_start = np.maximum.accumulate(np.where(new_run, index, 0))
    new_run |= (index - run_start) % PREFETCH_BLOCKS == 0
    firsts = np.flatnonzero(new_run)
    lasts = np.r_[firsts[1:], len(keys)] - 1
    runs = [
        (int(keys[first, 0]), int(keys[first, 1]), int(keys[last, 1]))
        for first, last in zip(firsts, lasts, strict=True)
    ]
    return (np.cumsum(new_run) - 1)[inverse.ravel()], runs


def _fill_value(nodata: float | None, dtype: DTypeLike) -> float:
    if nodata is not None:
        return nodata
    return np.nan if np.issubdtype(np.dtype(dtype), np.floating) else 0


def _is_nodata(values: np.ndarray, nodata: float | None) -> np.ndarray:
    if nodata is None:
        return np.zeros(values.shape, dtype=bool)
    if isinstance(nodata, float) and math.isnan(nodata):
        return (
            np.isnan(values)
            if np.issubdtype(values.dtype, np.floating)
            else np.zeros(values.shape, dtype=bool)
        )
    return values == nodata


@dataclass(frozen=True)
class _Footprint:
    """The destination grid's outline in a source CRS: bounds and, if geographic, centre."""

    bounds: tuple[float, float, float, float]
    geographic: bool
    dst_res: tuple[float, float]
    """Extent of one destination pixel in source units (x, y), roughly."""


def _footprint(dst_transform: Affine, dst_crs: CRS, shape: Shape, src_crs: CRS) -> _Footprint:
    """Bounds of the destination grid in ``src_crs`` from its densified outline.

    For a geographic source the longitudes are unwrapped around the destination's
    centre, so a window across ±180° gets bounds like (179.99, …, 180.01, …).
    """
    rows, cols = shape
    # every pixel corner along the outline, plus the centre
    c = np.arange(cols + 1, dtype=np.float64)
    r = np.arange(rows + 1, dtype=np.float64)
    px = np.concatenate([c, np.full(rows + 1, cols), c[::-1], np.zeros(rows + 1), [cols / 2]])
    py = np.concatenate([np.zeros(cols + 1), r, np.full(cols + 1, rows), r[::-1], [rows / 2]])
    xs, ys = dst_transform @ (px, py)
    if src_crs is not None and CRS.from_user_input(src_crs) != dst_crs:
        xs, ys = transform(dst_crs, src_crs, xs, ys)
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    geographic = bool(src_crs is not None and CRS.from_user_input(src_crs).is_geographic)
    if geographic:
        centre = (xs[-1] + 180.0) % 360.0 - 180.0
        xs = centre + (xs - centre + 180.0) % 360.0 - 180.0
    bounds = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    dst_res = ((bounds[2] - bounds[0]) / max(cols, 1), (bounds[3] - bounds[1]) / max(rows, 1))
    return _Footprint(bounds, geographic, dst_res)


def _lon_shifts(dataset: DatasetReader, footprint: _Footprint) -> list[float]:
    """Multiples of 360° that move a geographic tile onto the footprint's longitudes."""
    if not footprint.geographic:
        return [0.0]
    west, _, east, _ = footprint.bounds
    left, _, right, _ = dataset.bounds
    pad = 0.5 * (east - west) + 1.0  # anything near enough is checked by its window
    return [
        shift
        for shift in (0.0, 360.0, -360.0)
        if left + shift < east + pad and right + shift > west - pad
    ]


def _source_window(
    dataset: DatasetReader, grid: Affine, footprint: _Footprint, margin_px: int
) -> Window | None:
    """Pixel window of ``dataset`` (georeferenced by ``grid``) under the footprint + margin.

    Clipped to the raster; None when nothing of the raster is needed.
    """
    west, south, east, north = footprint.bounds
    inverse = ~grid
    cs, rs = inverse @ (
        np.array([west, east, east, west], dtype=np.float64),
        np.array([north, north, south, south], dtype=np.float64),
    )
    # widen the margin when a destination pixel spans several source pixels (the
    # kernel of a downsampling warp grows with the ratio)
    ratio_x = footprint.dst_res[0] / max(math.hypot(grid.a, grid.d), 1e-300)
    ratio_y = footprint.dst_res[1] / max(math.hypot(grid.b, grid.e), 1e-300)
    mx = margin_px * max(1, math.ceil(ratio_x))
    my = margin_px * max(1, math.ceil(ratio_y))
    c0 = max(math.floor(float(cs.min())) - mx, 0)
    c1 = min(math.ceil(float(cs.max())) + mx, dataset.width)
    r0 = max(math.floor(float(rs.min())) - my, 0)
    r1 = min(math.ceil(float(rs.max())) + my, dataset.height)
    if c0 >= c1 or r0 >= r1:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


@dataclass
class _Member:
    dataset: DatasetReader
    grid: Affine
    """The dataset's transform, shifted by a multiple of 360° where needed."""
    window: Window


@dataclass
class _Group:
    """Tiles on one pixel grid (same CRS and pixel size, whole-pixel offsets)."""

    members: list[_Member]

    @property
    def ref(self) -> _Member:
        return self.members[0]

    def offset(self, member: _Member) -> tuple[int, int] | None:
        """(col, row) of ``member``'s pixel (0, 0) on the first member's grid, if aligned."""
        ref, grid = self.ref.grid, member.grid
        if member.dataset.crs != self.ref.dataset.crs:
            return None
        if ref.b != 0 or ref.d != 0 or grid.b != 0 or grid.d != 0:
            return (0, 0) if member is self.ref else None
        if not (
            math.isclose(ref.a, grid.a, rel_tol=1e-9) and math.isclose(ref.e, grid.e, rel_tol=1e-9)
        ):
            return None
        col = (grid.c - ref.c) / ref.a
        row = (grid.f - ref.f) / ref.e
        if abs(col - round(col)) > _ALIGN_TOLERANCE or abs(row - round(row)) > _ALIGN_TOLERANCE:
            return None
        return round(col), round(row)

    def accepts(self, member: _Member) -> bool:
        return self.offset(member) is not None

    def chunk(self, nodata: float, dtype: np.dtype, band: int) -> tuple[np.ndarray, Affine]:
        """Read every member's window into one array on the group's grid."""
        placed = []
        for member in self.members:
            dc, dr = self.offset(member)  # type: ignore[misc]
            w = member.window
            placed.append((member, int(w.col_off) + dc, int(w.row_off) + dr))
        c0 = min(c for _, c, _ in placed)
        r0 = min(r for _, _, r in placed)
        c1 = max(c + int(m.window.width) for m, c, _ in placed)
        r1 = max(r + int(m.window.height) for m, _, r in placed)
        work = np.result_type(dtype, *(m.dataset.dtypes[band - 1] for m in self.members))
        if isinstance(nodata, float) and math.isnan(nodata) and work.kind != "f":
            work = np.dtype(np.float64)
        chunk = np.full((r1 - r0, c1 - c0), nodata, dtype=work)
        filled = np.zeros(chunk.shape, dtype=bool)
        for member, c, r in placed:
            data = _read(member.dataset, band, member.window)
            valid = ~_is_nodata(data, member.dataset.nodata) & ~_is_nodata(data, nodata)
            rows = slice(r - r0, r - r0 + data.shape[0])
            cols = slice(c - c0, c - c0 + data.shape[1])
            take = valid & ~filled[rows, cols]
            chunk[rows, cols][take] = data[take]
            filled[rows, cols] |= valid
        return chunk, self.ref.grid @ Affine.translation(c0, r0)
