"""A gallery PNG of sample windows: one row per sample, one column per channel group.

Columns: true-colour RGB (B04/B03/B02, 2–98 % stretch per window, footprint disk
outlined), SCL (the standard ESA colours), elevation, slope, WorldCover (the official
class colours) and the AGBD disk; each row is labelled with the shot number, agbd and
the GEDI and Sentinel-2 dates.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from gedidata.domain.quality import SCL_CLASSES, WORLDCOVER_CLASSES
from gedidata.domain.schema import AGBD_NODATA, BAND_NAMES, COPDEM_NODATA, GROUP
from gedidata.store.atomic import atomic_output
from gedidata.store.samples_h5 import check_file

SCL_COLOURS: dict[int, str] = {
    0: "#000000",
    1: "#ff0000",
    2: "#2f2f2f",
    3: "#643200",
    4: "#00a000",
    5: "#ffe65a",
    6: "#0000ff",
    7: "#808080",
    8: "#c0c0c0",
    9: "#ffffff",
    10: "#64c8ff",
    11: "#ff96ff",
}
"""Sentinel-2 SCL colours as ESA's SNAP shows them."""

WORLDCOVER_COLOURS: dict[int, str] = {
    0: "#000000",
    10: "#006400",
    20: "#ffbb22",
    30: "#ffff4c",
    40: "#f096ff",
    50: "#fa0000",
    60: "#b4b4b4",
    70: "#f0f0f0",
    80: "#0064c8",
    90: "#0096a0",
    95: "#00cf75",
    100: "#fae6a0",
}
"""The official ESA WorldCover legend colours."""

SLOPE_MAX_SHOWN = 30.0
"""Slope colour scale, %: twice the default limit of the central pixels."""


