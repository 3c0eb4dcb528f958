"""Windowed reads (gedidata.raster.reader) on the generated world: exact values, few bytes.

Every expectation is independent of the reader: the generator's analytic pixel
functions (`gedidata.offline.pixels`) and GDAL's own warp of the WHOLE source rasters
(whole bands; a VRT of whole DEM / WorldCover tiles) onto the same 32 x 32 grid.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from gedidata.domain.geometry import PixelWindow, window_for_point
from gedidata.offline import pixels
from gedidata.offline.mgrs import mgrs_tiles_covering
from gedidata.offline.world import (
    GeneratedScene,
    SceneSpec,
    World,
    WorldSpec,
    anchor_around,
    default_test_world,
    write_world,
)
from gedidata.raster.reader import (
    PREFETCH_BLOCKS,
    _column_runs,
    _warp_inside_tiles,
    read_dem_with_slope,
    read_dem_with_slope_many,
    read_exact,
    read_exact_many,
    read_mosaic,
    read_mosaic_many,
    read_resampled,
    read_resampled_many,
    read_scl,
)
from gedidata.stages.extract.driver import CLOUD_OPTIMIZED_GDAL

PC = "planetary-computer"
BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
BANDS_60M = ("B01", "B09")
SHAPE = (32, 32)
WC_PIXEL_DEG = 3.0 / 36_000


# ----------------------------------------------------------------------------- worlds


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return write_world(default_test_world(tmp_path_factory.mktemp("world")))


def write_corner_world(root: Path, tile: str = "32TMU") -> World:
    """A 1.2 km scene around 9°E 48°N: the corner of four DEM and four WorldCover tiles.

    32TMU, not 32UNU: 9°E is only 20 m from 32UNU's west edge, so no window there would
    lie inside a scene of that tile.
    """
    assert tile in mgrs_tiles_covering(9.0, 48.0)
    scene = SceneSpec(
        tile,
        datetime(2020, 7, 1, 10, 30, tzinfo=UTC),
        anchor_m=anchor_around(tile, 9.0, 48.0, 1200),
    )
    spec = WorldSpec(
        root, [scene], tile_size_m=1200, worldcover_years=(2020,), worldcover_overviews=False
    )
    return write_world(spec)


@pytest.fixture(scope="module")
def corner_world(tmp_path_factory) -> World:
    return write_corner_world(tmp_path_factory.mktemp("corner"))


# ----------------------------------------------------------------------------- helpers


def centres(transform: Affine, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """x, y (2-D) of the pixel centres of a north-up grid."""
    rows, cols = shape
    x = transform.c + (np.arange(cols) + 0.5) * transform.a
    y = transform.f + (np.arange(rows) + 0.5) * transform.e
    return np.meshgrid(x, y)


def window_at(scene: GeneratedScene, lon: float, lat: float) -> tuple[PixelWindow, Affine]:
    """The 32 x 32 window of the scene's 10 m grid around (lon, lat), and its transform."""
    x, y = scene.from_lonlat(lon, lat)
    return window_xy(scene, x, y)


def window_xy(scene: GeneratedScene, x: float, y: float) -> tuple[PixelWindow, Affine]:
    grid = scene.transform("B02")
    window = window_for_point(x, y, grid)
    return window, window.transform(grid)


def rio_window(window: PixelWindow) -> Window:
    return Window(window.col_off, window.row_off, window.width, window.height)


def gdal_reference(
    source, dst_transform, dst_crs, resampling, dtype, nodata, shape=SHAPE
) -> np.ndarray:
    """GDAL's warp of a whole raster (a `rasterio.band`) onto a north-up grid (32 x 32)."""
    out = np.full(shape, nodata, dtype=dtype)
    reproject(
        source,
        out,
        src_nodata=source.ds.nodata,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_nodata=nodata,
        resampling=resampling,
    )
    return out


def whole_tiles_vrt(path: Path, tiles: list[tuple[Path, float]]) -> Path:
    """A VRT that places whole tiles (file, longitude shift) side by side on one grid."""
    infos = []
    for file, shift in tiles:
        with rasterio.open(file) as ds:
            grid = Affine.translation(shift, 0.0) @ ds.transform
            infos.append((file, grid, ds.width, ds.height))
            dtype, nodata, crs = ds.dtypes[0], ds.nodata, ds.crs
    res_x, res_y = infos[0][1].a, infos[0][1].e
    west = min(t.c for _, t, _, _ in infos)
    north = max(t.f for _, t, _, _ in infos)
    east = max(t.c + w * t.a for _, t, w, _ in infos)
    south = min(t.f + h * t.e for _, t, _, h in infos)
    width, height = round((east - west) / res_x), round((south - north) / res_y)
    sources = []
    for file, t, w, h in infos:
        col = round((t.c - west) / res_x)
        row = round((t.f - north) / res_y)
        sources.append(
            f"<SimpleSource><SourceFilename>{escape(str(file))}</SourceFilename>"
            f"<SourceBand>1</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{col}" yOff="{row}" xSize="{w}" ySize="{h}"/></SimpleSource>'
        )
    gdal_type = {"float32": "Float32", "uint8": "Byte"}[dtype]
    nodata_xml = f"<NoDataValue>{nodata}</NoDataValue>" if nodata is not None else ""
    path.write_text(
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<SRS>{escape(crs.to_wkt())}</SRS>"
        f"<GeoTransform>{west!r}, {res_x!r}, 0, {north!r}, 0, {res_y!r}</GeoTransform>"
        f'<VRTRasterBand dataType="{gdal_type}" band="1">{nodata_xml}{"".join(sources)}'
        f"</VRTRasterBand></VRTDataset>"
    )
    return path


