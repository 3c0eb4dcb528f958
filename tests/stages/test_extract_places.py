"""Stage 3 at awkward places, through `extract_split` on the served offline world.

A Sentinel-2 scene's no-data edge, a CopDEM 1° tile corner, WorldCover 3° tile edges,
the southern hemisphere and both sides of ±180°. Every expectation is independent of
the code under test: the generator's pixel functions (`GeneratedScene.expected`,
`gedidata.offline.pixels`) and GDAL's own warp (`rasterio.warp.reproject`) of the
WHOLE source files (whole bands; a VRT of whole DEM / WorldCover tiles) onto the grid
the sample's `Transforms` and `CRS` describe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import rasterio
from affine import Affine
from pyproj import Proj
from rasterio.enums import Resampling
from rasterio.windows import Window

from gedidata.config import PipelineConfig
from gedidata.domain.schema import BAND_NAMES
from gedidata.offline import pixels
from gedidata.offline.world import (
    GeneratedScene,
    World,
    default_test_world,
    dem_tile_name,
    worldcover_tile_name,
    write_world,
)
from gedidata.runtime.executor import SerialExecutor
from gedidata.sources.profiles import BAND_RESOLUTION, PLANETARY_COMPUTER, SourceProfile
from gedidata.stages.extract.driver import extract_split
from gedidata.store.samples_h5 import check_file, read_arrays
from tests.raster.test_reader import (
    centres,
    dem_kink_distance,
    gdal_reference,
    nearby_tiles,
    whole_tiles_vrt,
    worldcover_edge_distance,
    write_corner_world,
)
from tests.stages.test_extract import shot_row

PC = "planetary-computer"
SHAPE = (32, 32)
BANDS_10M = tuple(b for b in BAND_NAMES if BAND_RESOLUTION[b] == 10)
BANDS_COARSE = tuple(b for b in BAND_NAMES if BAND_RESOLUTION[b] in (20, 60))
WC_PIXEL_DEG = 3.0 / 36_000
FIGURES: dict[str, float] = {}
"""Largest differences found against the references (printed with ``-s``)."""


# ----------------------------------------------------------------------------- worlds


@pytest.fixture(scope="module", autouse=True)
def _print_figures():
    """Print the largest differences found against the references (seen with -s)."""
    yield
    for name, value in sorted(FIGURES.items()):
        print(f"\n{name}: {value:.6g}", end="")


FAR_WEST = (170.2, -16.85, 170.3, -16.75)
"""A region in the latitude band of the 60KZG scenes, far from 180°: its DEM and
WorldCover tiles must not be taken for windows at 180°."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    spec = default_test_world(tmp_path_factory.mktemp("world"))
    return write_world(replace(spec, extra_regions=(*spec.extra_regions, FAR_WEST)))


@pytest.fixture(scope="module")
def corner_world(tmp_path_factory) -> World:
    return write_corner_world(tmp_path_factory.mktemp("corner"))


def served(world: World, served_world_factory) -> SourceProfile:
    """The Planetary Computer profile pointed at the world's STAC API and file server."""
    served = served_world_factory(world.root, world.item_files(PC), world.collection_files(PC))
    return replace(PLANETARY_COMPUTER, stac_url=served.stac_url, gdal_env=served.gdal_env)


# ----------------------------------------------------------------------------- extract


def in_scene(scene: GeneratedScene, east_m: float, south_m: float) -> tuple[float, float]:
    """(lon, lat) of the point `east_m`, `south_m` from the scene's north-west corner."""
    west, _, _, north = scene.bounds
    lon, lat = scene.to_lonlat(west + east_m, north - south_m)
    return float(lon), float(lat)


@dataclass
class Extracted:
    outcome: dict[int, str]
    scene: dict[int, str]
    samples: dict[int, dict[str, np.ndarray]]