def choose_samples(count: int, wanted: int, seed: int) -> np.ndarray:
    """`wanted` distinct sample indexes (all when fewer), drawn with `seed`, in order."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=min(wanted, count), replace=False))


def _categorical(colours: dict[int, str]) -> tuple[ListedColormap, BoundaryNorm]:
    values = sorted(colours)
    bounds = [v - 0.5 for v in values] + [values[-1] + 0.5]
    return ListedColormap([colours[v] for v in values]), BoundaryNorm(bounds, len(values))


def true_colour(window: np.ndarray) -> np.ndarray:
    """(32, 32, 3) floats in 0..1 from a (12, 32, 32) Sentinel-2 window, stretched 2–98 %."""
    rgb = np.stack([window[BAND_NAMES.index(b)] for b in ("B04", "B03", "B02")], axis=-1)
    rgb = rgb.astype(np.float64)
    valid = rgb[rgb > 0]
    if not valid.size:
        return np.zeros_like(rgb)
    low, high = np.percentile(valid, [2, 98])
    return np.clip((rgb - low) / max(high - low, 1.0), 0.0, 1.0)


def draw_gallery(path: str | Path, target: str | Path, samples: int = 8, seed: int = 0) -> Path:
    """Draw `samples` windows of the dataset file `path` into the PNG `target` (atomic)."""
    count = check_file(path)
    if not count:
        raise ValueError(f"{path} holds no samples: nothing to draw")
    chosen = choose_samples(count, samples, seed)
    with h5py.File(path, "r") as file:
        group = file[GROUP]
        s2 = group["Sentinel-2 L2A"][chosen]
        dem = group["CopDEM"][chosen]
        worldcover = group["WorldCover"][chosen]
        agbd_raster = group["AGBD Raster"][chosen]
        agbd = group["AGBD Values"][chosen][:, 0]
        shots = group["GEDI Shot Number"][chosen][:, 0]
        gedi_time = group["GEDI Acquisition Time"].asstr()[chosen][:, 0]
        products = group["Sentinel-2 Product Name"].asstr()[chosen][:, 0]
    scl_cmap, scl_norm = _categorical(SCL_COLOURS)
    wc_cmap, wc_norm = _categorical(WORLDCOVER_COLOURS)
    columns = ("true colour", "SCL", "elevation", "slope", "WorldCover", "AGBD disk")
    rows = len(chosen)
    # Figure + Agg canvas, not pyplot: no global state, never needs a display.
    fig = Figure(figsize=(2.0 * len(columns) + 1.6, 2.1 * rows + 1.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(columns), squeeze=False)
    agbd_max = float(np.max(agbd)) if len(agbd) else 1.0
    for row in range(rows):
        ax = axes[row]
        disk = agbd_raster[row, 0] != AGBD_NODATA
        ax[0].imshow(true_colour(s2[row]), interpolation="nearest")
        ax[0].contour(disk, levels=[0.5], colors="white", linewidths=1.0)
        ax[1].imshow(s2[row, 0], cmap=scl_cmap, norm=scl_norm, interpolation="nearest")
        elevation = np.ma.masked_equal(dem[row, 0], COPDEM_NODATA)
        ax[2].imshow(elevation, cmap="terrain", interpolation="nearest")
        ax[2].set_title(_range(elevation, "m"), fontsize=7, pad=2)
        slope = np.ma.masked_equal(dem[row, 1], COPDEM_NODATA)
        ax[3].imshow(slope, cmap="magma", vmin=0, vmax=SLOPE_MAX_SHOWN, interpolation="nearest")
        ax[3].set_title(_range(slope, "%"), fontsize=7, pad=2)
        ax[4].imshow(worldcover[row, 0], cmap=wc_cmap, norm=wc_norm, interpolation="nearest")
        ax[5].imshow(np.full((32, 32), 0.92), cmap="gray", vmin=0, vmax=1)
        ax[5].imshow(
            np.ma.masked_where(~disk, agbd_raster[row, 0]),
            cmap="viridis",
            vmin=0,
            vmax=agbd_max,
            interpolation="nearest",
        )
        ax[5].set_title(f"{agbd[row]:.1f} Mg/ha", fontsize=7, pad=2)
        date = products[row].split("_")[2][:8] if products[row].count("_") >= 2 else "?"
        ax[0].set_ylabel(
            f"shot {shots[row]}\nagbd {agbd[row]:.1f} Mg/ha\nGEDI {gedi_time[row][:10]}\nS2 {date}",
            fontsize=7,
            rotation=0,
            ha="right",
            va="center",
            labelpad=4,
        )
    for column, title in enumerate(columns):
        axes[0][column].annotate(
            title, (0.5, 1.22), xycoords="axes fraction", ha="center", fontsize=9, weight="bold"
        )
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    # legend: the known classes the drawn windows hold
    present_scl = [v for v in np.unique(s2[:, 0]).tolist() if v in SCL_COLOURS]
    present_wc = [v for v in np.unique(worldcover).tolist() if v in WORLDCOVER_COLOURS]
    handles = [Patch(color=SCL_COLOURS[v], label=f"SCL {v} {SCL_CLASSES[v]}") for v in present_scl]
    handles += [
        Patch(
            color=WORLDCOVER_COLOURS.get(v, "#000000"),
            label=f"WC {v} {WORLDCOVER_CLASSES.get(v, '?')}",
        )
        for v in present_wc
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    height = fig.get_figheight()
    fig.suptitle(
        f"{Path(path).name}: {rows} of {count:,} samples (seed {seed})",
        fontsize=11,
        y=1 - 0.2 / height,
    )
    fig.subplots_adjust(left=0.14, right=0.99, top=1 - 1.0 / height, bottom=0.9 / height,
                        wspace=0.08, hspace=0.35)  # fmt: skip
    target = Path(target)
    with atomic_output(target) as temporary:
        fig.savefig(temporary, dpi=110)
    return target


def _range(values: np.ma.MaskedArray, unit: str) -> str:
    if values.count() == 0:
        return "no data"
    return f"{values.min():.0f}–{values.max():.0f} {unit}"
