"""The offline world: MGRS grid, pixel functions, generated COGs and STAC items."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window
from shapely.geometry import Point, shape

from gedidata.offline import pixels
from gedidata.offline.mgrs import mgrs_tile_origin, mgrs_tiles_covering, parse_tile
from gedidata.offline.world import (
    ES_BAND_KEYS,
    Feature,
    SceneSpec,
    World,
    WorldSpec,
    default_test_world,
    dem_tile_grid,
    dem_tile_name,
    from_origin,
    load_world,
    worldcover_tile_name,
    write_dem_tile,
    write_world,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
STAC_FIXTURES = SHARED / "stac"
BANDS_10M = ("B02", "B03", "B04", "B08")


def _fixture(name: str) -> dict:
    path = STAC_FIXTURES / name
    if not path.exists():
        pytest.skip("shared/fixtures/stac is not beside the checkout")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return write_world(default_test_world(tmp_path_factory.mktemp("world")))


def _scenes(world: World, tile: str) -> list:
    return [s for s in world.scenes if s.tile == tile]


def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)


def _to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)


# ----------------------------------------------------------------------------- MGRS


@pytest.mark.parametrize(
    ("tile", "expected"),
    [
        ("20EPT", (32720, 600000.0, 3300040.0)),  # Earth Search fixture
        ("60VUK", (32660, 300000.0, 6500040.0)),  # Planetary Computer fixture
        ("31UFT", (32631, 600000.0, 5800020.0)),
        ("31UGU", (32631, 699960.0, 5900040.0)),
        ("32TQL", (32632, 699960.0, 4600020.0)),
    ],
)
def test_mgrs_tile_origin_known_tiles(tile: str, expected: tuple) -> None:
    assert mgrs_tile_origin(tile) == expected


@pytest.mark.parametrize(
    ("name", "tile_key", "asset"),
    [
        ("earth-search_sentinel-2-l2a.json", "grid:code", "red"),
        ("planetary-computer_sentinel-2-l2a.json", "s2:mgrs_tile", "B04"),
    ],
)
def test_mgrs_tile_origin_matches_real_items(name: str, tile_key: str, asset: str) -> None:
    item = _fixture(name)
    tile = item["properties"][tile_key].removeprefix("MGRS-")
    a, _, c, _, e, f = item["assets"][asset]["proj:transform"]
    assert (a, e) == (10, -10)
    assert mgrs_tile_origin(tile) == (item["properties"]["proj:epsg"], c, f)


def test_mgrs_south_and_antimeridian_tiles() -> None:
    assert mgrs_tile_origin("21MUQ")[0] == 32721
    assert mgrs_tile_origin("60KZG")[0] == 32760
    assert mgrs_tile_origin("01KAB")[0] == 32701
    assert mgrs_tile_origin("T32TMT") == mgrs_tile_origin("32TMT")
    assert mgrs_tiles_covering(179.95, -16.8)[0] == "60KZG"
    assert mgrs_tiles_covering(-179.95, -16.8)[0] == "01KAB"
    for lon, lat in [(7.5, 46.9), (-58.05, -5.07), (179.95, -16.8), (51.45, 36.08), (-59.5, -60.4)]:
        tiles = mgrs_tiles_covering(lon, lat)
        assert tiles
        for tile in tiles:
            epsg, west, north = mgrs_tile_origin(tile)
            x, y = _to_utm(epsg).transform(lon, lat)
            assert west <= x < west + 109_800 and north - 109_800 < y <= north
    # 46.9N 7.5E lies in the 9.8 km overlap of 32TLS with its northern neighbour
    assert mgrs_tiles_covering(7.5, 46.9) == ["32TLS", "32TLT"]


@pytest.mark.parametrize("bad", ["32TIT", "61TMT", "32TM", "32AMT", "32TMW", "hello"])
def test_parse_tile_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_tile(bad)


# ----------------------------------------------------------------------------- pixel functions


def test_s2_dn_range_bands_differ_and_values_are_exact_at_pixel_centres() -> None:
    x = 399960 + 5 + 10 * np.arange(0, 10980, 7)
    y = 5300040 - 5 - 10 * np.arange(0, 10980, 7)
    values = {b: pixels.s2_dn(b, x[None, :], y[:, None]) for b in pixels.S2_BANDS}
    for b, v in values.items():
        assert v.dtype == np.uint16
        assert v.min() >= 200 and v.max() <= 9000, b
        assert len(np.unique(v)) > 1000, b
        exact = pixels.s2_dn_exact(b, x[None, :], y[:, None])
        assert np.array_equal(exact, np.round(exact)), b  # integer at 10 m centres
    stacked = np.stack([values[b] for b in pixels.S2_BANDS])
    for i in range(len(pixels.S2_BANDS)):
        for j in range(i + 1, len(pixels.S2_BANDS)):
            assert (stacked[i] != stacked[j]).mean() > 0.9
    # varies with x and with y; 60 m centres are exact too
    assert pixels.s2_dn("B04", 400005.0, 5e6) != pixels.s2_dn("B04", 400015.0, 5e6)
    assert pixels.s2_dn("B04", 400005.0, 5e6) != pixels.s2_dn("B04", 400005.0, 5e6 + 10)
    c60 = pixels.s2_dn_exact("B01", 399960 + 30 + 60 * np.arange(50), 3300040 - 30.0)
    assert np.array_equal(c60, np.round(c60))
    with pytest.raises(ValueError):
        pixels.s2_dn("B10", x, y)


def test_dem_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    lon = rng.uniform(-180, 180, 400)
    lat = rng.uniform(-60, 60, 400)
    phi = np.radians(lat)
    a, e2 = 6378137.0, 0.00669437999014
    m_radius = a * (1 - e2) / (1 - e2 * np.sin(phi) ** 2) ** 1.5
    n_radius = a / np.sqrt(1 - e2 * np.sin(phi) ** 2)
    h = 2.0  # metres on the ground
    dlat = np.degrees(h / m_radius)
    dlon = np.degrees(h / (n_radius * np.cos(phi)))

    def z(lo: np.ndarray, la: np.ndarray) -> np.ndarray:
        return pixels.dem_elevation(lo, la).astype(np.float64)

    d_north = (z(lon, lat + dlat) - z(lon, lat - dlat)) / (2 * h)
    d_east = (z(lon + dlon, lat) - z(lon - dlon, lat)) / (2 * h)
    ge, gn = pixels.dem_gradient(lon, lat)
    # away from the kinks (strip edges every 1000 m, longitude folds every 0.01°)
    arc = np.mod(pixels.meridian_arc(lat), 1000.0)
    fold = np.mod(lon, 0.01)
    far = (np.minimum(arc, 1000 - arc) > 10) & (np.minimum(fold, 0.01 - fold) > 1e-3)
    assert far.sum() > 300
    assert np.allclose(d_north[far], gn[far], atol=2e-4)
    assert np.allclose(d_east[far], ge[far], atol=2e-4)
    slope = pixels.dem_slope_percent(lon, lat)
    assert set(np.round(slope, 0)) <= {4.0, 8.0, 9.0, 14.0, 20.0}
    assert (slope < 5).any() and (slope > 15).any()


def test_worldcover_classes_and_years_differ() -> None:
    lon = np.arange(-179.995, 180, 0.01)[None, :]
    lat = np.arange(-59.995, 60, 0.5)[:, None]
    c20 = pixels.worldcover_class(lon, lat, 2020)
    c21 = pixels.worldcover_class(lon, lat, 2021)
    assert set(np.unique(c20)) == set(pixels.WORLDCOVER_CLASSES)
    assert set(np.unique(c21)) == set(pixels.WORLDCOVER_CLASSES)
    assert 0.25 < (c20 != c21).mean() < 0.4
    # constant inside a 0.01° block
    assert (
        len(np.unique(pixels.worldcover_class(7.0 + np.linspace(1e-5, 0.00999, 50), 46.0, 2020)))
        == 1
    )
    with pytest.raises(ValueError):
        pixels.worldcover_class(lon, lat, 2019)


# ----------------------------------------------------------------------------- Sentinel-2 rasters


def test_10m_window_is_bit_exact_in_both_layouts(world: World) -> None:
    checked = set()
    for scene in world.scenes:
        window = Window(200, 100, 32, 32)
        for band in BANDS_10M:
            for profile in ("planetary-computer", "earth-search"):
                with rasterio.open(world.root / scene.asset_path(band, profile)) as ds:
                    got = ds.read(1, window=window)
                    t = ds.transform
                cols = np.arange(200, 232)
                rows = np.arange(100, 132)
                x = t.c + (cols + 0.5) * t.a
                y = t.f + (rows + 0.5) * t.e
                expected = pixels.s2_dn(band, x[None, :], y[:, None]).astype(np.int64)
                if profile == "earth-search" or scene.processing_baseline >= "04.00":
                    expected += 1000
                assert np.array_equal(got, expected), (scene.id, band, profile)
                checked.add((profile, scene.processing_baseline >= "04.00"))
    assert checked == {(p, new) for p in ("planetary-computer", "earth-search") for new in (0, 1)}


def test_cog_layout_and_grid(world: World) -> None:
    scene = world.scenes[0]
    epsg, west, north = mgrs_tile_origin(scene.tile)
    for band in (*pixels.S2_BANDS, "SCL"):
        res = pixels.S2_BAND_RESOLUTION[band]
        with rasterio.open(world.root / scene.pc_assets[band]) as ds:
            profile = ds.profile
            assert profile["tiled"] and profile["blockxsize"] == profile["blockysize"] == 1024
            assert profile["compress"] == "deflate"
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.overviews(1)
            assert profile["nodata"] == 0
            assert profile["dtype"] == ("uint8" if band == "SCL" else "uint16")
            assert ds.crs.to_epsg() == epsg
            assert ds.transform == from_origin(west, north, res, res)  # anchored at the corner
            assert ds.width == ds.height == 6000 // res
    # anchored sub-squares stay on the tile's 60 m lattice
    for s in world.scenes:
        _, west, north = mgrs_tile_origin(s.tile)
        assert (s.bounds[0] - west) % 60 == 0 and (north - s.bounds[3]) % 60 == 0


def test_bilinear_20m_and_60m_bands_reproduce_s2_dn(world: World) -> None:
    scene = world.scenes[4]  # 03.00, clean
    x0, y0 = scene.bounds[0] + 2500, scene.bounds[3] - 2600
    x = x0 + (np.arange(32) + 0.5) * 10
    y = y0 - (np.arange(32) + 0.5) * 10
    for band in ("B05", "B06", "B07", "B8A", "B11", "B12", "B01", "B09"):
        with rasterio.open(world.root / scene.pc_assets[band]) as ds:
            out = np.zeros((32, 32), np.uint16)
            reproject(
                rasterio.band(ds, 1),
                out,
                dst_transform=from_origin(x0, y0, 10, 10),
                dst_crs=ds.crs,
                resampling=Resampling.bilinear,
            )
        expected = pixels.s2_dn(band, x[None, :], y[:, None])
        far = pixels.s2_fold_distance(band, x[None, :], y[:, None]) > 70
        assert far.mean() > 0.5
        assert np.array_equal(out[far], expected[far]), band


def test_scl_features_and_nodata_edge(world: World) -> None:
    first, second, _, edged, clean = _scenes(world, "32TMT")
    with rasterio.open(world.root / first.pc_assets["SCL"]) as ds:
        scl = ds.read(1)
    # Feature(9, 3600, 600, 5400, 2400): rows 30–119, cols 180–269 of the 20 m grid
    assert (scl[30:120, 180:270] == 9).all()
    assert (scl[120:150, 150:240] == 3).all()  # shadow under the cloud
    assert (scl[210:270, 30:90] == 6).all()  # water
    assert (scl[0:30, :] == 4).all() and (scl[:, 0:30] == 4).all()
    assert first.scl_percentages[9] == pytest.approx(100 * 90 * 90 / 300**2)
    with rasterio.open(world.root / second.pc_assets["SCL"]) as ds:
        assert (ds.read(1)[30:120, 30:120] == 8).all()
    assert second.cloud_cover == 2.5  # published value, not the SCL share
    assert edged.cloud_cover == 0.0  # computed from the SCL: no cloud classes
    with rasterio.open(world.root / clean.pc_assets["SCL"]) as ds:
        assert (ds.read(1) == 4).all()

    # no-data edge: a triangle in the south-east corner, 0 in every band, outside the footprint
    assert edged.nodata_edge is not None and first.nodata_edge is None
    with rasterio.open(world.root / edged.pc_assets["SCL"]) as ds:
        scl = ds.read(1)
    assert scl[-1, -1] == 0 and scl[0, 0] == 4 and scl[-1, 0] == 4 and scl[0, -1] == 4
    assert 0.15 < (scl == 0).mean() < 0.2  # 0.6² / 2 = 18 %
    assert edged.scl_percentages[0] == pytest.approx(100 * (scl == 0).mean())
    assert (scl[30:90, 30:90] == 11).all() and scl[150, 125] == 1
    footprint = shape(edged.footprint)
    to_ll = _to_lonlat(edged.epsg)
    for band in ("B04", "B05", "B01"):
        with rasterio.open(world.root / edged.pc_assets[band]) as ds:
            data = ds.read(1)
            t = ds.transform
        assert data[-1, -1] == 0 and data[0, 0] > 1000
        rows, cols = np.nonzero(data == 0)
        inside_rows, inside_cols = np.nonzero(data != 0)
        for r, c, empty in [(rows[0], cols[0], True), (inside_rows[-1], inside_cols[-1], False)]:
            lon, lat = to_ll.transform(t.c + (c + 0.5) * t.a, t.f + (r + 0.5) * t.e)
            assert footprint.contains(Point(lon, lat)) is not empty
        assert np.array_equal(data, edged.expected(band))


def test_antimeridian_and_southern_scenes(world: World) -> None:
    fiji = _scenes(world, "60KZG")
    assert fiji and all(s.crosses_antimeridian for s in fiji)
    for s in fiji:
        assert s.footprint["type"] == "MultiPolygon"
        assert s.bbox[0] > s.bbox[2]  # RFC 7946 antimeridian bbox
        assert 179.9 < s.bbox[0] < 180 and -180 < s.bbox[2] < -179.9
        assert shape(s.footprint).is_valid
    names = {t.name for t in world.dem_tiles}
    assert {
        "Copernicus_DSM_COG_10_S17_00_E179_00_DEM",
        "Copernicus_DSM_COG_10_S17_00_W180_00_DEM",
    } <= names
    wc = {t.name for t in world.worldcover_tiles}
    assert (
        "ESA_WorldCover_10m_2021_v200_S18W180" in wc
        and "ESA_WorldCover_10m_2021_v200_S18E177" in wc
    )
    amazon = _scenes(world, "21MUQ")
    assert amazon and all(s.epsg == 32721 for s in amazon)
    assert all(s.bounds[3] > 9_000_000 for s in amazon)  # false northing


def test_scenes_cover_part_of_the_real_gedi_clusters(world: World) -> None:
    h5py = pytest.importorskip("h5py")
    granules = {
        "21MUQ": SHARED / "gedi" / "GEDI04_A_2021150031254_O13948_03_T06447_02_002_01_V002.h5",
        "39SWV": SHARED / "gedi" / "GEDI04_A_2020036151358_O06515_02_T00198_02_002_01_V002.h5",
    }
    for tile, path in granules.items():
        if not path.exists():
            pytest.skip("shared/fixtures/gedi is not beside the checkout")
        footprint = shape(_scenes(world, tile)[-1].footprint)
        inside = 0
        with h5py.File(path) as h:
            for beam in (k for k in h if k.startswith("BEAM")):
                lon, lat = h[beam]["lon_lowestmode"][:], h[beam]["lat_lowestmode"][:]
                inside += sum(
                    footprint.contains(Point(a, b)) for a, b in zip(lon, lat, strict=True)
                )
        assert inside >= 20, tile


# ----------------------------------------------------------------------------- DEM and WorldCover


def test_dem_tile_grid_names_and_latitude_dependent_columns() -> None:
    assert dem_tile_name(8, 47) == "Copernicus_DSM_COG_10_N47_00_E008_00_DEM"
    assert dem_tile_name(-115, 53) == "Copernicus_DSM_COG_10_N53_00_W115_00_DEM"
    assert dem_tile_name(-180, -90) == "Copernicus_DSM_COG_10_S90_00_W180_00_DEM"
    columns = {49: 3600, -50: 3600, 50: 2400, -51: 2400, 59: 2400, 60: 1800, -61: 1800, 70: 1200}
    columns |= {80: 720, 84: 720, 85: 360, -90: 360}
    for lat0, width in columns.items():
        transform, w, h = dem_tile_grid(10, lat0)
        assert (w, h) == (width, 3600), lat0
        assert transform.c == pytest.approx(10 - 0.5 / width)
        assert transform.f == pytest.approx(lat0 + 1 + 0.5 / 3600)


@pytest.mark.parametrize(
    ("name", "lon0", "lat0"),
    [
        ("earth-search_cop-dem-glo-30.json", -180, -90),
        ("stactools_cop-dem-glo-30_N53_W115.json", -115, 53),
    ],
)
def test_dem_grid_matches_real_items(name: str, lon0: int, lat0: int) -> None:
    item = _fixture(name)
    transform, width, height = dem_tile_grid(lon0, lat0)
    assert item["id"] == dem_tile_name(lon0, lat0)
    assert item["properties"]["proj:shape"] == [height, width]
    assert list(transform)[:6] == pytest.approx(item["properties"]["proj:transform"], abs=1e-12)
    west, south = transform.c, transform.f + height * transform.e
    assert [west, south, west + width * transform.a, transform.f] == pytest.approx(
        item["bbox"], abs=1e-9
    )


def test_dem_files(world: World, tmp_path: Path) -> None:
    tile = world.dem_tile(7.7, 47.8)
    assert tile.name == "Copernicus_DSM_COG_10_N47_00_E007_00_DEM"
    for rel in (tile.pc_path, tile.es_path):
        with rasterio.open(world.root / rel) as ds:
            assert ds.shape == (3600, 3600) and ds.dtypes[0] == "float32"
            assert ds.crs.to_epsg() == 4326
            assert ds.transform.c == pytest.approx(7 - 0.5 / 3600)
            assert ds.transform.f == pytest.approx(48 + 0.5 / 3600)
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.overviews(1)
            window = Window(2400, 500, 40, 30)
            got = ds.read(1, window=window)
            t = ds.transform
        lon = t.c + (np.arange(2400, 2440) + 0.5) * t.a
        lat = t.f + (np.arange(500, 530) + 0.5) * t.e
        assert np.allclose(got, pixels.dem_elevation(lon[None, :], lat[:, None]), atol=1e-3)
    assert os.path.samefile(world.root / tile.pc_path, world.root / tile.es_path)
    high = write_dem_tile(tmp_path, 173, 58)
    assert high.name == "Copernicus_DSM_COG_10_N58_00_E173_00_DEM"
    with rasterio.open(tmp_path / high.pc_path) as ds:
        assert ds.shape == (3600, 2400)
        assert ds.transform.c == pytest.approx(173 - 0.5 / 2400)


def test_dem_slope_from_the_rasters_matches_the_analytic_slope(world: World) -> None:
    """Reproject onto a 10 m UTM window (bilinear) and take Horn's slope, as the pipeline does."""
    scene = world.scenes[0]
    to_ll = _to_lonlat(scene.epsg)
    seen = set()
    for k in range(12):
        x0 = scene.bounds[0] + 300 + 400 * k
        y0 = scene.bounds[3] - 300 - 400 * k
        z = np.zeros((34, 34), np.float32)
        lon, lat = to_ll.transform(x0, y0)
        with rasterio.open(world.root / world.dem_tile(lon, lat).pc_path) as ds:
            reproject(
                rasterio.band(ds, 1),
                z,
                dst_transform=from_origin(x0 - 10, y0 + 10, 10, 10),
                dst_crs=scene.crs,
                resampling=Resampling.bilinear,
            )
        z = z.astype(np.float64)
        dzdx = (
            (z[:-2, 2:] + 2 * z[1:-1, 2:] + z[2:, 2:])
            - (z[:-2, :-2] + 2 * z[1:-1, :-2] + z[2:, :-2])
        ) / 80
        dzdy = (
            (z[2:, :-2] + 2 * z[2:, 1:-1] + z[2:, 2:])
            - (z[:-2, :-2] + 2 * z[:-2, 1:-1] + z[:-2, 2:])
        ) / 80
        slope = 100 * np.hypot(dzdx, dzdy)
        xs, ys = np.meshgrid(x0 + (np.arange(32) + 0.5) * 10, y0 - (np.arange(32) + 0.5) * 10)
        lons, lats = to_ll.transform(xs, ys)
        arc = np.mod(pixels.meridian_arc(lats), 1000.0)
        fold = np.mod(lons, 0.01) * 111_320 * np.cos(np.radians(lats))
        far = (np.minimum(arc, 1000 - arc) > 80) & (
            np.minimum(fold, 1113.2 * np.cos(np.radians(lats)) - fold) > 80
        )
        expected = pixels.dem_slope_percent(lons, lats)
        assert np.abs(slope - expected)[far].max() < 0.1
        seen |= set(np.round(expected[far], 0))
    assert min(seen) < 5 and max(seen) > 15