def extract(
    profile: SourceProfile, rows: list[dict[str, Any]], directory: Path, batch_size: int = 1
) -> Extracted:
    """Run stage 3 on `rows`; ledger and samples by shot number.

    By default one footprint per batch: each batch then finds its own DEM and
    WorldCover items, as a lone footprint would.
    """
    directory.mkdir(parents=True, exist_ok=True)
    subset = directory / "subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")
    config = PipelineConfig(output_dir=directory / "out", batch_size=batch_size, num_processors=1)
    result = extract_split(config, "train", subset, profile, SerialExecutor(), progress=False)
    ledger = pl.read_csv(result.ledger, separator=";")
    shots = ledger["shot_number"].to_list()
    samples: dict[int, dict[str, np.ndarray]] = {}
    for batch in sorted((directory / "out" / "train" / "hdf5_batch_data").glob("*.h5")):
        check_file(batch)
        arrays = read_arrays(batch)
        for i, shot in enumerate(arrays["GEDI Shot Number"][:, 0]):
            samples[int(shot)] = {name: values[i] for name, values in arrays.items()}
    return Extracted(
        dict(zip(shots, ledger["outcome"].to_list(), strict=True)),
        dict(zip(shots, [s or "" for s in ledger["scene"].to_list()], strict=True)),
        samples,
    )


# ----------------------------------------------------------------------------- references


def harmonized(values: np.ndarray, offset: int) -> np.ndarray:
    """SPEC §4 step 4 on stored DN: the offset removed, clipped at 0, no data (0) kept."""
    shifted = np.clip(values.astype(np.int64) - offset, 0, None)
    return np.where(values == 0, 0, shifted).astype(np.uint16)


def horn_percent(z: np.ndarray, spacing: float) -> np.ndarray:
    """Horn's slope (%) of the inner pixels of `z` (written out here, not imported)."""
    dzdx = z[:-2, 2:] + 2 * z[1:-1, 2:] + z[2:, 2:] - z[:-2, :-2] - 2 * z[1:-1, :-2] - z[2:, :-2]
    dzdy = z[2:, :-2] + 2 * z[2:, 1:-1] + z[2:, 2:] - z[:-2, :-2] - 2 * z[:-2, 1:-1] - z[:-2, 2:]
    return 100.0 * np.hypot(dzdx, dzdy) / (8.0 * spacing)


def record(name: str, value: float) -> None:
    FIGURES[name] = max(FIGURES.get(name, 0.0), float(value))


def sample_window(sample: dict[str, np.ndarray], scene: GeneratedScene) -> tuple[Window, Affine]:
    """The sample's window on the scene's 10 m grid, from `Transforms` and `CRS` alone.

    Checks that they describe a north-up 10 m window at whole-pixel offsets of the
    scene's grid, with the footprint in the central 2 x 2 pixels.
    """
    assert sample["CRS"][0] == f"EPSG:{scene.epsg}"
    values = sample["Transforms"]
    assert values.dtype == np.float64 and values.shape == (9,)
    assert tuple(values[6:]) == (0.0, 0.0, 1.0)
    transform = Affine(*values[:6])
    assert (transform.a, transform.b, transform.d, transform.e) == (10.0, 0.0, 0.0, -10.0)
    grid = scene.transform("B02")
    col, row = (transform.c - grid.c) / 10.0, (grid.f - transform.f) / 10.0
    assert col == round(col) and row == round(row)  # whole pixels: no resampling of 10 m
    lat, lon = sample["GEDI Lat Lon"]
    x, y = scene.from_lonlat(lon, lat)
    assert 15 <= (x - transform.c) / 10.0 < 17 and 15 <= (transform.f - y) / 10.0 < 17
    return Window(round(col), round(row), 32, 32), transform


