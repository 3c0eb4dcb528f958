"""Batch planning: deterministic, grouped by S2 tile, date and internal tile; resume only
with the same size."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from gedidata.domain.batches import (
    batch_name,
    batch_order,
    batch_runs,
    complete_batches,
    plan_batches,
    s2_internal_tile,
)
from gedidata.errors import InputError
from gedidata.offline.mgrs import mgrs_tile_origin, mgrs_tiles_covering


def test_internal_tile_counts_from_the_s2_tile_corner():
    """The corner is the MGRS square's north-west corner on the 60 m lattice, as the
    generator (and the real Sentinel-2 grid) place it; north and south."""
    for lon, lat in [(8.7, 47.3), (9.95, 46.1), (-57.6, -5.4), (144.9, -37.7)]:
        epsg, west, north = mgrs_tile_origin(mgrs_tiles_covering(lon, lat)[0])
        x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
        _, _, col, row = s2_internal_tile(np.array([x]), np.array([y]), south=lat < 0)
        assert col[0] == (x - west) // 10_240
        assert row[0] == (north - y) // 10_240


def test_order_groups_square_then_date_then_internal_tile_columns():
    # all in MGRS square 32TMT (x 400-500 km, y 5200-5300 km of EPSG:32632)
    to_lonlat = Transformer.from_crs(32632, 4326, always_xy=True)
    x = np.array([405_000.0, 405_000.0, 416_000.0, 405_000.0, 406_000.0])
    y = np.array([5_250_000.0, 5_290_000.0, 5_295_000.0, 5_290_000.0, 5_291_000.0])
    lon, lat = to_lonlat.transform(x, y)
    day = np.array([900.0, 905.0, 900.0, 930.0, 901.0])  # days since 2018-01-01
    shot = np.array([5, 4, 3, 2, 1])
    order = batch_order(lon, lat, day, shot)
    # window 45 (days 900-919): internal column 0 (rows 0, 0, 4 -> shots 1, 4 by shot
    # number, then 5), then column 1; then window 46
    assert order.tolist() == [4, 1, 0, 2, 3]
    # another square further south comes after, one further north before
    lon2, lat2 = to_lonlat.transform(np.array([405_000.0, 405_000.0]), np.array([5.1e6, 5.4e6]))
    order = batch_order(np.r_[lon, lon2], np.r_[lat, lat2], np.r_[day, 900, 900],
                        np.r_[shot, 6, 7])  # fmt: skip
    assert order[0] == 6 and order[-1] == 5


def test_shot_number_breaks_ties_within_an_internal_tile():
    order = batch_order(np.array([8.01, 8.02]), np.array([47.01, 47.02]), np.zeros(2),
                        np.array([9, 3]))  # fmt: skip
    assert order.tolist() == [1, 0]


def test_plan_is_exact_cover():
    order = np.random.default_rng(0).permutation(2503)
    batches = plan_batches(order, 1000)
    assert [len(b) for b in batches] == [1000, 1000, 503]
    assert np.array_equal(np.concatenate(batches), order)
    with pytest.raises(ValueError):
        plan_batches(order, 0)


def test_runs_are_consecutive_even_and_at_least_one_per_worker():
    assert batch_runs([], 2) == []
    assert batch_runs([0, 1, 2, 3], 2) == [[0, 1], [2, 3]]
    assert batch_runs([0, 2, 5], 8) == [[0], [2], [5]]
    runs = batch_runs(list(range(20)), 2, max_run=6)
    assert [len(r) for r in runs] == [5, 5, 5, 5]
    assert [index for run in runs for index in run] == list(range(20))


def test_runs_are_shared_among_workers_only_when_each_keeps_min_run_batches():
    assert batch_runs(list(range(4)), 2, max_run=40, min_run=4) == [[0, 1, 2, 3]]
    assert batch_runs(list(range(7)), 2, max_run=40, min_run=4) == [list(range(7))]
    assert batch_runs(list(range(8)), 2, max_run=40, min_run=4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [len(r) for r in batch_runs(list(range(9)), 3, max_run=40, min_run=4)] == [5, 4]
    # max_run still cuts a long job, whatever min_run says
    assert [len(r) for r in batch_runs(list(range(20)), 3, max_run=6, min_run=8)] == [5] * 4
    assert batch_runs([3], 2, min_run=4) == [[3]]


def test_complete_batches_and_size_mismatch(tmp_path):
    assert complete_batches(tmp_path / "missing", 1000) == set()
    for index in (0, 2):
        (tmp_path / batch_name(1000, index)).write_bytes(b"x")
    (tmp_path / ".batch_1000_1.tmp-77.h5").write_bytes(b"half")  # interrupted write
    assert complete_batches(tmp_path, 1000) == {0, 2}
    with pytest.raises(InputError) as error:
        complete_batches(tmp_path, 500)
    message = str(error.value)
    assert "size 1000" in message and "--batch-size 500" in message and str(tmp_path) in message