def test_worldcover_files(world: World) -> None:
    assert worldcover_tile_name(6, 0, 2020) == "ESA_WorldCover_10m_2020_v100_N00E006"
    assert worldcover_tile_name(-60, -6, 2021) == "ESA_WorldCover_10m_2021_v200_S06W060"
    real = SHARED / "worldcover"
    if real.exists():
        names = {p.name for p in real.glob("*.tif")}
        assert {f"{worldcover_tile_name(6, 0, y)}_Map.tif" for y in (2020, 2021)} == names
    scene = world.scenes[0]
    lon, lat = _to_lonlat(scene.epsg).transform(
        (scene.bounds[0] + scene.bounds[2]) / 2, (scene.bounds[1] + scene.bounds[3]) / 2
    )
    maps = {}
    for year in (2020, 2021):
        tile = world.worldcover_tile(lon, lat, year)
        assert (
            tile.name == f"ESA_WorldCover_10m_{year}_{'v100' if year == 2020 else 'v200'}_N45E006"
        )
        with rasterio.open(world.root / tile.path) as ds:
            assert ds.shape == (36000, 36000) and ds.dtypes[0] == "uint8" and ds.nodata == 0
            assert ds.transform == from_origin(6.0, 48.0, 1 / 12000, 1 / 12000)
            assert ds.profile["blockxsize"] == 1024 and ds.profile["compress"] == "deflate"
            row, col = ds.index(lon, lat)
            window = Window(col - 300, row - 300, 600, 600)
            maps[year] = ds.read(1, window=window)
            assert ds.read(1, window=Window(0, 0, 64, 64)).max() == 0  # not written: nodata
        lons = 6.0 + (np.arange(col - 300, col + 300) + 0.5) / 12000
        lats = 48.0 - (np.arange(row - 300, row + 300) + 0.5) / 12000
        assert np.array_equal(
            maps[year], pixels.worldcover_class(lons[None, :], lats[:, None], year)
        )
    assert (maps[2020] != maps[2021]).any() and (maps[2020] == maps[2021]).any()


