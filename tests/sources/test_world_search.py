"""Scene search and window reads against the served offline world (SPEC §4.1, §7, §8)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from gedidata.domain.harmonize import harmonization
from gedidata.domain.schema import S2_BANDS
from gedidata.offline.pixels import dem_elevation
from gedidata.offline.world import SceneSpec, WorldSpec, write_world
from gedidata.sources.profiles import EARTH_SEARCH, PLANETARY_COMPUTER
from gedidata.sources.stac import FootprintQuery, SceneSearch

PC = "planetary-computer"


def scene_search(served, **kwargs) -> SceneSearch:
    return SceneSearch(replace(PLANETARY_COMPUTER, stac_url=served.stac_url), **kwargs)


def sample_footprints(world, per_scene: int = 40, seed: int = 0) -> list[FootprintQuery]:
    """Points over and around every scene, at times before, on and after it."""
    rng = np.random.default_rng(seed)
    footprints = []
    shot = 0
    for scene in world.scenes:
        west, south, east, north = scene.bounds
        pad = 300.0  # some windows poke out of the scene
        xs = rng.uniform(west - pad, east + pad, per_scene)
        ys = rng.uniform(south - pad, north + pad, per_scene)
        lons, lats = scene.to_lonlat(xs, ys)
        for lon, lat in zip(lons, lats, strict=True):
            days = float(rng.choice([-12, -10.5, -9.9, -3, 0, 2, 9.5, 11]))
            shot += 1
            lon = (lon + 180.0) % 360.0 - 180.0
            when = scene.datetime.astimezone(UTC) + timedelta(days=days)
            footprints.append(FootprintQuery(shot, float(lon), float(lat), when))
    return footprints


def expected_candidates(world, footprint: FootprintQuery) -> list[str] | None:
    """Scene ids in the order the search must give, from the generator's own list.

    Works in each scene's UTM CRS with the generator's valid-data ring; returns None
    when a window edge lies within 2 m of a scene's footprint edge (too close to call).
    """
    matches = []
    for scene in world.scenes:
        if abs(scene.datetime - footprint.time) > timedelta(days=10):
            continue
        if not scene.cloud_cover < 25:
            continue
        x, y = scene.from_lonlat(footprint.lon, footprint.lat)
        grid = scene.transform("B02")
        col = (x - grid.c) / grid.a
        row = (y - grid.f) / grid.e
        col_off = math.floor(col + 0.5) - 16
        row_off = math.floor(row + 0.5) - 16
        left, top = grid.c + col_off * grid.a, grid.f + row_off * grid.e
        window = shapely.box(left, top - 320, left + 320, top)
        ring = shapely.Polygon(scene.footprint_utm)
        if ring.buffer(2.0).contains(window) and not ring.buffer(-2.0).contains(window):
            return None
        if ring.contains(window):
            matches.append(scene)
    matches.sort(key=lambda s: (s.cloud_cover, abs(s.datetime - footprint.time), s.id))
    return [scene.id for scene in matches]


def test_candidates_are_exactly_the_qualifying_scenes(world, served):
    footprints = sample_footprints(world)
    result = scene_search(served).find(footprints)
    assert result.errors == {}
    checked = with_candidates = 0
    for footprint in footprints:
        expected = expected_candidates(world, footprint)
        if expected is None:
            continue
        got = [c.item_id for c in result.candidates[footprint.shot_number]]
        assert got == expected, footprint
        checked += 1
        with_candidates += bool(expected)
    assert checked > 0.9 * len(footprints)
    assert with_candidates > 0.3 * checked  # the sample exercises real matches
    # and the antimeridian scenes are among them
    fiji = [s.id for s in world.scenes if s.crosses_antimeridian]
    assert fiji and any(c.item_id in fiji for cands in result.candidates.values() for c in cands)


def test_requests_grow_with_groups_not_footprints(world, served):
    scene = world.scenes[0]
    west, south, east, north = scene.bounds

    def footprints(count: int) -> list[FootprintQuery]:
        xs = np.linspace(west + 500, east - 500, count)
        lons, lats = scene.to_lonlat(xs, np.full(count, (south + north) / 2))
        return [
            FootprintQuery(i, float(lon), float(lat), scene.datetime)
            for i, (lon, lat) in enumerate(zip(lons, lats, strict=True))
        ]

    counts = {}
    for count in (5, 500):
        search = scene_search(served)
        before = search.http_requests
        result = search.find(footprints(count))
        counts[count] = (result.groups, search.http_requests - before)
        assert all(result.candidates[i] for i in range(count))
    # one group: the landing page (read once per client) and one POST search
    assert counts[5] == counts[500] == (1, 2)

    # One group per tile and date window: all sample footprints of the world.
    everywhere = sample_footprints(world, per_scene=10)
    search = scene_search(served)
    before = search.http_requests
    result = search.find(everywhere)
    assert result.groups < len(everywhere) / 5
    assert search.http_requests - before == result.groups + 1  # one POST each, no paging


def test_paging_is_followed(world, served):
    scene = world.scenes[0]
    lon, lat = scene.to_lonlat(*(np.mean(scene.bounds[0::2]), np.mean(scene.bounds[1::2])))
    footprint = FootprintQuery(1, float(lon), float(lat), scene.datetime)
    small_pages = scene_search(served, page_limit=1).find([footprint])
    one_page = scene_search(served).find([footprint])
    assert [c.item_id for c in small_pages.candidates[1]] == [
        c.item_id for c in one_page.candidates[1]
    ]


def test_window_read_over_http_is_exact_and_ranged(tmp_path, served_world_factory):
    """A 2040 x 2040 scene (2 x 2 internal tiles): a window costs ranges, not the file."""
    spec = WorldSpec(
        tmp_path,
        [SceneSpec("32TMT", datetime(2021, 7, 3, 10, 30, tzinfo=UTC), processing_baseline="05.00")],
        tile_size_m=20_400,
        worldcover_years=(2021,),
        worldcover_overviews=False,
    )
    world = write_world(spec)
    served = served_world_factory(world.root, world.item_files(PC), world.collection_files(PC))
    scene = world.scenes[0]
    assert scene.pc_offset == 1000
    window = Window(1100, 1030, 32, 32)  # inside the lower-right internal tile
    url = f"{served.files_url}/{scene.asset_path('B04')}"
    mark = served.file_server.log.mark()
    with rasterio.Env(**served.gdal_env), rasterio.open(url) as dataset:
        assert dataset.profile["blockxsize"] == 1024
        values = dataset.read(1, window=window)
    np.testing.assert_array_equal(values, scene.expected("B04", window))
    entries = served.file_server.log.entries(since=mark)
    gets = [e for e in entries if e["method"] == "GET"]
    assert gets and all(e["status"] == 206 and e["range"] for e in gets)
    size = (world.root / scene.asset_path("B04")).stat().st_size
    with rasterio.open(world.root / scene.asset_path("B04")) as local:
        tile_bytes = local.block_size(1, 1, 1)
    # GDAL reads a 16 KiB header, then the tile in 16 KiB-aligned chunks (one extra at most)
    chunk = 16384
    assert sum(e["bytes"] for e in entries) <= chunk + math.ceil(tile_bytes / chunk + 1) * chunk
    assert sum(e["bytes"] for e in entries) < size


def test_acquisition_time_naive_is_utc(world, served):
    scene = world.scenes[0]
    lon, lat = scene.to_lonlat(*(np.mean(scene.bounds[0::2]), np.mean(scene.bounds[1::2])))
    naive = scene.datetime.astimezone(UTC).replace(tzinfo=None) + timedelta(days=10, hours=1)
    aware = naive.replace(tzinfo=UTC)
    search = scene_search(served)
    got_naive = search.find([FootprintQuery(1, float(lon), float(lat), naive)])
    got_aware = search.find([FootprintQuery(1, float(lon), float(lat), aware)])
    ids = [c.item_id for c in got_naive.candidates[1]]
    assert ids == [c.item_id for c in got_aware.candidates[1]]
    assert scene.id not in ids  # 10 days and one hour away
    assert isinstance(datetime.now(), datetime)


def test_generated_items_go_through_both_profiles(world):
    """Band assets and the DN offset to remove, for every generated scene and layout."""
    for profile, layout in ((PLANETARY_COMPUTER, PC), (EARTH_SEARCH, "earth-search")):
        items = {item["id"]: item for item in world.items(layout, "sentinel-2-l2a")}
        for scene in world.scenes:
            item = items[scene.id if layout == PC else scene.es_id]
            for band in S2_BANDS:
                href = item["assets"][profile.asset_key(band)]["href"]
                assert href == scene.asset_path(band, layout)
            result = harmonization(item, profile.asset_key("B04"))
            assert result.offset_dn == (scene.pc_offset if layout == PC else 1000), scene.id
            assert result.processing_baseline == scene.processing_baseline


def test_earth_search_dem_is_read_through_s3(world, served_world_factory):
    es = "earth-search"
    served = served_world_factory(world.root, world.item_files(es), world.collection_files(es))
    item = world.items(es, "cop-dem-glo-30")[0]
    href = item["assets"][EARTH_SEARCH.dem_asset]["href"]
    assert href.startswith("s3://")
    mark = served.file_server.log.mark()
    with (
        rasterio.Env(**{**EARTH_SEARCH.gdal_env, **served.gdal_env}),
        rasterio.open(href.replace("s3://", "/vsis3/")) as dem,
    ):
        values = dem.read(1, window=Window(100, 200, 3, 2))
        lon, lat = dem.xy(200, 100)
    assert values[0, 0] == pytest.approx(float(dem_elevation(lon, lat)), abs=1e-3)
    assert served.file_server.log.count(since=mark, status=206) > 0
