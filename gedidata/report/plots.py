"""Footprint distribution plots: a density map and a day-of-year histogram.

Rendering uses matplotlib's `Figure` with the Agg canvas directly, so it never touches
pyplot's global state or a GUI backend, and every figure is freed when the call returns.
The land background is a 0.05° land mask shipped in `gedidata/data/land_mask.npz`
(made by `scripts/make_land_mask.py`; nothing is downloaded).

The binning is factored into small pure helpers (`density_grid`, `day_of_year_counts`)
so it can be tested exactly; the drawing code only displays what they return.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, StrMethodFormatter

__all__ = [
    "DAYS_PER_YEAR_MAX",
    "FIGURE_DPI",
    "FIGURE_SIZE_IN",
    "WORLD_CELL_DEG",
    "ZOOM_MAX_SPAN_DEG",
    "day_of_year_counts",
    "density_grid",
    "make_distribution_figure",
    "plot_footprint_distribution",
    "zoom_extent",
]

DAYS_PER_YEAR_MAX = 366
"""Largest valid day of year (31 December of a leap year)."""

FIGURE_SIZE_IN = (12.0, 9.0)
FIGURE_DPI = 150
"""The PNG is always FIGURE_SIZE_IN * FIGURE_DPI pixels (1800 x 1350)."""

WORLD_CELL_DEG = 0.5
"""Cell size of the world density panel (≥ 1.5 px per cell at FIGURE_DPI, so no cell
is lost when the image is resampled to the screen)."""

LAND_MASK_CELL_DEG = 0.25
"""Resolution of the cached world land background."""

ZOOM_MAX_SPAN_DEG = (60.0, 40.0)
"""(lon, lat) span below which the footprints count as a "small region" and a zoomed
panel is added next to the world view."""

_ZOOM_CELL_LADDER_DEG = (1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.0025, 0.001, 0.0005)
_ZOOM_MIN_CELLS = 50
_ZOOM_MIN_HALF_SPAN_DEG = 0.01  # ~1 km: the smallest zoom window (e.g. one footprint)
_ZOOM_MARKER_MAX_POINTS = 200  # circle individual footprints in the zoom up to this many
_WORLD_MARKER_MAX_CELLS = 60  # circle the occupied world cells up to this many
_LAND_NATIVE_DEG = 1.0 / 120.0  # resolution of global-land-mask's own grid

_OCEAN_COLOR = "#e8f1f8"
_LAND_COLOR = "#cfcfcf"
_CMAP = "viridis"
_GEDI_MAX_LAT = 51.6
# First day of each month in a non-leap year, and the month labels.
_MONTH_STARTS = (1, 32, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335)
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ---------------------------------------------------------------------------- binning


def day_of_year_counts(day_of_year: np.ndarray) -> np.ndarray:
    """Footprints per day of year: an int64 array of length 367 indexed by day (1..366).

    Index 0 is always 0. Values must be whole numbers in 1..366 (integer or float
    dtype); anything else raises ValueError rather than being silently dropped.
    """
    doy = np.asarray(day_of_year).ravel()
    if doy.size == 0:
        return np.zeros(DAYS_PER_YEAR_MAX + 1, dtype=np.int64)
    if not np.issubdtype(doy.dtype, np.integer):
        if not np.issubdtype(doy.dtype, np.floating):
            raise ValueError(f"day_of_year must be numeric, got dtype {doy.dtype}")
        if not (np.all(np.isfinite(doy)) and np.all(doy == np.floor(doy))):
            raise ValueError("day_of_year must hold whole numbers (no NaN or fractions)")
    lo, hi = doy.min(), doy.max()
    if lo < 1 or hi > DAYS_PER_YEAR_MAX:
        raise ValueError(f"day_of_year must be in 1..{DAYS_PER_YEAR_MAX}, got range {lo}..{hi}")
    return np.bincount(doy.astype(np.intp), minlength=DAYS_PER_YEAR_MAX + 1).astype(np.int64)


def _regular_edges(lo: float, hi: float, cell_deg: float) -> np.ndarray:
    """Edges lo, lo+cell, ... covering [lo, hi]; the last edge is ≥ hi."""
    n = max(1, math.ceil((hi - lo) / cell_deg - 1e-9))
    return lo + cell_deg * np.arange(n + 1, dtype=np.float64)


def _bin_index(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bin index, inside mask) of x on regular `edges`, with np.histogram semantics:
    bins are [e_i, e_{i+1}) except the last, which also includes its right edge.

    Computed arithmetically (O(n), no search) and then corrected by one step where
    floating-point rounding put a value on the wrong side of an edge, so the result
    agrees exactly with comparisons against `edges`.
    """
    n = len(edges) - 1
    cell = (edges[-1] - edges[0]) / n
    inside = (x >= edges[0]) & (x <= edges[-1])  # False for NaN
    xi = np.where(inside, x, edges[0])
    i = np.clip(np.floor((xi - edges[0]) / cell), 0, n - 1).astype(np.intp)
    i -= xi < edges[i]
    i += (xi >= edges[i + 1]) & (i < n - 1)
    return i, inside