# ----------------------------------------------------------------------------- STAC


def test_sentinel2_items_have_the_real_layouts(world: World) -> None:
    pc_real = _fixture("planetary-computer_sentinel-2-l2a.json")
    es_real = _fixture("earth-search_sentinel-2-l2a.json")
    pc_items = world.items("planetary-computer", "sentinel-2-l2a")
    es_items = world.items("earth-search", "sentinel-2-l2a")
    assert len(pc_items) == len(es_items) == len(world.scenes) == 12
    pc_keys = {*pixels.S2_BANDS, "SCL"}
    es_keys = set(ES_BAND_KEYS.values())
    for item, scene in zip(pc_items, world.scenes, strict=True):
        assert re.fullmatch(
            r"S2[AB]_MSIL2A_\d{8}T\d{6}_R\d{3}_T\d\d[A-Z]{3}_\d{8}T\d{6}", item["id"]
        )
        assert item["id"] == scene.id
        assert set(item["assets"]) == pc_keys and pc_keys <= set(pc_real["assets"])
        assert set(pc_real["properties"]) <= set(item["properties"])
        for key in pc_keys:
            assert set(item["assets"][key]) == set(pc_real["assets"][key]), key
        p = item["properties"]
        assert p["s2:mgrs_tile"] == scene.tile and p["proj:epsg"] == scene.epsg
        assert p["s2:processing_baseline"] == scene.processing_baseline
        assert p["eo:cloud_cover"] == scene.cloud_cover
        assert f"_N{scene.processing_baseline.replace('.', '')}_" in p["s2:product_uri"]
        assert item["assets"]["B04"]["proj:transform"] == [
            10.0,
            0.0,
            scene.bounds[0],
            0.0,
            -10.0,
            scene.bounds[3],
        ]
        assert item["assets"]["B01"]["proj:shape"] == [100, 100]
    for item, scene in zip(es_items, world.scenes, strict=True):
        assert re.fullmatch(r"S2[AB]_\d\d[A-Z]{3}_\d{8}_\d_L2A", item["id"])
        assert item["id"] == scene.es_id
        assert set(item["assets"]) == es_keys and es_keys <= set(es_real["assets"])
        assert set(es_real["properties"]) <= set(item["properties"])
        for key in es_keys:
            assert set(item["assets"][key]) == set(es_real["assets"][key]), key
            bands = item["assets"][key]["raster:bands"]
            if key != "scl":
                assert bands[0]["scale"] == 0.0001 and bands[0]["offset"] == -0.1
        assert item["properties"]["earthsearch:boa_offset_applied"] is True
    for profile in ("planetary-computer", "earth-search"):
        for item in world.items(profile, "sentinel-2-l2a"):
            parsed = pystac.Item.from_dict(item)
            scene = world.scene(item["id"])
            assert shape(item["geometry"]).equals(shape(scene.footprint))
            assert set(parsed.assets) == set(item["assets"])
            for asset in item["assets"].values():
                href = asset["href"]
                assert "://" not in href and not href.startswith("/")
                assert (world.root / href).is_file()