def check_bands(world: World, scene: GeneratedScene, sample: dict[str, np.ndarray]) -> None:
    """10 m bands bit-exact to the generator, 20/60 m bands and SCL as GDAL warps them."""
    window, transform = sample_window(sample, scene)
    bands = sample["Sentinel-2 L2A"]
    assert bands.dtype == np.uint16 and bands.shape == (12, 32, 32)
    assert sample["Sentinel-2 Offset Removed"][0] == scene.pc_offset
    assert sample["Sentinel-2 Processing Baseline"][0] == scene.processing_baseline
    assert sample["Sentinel-2 Product Name"][0] == scene.id
    for band in BANDS_10M:
        expected = harmonized(scene.expected(band, window), scene.pc_offset)
        np.testing.assert_array_equal(bands[BAND_NAMES.index(band)], expected, err_msg=band)
    for band in ("SCL", *BANDS_COARSE):
        with rasterio.open(world.root / scene.asset_path(band)) as dataset:
            method = Resampling.nearest if band == "SCL" else Resampling.bilinear
            raw = gdal_reference(
                rasterio.band(dataset, 1), transform, scene.crs, method, dataset.dtypes[0], 0
            )
        got = bands[BAND_NAMES.index(band)]
        if band == "SCL":
            np.testing.assert_array_equal(got, raw)
            continue
        reference = harmonized(raw, scene.pc_offset)
        np.testing.assert_array_equal(got == 0, reference == 0, err_msg=band)
        difference = np.abs(got.astype(np.int64) - reference.astype(np.int64)).max()
        record(f"S2 {BAND_RESOLUTION[band]} m vs GDAL (DN)", difference)
        assert difference <= 1, band