def nearby_tiles(tiles, lon: float, lat: float, size: float, path) -> list[tuple[Path, float]]:
    """(file, shift) of the tiles within one tile of (lon, lat), unwrapped around lon."""
    out = []
    for tile in tiles:
        for shift in (0.0, 360.0, -360.0):
            if (
                abs(tile.lon0 + size / 2 + shift - lon) < 1.5 * size
                and abs(tile.lat0 + size / 2 - lat) < 1.5 * size
            ):
                out.append((path(tile), shift))
    return out


def dem_reference(world: World, tmp_path: Path, lon, lat, dst_transform, crs) -> np.ndarray:
    tiles = nearby_tiles(world.dem_tiles, lon, lat, 1, lambda t: world.root / t.pc_path)
    vrt = whole_tiles_vrt(tmp_path / f"dem_{lon:.4f}_{lat:.4f}.vrt", tiles)
    with rasterio.open(vrt) as ds:
        return gdal_reference(
            rasterio.band(ds, 1), dst_transform, crs, Resampling.bilinear, np.float32, np.nan
        )


def worldcover_reference(world: World, tmp_path, lon, lat, year, dst_transform, crs):
    tiles = nearby_tiles(
        [t for t in world.worldcover_tiles if t.year == year],
        lon,
        lat,
        3,
        lambda t: world.root / t.path,
    )
    vrt = whole_tiles_vrt(tmp_path / f"wc_{year}_{lon:.4f}_{lat:.4f}.vrt", tiles)
    with rasterio.open(vrt) as ds:
        return gdal_reference(
            rasterio.band(ds, 1), dst_transform, crs, Resampling.nearest, np.uint8, 0
        )