def test_dem_and_worldcover_items(world: World) -> None:
    pc_dem = _fixture("stactools_cop-dem-glo-30_N53_W115.json")
    es_dem = _fixture("earth-search_cop-dem-glo-30.json")
    wc_real = _fixture("stactools_esa-worldcover_2021_v200_N00E006.json")
    for item in world.items("planetary-computer", "cop-dem-glo-30"):
        pystac.Item.from_dict(item)
        assert set(item["assets"]) == {"data"}
        assert set(item["assets"]["data"]) == set(pc_dem["assets"]["data"])
        assert set(pc_dem["properties"]) <= set(item["properties"])
        assert (world.root / item["assets"]["data"]["href"]).is_file()
    for item in world.items("earth-search", "cop-dem-glo-30"):
        pystac.Item.from_dict(item)
        assert set(item["assets"]["data"]) == set(es_dem["assets"]["data"])
        assert set(es_dem["properties"]) <= set(item["properties"])
        href = item["assets"]["data"]["href"]
        assert href == f"s3://copernicus-dem-30m/{item['id']}/{item['id']}.tif"
        assert (world.root / href.removeprefix("s3://")).is_file()
    wc_items = world.items("planetary-computer", "esa-worldcover")
    assert len(wc_items) == len(world.worldcover_tiles) == 10
    for item in wc_items:
        pystac.Item.from_dict(item)
        assert set(item["assets"]) == {"map"}
        assert set(item["assets"]["map"]) <= set(wc_real["assets"]["map"])
        assert set(wc_real["properties"]) <= set(item["properties"])
        version = item["properties"]["esa_worldcover:product_version"]
        year = item["properties"]["start_datetime"][:4]
        assert (year, version) in {("2020", "1.0.0"), ("2021", "2.0.0")}
        assert (world.root / item["assets"]["map"]["href"]).is_file()
    assert "esa-worldcover" not in world.collection_paths["earth-search"]
    for profile, collections in world.collection_paths.items():
        for cid in collections:
            collection = pystac.Collection.from_dict(world.collection(profile, cid))
            assert collection.id == cid
            assert collection.extent.spatial.bboxes and collection.extent.temporal.intervals


