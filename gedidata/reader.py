"""Windowed reads on open rasterio datasets (SPEC §4 steps 2, 4, 5, 6).

Pure functions of already-open datasets: no STAC, no signing, no HDF5. Each one reads
only the pixels a 32 x 32 window needs, so a read over HTTP fetches the few internal
COG tiles under the window instead of the whole scene:

- `read_exact`: a 10 m band on its own grid, a plain windowed read (no resampling).
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
from rasterio.io import DatasetReader
from rasterio.warp import reproject, transform
from rasterio.windows import Window

from gedidata.geometry import WINDOW_SIZE, PixelWindow
from gedidata.quality import horn_slope_percent

__all__ = [
    "read_dem_with_slope",
    "read_exact",
    "read_mosaic",
    "read_resampled",
    "read_scl",
]

Shape = tuple[int, int]
DEFAULT_SHAPE: Shape = (WINDOW_SIZE, WINDOW_SIZE)

_ALIGN_TOLERANCE = 1e-6
"""Largest misfit, in pixels, for two tiles to count as sharing one pixel grid."""


# ----------------------------------------------------------------------------- public


def read_exact(dataset: DatasetReader, window: PixelWindow, band: int = 1) -> np.ndarray:
    """The pixels of ``window`` (on the dataset's own grid), exactly as stored.

    Parts of the window outside the raster hold the dataset's nodata (0 when it has none).
    """
    fill = _fill_value(dataset.nodata, dataset.dtypes[band - 1])
    out = np.full((window.height, window.width), fill, dtype=dataset.dtypes[band - 1])
    inside = _read_inside(dataset, window, band)
    if inside is not None:
        data, where = inside
        out[where] = data
    return out


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
    dtype = np.dtype(dataset.dtypes[band - 1])
    nodata = _fill_value(dataset.nodata, dtype)
    aligned = _aligned(dataset, dst_transform, dst_crs)
    if aligned is not None and resampling in (Resampling.bilinear, Resampling.nearest):
        return _upsample_aligned(dataset, aligned, shape, resampling, nodata, band)
    return read_mosaic(
        [dataset], dst_transform, dst_crs, shape, resampling, dtype, nodata, margin_px, band
    )


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
    spacing = abs(dst_transform.a)
    square = math.isclose(spacing, abs(dst_transform.e), rel_tol=1e-9)
    if not square or dst_transform.b or dst_transform.d:
        raise ValueError(f"slope needs a north-up grid of square pixels, got {dst_transform!r}")
    rows, cols = shape
    grown = dst_transform @ Affine.translation(-1, -1)
    elevation = read_mosaic(
        datasets, grown, dst_crs, (rows + 2, cols + 2), Resampling.bilinear, np.float32, np.nan
    )
    slope = horn_slope_percent(elevation, spacing_m=spacing)
    return elevation[1:-1, 1:-1].copy(), slope.astype(np.float32)


# ----------------------------------------------------------------------------- helpers


def _aligned(
    dataset: DatasetReader, dst_transform: Affine, dst_crs: CRS | str
) -> tuple[int, int, int] | None:
    """(factor, col offset, row offset) when the destination grid subdivides the
    dataset's grid: same CRS, north-up, source pixel = factor x destination pixel, and
    the destination origin on a destination-sized step from the source origin."""
    src = dataset.transform
    if dataset.crs is None or dataset.crs != CRS.from_user_input(dst_crs):
        return None
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
    aligned: tuple[int, int, int],
    shape: Shape,
    resampling: Resampling,
    nodata: float,
    band: int,
) -> np.ndarray:
    """Bilinear or nearest resampling onto a grid that subdivides the source grid.

    The same kernel as GDAL's warper (source coordinate of each destination pixel
    centre, 2 x 2 neighbours, nodata and pixels off the raster left out of the weights,
    half-up rounding for integers) without setting up a warp for a 32 x 32 window.
    """
    factor, col_off, row_off = aligned
    rows, cols = shape
    dtype = np.dtype(dataset.dtypes[band - 1])
    # source pixel coordinates (pixel centres at integers) of the destination centres
    u = (col_off + np.arange(cols) + 0.5) / factor - 0.5
    v = (row_off + np.arange(rows) + 0.5) / factor - 0.5
    if resampling == Resampling.nearest:
        ci = np.floor(u + 0.5).astype(np.int64)
        ri = np.floor(v + 0.5).astype(np.int64)
        chunk, c0, r0 = _padded_read(dataset, ci.min(), ci.max(), ri.min(), ri.max(), nodata, band)
        return chunk[np.ix_(ri - r0, ci - c0)].astype(dtype)
    c_lo = np.floor(u).astype(np.int64)
    r_lo = np.floor(v).astype(np.int64)
    tc = (u - c_lo)[None, :]
    tr = (v - r_lo)[:, None]
    chunk, c0, r0 = _padded_read(
        dataset, c_lo.min(), c_lo.max() + 1, r_lo.min(), r_lo.max() + 1, nodata, band
    )
    values = chunk.astype(np.float64)
    valid = ~_is_nodata(chunk, nodata)
    total = np.zeros((rows, cols))
    weight = np.zeros((rows, cols))
    for dr, wr in ((0, 1.0 - tr), (1, tr)):
        for dc, wc in ((0, 1.0 - tc), (1, tc)):
            index = np.ix_(r_lo + dr - r0, c_lo + dc - c0)
            w = wr * wc * valid[index]
            total += w * np.where(valid[index], values[index], 0.0)
            weight += w
    out = np.full((rows, cols), nodata, dtype=np.float64)
    # As GDAL's warper: a destination pixel whose nearest source pixel is invalid stays
    # nodata, whatever its other neighbours hold.
    nearest = valid[
        np.ix_(np.floor(v + 0.5).astype(np.int64) - r0, np.floor(u + 0.5).astype(np.int64) - c0)
    ]
    has = (weight > 1e-9) & nearest
    out[has] = total[has] / weight[has]
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        out[has] = np.clip(np.floor(out[has] + 0.5), info.min, info.max)
    return out.astype(dtype)


def _padded_read(
    dataset: DatasetReader,
    c_min: int,
    c_max: int,
    r_min: int,
    r_max: int,
    nodata: float,
    band: int,
) -> tuple[np.ndarray, int, int]:
    """Source pixels [r_min..r_max] x [c_min..c_max] (inclusive), nodata off the raster."""
    window = PixelWindow(int(c_min), int(r_min), int(c_max - c_min + 1), int(r_max - r_min + 1))
    out = np.full((window.height, window.width), nodata, dtype=np.float64)
    inside = _read_inside(dataset, window, band)
    if inside is not None:
        data, where = inside
        out[where] = np.where(_is_nodata(data, dataset.nodata), nodata, data)
    return out, window.col_off, window.row_off


def _read_inside(
    dataset: DatasetReader, window: PixelWindow, band: int
) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """The part of `window` that lies on the raster, and where it goes in the window."""
    c0, c1 = max(window.col_off, 0), min(window.col_off + window.width, dataset.width)
    r0, r1 = max(window.row_off, 0), min(window.row_off + window.height, dataset.height)
    if c0 >= c1 or r0 >= r1:
        return None
    data = dataset.read(band, window=Window(c0, r0, c1 - c0, r1 - r0))
    where = (
        slice(r0 - window.row_off, r1 - window.row_off),
        slice(c0 - window.col_off, c1 - window.col_off),
    )
    return data, where


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
            data = member.dataset.read(band, window=member.window)
            valid = ~_is_nodata(data, member.dataset.nodata) & ~_is_nodata(data, nodata)
            rows = slice(r - r0, r - r0 + data.shape[0])
            cols = slice(c - c0, c - c0 + data.shape[1])
            take = valid & ~filled[rows, cols]
            chunk[rows, cols][take] = data[take]
            filled[rows, cols] |= valid
        return chunk, self.ref.grid @ Affine.translation(c0, r0)