def density_grid(
    lat: np.ndarray,
    lon: np.ndarray,
    cell_deg: float,
    extent: tuple[float, float, float, float] = (-180.0, 180.0, -90.0, 90.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count footprints on a regular lat/lon grid.

    `extent` is (lon_min, lon_max, lat_min, lat_max); the edges start at the minimum
    and step by `cell_deg` (the last edge is ≥ the maximum). Bins are half-open
    [edge, next edge) except the last row/column, which also includes its upper edge,
    so lon = 180 and lat = 90 land in the last cell (same rule as np.histogram2d).
    Points outside the grid and non-finite coordinates are not counted.

    Returns (counts, lon_edges, lat_edges) with counts[int64] of shape
    (len(lat_edges) - 1, len(lon_edges) - 1), i.e. indexed [lat_row, lon_col].
    """
    if not cell_deg > 0:
        raise ValueError(f"cell_deg must be > 0, got {cell_deg}")
    lon_min, lon_max, lat_min, lat_max = (float(v) for v in extent)
    if not (lon_max > lon_min and lat_max > lat_min):
        raise ValueError(f"empty extent {extent}")
    lat = np.asarray(lat, dtype=np.float64).ravel()
    lon = np.asarray(lon, dtype=np.float64).ravel()
    if lat.shape != lon.shape:
        raise ValueError(f"lat and lon differ in length: {lat.size} vs {lon.size}")
    lon_edges = _regular_edges(lon_min, lon_max, cell_deg)
    lat_edges = _regular_edges(lat_min, lat_max, cell_deg)
    n_lon, n_lat = len(lon_edges) - 1, len(lat_edges) - 1
    if lat.size == 0:
        return np.zeros((n_lat, n_lon), dtype=np.int64), lon_edges, lat_edges
    i_lat, in_lat = _bin_index(lat, lat_edges)
    i_lon, in_lon = _bin_index(lon, lon_edges)
    keep = in_lat & in_lon
    flat = i_lat[keep] * n_lon + i_lon[keep]
    counts = np.bincount(flat, minlength=n_lat * n_lon).astype(np.int64)
    return counts.reshape(n_lat, n_lon), lon_edges, lat_edges


def zoom_extent(
    lat: np.ndarray, lon: np.ndarray
) -> tuple[tuple[float, float, float, float], float] | None:
    """The zoom window for footprints confined to a small region, or None.

    Returns ((lon_min, lon_max, lat_min, lat_max), cell_deg) when the finite
    footprints span at most ZOOM_MAX_SPAN_DEG, else None. The window contains every
    footprint with a margin, is roughly square on the ground (longitude stretched by
    1/cos(lat)), is snapped outward to multiples of `cell_deg`, and `cell_deg` is the
    coarsest "round" size that still gives ≥ 50 cells across it.
    """
    lat = np.asarray(lat, dtype=np.float64).ravel()
    lon = np.asarray(lon, dtype=np.float64).ravel()
    ok = np.isfinite(lat) & np.isfinite(lon)
    if not ok.any():
        return None
    lat, lon = lat[ok], lon[ok]
    lat_lo, lat_hi = float(lat.min()), float(lat.max())
    lon_lo, lon_hi = float(lon.min()), float(lon.max())
    if lon_hi - lon_lo > ZOOM_MAX_SPAN_DEG[0] or lat_hi - lat_lo > ZOOM_MAX_SPAN_DEG[1]:
        return None
    lat_c, lon_c = (lat_lo + lat_hi) / 2, (lon_lo + lon_hi) / 2
    coslat = max(math.cos(math.radians(lat_c)), 0.1)
    # Half-size of the (square on the ground) window, in degrees of latitude.
    half = max(0.55 * (lat_hi - lat_lo), 0.55 * (lon_hi - lon_lo) * coslat, _ZOOM_MIN_HALF_SPAN_DEG)
    cell = _ZOOM_CELL_LADDER_DEG[-1]
    for c in _ZOOM_CELL_LADDER_DEG:
        if 2 * half / c >= _ZOOM_MIN_CELLS:
            cell = c
            break
    y0 = max(-90.0, math.floor((lat_c - half) / cell) * cell)
    y1 = min(90.0, math.ceil((lat_c + half) / cell) * cell)
    x0 = max(-180.0, math.floor((lon_c - half / coslat) / cell) * cell)
    x1 = min(180.0, math.ceil((lon_c + half / coslat) / cell) * cell)
    return (x0, x1, y0, y1), cell


# ------------------------------------------------------------------------ land masks


@functools.lru_cache(maxsize=1)
def _shipped_land_mask() -> tuple[np.ndarray, float]:
    """The packaged land mask (row 0 at 90°N, column 0 at 180°W) and its cell size."""
    with np.load(Path(__file__).with_name("data") / "land_mask.npz") as data:
        rows, cols = (int(n) for n in data["shape"])
        land = np.unpackbits(data["land"], axis=1, count=cols).astype(bool)
        return land[:rows], float(data["cell_deg"])


def _land_mask(extent: tuple[float, float, float, float], step: float) -> np.ndarray:
    """is_land at the centres of a `step`-degree grid over extent, rows = ascending lat."""
    land, cell = _shipped_land_mask()
    x0, x1, y0, y1 = extent
    lons = np.clip(np.arange(x0 + step / 2, x1, step), -180, 180)
    lats = np.clip(np.arange(y0 + step / 2, y1, step), -90, 90)
    rows = np.clip(((90.0 - lats) / cell).astype(np.int64), 0, land.shape[0] - 1)
    cols = np.clip(((lons + 180.0) / cell).astype(np.int64), 0, land.shape[1] - 1)
    return land[np.ix_(rows, cols)]


@functools.lru_cache(maxsize=1)
def _world_land_mask() -> np.ndarray:
    """The world land mask at LAND_MASK_CELL_DEG, computed once per process."""
    mask = _land_mask((-180.0, 180.0, -90.0, 90.0), LAND_MASK_CELL_DEG)
    mask.setflags(write=False)
    return mask


_LAND_CMAP = ListedColormap([_OCEAN_COLOR, _LAND_COLOR])


def _draw_land(ax: Axes, mask: np.ndarray, extent: tuple[float, float, float, float]) -> None:
    ax.set_facecolor(_OCEAN_COLOR)
    ax.imshow(
        mask.astype(np.uint8),
        extent=extent,
        origin="lower",
        cmap=_LAND_CMAP,
        vmin=0,
        vmax=1,
        interpolation="nearest",
        zorder=0,
    )


# --------------------------------------------------------------------------- drawing


def _deg_formatter(pos_suffix: str, neg_suffix: str) -> FuncFormatter:
    def fmt(v: float, _pos: object) -> str:
        if v == 0:
            return "0°"
        return f"{abs(v):g}°{pos_suffix if v > 0 else neg_suffix}"

    return FuncFormatter(fmt)


def _draw_density(
    fig: Figure,
    ax: Axes,
    counts: np.ndarray,
    lon_edges: np.ndarray,
    lat_edges: np.ndarray,
    *,
    cbar_width: float,
    cbar_pad: float,
) -> None:
    """Counts as a log-coloured image, empty cells transparent, with a colorbar."""
    vmax = max(int(counts.max()), 2)
    image = ax.imshow(
        np.ma.masked_equal(counts, 0),
        extent=(lon_edges[0], lon_edges[-1], lat_edges[0], lat_edges[-1]),
        origin="lower",
        cmap=_CMAP,
        norm=LogNorm(vmin=1, vmax=vmax),
        interpolation="nearest",
        zorder=2,
    )
    # Colorbar as an inset so it is exactly as tall as the (aspect-locked) map.
    cax = ax.inset_axes((1.0 + cbar_pad, 0.0, cbar_width, 1.0))
    cbar = fig.colorbar(image, cax=cax)
    cbar.set_label("footprints per cell")
    if vmax <= 20:
        cbar.set_ticks([v for v in (1, 2, 3, 5, 10, 15, 20) if v <= vmax])
    cbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    cbar.ax.yaxis.set_minor_formatter(NullFormatter())


def _style_map(ax: Axes, extent: tuple[float, float, float, float], title: str) -> None:
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("Longitude")
    ax.set_ylabel("Latitude")
    ax.set_title(title, fontsize=10)
    ax.grid(True, color="#888888", linewidth=0.4, alpha=0.6, zorder=1)
    ax.set_axisbelow(False)


def _world_lat_limits(lat: np.ndarray) -> tuple[float, float]:
    """±60° unless footprints lie beyond, then widened in steps of 10°."""
    lo, hi = -60.0, 60.0
    finite = lat[np.isfinite(lat)]
    if finite.size:
        lo = max(-90.0, min(lo, math.floor(float(finite.min()) / 10) * 10))
        hi = min(90.0, max(hi, math.ceil(float(finite.max()) / 10) * 10))
    return lo, hi


def make_distribution_figure(
    lat: np.ndarray, lon: np.ndarray, day_of_year: np.ndarray, *, title: str
) -> Figure:
    """Build (but do not save) the two-panel distribution figure.

    Not attached to pyplot; it is freed once the caller drops the reference.
    The panels are the axes labelled "world", "zoom" (only for a small region) and
    "day_of_year" (see `Axes.get_label`); each map carries an inset colorbar.
    """
    lat = np.asarray(lat, dtype=np.float64).ravel()
    lon = np.asarray(lon, dtype=np.float64).ravel()
    doy = np.asarray(day_of_year).ravel()
    if not (lat.size == lon.size == doy.size):
        raise ValueError(
            f"lat, lon and day_of_year differ in length: {lat.size}, {lon.size}, {doy.size}"
        )
    n = lat.size
    # Accept 0..360 longitudes; keep -180..180 as given (180 stays in the last cell).
    outside = (lon < -180) | (lon > 180)
    if outside.any():
        lon = np.where(outside, (lon + 180.0) % 360.0 - 180.0, lon)
    day_counts = day_of_year_counts(doy)
    zoom = zoom_extent(lat, lon) if n else None

    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{title} — {n:,} footprint{'s' if n != 1 else ''}", fontsize=14)
    if zoom:
        grid = fig.add_gridspec(2, 2, height_ratios=(0.85, 1.0), width_ratios=(2.6, 1.0))
    else:
        grid = fig.add_gridspec(2, 1, height_ratios=(1.0, 0.85))
    ax_world = fig.add_subplot(grid[0, 0], label="world")
    ax_zoom = fig.add_subplot(grid[0, 1], label="zoom") if zoom else None
    ax_hist = fig.add_subplot(grid[1, :], label="day_of_year")

    # World view.
    world_lat = _world_lat_limits(lat)
    world_extent = (-180.0, 180.0, *world_lat)
    _draw_land(ax_world, _world_land_mask(), (-180.0, 180.0, -90.0, 90.0))
    world_title = (
        f"Footprint density ({WORLD_CELL_DEG:g}° cells; dashed: GEDI coverage ±{_GEDI_MAX_LAT}°"
    )
    if n:
        counts, lon_edges, lat_edges = density_grid(lat, lon, WORLD_CELL_DEG)
        _draw_density(fig, ax_world, counts, lon_edges, lat_edges, cbar_width=0.015, cbar_pad=0.01)
        rows, cols = np.nonzero(counts)
        if 0 < rows.size <= _WORLD_MARKER_MAX_CELLS:
            # A few scattered sites are single cells, invisible at world scale: circle them.
            centres_lon = (lon_edges[cols] + lon_edges[cols + 1]) / 2
            centres_lat = (lat_edges[rows] + lat_edges[rows + 1]) / 2
            ax_world.scatter(
                centres_lon,
                centres_lat,
                s=90,
                facecolors="none",
                edgecolors="#d62728",
                linewidths=1.2,
                zorder=3,
                label="occupied cells",
            )
            world_title += "; occupied cells circled"
    else:
        ax_world.text(
            0.5,
            0.5,
            "no footprints",
            transform=ax_world.transAxes,
            ha="center",
            va="center",
            fontsize=16,
            color="#444444",
            zorder=3,
        )
    for y in (-_GEDI_MAX_LAT, _GEDI_MAX_LAT):
        ax_world.axhline(y, color="#b04040", linewidth=0.6, linestyle=(0, (4, 3)), zorder=1)
    _style_map(ax_world, world_extent, world_title + ")")
    ax_world.set_xticks(np.arange(-180, 181, 30))
    ax_world.set_yticks(np.arange(world_lat[0], world_lat[1] + 1, 20))
    ax_world.xaxis.set_major_formatter(_deg_formatter("E", "W"))
    ax_world.yaxis.set_major_formatter(_deg_formatter("N", "S"))
    ax_world.set_aspect("equal")

    # Zoomed view of a small region.
    if zoom and ax_zoom is not None:
        extent, cell = zoom
        x0, x1, y0, y1 = extent
        step = max(_LAND_NATIVE_DEG, (y1 - y0) / 300.0)
        _draw_land(ax_zoom, _land_mask(extent, step), extent)
        counts, lon_edges, lat_edges = density_grid(lat, lon, cell, extent)
        _draw_density(fig, ax_zoom, counts, lon_edges, lat_edges, cbar_width=0.05, cbar_pad=0.03)
        zoom_title = f"Zoom on the footprints ({cell:g}° cells"
        if n <= _ZOOM_MARKER_MAX_POINTS:
            # Few footprints: circle each one so single cells cannot be missed.
            ax_zoom.scatter(
                lon, lat, s=40, facecolors="none", edgecolors="#d62728", linewidths=0.9, zorder=3
            )
            zoom_title += ", each circled"
        _style_map(ax_zoom, extent, zoom_title + ")")
        ax_zoom.ticklabel_format(useOffset=False)
        ax_zoom.tick_params(axis="x", labelrotation=30)
        ax_zoom.set_aspect(1.0 / max(math.cos(math.radians((y0 + y1) / 2)), 0.1))
        # Outline the zoom window on the world map, at least a few degrees wide so
        # it stays visible.
        pad = max(0.0, (3.0 - (x1 - x0)) / 2), max(0.0, (3.0 - (y1 - y0)) / 2)
        ax_world.add_patch(
            Rectangle(
                (x0 - pad[0], y0 - pad[1]),
                x1 - x0 + 2 * pad[0],
                y1 - y0 + 2 * pad[1],
                fill=False,
                edgecolor="#d62728",
                linewidth=1.2,
                zorder=3,
            )
        )

    # Day-of-year histogram.
    days_edges = np.arange(0.5, DAYS_PER_YEAR_MAX + 1)
    # One bar per day, [d - 0.5, d + 0.5), drawn as a single filled step artist (366
    # separate Rectangle patches would cost ~0.3 s per figure).
    ax_hist.stairs(day_counts[1:], edges=days_edges, fill=True, color="#3b6ea8", label="days")
    n_days = int(np.count_nonzero(day_counts[1:]))
    ax_hist.set_xlim(0.5, DAYS_PER_YEAR_MAX + 0.5)
    ax_hist.set_xticks([*_MONTH_STARTS, DAYS_PER_YEAR_MAX])
    ax_hist.set_xlabel("Day of year")
    ax_hist.set_ylabel("Footprints")
    ax_hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_hist.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax_hist.set_title(
        f"Footprints per day of year: {n:,} footprint{'s' if n != 1 else ''} on {n_days} "
        f"of {DAYS_PER_YEAR_MAX} days",
        fontsize=10,
    )
    ax_hist.grid(True, axis="y", color="#cccccc", linewidth=0.5)
    ax_hist.set_axisbelow(True)
    months = ax_hist.secondary_xaxis("top")
    months.set_xticks([s + 14 for s in _MONTH_STARTS], labels=_MONTH_NAMES)
    months.tick_params(length=0, labelsize=8, labelcolor="#555555")
    if n == 0:
        ax_hist.set_ylim(0, 1)
        ax_hist.text(
            0.5,
            0.5,
            "no footprints",
            transform=ax_hist.transAxes,
            ha="center",
            va="center",
            fontsize=16,
            color="#444444",
        )
    return fig


def plot_footprint_distribution(
    lat: np.ndarray,
    lon: np.ndarray,
    day_of_year: np.ndarray,
    path: str | Path,
    *,
    title: str,
) -> Path:
    """Write the footprint distribution PNG to `path` atomically and return `path`.

    Top: world map of footprint density (log colour scale, land from global-land-mask)
    and, when all footprints lie within ZOOM_MAX_SPAN_DEG, a panel zoomed on them.
    Bottom: footprints per day of year (1..366). Works for 0 footprints. The PNG is
    rendered to a temporary file in the target directory and os.replace()d onto
    `path`, so readers never see a partial file; the temporary file is removed on error.
    """
    path = Path(path)
    fig = make_distribution_figure(lat, lon, day_of_year, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        canvas = fig.canvas
        assert isinstance(canvas, FigureCanvasAgg)  # attached by make_distribution_figure
        canvas.print_png(tmp_name)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    finally:
        fig.clear()
    return path