def test_manifest_round_trip_and_idempotent_rewrite(world: World) -> None:
    loaded = load_world(world.root)
    assert loaded.scenes == world.scenes
    assert loaded.dem_tiles == world.dem_tiles
    assert loaded.worldcover_tiles == world.worldcover_tiles
    assert loaded.item_paths == world.item_paths
    band = world.root / world.scenes[0].pc_assets["B04"]
    dem = world.root / world.dem_tiles[0].pc_path
    before = (band.stat().st_mtime_ns, dem.stat().st_mtime_ns)
    again = write_world(default_test_world(world.root))
    assert (band.stat().st_mtime_ns, dem.stat().st_mtime_ns) == before
    assert again.scenes == world.scenes
    assert [p.name for p in world.item_files("earth-search")]
    assert all(p.is_file() for p in world.collection_files("planetary-computer"))


def test_bad_specs_are_refused(tmp_path: Path) -> None:
    spec = default_test_world(tmp_path)
    with pytest.raises(ValueError, match="multiple of 60"):
        write_world(type(spec)(root=tmp_path, scenes=spec.scenes[:1], tile_size_m=5120))


def test_changed_spec_rewrites_only_what_changed(tmp_path: Path) -> None:
    first = SceneSpec(
        "32TMT", dt.datetime(2020, 7, 8, 10, 30, 31), features=(Feature(9, 0, 0, 600, 600),)
    )
    spec = WorldSpec(
        root=tmp_path, scenes=[first], tile_size_m=1200, dem_tiles=[], worldcover_tiles=[]
    )
    world = write_world(spec)
    scene = world.scenes[0]
    scl_path = tmp_path / scene.pc_assets["SCL"]
    band_path = tmp_path / scene.pc_assets["B04"]
    with rasterio.open(scl_path) as ds:
        assert ds.tags()["GEDIDATA_WORLD"]
        assert (ds.read(1)[:30, :30] == 9).all()
    band_mtime = band_path.stat().st_mtime_ns
    changed = dataclasses.replace(first, features=(Feature(6, 0, 0, 600, 600),))
    world = write_world(dataclasses.replace(spec, scenes=[changed]))
    with rasterio.open(scl_path) as ds:
        assert np.array_equal(ds.read(1), world.scenes[0].expected("SCL"))
        assert (ds.read(1)[:30, :30] == 6).all()
    assert band_path.stat().st_mtime_ns == band_mtime
    assert not world.dem_tiles and not world.worldcover_tiles