def check_dem_and_worldcover(
    world: World, scene: GeneratedScene, sample: dict[str, np.ndarray], tmp_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """CopDEM and WorldCover against GDAL's warp of the tiles and the generator.

    Returns the pixel centres' (lon, lat) in [-180, 180).
    """
    _, transform = sample_window(sample, scene)
    crs = sample["CRS"][0]
    lon, lat = scene.to_lonlat(*centres(transform))
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    lat = np.asarray(lat)
    lon0, lat0 = float(sample["GEDI Lat Lon"][1]), float(sample["GEDI Lat Lon"][0])
    tag = f"{sample['GEDI Shot Number'][0]}"

    # Elevation: the VRT of the whole tiles around (+-360 where they lie across 180°),
    # warped onto the window grown by one pixel, whose inner part is the window.
    elevation, slope = sample["CopDEM"]
    assert sample["CopDEM"].dtype == np.float32
    tiles = nearby_tiles(world.dem_tiles, lon0, lat0, 1, lambda t: world.root / t.pc_path)
    with rasterio.open(whole_tiles_vrt(tmp_path / f"dem_{tag}.vrt", tiles)) as vrt:
        grown = gdal_reference(
            rasterio.band(vrt, 1),
            transform @ Affine.translation(-1, -1),
            crs,
            Resampling.bilinear,
            np.float32,
            np.nan,
            (34, 34),
        )
    assert not np.isnan(grown).any()
    difference = np.abs(elevation - grown[1:-1, 1:-1]).max()
    record("elevation vs GDAL (m)", difference)
    assert difference <= 0.01
    # Slope: Horn's method on the reference (edge pixels from real neighbours) ...
    difference = np.abs(slope - horn_percent(grown.astype(np.float64), 10.0)).max()
    record("slope vs Horn of GDAL (%-points)", difference)
    assert difference <= 1e-4
    # ... and the analytic slope away from its kinks: within 0.1 % (relative), and
    # closer still once the ground gradient is put on the UTM grid (scale factor k).
    far = dem_kink_distance(lon, lat) > 50.0
    assert far.sum() > 100
    truth = pixels.dem_slope_percent(lon, lat)[far]
    relative = np.abs(slope[far] / truth - 1.0).max()
    record("slope vs analytic (relative)", relative)
    assert relative <= 1e-3
    k = Proj(crs).get_factors(lon[far], lat[far]).meridional_scale
    relative = np.abs(slope[far] / (truth / k) - 1.0).max()
    record("slope vs analytic / k (relative)", relative)
    assert relative <= 1e-4

    year = 2020 if int(sample["GEDI Acquisition Time"][0][:4]) <= 2020 else 2021
    wc = [t for t in world.worldcover_tiles if t.year == year]
    tiles = nearby_tiles(wc, lon0, lat0, 3, lambda t: world.root / t.path)
    with rasterio.open(whole_tiles_vrt(tmp_path / f"wc_{tag}.vrt", tiles)) as vrt:
        reference = gdal_reference(
            rasterio.band(vrt, 1), transform, crs, Resampling.nearest, np.uint8, 0
        )
    land = sample["WorldCover"]
    assert land.dtype == np.uint8 and land.shape == (1, 32, 32)
    assert (reference != 0).all()
    np.testing.assert_array_equal(land[0], reference)
    inner = worldcover_edge_distance(lon, lat) > 1.5 * WC_PIXEL_DEG
    assert inner.sum() > 100
    np.testing.assert_array_equal(land[0][inner], pixels.worldcover_class(lon, lat, year)[inner])

    # The tile names: every tile under the window's pixels, and no other.
    corners_lon, corners_lat = scene.to_lonlat(*np.meshgrid(
        transform.c + 10.0 * np.arange(33), transform.f - 10.0 * np.arange(33)
    ))  # fmt: skip
    corners_lon = (np.asarray(corners_lon) + 180.0) % 360.0 - 180.0
    under = {(math.floor(a), math.floor(b)) for a, b in zip(
        corners_lon.ravel(), np.asarray(corners_lat).ravel(), strict=True
    )}  # fmt: skip
    dem_names = sorted(dem_tile_name(a, b) for a, b in under)
    assert sample["CopDEM Tile Name"][0] == ",".join(dem_names)
    wc_names = sorted({worldcover_tile_name(3 * (a // 3), 3 * (b // 3), year) for a, b in under})
    assert sample["WorldCover Tile Name"][0] == ",".join(wc_names)
    return lon, lat


# ----------------------------------------------------------------------------- tests


def scene_on(world: World, tile: str, day: tuple[int, int, int]) -> GeneratedScene:
    return next(
        s for s in world.scenes if s.tile == tile and s.datetime.date() == datetime(*day).date()
    )


def test_window_at_a_scene_nodata_edge(world, served_world_factory, tmp_path):
    """The item footprint excludes the swath beyond the edge (SPEC §4 step 1), so a
    window across the edge has no candidate in that scene; one just inside is kept."""
    profile = served(world, served_world_factory)
    edge = scene_on(world, "32TMT", (2021, 7, 3))  # no-data edge, 05.00, eo:cloud_cover 0
    full = scene_on(world, "32TMT", (2021, 7, 8))  # 03.00, eo:cloud_cover 1.2, no edge
    assert edge.nodata_edge is not None and full.nodata_edge is None
    # Pixels are empty where east + south > 8,400 m (u + v > 1.4 of the 6 km scene).
    # Both windows lie 4,400-5,400 m south, a 3.6 % slope strip (see pixels.dem_strip).
    across = in_scene(edge, 3500.0, 4900.0)  # window cols 334-365, rows 474-505
    inside = in_scene(edge, 3187.0, 4877.0)  # window cols 303-334, rows 472-503
    rows = [
        shot_row(*across, edge.datetime - timedelta(days=6), 11),  # only the edge scene
        shot_row(*across, edge.datetime + timedelta(days=2), 12),  # the full scene too
        shot_row(*inside, edge.datetime, 13),
    ]
    got = extract(profile, rows, tmp_path)
    assert got.outcome == {11: "no_scene", 12: "ok", 13: "ok"}
    assert got.scene[12] == full.id and got.scene[13] == edge.id

    # The window across the edge: about half its pixels hold no data in the edge scene.
    window, _ = sample_window(got.samples[12], full)
    assert (window.col_off, window.row_off) == (334, 474)
    empty = edge.expected("B02", window) == 0
    assert 400 < empty.sum() < 624
    assert 100 < (edge.expected("SCL", Window(167, 237, 16, 16)) == 0).sum() < 156
    # Kept from the full scene instead, with data everywhere.
    check_bands(world, full, got.samples[12])
    assert (got.samples[12]["Sentinel-2 L2A"] != 0).all()

    # The window just inside: its south-east corner is 10 m (east + south) from the cut.
    sample = got.samples[13]
    window, transform = sample_window(sample, edge)
    assert (window.col_off, window.row_off) == (303, 472)
    check_bands(world, edge, sample)
    assert (sample["Sentinel-2 L2A"] != 0).all()  # every pixel centre is on this side
    stats = dict(sample["S2 SCL Stats"].tolist())
    assert stats["no_data"] == "0.0" and stats["vegetation"] == "1.0"
    # The 60 m bilinear kernels of its corner pixels reach 60 m pixels beyond the cut;
    # GDAL leaves them out of the weights: there B09 is the average of the valid ones.
    x, y = centres(transform)
    b09 = sample["Sentinel-2 L2A"][BAND_NAMES.index("B09")].astype(np.float64)
    u, v = (x - edge.bounds[0]) / 60.0 - 0.5, (edge.bounds[3] - y) / 60.0 - 0.5
    total, weight = np.zeros(SHAPE), np.zeros(SHAPE)
    reached = np.zeros(SHAPE, dtype=bool)
    for dc in (0, 1):
        for dr in (0, 1):
            cx = edge.bounds[0] + (np.floor(u) + dc + 0.5) * 60.0
            cy = edge.bounds[3] - (np.floor(v) + dr + 0.5) * 60.0
            w = np.abs(1 - dc - (u - np.floor(u))) * np.abs(1 - dr - (v - np.floor(v)))
            valid = ~pixels.scene_nodata(cx, cy, edge.nodata_edge)
            total += np.where(valid, w * pixels.s2_dn_exact("B09", cx, cy), 0.0)
            weight += np.where(valid, w, 0.0)
            reached |= ~valid
    assert reached.sum() == 6
    np.testing.assert_array_less(np.abs(b09 - total / weight)[reached], 0.5 + 1e-9)
    plain = pixels.s2_dn("B09", x, y)  # the ramp itself where every neighbour is valid
    np.testing.assert_array_equal(b09[~reached], plain[~reached])
    assert (b09[reached] != plain[reached]).sum() >= 3
    check_dem_and_worldcover(world, edge, sample, tmp_path)


@pytest.fixture(scope="module")
def corner_samples(corner_world, served_world_factory, tmp_path_factory) -> Extracted:
    """Footprints at 9°E 48°N (four DEM and four WorldCover tiles), on 9°E (two of each),
    on 48°N (two of each) and just west of 9°E (one of each under the window)."""
    scene = corner_world.scenes[0]
    when = scene.datetime + timedelta(hours=3)
    rows = [
        shot_row(9.0, 48.0, when, 21),
        shot_row(9.0, 47.997, when, 22),
        shot_row(8.996, 48.0, when, 23),
        shot_row(9.0 - 0.00239, 47.998, when, 24),  # window ends ~20 m west of 9°E
    ]
    profile = served(corner_world, served_world_factory)
    return extract(profile, rows, tmp_path_factory.mktemp("corner_extract"))


def test_window_at_a_copdem_tile_corner(corner_world, corner_samples, tmp_path):
    """Elevation and slope mosaicked from four 1° tiles, as GDAL warps their VRT."""
    world, scene = corner_world, corner_world.scenes[0]
    assert corner_samples.outcome[21] == "ok"
    sample = corner_samples.samples[21]
    check_bands(world, scene, sample)
    lon, lat = check_dem_and_worldcover(world, scene, sample, tmp_path)
    quadrants = {
        (bool(a), bool(b)) for a, b in zip((lon >= 9).ravel(), (lat >= 48).ravel(), strict=True)
    }
    assert len(quadrants) == 4  # the window's pixels lie in all four DEM tiles
    assert sample["CopDEM Tile Name"][0].count(",") == 3


@pytest.mark.parametrize("shot", [22, 23], ids=["meridian 9°E", "parallel 48°N"])
def test_window_across_a_worldcover_tile_edge(corner_world, corner_samples, tmp_path, shot):
    """WorldCover from two 3° tiles, exactly as GDAL's nearest-neighbour warp of both."""
    world, scene = corner_world, corner_world.scenes[0]
    assert corner_samples.outcome[shot] == "ok"
    sample = corner_samples.samples[shot]
    lon, lat = check_dem_and_worldcover(world, scene, sample, tmp_path)
    across = lon >= 9.0 if shot == 22 else lat >= 48.0
    assert 0 < across.sum() < across.size  # pixels on both sides of the edge
    assert sample["WorldCover Tile Name"][0].count(",") == 1


def test_southern_hemisphere(world, served_world_factory, tmp_path):
    """21MUQ: EPSG:32721, northings with the 10,000,000 m false northing."""
    profile = served(world, served_world_factory)
    scene = scene_on(world, "21MUQ", (2021, 6, 4))  # 05.00 (+1000 removed), cloud 4
    rows = [
        shot_row(*in_scene(scene, 3005.0, 2995.0), scene.datetime, 41),
        shot_row(*in_scene(scene, 707.0, 5503.0), scene.datetime - timedelta(days=2), 42),
    ]
    got = extract(profile, rows, tmp_path)
    assert got.outcome == {41: "ok", 42: "ok"}
    for shot in (41, 42):
        sample = got.samples[shot]
        assert sample["CRS"][0] == "EPSG:32721"
        _, transform = sample_window(sample, scene)
        assert 9_000_000 < transform.f < 10_000_000 and sample["GEDI Lat Lon"][0] < 0
        check_bands(world, scene, sample)
        check_dem_and_worldcover(world, scene, sample, tmp_path)


@pytest.mark.parametrize("batch_size", [1, 4], ids=["a batch each", "one batch"])
def test_both_sides_of_the_antimeridian(world, served_world_factory, tmp_path, batch_size):
    """60KZG straddles 180°: windows west of it, east of it, and across it.

    A lone footprint on one side must still find the tiles of the other side; a batch
    with footprints on both sides must not take the tiles of the whole latitude band.
    """
    profile = served(world, served_world_factory)
    new = scene_on(world, "60KZG", (2021, 3, 15))  # 05.00
    old = scene_on(world, "60KZG", (2020, 3, 10))  # 02.14
    assert new.crosses_antimeridian and new.epsg == 32760
    assert "Copernicus_DSM_COG_10_S17_00_E170_00_DEM" in {t.name for t in world.dem_tiles}
    lat = -16.8117  # the 3.6 % slope strip (at -16.8 it is 20 %: rejected)
    rows = [
        shot_row(179.997, lat, new.datetime, 51),
        shot_row(-179.997, lat, new.datetime, 52),
        shot_row(-179.9999, lat, old.datetime, 53),
        shot_row(179.9999, lat, new.datetime, 54),
    ]
    got = extract(profile, rows, tmp_path, batch_size)
    assert got.outcome == {51: "ok", 52: "ok", 53: "ok", 54: "ok"}
    sides = ((51, new, "west"), (52, new, "east"), (53, old, "across"), (54, new, "across"))
    for shot, scene, side in sides:
        sample = got.samples[shot]
        check_bands(world, scene, sample)
        lon, _ = check_dem_and_worldcover(world, scene, sample, tmp_path)
        east_of_180 = int((lon < 0).sum())  # pixels east of 180° (negative longitudes)
        assert {"west": east_of_180 == 0, "east": east_of_180 == 1024,
                "across": 0 < east_of_180 < 1024}[side]  # fmt: skip
    assert got.samples[51]["CopDEM Tile Name"][0] == "Copernicus_DSM_COG_10_S17_00_E179_00_DEM"
    assert got.samples[52]["CopDEM Tile Name"][0] == "Copernicus_DSM_COG_10_S17_00_W180_00_DEM"


def test_window_beside_a_copdem_tile_edge(corner_world, corner_samples, tmp_path):
    """A window that ends 20 m short of 9°E: its pixels lie in the western DEM tile alone,
    but the bilinear kernels of its eastern pixels (and the slope's extra column) reach
    the first pixels of the eastern tile, so both are read, as GDAL warps their VRT;
    only the tile under the window is named."""
    world, scene = corner_world, corner_world.scenes[0]
    assert corner_samples.outcome[24] == "ok"
    sample = corner_samples.samples[24]
    lon, _ = check_dem_and_worldcover(world, scene, sample, tmp_path)
    _, transform = sample_window(sample, scene)
    grown_lon, _ = scene.to_lonlat(*centres(transform @ Affine.translation(-1, -1), (34, 34)))
    last_west_pixel = 9.0 - 1.0 / 3600  # CopDEM pixel centres lie on whole arc-seconds
    assert lon.max() < 9.0 and np.asarray(grown_lon).max() > last_west_pixel
    assert sample["CopDEM Tile Name"][0] == "Copernicus_DSM_COG_10_N47_00_E008_00_DEM"
