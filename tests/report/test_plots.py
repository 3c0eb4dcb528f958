"""Tests for gedidata.report.plots: exact binning helpers, figure contents and the PNG file."""

from __future__ import annotations

import gc
import struct
import weakref
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from gedidata.report import plots
from gedidata.report.plots import (
    FIGURE_DPI,
    FIGURE_SIZE_IN,
    day_of_year_counts,
    density_grid,
    make_distribution_figure,
    plot_footprint_distribution,
    zoom_extent,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_PX = (round(FIGURE_SIZE_IN[0] * FIGURE_DPI), round(FIGURE_SIZE_IN[1] * FIGURE_DPI))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header; asserts the file is a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def axes_by_label(fig) -> dict:
    return {ax.get_label(): ax for ax in fig.axes}


def two_clusters(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    half = n // 2
    lat = np.concatenate([rng.normal(48, 3, half), rng.normal(-5, 4, n - half)])
    lon = np.concatenate([rng.normal(10, 6, half), rng.normal(-62, 6, n - half)])
    doy = (np.round(rng.normal(200, 50, n)).astype(int) - 1) % 366 + 1
    return lat, lon, doy


# ------------------------------------------------------------------ day_of_year_counts


def test_day_of_year_counts_hand_computed():
    counts = day_of_year_counts(np.array([1, 1, 2, 366, 366, 366, 100]))
    assert counts.shape == (367,)
    assert counts.dtype == np.int64
    expected = np.zeros(367, dtype=np.int64)
    expected[1], expected[2], expected[100], expected[366] = 2, 1, 1, 3
    np.testing.assert_array_equal(counts, expected)
    assert counts[0] == 0


def test_day_of_year_counts_accepts_whole_floats_and_empty():
    np.testing.assert_array_equal(
        day_of_year_counts(np.array([366.0, 5.0])), day_of_year_counts(np.array([366, 5]))
    )
    empty = day_of_year_counts(np.array([], dtype=np.int64))
    assert empty.shape == (367,)
    assert empty.sum() == 0


@pytest.mark.parametrize("bad", [[0], [367], [-1], [1.5], [np.nan], [3, 400]], ids=str)
def test_day_of_year_counts_rejects_invalid(bad):
    with pytest.raises(ValueError):
        day_of_year_counts(np.array(bad))


# ------------------------------------------------------------------------ density_grid


def test_density_grid_hand_computed():
    # 1° cells over lon 0..3, lat 0..2 -> 2 rows x 3 columns.
    lat = np.array([0.5, 1.0, 2.0, 0.0, -0.1, np.nan, 1.5, 0.2])
    lon = np.array([0.5, 2.0, 3.0, 0.0, 1.0, 1.0, 3.0001, 1.999])
    counts, lon_edges, lat_edges = density_grid(lat, lon, 1.0, extent=(0, 3, 0, 2))
    np.testing.assert_array_equal(lon_edges, [0, 1, 2, 3])
    np.testing.assert_array_equal(lat_edges, [0, 1, 2])
    expected = np.array(
        [
            [2, 1, 0],  # (0.5,0.5), (0,0) | (0.2,1.999)
            [0, 0, 2],  # (1,2) on a lower edge -> upper cell; (2,3) on the max edges
        ]
    )
    np.testing.assert_array_equal(counts, expected)
    # lat -0.1, NaN and lon 3.0001 are outside / not finite: not counted.
    assert counts.sum() == 5


def test_density_grid_world_edges_land_in_a_cell():
    lat = np.array([0.1, 0.1, 90.0, -90.0, 51.6, -51.6])
    lon = np.array([-180.0, 180.0, 0.1, 0.1, 179.9, -179.9])
    counts, lon_edges, lat_edges = density_grid(lat, lon, 0.5)
    assert counts.shape == (360, 720)
    assert lon_edges[0] == -180 and lon_edges[-1] == 180
    assert lat_edges[0] == -90 and lat_edges[-1] == 90
    assert counts.sum() == 6
    row_eq = 180  # lat 0.1 is in [0, 0.5)
    assert counts[row_eq, 0] == 1  # lon -180 -> first column
    assert counts[row_eq, 719] == 1  # lon +180 -> last column
    assert counts[359, 360] == 1  # lat +90 -> last row (lon 0.1 -> column 360)
    assert counts[0, 360] == 1  # lat -90 -> first row
    assert counts[283, 719] == 1  # 51.6 in [51.5, 52.0)
    assert counts[76, 0] == 1  # -51.6 in [-52.0, -51.5)


def test_density_grid_matches_histogram2d_including_points_on_edges():
    rng = np.random.default_rng(3)
    n = 200_000
    lat = rng.uniform(-90, 90, n)
    lon = rng.uniform(-180, 180, n)
    # A third of the points exactly on (floating-point) grid edges, where rounding bites.
    k = n // 3
    lat[:k] = -90 + 0.1 * rng.integers(0, 1801, k)
    lon[:k] = -180 + 0.1 * rng.integers(0, 3601, k)
    for cell in (0.1, 0.25, 0.5, 1.0):
        counts, lon_edges, lat_edges = density_grid(lat, lon, cell)
        ref, _, _ = np.histogram2d(lat, lon, bins=[lat_edges, lon_edges])
        np.testing.assert_array_equal(counts, ref.astype(np.int64))
        assert counts.sum() == n


def test_density_grid_empty_and_invalid_arguments():
    counts, lon_edges, lat_edges = density_grid(np.array([]), np.array([]), 1.0)
    assert counts.shape == (180, 360)
    assert counts.sum() == 0
    assert (lon_edges[0], lon_edges[-1], lat_edges[0], lat_edges[-1]) == (-180, 180, -90, 90)
    with pytest.raises(ValueError):
        density_grid(np.array([1.0]), np.array([1.0, 2.0]), 1.0)
    with pytest.raises(ValueError):
        density_grid(np.array([1.0]), np.array([1.0]), 0.0)
    with pytest.raises(ValueError):
        density_grid(np.array([1.0]), np.array([1.0]), 1.0, extent=(1, 1, 0, 1))


# ------------------------------------------------------------------------- zoom_extent


def test_zoom_extent_none_for_widely_spread_footprints():
    lat, lon, _ = two_clusters(1000)
    assert zoom_extent(lat, lon) is None
    assert zoom_extent(np.array([np.nan]), np.array([np.nan])) is None
    assert zoom_extent(np.array([]), np.array([])) is None


def test_zoom_extent_small_box_contains_all_points():
    rng = np.random.default_rng(1)
    lat = rng.uniform(46.0, 46.5, 5000)
    lon = rng.uniform(7.2, 7.7, 5000)
    zoom = zoom_extent(lat, lon)
    assert zoom is not None
    (x0, x1, y0, y1), cell = zoom
    assert cell == 0.01
    assert x0 < lon.min() and lon.max() < x1
    assert y0 < lat.min() and lat.max() < y1
    assert 50 <= (y1 - y0) / cell <= 100
    counts, _, _ = density_grid(lat, lon, cell, (x0, x1, y0, y1))
    assert counts.sum() == lat.size


def test_zoom_extent_single_point():
    zoom = zoom_extent(np.array([-3.1]), np.array([-60.2]))
    assert zoom is not None
    (x0, x1, y0, y1), cell = zoom
    assert x0 < -60.2 < x1 and y0 < -3.1 < y1
    assert cell <= 0.001
    assert y1 - y0 < 0.1


# ------------------------------------------------------------------------- land mask


def test_world_land_mask_is_cached_and_plausible():
    mask = plots._world_land_mask()
    assert mask is plots._world_land_mask()
    assert mask.shape == (720, 1440)  # 0.25°, rows from -90 upward
    assert 0.25 < mask.mean() < 0.4

    def at(lat, lon):
        return mask[int((lat + 90) / 0.25), int((lon + 180) / 0.25)]

    assert at(-5.0, -62.0)  # Amazon
    assert at(48.0, 10.0)  # central Europe
    assert not at(0.0, -150.0)  # Pacific
    assert not at(-30.0, 80.0)  # Indian Ocean


# -------------------------------------------------------------------- figure contents


def test_figure_panels_match_the_binned_data():
    lat, lon, doy = two_clusters(20_000)
    doy[:7] = 366
    fig = make_distribution_figure(lat, lon, doy, title="train")
    axes = axes_by_label(fig)
    assert set(axes) == {"world", "day_of_year"}  # spread out: no zoom panel
    assert fig.get_suptitle() == "train — 20,000 footprints"

    world = axes["world"]
    assert world.get_xlabel() == "Longitude"
    assert world.get_ylabel() == "Latitude"
    assert world.get_xlim() == (-180.0, 180.0)
    assert world.get_ylim() == (-60.0, 60.0)
    density = world.get_images()[-1]
    expected, _, _ = density_grid(lat, lon, plots.WORLD_CELL_DEG)
    shown = density.get_array()
    np.testing.assert_array_equal(shown.filled(0), expected)
    assert np.array_equal(np.ma.getmaskarray(shown), expected == 0)  # empty cells transparent
    assert density.norm.__class__.__name__ == "LogNorm"
    assert density.colorbar.ax.get_ylabel() == "footprints per cell"

    hist = axes["day_of_year"]
    assert hist.get_xlabel() == "Day of year"
    assert hist.get_ylabel() == "Footprints"
    (steps,) = [p for p in hist.patches if p.get_label() == "days"]
    heights, edges, baseline = steps.get_data()
    assert len(heights) == 366  # one bar per day 1..366, each [d - 0.5, d + 0.5)
    np.testing.assert_array_equal(edges, np.arange(0.5, 367))
    assert baseline == 0
    np.testing.assert_array_equal(heights, day_of_year_counts(doy)[1:])
    assert heights[-1] >= 7  # day 366 shown
    assert hist.get_xlim() == (0.5, 366.5)
    n_days = int(np.count_nonzero(heights))
    assert f"20,000 footprints on {n_days} of 366 days" in hist.get_title()


def test_figure_adds_zoom_panel_for_a_small_region():
    rng = np.random.default_rng(2)
    lat = rng.uniform(38.5, 39.0, 3000)
    lon = rng.uniform(-9.5, -9.0, 3000)
    doy = rng.integers(1, 367, 3000)
    fig = make_distribution_figure(lat, lon, doy, title="test")
    axes = axes_by_label(fig)
    assert set(axes) == {"world", "zoom", "day_of_year"}
    (x0, x1, y0, y1), cell = zoom_extent(lat, lon)
    zoom = axes["zoom"]
    assert zoom.get_xlim() == (x0, x1)
    assert zoom.get_ylim() == (y0, y1)
    density = zoom.get_images()[-1]
    expected, _, _ = density_grid(lat, lon, cell, (x0, x1, y0, y1))
    np.testing.assert_array_equal(density.get_array().filled(0), expected)
    assert expected.sum() == 3000
    assert density.colorbar.ax.get_ylabel() == "footprints per cell"
    assert zoom.get_xlabel() == "Longitude"


def test_scattered_sites_are_circled_on_the_world_map():
    # four 6 km sites far apart (the demo's): single 0.5° cells, invisible unless marked
    sites = [(47.8, 7.6), (-5.08, -58.05), (-16.8, 179.97), (36.08, 51.45)]
    lat = np.repeat([site[0] for site in sites], 50)
    lon = np.repeat([site[1] for site in sites], 50)
    fig = make_distribution_figure(lat, lon, np.full(200, 190), title="test")
    world = axes_by_label(fig)["world"]
    assert "occupied cells circled" in world.get_title()
    (markers,) = world.collections
    expected = [(7.75, 47.75), (-58.25, -5.25), (179.75, -16.75), (51.25, 36.25)]
    assert sorted(map(tuple, markers.get_offsets().data)) == sorted(expected)
    # many occupied cells: the density colours speak for themselves
    lat, lon, doy = two_clusters(5000)
    crowded = axes_by_label(make_distribution_figure(lat, lon, doy, title="t"))["world"]
    assert not crowded.collections and "circled" not in crowded.get_title()


def test_figure_wraps_0_360_longitudes():
    fig = make_distribution_figure(
        np.array([10.2, 10.2]), np.array([190.2, -169.8]), np.array([1, 2]), title="w"
    )
    shown = axes_by_label(fig)["world"].get_images()[-1].get_array().filled(0)
    assert shown.sum() == 2
    assert shown[int((10.2 + 90) / 0.5), int((-169.8 + 180) / 0.5)] == 2


def test_figure_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        make_distribution_figure(np.zeros(2), np.zeros(2), np.ones(3, dtype=int), title="x")


# -------------------------------------------------------------------------- PNG output


def test_writes_png_of_expected_size_and_leaves_no_temp_file(tmp_path):
    lat, lon, doy = two_clusters(5000)
    target = tmp_path / "train_distribution_subset.png"
    result = plot_footprint_distribution(lat, lon, doy, target, title="train")
    assert result == target
    assert png_size(target) == EXPECTED_PX
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_zero_points_writes_a_no_footprints_figure(tmp_path):
    empty = np.array([])
    fig = make_distribution_figure(empty, empty, empty.astype(int), title="empty")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no footprints" in texts
    assert fig.get_suptitle() == "empty — 0 footprints"

    target = tmp_path / "empty.png"
    plot_footprint_distribution(empty, empty, empty.astype(int), str(target), title="empty")
    assert png_size(target) == EXPECTED_PX
    assert [p.name for p in tmp_path.iterdir()] == ["empty.png"]


def test_one_point_including_day_366(tmp_path):
    target = tmp_path / "one.png"
    plot_footprint_distribution(
        np.array([-3.1]), np.array([-60.2]), np.array([366]), target, title="one"
    )
    assert png_size(target) == EXPECTED_PX
    fig = make_distribution_figure(np.array([-3.1]), np.array([-60.2]), np.array([366]), title="o")
    assert fig.get_suptitle() == "o — 1 footprint"
    assert "zoom" in axes_by_label(fig)


def test_replaces_existing_file_and_cleans_up_on_failure(tmp_path, monkeypatch):
    lat, lon, doy = two_clusters(100)
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    plot_footprint_distribution(lat, lon, doy, target, title="t")
    assert png_size(target) == EXPECTED_PX
    good = target.read_bytes()

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(FigureCanvasAgg, "print_png", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_footprint_distribution(lat, lon, doy, target, title="t")
    assert target.read_bytes() == good  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # no temp file left


def test_figures_are_freed_after_each_call(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    made = []
    original = plots.make_distribution_figure

    def recording(*args, **kwargs):
        fig = original(*args, **kwargs)
        made.append(weakref.ref(fig))
        return fig

    monkeypatch.setattr(plots, "make_distribution_figure", recording)
    lat, lon, doy = two_clusters(2000)
    for _ in range(3):
        plot_footprint_distribution(lat, lon, doy, tmp_path / "p.png", title="t")
    gc.collect()
    assert len(made) == 3
    assert all(ref() is None for ref in made)  # nothing keeps the figures alive
    assert plt.get_fignums() == []  # never registered with pyplot