def dem_kink_distance(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Ground distance (m) to the nearest slope kink of `pixels.dem_elevation`."""
    u = np.mod(pixels.meridian_arc(lat), pixels.DEM_STRIP_M)
    north = np.minimum(u, pixels.DEM_STRIP_M - u)
    r = np.mod(lon, 0.01)
    east_deg = np.minimum(r, 0.01 - r)
    east = np.radians(east_deg) * 6_378_137.0 * np.cos(np.radians(lat))
    return np.minimum(north, east)


def worldcover_edge_distance(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Distance in degrees to the nearest edge of a WorldCover class block."""
    block = pixels.WORLDCOVER_BLOCK_DEG
    r_lon, r_lat = np.mod(lon, block), np.mod(lat, block)
    return np.minimum(np.minimum(r_lon, block - r_lon), np.minimum(r_lat, block - r_lat))


def open_all(stack: ExitStack, paths) -> list:
    return [stack.enter_context(rasterio.open(p)) for p in paths]


def check_dem_and_worldcover(world: World, tmp_path, scene, lon, lat, years=(2020, 2021)):
    """Elevation, slope and land cover of the window at (lon, lat) against the references.

    Returns the elevation (for further checks by the caller).
    """
    _, transform = window_at(scene, lon, lat)
    x, y = centres(transform)
    plon, plat = scene.to_lonlat(x, y)
    plon = (np.asarray(plon) + 180.0) % 360.0 - 180.0
    with ExitStack() as stack:
        dems = open_all(stack, [world.root / t.pc_path for t in world.dem_tiles])
        elevation, slope = read_dem_with_slope(dems, transform, scene.crs)
        assert elevation.shape == slope.shape == SHAPE
        assert elevation.dtype == slope.dtype == np.float32
        reference = dem_reference(world, tmp_path, lon, lat, transform, scene.crs)
        assert not np.isnan(reference).any()
        np.testing.assert_allclose(elevation, reference, rtol=0, atol=0.01)
        far = dem_kink_distance(plon, plat) > 50.0
        assert far.sum() > 100
        np.testing.assert_allclose(
            elevation[far], pixels.dem_elevation(plon, plat)[far], rtol=0, atol=0.01
        )
        np.testing.assert_allclose(
            slope[far], pixels.dem_slope_percent(plon, plat)[far], rtol=0, atol=0.1
        )
        for year in years:
            tiles = [t for t in world.worldcover_tiles if t.year == year]
            wcs = open_all(stack, [world.root / t.path for t in tiles])
            land = read_mosaic(wcs, transform, scene.crs, SHAPE, Resampling.nearest, np.uint8, 0)
            assert land.dtype == np.uint8
            expected = worldcover_reference(world, tmp_path, lon, lat, year, transform, scene.crs)
            np.testing.assert_array_equal(land, expected)
            inner = worldcover_edge_distance(plon, plat) > 1.5 * WC_PIXEL_DEG
            assert inner.sum() > 100
            truth = pixels.worldcover_class(plon, plat, year)
            np.testing.assert_array_equal(land[inner], truth[inner])
    return elevation


def scenes_of(world: World, tile: str) -> list[GeneratedScene]:
    return [s for s in world.scenes if s.tile == tile]


def clean_scene(world: World, tile: str) -> GeneratedScene:
    return next(s for s in scenes_of(world, tile) if s.nodata_edge is None)


def check_band(scene: GeneratedScene, dataset, band: str, transform) -> np.ndarray:
    """A 20/60 m band read onto the window against GDAL and the pixel formula.

    Returns the values; counts the pixels checked against the formula in ``FORMULA``.
    """
    got = read_resampled(dataset, transform, scene.crs)
    assert got.dtype == np.uint16 and got.shape == SHAPE
    reference = gdal_reference(
        rasterio.band(dataset, 1), transform, scene.crs, Resampling.bilinear, np.uint16, 0
    )
    assert np.abs(got.astype(int) - reference.astype(int)).max() <= 1, band
    np.testing.assert_array_equal(got == 0, reference == 0)
    # the formula holds away from folds, inside the raster, away from the no-data edge
    res = pixels.S2_BAND_RESOLUTION[band]
    x, y = centres(transform)
    west, south, east, north = scene.bounds
    inside = (x > west + res) & (x < east - res) & (y > south + res) & (y < north - res)
    if scene.nodata_edge is not None:
        e = scene.nodata_edge
        inside &= (x - e.x0) * e.nx + (y - e.y0) * e.ny < -2 * res
    exact = inside & (pixels.s2_fold_distance(band, x, y) > 70)
    formula = pixels.s2_dn(band, x, y) + np.uint16(scene.pc_offset)
    np.testing.assert_array_equal(got[exact], formula[exact])
    FORMULA[band] = FORMULA.get(band, 0) + int(exact.sum())
    return got


FORMULA: dict[str, int] = {}


# ----------------------------------------------------------------------------- Sentinel-2


def test_10m_bands_are_read_exactly(world):
    rng = np.random.default_rng(1)
    for scene in world.scenes:
        n = scene.shape("B02")[0]
        windows = [PixelWindow(int(c), int(r)) for c, r in rng.integers(0, n - 32, (2, 2))]
        windows += [PixelWindow(-10, 5), PixelWindow(n - 20, n - 7)]  # partly outside
        with ExitStack() as stack:
            for band in BANDS_10M:
                dataset = stack.enter_context(rasterio.open(world.root / scene.asset_path(band)))
                for window in windows:
                    got = read_exact(dataset, window)
                    assert got.dtype == np.uint16 and got.shape == SHAPE
                    expected = scene.expected(band, rio_window(window))
                    rows = window.row_off + np.arange(32)[:, None]
                    cols = window.col_off + np.arange(32)[None, :]
                    inside = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
                    np.testing.assert_array_equal(got[inside], expected[inside])
                    assert (got[~inside] == 0).all()


@pytest.mark.parametrize("tile", ["32TMT", "21MUQ", "60KZG", "39SWV"])
def test_20m_and_60m_bands_equal_gdal_and_the_formula(world, tile):
    scene = clean_scene(world, tile)
    FORMULA.clear()
    west, south, east, north = scene.bounds
    points = [
        ((west + east) / 2, (south + north) / 2),
        (west + 1234.0, north - 777.0),
        (west + 100.0, south + 60.0),  # poking out of the raster (south-west)
        (east - 50.0, north - 2000.0),  # poking out (east)
    ]
    with ExitStack() as stack:
        for band in BANDS_20M + BANDS_60M:
            dataset = stack.enter_context(rasterio.open(world.root / scene.asset_path(band)))
            for x, y in points:
                _, transform = window_xy(scene, x, y)
                check_band(scene, dataset, band, transform)
    assert all(FORMULA[band] > 1000 for band in BANDS_20M + BANDS_60M), FORMULA


def test_scl_nearest_equals_gdal_and_the_classes(world):
    checked = set()
    for scene in world.scenes:
        corners = [(r.xmin, r.ymin) for r in scene.features] + [
            (r.xmax, r.ymax) for r in scene.features
        ]
        if scene.nodata_edge is not None:
            e = scene.nodata_edge
            corners.append((e.x0 - 1000.0, e.y0 - 1000.0))  # on the cut line
        if not corners:
            continue
        with rasterio.open(world.root / scene.asset_path("SCL")) as dataset:
            for x, y in corners:
                _, transform = window_xy(scene, x + 3.0, y + 3.0)
                got = read_scl(dataset, transform, scene.crs)
                assert got.dtype == np.uint8 and got.shape == SHAPE
                reference = gdal_reference(
                    rasterio.band(dataset, 1), transform, scene.crs, Resampling.nearest, np.uint8, 0
                )
                np.testing.assert_array_equal(got, reference)
                px, py = centres(transform)
                truth = pixels.scl_class(px, py, scene.features, scene.nodata_edge)
                west, south, east, north = scene.bounds
                keep = (px > west) & (px < east) & (py > south) & (py < north)
                if scene.nodata_edge is not None:
                    e = scene.nodata_edge
                    keep &= np.abs((px - e.x0) * e.nx + (py - e.y0) * e.ny) > 15.0
                np.testing.assert_array_equal(got[keep], truth[keep])
                checked.update(np.unique(got).tolist())
    assert {0, 3, 4, 6, 9, 11} <= checked  # features, edges and no data were all read


@pytest.mark.parametrize("tile", ["32TMT", "21MUQ"])
def test_window_at_a_scene_nodata_edge(world, tile):
    """Partly beyond the swath edge: 10 m values are 0 there, the rest as GDAL has it."""
    scene = next(s for s in scenes_of(world, tile) if s.nodata_edge is not None)
    edge = scene.nodata_edge
    window, transform = window_xy(scene, edge.x0 - 1500.0, edge.y0 - 1500.0)
    with ExitStack() as stack:
        for band in BANDS_10M:
            dataset = stack.enter_context(rasterio.open(world.root / scene.asset_path(band)))
            got = read_exact(dataset, window)
            np.testing.assert_array_equal(got, scene.expected(band, rio_window(window)))
            assert 100 < (got == 0).sum() < 1000
        for band in BANDS_20M + BANDS_60M:
            dataset = stack.enter_context(rasterio.open(world.root / scene.asset_path(band)))
            got = check_band(scene, dataset, band, transform)
            assert 100 < (got == 0).sum() < 1000
        dataset = stack.enter_context(rasterio.open(world.root / scene.asset_path("SCL")))
        scl = read_scl(dataset, transform, scene.crs)
        reference = gdal_reference(
            rasterio.band(dataset, 1), transform, scene.crs, Resampling.nearest, np.uint8, 0
        )
        np.testing.assert_array_equal(scl, reference)
        assert 100 < (scl == 0).sum() < 1000


# ----------------------------------------------------------------------------- DEM, WorldCover


@pytest.mark.parametrize("tile", ["32TMT", "21MUQ", "39SWV"])
def test_dem_and_worldcover_on_the_window_grid(world, tmp_path, tile):
    """21MUQ is in the southern hemisphere (EPSG:32721)."""
    scene = clean_scene(world, tile)
    west, south, east, north = scene.bounds
    for x, y in [((west + east) / 2, (south + north) / 2), (west + 700.0, north - 4100.0)]:
        lon, lat = scene.to_lonlat(x, y)
        check_dem_and_worldcover(world, tmp_path, scene, lon, lat)


def test_dem_tile_corner_mosaics_four_tiles(corner_world, tmp_path):
    world = corner_world
    scene = world.scenes[0]
    assert len(world.dem_tiles) == 4
    elevation = check_dem_and_worldcover(world, tmp_path, scene, 9.0, 48.0, years=(2020,))
    assert not np.isnan(elevation).any()
    _, transform = window_at(scene, 9.0, 48.0)
    plon, plat = scene.to_lonlat(*centres(transform))
    quadrants = {
        (bool(a), bool(b)) for a, b in zip((plon >= 9).ravel(), (plat >= 48).ravel(), strict=True)
    }
    assert len(quadrants) == 4  # the window covers a corner of all four tiles
    with ExitStack() as stack:
        dems = open_all(stack, [world.root / t.pc_path for t in world.dem_tiles])
        full = read_mosaic(
            dems, transform, scene.crs, SHAPE, Resampling.bilinear, np.float32, np.nan
        )
        # (the slope reads a grid one pixel larger: same values up to float32 rounding)
        np.testing.assert_allclose(full, elevation, rtol=0, atol=1e-3)
        # the order of the tiles does not matter; every tile contributes
        reverse = read_mosaic(
            dems[::-1], transform, scene.crs, SHAPE, Resampling.bilinear, np.float32, np.nan
        )
        np.testing.assert_array_equal(reverse, full)
        for k in range(4):
            rest = dems[:k] + dems[k + 1 :]
            part = read_mosaic(
                rest, transform, scene.crs, SHAPE, Resampling.bilinear, np.float32, np.nan
            )
            assert np.isnan(part).sum() > 20


@pytest.mark.parametrize(
    ("lon", "lat", "n_tiles"),
    [(9.0, 47.997, 2), (8.996, 48.0, 2), (9.0, 48.0, 4)],
    ids=["meridian-9E", "parallel-48N", "corner"],
)
def test_worldcover_across_tile_edges(corner_world, tmp_path, lon, lat, n_tiles):
    world = corner_world
    scene = world.scenes[0]
    check_dem_and_worldcover(world, tmp_path, scene, lon, lat, years=(2020,))
    _, transform = window_at(scene, lon, lat)
    tiles = [t for t in world.worldcover_tiles if t.year == 2020]
    assert len(tiles) == 4
    with ExitStack() as stack:
        wcs = open_all(stack, [world.root / t.path for t in tiles])
        full = read_mosaic(wcs, transform, scene.crs, SHAPE, Resampling.nearest, np.uint8, 0)
        assert (full != 0).all()
        needed = 0
        for k in range(len(wcs)):
            part = read_mosaic(
                wcs[:k] + wcs[k + 1 :], transform, scene.crs, SHAPE, Resampling.nearest, np.uint8, 0
            )
            needed += bool((part == 0).any())
        assert needed == n_tiles


@pytest.mark.parametrize("lon", [179.997, 180.0, -179.9995, -179.997])
def test_antimeridian_windows_join_the_tiles_of_both_sides(world, tmp_path, lon):
    scene = clean_scene(world, "60KZG")
    assert scene.crosses_antimeridian and scene.epsg == 32760
    lat = -16.8
    elevation = check_dem_and_worldcover(world, tmp_path, scene, lon, lat)
    assert not np.isnan(elevation).any()
    _, transform = window_at(scene, lon, lat)
    plon, _ = scene.to_lonlat(*centres(transform))
    straddles = bool((np.asarray(plon) > 0).any() and (np.asarray(plon) < 0).any())
    with ExitStack() as stack:
        dems = open_all(stack, [world.root / t.pc_path for t in world.dem_tiles])
        names = [t.name for t in world.dem_tiles]
        east_of_180 = dems[names.index("Copernicus_DSM_COG_10_S17_00_W180_00_DEM")]
        west_of_180 = dems[names.index("Copernicus_DSM_COG_10_S17_00_E179_00_DEM")]

        def alone(tile):
            return read_mosaic(
                [tile], transform, scene.crs, SHAPE, Resampling.bilinear, np.float32, np.nan
            )

        west_part, east_part = alone(west_of_180), alone(east_of_180)
        if straddles:  # each tile gives its own side of 180°
            assert 0 < np.isnan(west_part).sum() < west_part.size
            assert 0 < np.isnan(east_part).sum() < east_part.size
            assert (np.isnan(west_part) != np.isnan(east_part)).all()
        else:  # one tile gives it all
            own, other = (west_part, east_part) if lon > 0 else (east_part, west_part)
            np.testing.assert_allclose(own, elevation, rtol=0, atol=1e-3)
            assert np.isnan(other).all()


# ----------------------------------------------------------------------------- over HTTP


def test_reads_over_http_equal_local_reads(world, served_world_factory):
    served = served_world_factory(world.root, world.item_files(PC), world.collection_files(PC))
    scene = clean_scene(world, "60KZG")
    window, transform = window_at(scene, 180.0, -16.8)

    def read_all(prefix) -> dict[str, np.ndarray]:
        with ExitStack() as stack:
            opened = lambda rel: stack.enter_context(rasterio.open(f"{prefix}/{rel}"))  # noqa: E731
            out = {
                "B04": read_exact(opened(scene.asset_path("B04")), window),
                "B11": read_resampled(opened(scene.asset_path("B11")), transform, scene.crs),
                "B09": read_resampled(opened(scene.asset_path("B09")), transform, scene.crs),
                "SCL": read_scl(opened(scene.asset_path("SCL")), transform, scene.crs),
            }
            dems = [opened(t.pc_path) for t in world.dem_tiles]
            out["elevation"], out["slope"] = read_dem_with_slope(dems, transform, scene.crs)
            wcs = [opened(t.path) for t in world.worldcover_tiles if t.year == 2021]
            out["worldcover"] = read_mosaic(
                wcs, transform, scene.crs, SHAPE, Resampling.nearest, np.uint8, 0
            )
            return out

    local = read_all(str(world.root))
    mark = served.file_server.log.mark()
    with rasterio.Env(**served.gdal_env):
        remote = read_all(served.files_url)
    for key, values in local.items():
        np.testing.assert_array_equal(remote[key], values, err_msg=key)
    gets = served.file_server.log.entries(since=mark, method="GET")
    assert gets and all(e["status"] == 206 and e["range"] for e in gets)
    # a DEM tile (1.2 MB, 4 x 4 internal tiles) costs its header and one internal tile
    for tile in world.dem_tiles:
        read = sum(e["bytes"] for e in gets if e["path"] == f"/{tile.pc_path}")
        assert read < 0.15 * (world.root / tile.pc_path).stat().st_size, tile.name
    assert not np.isnan(local["elevation"]).any()


def test_a_20m_band_over_http_reads_only_its_internal_tile(tmp_path_factory, file_server_factory):
    """A 1536 x 1536 20 m band has 2 x 2 internal tiles; a window costs the one it needs."""
    spec = WorldSpec(
        tmp_path_factory.mktemp("big"),
        [SceneSpec("32TMT", datetime(2021, 7, 8, 10, 30, tzinfo=UTC), processing_baseline="03.00")],
        tile_size_m=30_720,
        dem_tiles=(),
        worldcover_tiles=(),
        worldcover_years=(),
    )
    world = write_world(spec)
    scene = world.scenes[0]
    server = file_server_factory(world.root)
    rel = scene.asset_path("B11")
    path = world.root / rel
    with rasterio.open(path) as local:
        assert local.width == 1536 and local.block_shapes[0] == (1024, 1024)
        block_bytes = local.block_size(1, 1, 1)  # the lower-right internal tile
        block_offset = int(local.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        window = PixelWindow(2600, 2700)  # 10 m pixels: 20 m pixels 1300-1366, in tile (1, 1)
        transform = window.transform(scene.transform("B02"))
        expected = read_resampled(local, transform, scene.crs)
        reference = gdal_reference(
            rasterio.band(local, 1), transform, scene.crs, Resampling.bilinear, np.uint16, 0
        )
    assert np.abs(expected.astype(int) - reference.astype(int)).max() <= 1
    mark = server.log.mark()
    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(f"{server.url}/{rel}") as remote,
    ):
        got = read_resampled(remote, transform, scene.crs)
    np.testing.assert_array_equal(got, expected)
    entries = server.log.entries(since=mark, method="GET")
    read = sum(e["bytes"] for e in entries)
    chunk = 16384  # GDAL reads a 16 KiB header, then the tile in 16 KiB-aligned ranges
    assert 0 < read <= chunk + math.ceil(block_bytes / chunk + 1) * chunk
    # every range after the header touches the needed tile's bytes, none only another's
    first, last = block_offset, block_offset + block_bytes - 1
    for entry in entries[1:]:
        start, _, end = entry["range"].removeprefix("bytes=").partition("-")
        assert int(start) <= last and int(end) >= first, entry["range"]
    assert read < path.stat().st_size


def _noisy_cog(path: Path, seed: int = 5) -> np.ndarray:
    """A COG of 4 x 4 internal tiles of 512 x 512 noisy pixels, ~0.46 MB each (56 chunks
    of 8 KiB); its pixels."""
    data = np.random.default_rng(seed).integers(1000, 4000, (2048, 2048), dtype=np.uint16)
    profile = {
        "driver": "COG", "width": 2048, "height": 2048, "count": 1, "dtype": "uint16",
        "crs": "EPSG:32632", "transform": Affine(10.0, 0, 500_000.0, 0, -10.0, 5_200_000.0),
        "nodata": 0, "compress": "DEFLATE", "predictor": 2, "blocksize": 512,
        "overviews": "NONE",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as cog:
        cog.write(data, 1)
    return data


def test_column_runs_group_vertically_adjacent_blocks():
    """Blocks (row, col), repeated or not, fall into runs down one column, split at
    PREFETCH_BLOCKS; a gap or another column starts a new run."""
    rows = np.array([2, 0, 1, 2, 5, 0, 1, 3, 0])
    cols = np.array([0, 0, 0, 0, 0, 1, 1, 1, 3])
    run_of, runs = _column_runs(rows, cols)
    assert runs == [(0, 0, 2), (0, 5, 5), (1, 0, 1), (1, 3, 3), (3, 0, 0)]
    assert run_of.tolist() == [0, 0, 0, 0, 1, 2, 2, 3, 4]
    long = np.arange(PREFETCH_BLOCKS * 2 + 1)
    run_of, runs = _column_runs(long, np.full(len(long), 7))
    assert runs == [
        (7, 0, PREFETCH_BLOCKS - 1),
        (7, PREFETCH_BLOCKS, 2 * PREFETCH_BLOCKS - 1),
        (7, 2 * PREFETCH_BLOCKS, 2 * PREFETCH_BLOCKS),
    ]
    assert run_of.tolist() == (long // PREFETCH_BLOCKS).tolist()


def test_tiles_down_a_column_are_fetched_together(tmp_path, file_server_factory):
    """Windows over a column of internal tiles fetch those tiles in parallel requests
    (from a distant store, one round trip for all instead of one per tile)."""
    path = tmp_path / "column.tif"
    data = _noisy_cog(path)
    with rasterio.open(path) as local:
        spans = {
            i: (
                int(local.get_tag_item(f"BLOCK_OFFSET_1_{i}", "TIFF", bidx=1)),
                local.block_size(1, i, 1),
            )
            for i in range(4)
        }
    server = file_server_factory(tmp_path)
    windows = [PixelWindow(600, 100 + 512 * i) for i in range(4)]  # tiles (0..3, 1)
    with rasterio.Env(**CLOUD_OPTIMIZED_GDAL), rasterio.open(f"{server.url}/column.tif") as remote:
        server.delay("/column.tif", 0.3, count=100)  # every request after the header
        mark = server.log.mark()
        got = read_exact_many(remote, windows)
    server.reset()
    for k, window in enumerate(windows):
        rows, cols = window.row_off, window.col_off
        np.testing.assert_array_equal(got[k], data[rows : rows + 32, cols : cols + 32])
    entries = server.log.entries(since=mark, method="GET")
    served = {}
    for entry in entries:
        start, end = (int(v) for v in entry["range"].removeprefix("bytes=").split("-"))
        for i, (offset, size) in spans.items():
            if start <= offset and offset + size - 1 <= end:
                served[i] = entry
    assert sorted(served) == [0, 1, 2, 3]  # each tile whole in one response
    assert len(entries) <= 4
    # all four were being answered at one moment: requested together, not in turn
    assert max(e["t"] for e in served.values()) < min(e["t"] + e["dur"] for e in served.values())


def test_windows_over_neighbouring_tiles_fetch_each_tile_once(tmp_path, file_server_factory):
    """Internal tiles next to each other in the file, read one after the other, cost
    their own bytes: /vsicurl/ doubles a read that starts where its last download ended,
    which would fetch the tile after them too (this one is never needed)."""
    path = tmp_path / "noisy.tif"
    data = _noisy_cog(path)
    with rasterio.open(path) as local:
        tiles = {
            (i, j): (
                int(local.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=1)),
                local.block_size(1, i, j),
            )
            for i in range(4)
            for j in range(4)
        }
    # one after the other (a COG puts 4 bytes of size before a tile and 4 after it)
    assert tiles[0, 1][0] - (tiles[0, 0][0] + tiles[0, 0][1]) == 8
    server = file_server_factory(tmp_path)
    # windows across the edges of tiles (0, 0) | (0, 1) and (1, 0) | (1, 1): four
    # tiles, in pairs that lie one after the other in the file
    windows = [PixelWindow(500, 100), PixelWindow(490, 600)]
    mark = server.log.mark()
    with rasterio.Env(**CLOUD_OPTIMIZED_GDAL), rasterio.open(f"{server.url}/noisy.tif") as remote:
        got = read_exact_many(remote, windows)
    for k, window in enumerate(windows):
        rows, cols = window.row_off, window.col_off
        np.testing.assert_array_equal(got[k], data[rows : rows + 32, cols : cols + 32])
    needed = [(0, 0), (0, 1), (1, 0), (1, 1)]
    ranges = [
        tuple(int(v) for v in e["range"].removeprefix("bytes=").split("-"))
        for e in server.log.entries(since=mark, method="GET")
    ]
    # GDAL fixes the /vsicurl/ chunk size at its first use in a process: 8 KiB as
    # CLOUD_OPTIMIZED_GDAL sets it, or the default 16 KiB if another test came first
    chunk = 16384
    for (i, j), (offset, size) in tiles.items():
        fetched = sum(max(0, min(end, offset + size - 1) - max(start, offset) + 1)
                      for start, end in ranges)  # fmt: skip
        if (i, j) in needed:
            assert size <= fetched <= size + 2 * chunk, (i, j)  # chunk edges at most
        else:
            assert fetched <= chunk, (i, j)  # a chunk shared with a needed tile at most


def test_many_windows_equal_one_by_one(tmp_path):
    """The batched reads give each window exactly what a read of that window alone
    gives: windows clustered over internal-tile edges and corners, off the raster."""
    rng = np.random.default_rng(3)
    data = rng.integers(1, 12000, (300, 300), dtype=np.uint16)
    data[rng.random(data.shape) < 0.05] = 0  # nodata here and there
    path = tmp_path / "tiled.tif"
    grid20 = Affine(20.0, 0, 500_000.0, 0, -20.0, 5_200_000.0)
    with rasterio.open(path, "w", driver="GTiff", width=300, height=300, count=1,
                       dtype="uint16", crs="EPSG:32632", transform=grid20, nodata=0,
                       tiled=True, blockxsize=64, blockysize=64) as target:  # fmt: skip
        target.write(data, 1)
    grid10 = Affine(10.0, 0, 500_000.0, 0, -10.0, 5_200_000.0)
    offsets = [(-5, -7), (0, 0), (590, 580), (100, 110), (110, 100), (120, 3), (240, 250),
               (255, 255), (256, 250), (575, 10), (3, 590), (400, 128), (401, 129)]  # fmt: skip
    windows = [PixelWindow(c, r) for c, r in offsets]
    with rasterio.open(path) as dataset:
        # on its own grid (as a 10 m band): exactly the array, 0 off the raster
        many = read_exact_many(dataset, windows)
        pad = 340
        padded = np.pad(data, pad)
        for got, (c, r) in zip(many, offsets, strict=True):
            np.testing.assert_array_equal(
                got, padded[r + pad : r + pad + 32, c + pad : c + pad + 32]
            )
        # as a 20 m band under 10 m windows
        transforms = [window.transform(grid10) for window in windows]
        for resampling in (Resampling.bilinear, Resampling.nearest):
            many = read_resampled_many(dataset, transforms, "EPSG:32632", SHAPE, resampling)
            for got, transform in zip(many, transforms, strict=True):
                alone = read_resampled(dataset, transform, "EPSG:32632", SHAPE, resampling)
                np.testing.assert_array_equal(got, alone)


def write_geographic_tiles(
    root: Path,
    name: str,
    values: np.ndarray,
    res: float,
    nodata: float | None,
    west: float,
    north: float,
    split: int,
) -> list:
    """Two tiles side by side on one EPSG:4326 grid, cut at column ``split``."""  # fmt: skip
    paths = []
    for part, (c0, c1) in enumerate([(0, split), (split, values.shape[1])]):
        path = root / f"{name}_{part}.tif"
        grid = Affine(res, 0, west + c0 * res, 0, -res, north)
        profile = dict(driver="GTiff", width=c1 - c0, height=values.shape[0], count=1,
                       dtype=values.dtype, crs="EPSG:4326", transform=grid, nodata=nodata,
                       tiled=True, blockxsize=128, blockysize=128)  # fmt: skip
        with rasterio.open(path, "w", **profile) as target:
            target.write(values[:, c0:c1], 1)
        paths.append(path)
    return paths


def test_many_mosaic_windows_equal_gdal_one_by_one(tmp_path):
    """`read_mosaic_many` gives every window what GDAL's warp of that window alone gives
    (`read_mosaic`): on rough random terrain and random land-cover classes, where any
    difference in source coordinates would show, with nodata holes, a seam between two
    tiles and windows over the tiles' outer edge (those go to GDAL itself)."""
    rng = np.random.default_rng(11)
    west, north = 8.9, 48.1
    dem_res, wc_res = 1 / 3600, 1 / 12000
    dem = rng.uniform(200.0, 3000.0, (720, 720)).astype(np.float32)
    dem[rng.random(dem.shape) < 0.0002] = -32767.0  # isolated holes
    classes = np.array([10, 20, 30, 40, 50, 60, 80, 90, 95, 100], dtype=np.uint8)
    land = rng.choice(classes, (2400, 2400))
    land[rng.random(land.shape) < 0.00005] = 0
    dems = write_geographic_tiles(tmp_path, "dem", dem, dem_res, -32767.0, west, north, 360)
    wcs = write_geographic_tiles(tmp_path, "wc", land, wc_res, 0, west, north, 1200)
    crs = "EPSG:32632"
    lons = np.concatenate([rng.uniform(8.89, 9.11, 400), np.full(20, 9.0), np.full(10, 8.9)])
    lats = np.concatenate([rng.uniform(47.89, 48.11, 400), rng.uniform(47.95, 48.05, 30)])
    xs, ys = rasterio.warp.transform("EPSG:4326", crs, lons, lats)
    grid = Affine(10.0, 0, 400_000.0, 0, -10.0, 5_400_000.0)
    transforms = [window_for_point(x, y, grid).transform(grid) for x, y in zip(xs, ys, strict=True)]
    grown = [t @ Affine.translation(-1, -1) for t in transforms]
    with ExitStack() as stack:
        dem_sets, wc_sets = open_all(stack, dems), open_all(stack, wcs)
        cases = [
            (dem_sets, grown, (34, 34), Resampling.bilinear, np.float32, np.nan),
            (wc_sets, transforms, SHAPE, Resampling.nearest, np.uint8, 0),
        ]
        for datasets, grids, shape, resampling, dtype, nodata in cases:
            many = read_mosaic_many([datasets] * len(grids), grids, crs, shape, resampling,
                                    dtype, nodata)  # fmt: skip
            out = np.full((len(grids), *shape), nodata, dtype=dtype)
            fast = _warp_inside_tiles([datasets] * len(grids), grids, CRS.from_user_input(crs),
                                      resampling, nodata, out)  # fmt: skip
            # most windows take the vectorized path; the seam, the outer edge and the
            # holes under some kernels leave the rest to GDAL
            assert 250 < fast.sum() < len(grids) - 30, resampling
            assert not fast[400:].any()  # across the seam at 9°E or the edge at 8.9°E
            for k, grid_k in enumerate(grids):
                alone = read_mosaic(datasets, grid_k, crs, shape, resampling, dtype, nodata)
                if dtype == np.uint8:
                    np.testing.assert_array_equal(many[k], alone)
                else:
                    np.testing.assert_allclose(many[k], alone, rtol=0, atol=1e-3)
                    np.testing.assert_array_equal(np.isnan(many[k]), np.isnan(alone))
            if dtype == np.uint8:
                assert (many[fast] != 0).all()
            else:
                assert not np.isnan(many[fast]).any()
        # elevations and slopes together, as extract reads them
        elevation, slope = read_dem_with_slope_many([dem_sets] * 50, transforms[:50], crs)
        for k in range(50):
            one_elevation, one_slope = read_dem_with_slope(dem_sets, transforms[k], crs)
            np.testing.assert_allclose(elevation[k], one_elevation, rtol=0, atol=1e-3)
            np.testing.assert_allclose(slope[k], one_slope, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("pixel", [20.0, 60.0])
def test_upsampling_windows_on_valid_pixels(tmp_path, pixel):
    """Windows whose source pixels are all valid take the separable kernel: the values
    of a bilinear interpolation written out here (exactly, for 20 m, whose weights are
    sixteenths), and within 1 DN of GDAL's warp of the whole band."""
    rng = np.random.default_rng(int(pixel))
    data = rng.integers(1, 12000, (240, 240), dtype=np.uint16)  # no nodata anywhere
    path = tmp_path / "valid.tif"
    grid = Affine(pixel, 0, 500_000.0, 0, -pixel, 5_200_000.0)
    with rasterio.open(path, "w", driver="GTiff", width=240, height=240, count=1,
                       dtype="uint16", crs="EPSG:32632", transform=grid, nodata=0,
                       tiled=True, blockxsize=64, blockysize=64) as target:  # fmt: skip
        target.write(data, 1)
    factor = round(pixel / 10)
    grid10 = Affine(10.0, 0, 500_000.0, 0, -10.0, 5_200_000.0)
    offsets = [(factor * 5 + 7 * k, factor * 7 + 3 * k) for k in range(12)]
    transforms = [PixelWindow(c, r).transform(grid10) for c, r in offsets]
    with rasterio.open(path) as dataset:
        many = read_resampled_many(dataset, transforms, "EPSG:32632")
        for got, (c, r), transform in zip(many, offsets, transforms, strict=True):
            u = (c + np.arange(32) + 0.5) / factor - 0.5
            v = (r + np.arange(32) + 0.5) / factor - 0.5
            c0, r0 = np.floor(u).astype(int), np.floor(v).astype(int)
            tc, tr = (u - c0)[None, :], (v - r0)[:, None]
            z = data.astype(np.float64)
            expected = np.floor(
                z[np.ix_(r0, c0)] * (1 - tr) * (1 - tc) + z[np.ix_(r0, c0 + 1)] * (1 - tr) * tc
                + z[np.ix_(r0 + 1, c0)] * tr * (1 - tc) + z[np.ix_(r0 + 1, c0 + 1)] * tr * tc
                + 0.5
            )  # fmt: skip
            if factor == 2:
                np.testing.assert_array_equal(got, expected)
            else:
                assert np.abs(got - expected).max() <= 1
            reference = gdal_reference(
                rasterio.band(dataset, 1), transform, "EPSG:32632", Resampling.bilinear,
                np.uint16, 0,
            )  # fmt: skip
            assert np.abs(got.astype(int) - reference.astype(int)).max() <= 1
