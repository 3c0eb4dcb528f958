"""Stage 3 on the served offline world: exact windows, outcomes, fallback, resume."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import h5py
import numpy as np
import polars as pl
import pytest
from affine import Affine
from rasterio.windows import Window

from gedidata.config import PipelineConfig
from gedidata.domain.gedi import DELTA_TIME_EPOCH
from gedidata.errors import InputError
from gedidata.runtime.executor import SerialExecutor
from gedidata.sources.profiles import PLANETARY_COMPUTER, profile_toml
from gedidata.stages.extract.driver import extract_split
from gedidata.store.samples_h5 import check_file, read_arrays
from tests.conftest import run_cli

PC = "planetary-computer"


@pytest.fixture(scope="module")
def profile(served):
    return replace(PLANETARY_COMPUTER, stac_url=served.stac_url, gdal_env=served.gdal_env)


def scene_on(world, tile: str, day: datetime):
    return next(s for s in world.scenes if s.tile == tile and s.datetime.date() == day.date())


def footprint(scene, east_m: float, south_m: float, when: datetime, shot: int, agbd=123.5):
    """A subset-CSV row for a footprint `east_m`/`south_m` from the scene's corner."""
    west, _, _, north = scene.bounds
    lon, lat = scene.to_lonlat(west + east_m, north - south_m)
    return shot_row(lon, lat, when, shot, agbd)


def shot_row(lon: float, lat: float, when: datetime, shot: int, agbd: float = 123.5) -> dict:
    """A subset-CSV row for a footprint at (lon, lat) shot at `when`."""
    naive = when.astimezone(UTC).replace(tzinfo=None)
    return {
        "agbd": agbd,
        "agbd_se": 10.0,
        "lon_lowestmode": float(lon),
        "lat_lowestmode": float(lat),
        "shot_number": shot,
        "delta_time": (when - DELTA_TIME_EPOCH).total_seconds(),
        "l2_quality_flag": 1,
        "l4_quality_flag": 1,
        "surface_flag": 1,
        "GEDI Filename": f"GEDI04_A_{naive:%Y%j%H%M%S}_O01234_01_T00001_02_002_02_V002.h5",
        "acquisition_time": naive,
    }


def grid_rows(scene, count: int, columns: int, first_shot: int) -> list[dict]:
    """`count` footprints on a grid over the scene's clear middle, 350 m x 300 m apart."""
    return [
        footprint(scene, 700.0 + 350 * (i % columns), 2600.0 + 300 * (i // columns),
                  scene.datetime, first_shot + i)
        for i in range(count)
    ]  # fmt: skip


def test_extract_on_the_offline_world(world, profile, tmp_path):
    # 2021-07-03, baseline 05.00 (+1000 DN), cloud cover 0 by its SCL: the best candidate
    clean = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    cloudy = scene_on(world, "32TMT", datetime(2020, 7, 13, tzinfo=UTC))
    backup = scene_on(world, "32TMT", datetime(2020, 7, 8, tzinfo=UTC))
    rows = [
        # clear of the scene's snow, not-vegetated and saturated rectangles
        footprint(clean, 3003.0, 4507.0, clean.datetime + timedelta(hours=5), 101),
        # best candidate (cloud 2.5 %) has a medium-probability cloud here: fall back
        footprint(cloudy, 1500.0, 1500.0, cloudy.datetime, 102),
        # 8 days before 2020-07-08, its only candidate; over its high-probability cloud
        footprint(backup, 4500.0, 1500.0, backup.datetime - timedelta(days=8), 103),
        # nowhere near a scene
        {**footprint(clean, 3000.0, 3000.0, clean.datetime, 104), "lon_lowestmode": 20.0},
    ]
    subset = tmp_path / "train_subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")
    out = tmp_path / "out"
    config = PipelineConfig(output_dir=out, batch_size=2, num_processors=1)

    result = extract_split(config, "train", subset, profile, SerialExecutor(), progress=False)

    ledger = pl.read_csv(result.ledger, separator=";")
    outcome = dict(zip(ledger["shot_number"], ledger["outcome"], strict=True))
    scene_of = dict(zip(ledger["shot_number"], ledger["scene"], strict=True))
    assert outcome[101] == "ok" and scene_of[101] == clean.id
    assert outcome[102] == "ok" and scene_of[102] == backup.id  # the fallback scene
    assert outcome[103] == "scl_cloud"
    assert outcome[104] == "no_scene"
    assert result.outcomes == {"ok": 2, "scl_cloud": 1, "no_scene": 1}

    batches = sorted((out / "train" / "hdf5_batch_data").glob("*.h5"))
    assert [b.name for b in batches] == ["batch_2_0.h5", "batch_2_1.h5"]
    assert sum(check_file(b) for b in batches) == 2
    samples = {}
    for batch in batches:
        arrays = read_arrays(batch)
        for i, shot in enumerate(arrays["GEDI Shot Number"][:, 0]):
            samples[int(shot)] = {name: values[i] for name, values in arrays.items()}

    for shot, scene in ((101, clean), (102, backup)):
        sample = samples[shot]
        transform = Affine(*sample["Transforms"][:6])
        assert sample["CRS"][0] == f"EPSG:{scene.epsg}"
        grid = scene.transform("B02")
        col_off = round((transform.c - grid.c) / 10)
        row_off = round((grid.f - transform.f) / 10)
        window = Window(col_off, row_off, 32, 32)
        expected_b04 = scene.expected("B04", window).astype(np.int32) - scene.pc_offset
        np.testing.assert_array_equal(sample["Sentinel-2 L2A"][3], np.clip(expected_b04, 0, None))
        # the footprint is in the central 2 x 2 pixels and carries the AGBD value
        lat, lon = sample["GEDI Lat Lon"]
        x, y = scene.from_lonlat(lon, lat)
        col, row = int((x - transform.c) // 10), int((transform.f - y) // 10)
        assert col in (15, 16) and row in (15, 16)
        agbd = sample["AGBD Raster"][0]
        assert agbd[row, col] == pytest.approx(123.5)
        assert 9 <= (agbd == np.float32(123.5)).sum() <= 16
        assert set(np.unique(agbd)) == {np.float32(-9999), np.float32(123.5)}
        assert sample["Sentinel-2 Offset Removed"][0] == scene.pc_offset
        assert sample["Sentinel-2 Processing Baseline"][0] == scene.processing_baseline

    # A re-run skips the complete batches and rewrites nothing.
    stamps = [b.stat().st_mtime_ns for b in batches]
    again = extract_split(config, "train", subset, profile, SerialExecutor(), progress=False)
    assert again.skipped_batches == 2
    assert [b.stat().st_mtime_ns for b in batches] == stamps
    assert again.outcomes == result.outcomes

    # Another batch size would cut the footprints differently: refused.
    with pytest.raises(InputError, match="--batch-size 3"):
        extract_split(
            replace(config, batch_size=3), "train", subset, profile, SerialExecutor(), False
        )
    with h5py.File(batches[0]) as handle:
        assert handle.attrs["source_profile"] == PC


def test_pipeline_runs_extract_through_a_profile_file(world, profile, tmp_path):
    """The CLI, a TOML source profile pointing at 127.0.0.1, skip flags, --stop-after."""
    scene = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    rows = [footprint(scene, 3003.0 + 40 * i, 4507.0, scene.datetime, 200 + i) for i in range(3)]
    subset = tmp_path / "subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")
    toml = tmp_path / "offline.toml"
    toml.write_text(profile_toml(profile))
    out = tmp_path / "out"
    args = ("--path-subset-csv-train", subset, "--path-subset-csv-test", subset,
            "--source", toml, "--batch-size", "2", "--num-processors", "2")  # fmt: skip
    result = run_cli(out, *args, "--stop-after", "extract", "-q")
    assert result.returncode == 0, result.stderr
    assert "extract  train  3" in result.stdout
    for split in ("train", "test"):
        batches = sorted((out / split / "hdf5_batch_data").glob("*.h5"))
        assert sum(check_file(b) for b in batches) == 3
        ledger = pl.read_csv(out / f"{split}_ledger.csv", separator=";")
        assert sorted(ledger["shot_number"]) == [200, 201, 202]
        assert set(ledger["outcome"]) == {"ok"}
    # Without --stop-after the run goes on: extract is complete, fuse makes the datasets.
    rest = run_cli(out, *args)
    assert rest.returncode == 0, rest.stderr
    assert "2 batches (2 already complete)" in rest.stdout
    for split in ("train", "test"):
        fused = read_arrays(out / f"{split}_dataset.h5")
        assert sorted(fused["GEDI Shot Number"][:, 0]) == [200, 201, 202]


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGINT"])
def test_stop_then_rerun_gives_the_same_samples(stop, world, profile, tmp_path):
    """Kill (SIGKILL) or interrupt (SIGINT, a terminal's Ctrl-C) a running extract, main
    and workers, mid-way; the re-run completes it with no duplicate and no unreadable
    file, and matches an uninterrupted run. Ctrl-C ends the run at once, with exit
    status 130."""
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import SHORT_RUNS_CLI

    scene = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    rows = grid_rows(scene, 28, 14, 300)
    subset = tmp_path / "subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")
    toml = tmp_path / "offline.toml"
    toml.write_text(profile_toml(profile))

    def command(out):
        return [*SHORT_RUNS_CLI, str(out),
                "--path-subset-csv-train", str(subset), "--path-subset-csv-test", str(subset),
                "--source", str(toml), "--batch-size", "1", "--num-processors", "2",
                "--stop-after", "extract", "-q"]  # fmt: skip

    def samples(out):
        shots = []
        for split in ("train", "test"):
            for batch in sorted((out / split / "hdf5_batch_data").glob("*.h5")):
                check_file(batch)  # readable, right schema
                shots += [(split, int(s)) for s in read_arrays(batch)["GEDI Shot Number"][:, 0]]
        return shots

    reference = tmp_path / "reference"
    assert subprocess.run(command(reference), capture_output=True, check=False).returncode == 0

    out = tmp_path / "killed"
    process = subprocess.Popen(command(out), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    batches = out / "train" / "hdf5_batch_data"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(batches.glob("batch_*.h5"))) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, getattr(signal, stop))
    try:
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert returncode == (130 if stop == "SIGINT" else -signal.SIGKILL)
    done_before = len(list(batches.glob("batch_*.h5")))
    assert 3 <= done_before < 28  # killed mid-way

    again = subprocess.run(command(out), capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert sorted(samples(out)) == sorted(samples(reference))
    assert len(samples(out)) == len(set(samples(out)))
    assert not list(out.rglob(".batch_*"))  # no half-written file left


def test_each_scl_rule_gives_its_outcome(world, profile, tmp_path):
    """One footprint per SCL rule, each timed so that one scene is its only candidate."""
    july8 = scene_on(world, "32TMT", datetime(2020, 7, 8, tzinfo=UTC))  # cloud/shadow/water
    july3 = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))  # snow/saturated
    before8 = july8.datetime - timedelta(days=8)  # 2020-07-13 is then 13 days away
    before3 = july3.datetime - timedelta(days=6)  # 2021-07-08 is then 11 days away
    rows = [
        footprint(july8, 4500.0, 1500.0, before8, 1),  # inside the high-probability cloud
        footprint(july8, 3900.0, 2700.0, before8, 2),  # inside the cloud shadow
        footprint(july8, 1200.0, 4800.0, before8, 3),  # inside the water
        # 15 x 16 water pixels (23 %) in the corner, but water under the central 4 x 4
        footprint(july8, 1805.0, 4195.0, before8, 4),
        footprint(july3, 1200.0, 1200.0, before3, 5),  # inside the snow
        footprint(july3, 2500.0, 3100.0, before3, 6),  # on the saturated pixels
    ]
    subset = tmp_path / "subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")
    config = PipelineConfig(output_dir=tmp_path / "out", batch_size=10, num_processors=1)
    result = extract_split(config, "train", subset, profile, SerialExecutor(), progress=False)
    ledger = pl.read_csv(result.ledger, separator=";")
    outcome = dict(zip(ledger["shot_number"], ledger["outcome"], strict=True))
    assert outcome == {
        1: "scl_cloud",
        2: "scl_shadow",
        3: "scl_water",
        4: "scl_centre",
        5: "scl_snow",
        6: "scl_invalid",
    }


def test_earth_search_layout_is_harmonized(world, served_world_factory, tmp_path):
    """Earth Search shifts old scenes by +1000 and says so in raster:bands: removed."""
    es = "earth-search"
    # Earth Search has no WorldCover: serve the Planetary Computer WorldCover beside it.
    items = world.item_files(es) + [p for p in world.item_files(PC) if "esa-worldcover" in str(p)]
    collections = world.collection_files(es) + [
        p for p in world.collection_files(PC) if "esa-worldcover" in str(p)
    ]
    served = served_world_factory(world.root, items, collections)
    from gedidata.sources.profiles import EARTH_SEARCH

    profile = replace(
        EARTH_SEARCH,
        stac_url=served.stac_url,
        worldcover_collection="esa-worldcover",
        gdal_env={**EARTH_SEARCH.gdal_env, **served.gdal_env},
    )
    old = scene_on(world, "32TMT", datetime(2021, 7, 8, tzinfo=UTC))  # baseline 03.00
    assert old.pc_offset == 0 and old.es_offset == 1000
    subset = tmp_path / "subset.csv"
    later = old.datetime + timedelta(days=6)  # the 05.00 scene of 2021-07-03 is 11 days away
    pl.DataFrame([footprint(old, 3003.0, 3007.0, later, 7)]).write_csv(subset, separator=";")
    config = PipelineConfig(output_dir=tmp_path / "out", batch_size=10, num_processors=1)
    result = extract_split(config, "test", subset, profile, SerialExecutor(), progress=False)
    ledger = pl.read_csv(result.ledger, separator=";")
    assert result.outcomes == {"ok": 1}, ledger.to_dicts()
    arrays = read_arrays(next((tmp_path / "out" / "test" / "hdf5_batch_data").glob("*.h5")))
    transform = Affine(*arrays["Transforms"][0][:6])
    grid = old.transform("B02")
    window = Window(round((transform.c - grid.c) / 10), round((grid.f - transform.f) / 10), 32, 32)
    harmonized = old.expected("B04", window, es).astype(np.int32) - 1000
    np.testing.assert_array_equal(arrays["Sentinel-2 L2A"][0][3], harmonized)
    np.testing.assert_array_equal(arrays["Sentinel-2 L2A"][0][3], old.expected("B04", window))
    assert arrays["Sentinel-2 Offset Removed"][0][0] == 1000
    assert arrays["Sentinel-2 Product Name"][0][0] == old.es_id


def test_progress_comes_per_chunk_and_chunks_change_nothing(world, profile, tmp_path, monkeypatch):
    """Workers report outcomes as chunks of footprints finish; reading in chunks of 3
    gives the same files as reading all at once."""
    from collections import Counter

    from gedidata.stages.extract import driver as extract

    scene = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    rows = grid_rows(scene, 14, 7, 400)
    rows.append({**footprint(scene, 3000.0, 3000.0, scene.datetime, 499), "lon_lowestmode": 20.0})
    subset = tmp_path / "subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")

    class Recording(SerialExecutor):
        def __init__(self) -> None:
            self.updates: list[Counter] = []

        def map_unordered(self, function, tasks, on_progress=None, on_retry=None):
            def record(update):
                self.updates.append(update)
                on_progress(update)

            return super().map_unordered(function, tasks, record)

    def run(out, chunk):
        monkeypatch.setattr(extract, "PROGRESS_FOOTPRINTS", chunk)
        monkeypatch.setattr(extract, "CHUNK_COLUMNS", 1)  # every window its own column
        executor = Recording()
        config = PipelineConfig(output_dir=out, batch_size=100, num_processors=1)
        result = extract_split(config, "train", subset, profile, executor, progress=True)
        return result, executor.updates

    whole, whole_updates = run(tmp_path / "whole", 500)
    chunked, updates = run(tmp_path / "chunked", 3)
    assert chunked.outcomes == whole.outcomes
    assert whole.outcomes["no_scene"] == 1 and whole.outcomes["ok"] >= 10
    # the rejection found before any read first, then one update per chunk of 3
    assert updates[0] == {"no_scene": 1}
    assert [sum(u.values()) for u in updates[1:]] == [3, 3, 3, 3, 2]
    assert sum(updates, Counter()) == chunked.outcomes
    assert sum(whole_updates, Counter()) == whole.outcomes and len(whole_updates) == 2
    whole_dir, chunked_dir = tmp_path / "whole", tmp_path / "chunked"
    ledger = "train_ledger.csv"
    assert (whole_dir / ledger).read_text() == (chunked_dir / ledger).read_text()
    batch = "train/hdf5_batch_data/batch_100_0.h5"
    a, b = read_arrays(whole_dir / batch), read_arrays(chunked_dir / batch)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_unreadable_files_fail_only_their_footprints(
    world, profile, served_world_factory, tmp_path
):
    """A Sentinel-2 band or a DEM tile that cannot be read gives `read_error` (with the
    scene and GDAL's message) to the footprints that need it; the others are kept."""
    from gedidata.runtime.executor import ProcessExecutor

    served = served_world_factory(world.root, world.item_files(PC), world.collection_files(PC))
    alps = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    iran = next(s for s in world.scenes if s.tile == "39SWV" and s.nodata_edge is None)
    rows = [footprint(alps, 3003.0 + 40 * i, 4507.0, alps.datetime, 600 + i) for i in range(3)]
    rows.append(footprint(iran, 3000.0, 3000.0, iran.datetime, 700))
    subset = tmp_path / "subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")

    def run(name: str, broken: str | None) -> pl.DataFrame:
        if broken is not None:
            served.file_server.fail("/" + broken, status=404, count=10_000)
        try:
            config = PipelineConfig(
                output_dir=tmp_path / name, batch_size=10, num_processors=1, retry_pause=0
            )
            # in a worker process: GDAL there remembers the failures, not in this one
            result = extract_split(config, "train", subset, profile, ProcessExecutor(1), False)
        finally:
            served.file_server.reset()
        return pl.read_csv(result.ledger, separator=";").sort("shot_number")

    healthy = run("healthy", None)
    assert healthy["outcome"].to_list() == ["ok"] * 4
    band = run("band", alps.asset_path("B05", PC))
    assert band["outcome"].to_list() == ["read_error"] * 3 + ["ok"]
    assert band["scene"].to_list()[:3] == [alps.id] * 3
    for detail in band["detail"].to_list()[:3]:  # the file and what went wrong
        assert detail.startswith("cannot open http://") and detail.endswith(
            "B05_20m.tif: HTTP response code: 404"
        )
    lon, lat = rows[3]["lon_lowestmode"], rows[3]["lat_lowestmode"]
    under = next(
        t for t in world.dem_tiles if (t.lon0, t.lat0) == (math.floor(lon), math.floor(lat))
    )
    dem = run("dem", under.pc_path)
    assert dem["outcome"].to_list() == ["ok"] * 3 + ["read_error"]
    assert dem["scene"].to_list()[3] == iran.id
    assert dem["detail"][3].endswith(f"{under.name}.tif: HTTP response code: 404")


def test_batches_are_written_as_they_complete(world, profile, tmp_path, monkeypatch):
    """Within one run, a batch's files appear once its last footprint is done, before
    the run ends; what the batches hold does not depend on it."""
    from gedidata.stages.extract import driver as extract

    scene = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    rows = grid_rows(scene, 14, 7, 800)
    subset = tmp_path / "subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")
    monkeypatch.setattr(extract, "PROGRESS_FOOTPRINTS", 2)
    monkeypatch.setattr(extract, "CHUNK_COLUMNS", 1)
    events: list[str] = []
    write_batch = extract._write_batch

    def recording_write(task, *args):
        events.append(f"write {task.index}")
        return write_batch(task, *args)

    monkeypatch.setattr(extract, "_write_batch", recording_write)

    class Recording(SerialExecutor):
        def map_unordered(self, function, tasks, on_progress=None, on_retry=None):
            tasks = list(tasks)
            assert len(tasks) == 1  # one run of 5 batches
            return super().map_unordered(function, tasks, lambda _: events.append("progress"))

    config = PipelineConfig(output_dir=tmp_path / "out", batch_size=3, num_processors=1)
    result = extract_split(config, "train", subset, profile, Recording(), progress=True)
    writes = [event for event in events if event.startswith("write")]
    assert sorted(writes) == [f"write {i}" for i in range(5)]
    assert events.index(writes[0]) < len(events) - 1 - events[::-1].index("progress")
    ledger = pl.read_csv(result.ledger, separator=";")
    kept = {int(s) for s in ledger.filter(pl.col("outcome") == "ok")["shot_number"]}
    stored = []
    for index in range(5):
        arrays = read_arrays(tmp_path / "out" / "train" / "hdf5_batch_data" / f"batch_3_{index}.h5")
        stored += [int(s) for s in arrays["GEDI Shot Number"][:, 0]]
    assert sorted(stored) == sorted(kept) and len(stored) == len(set(stored))


def test_workers_share_the_work_only_from_min_run_footprints(world, profile, tmp_path, monkeypatch):
    """Below `MIN_RUN_FOOTPRINTS`, two processors make one run and no pool is started
    (two runs would both read the tiles between them); from it on, the batches are
    shared among the workers. The batches hold the same either way."""
    from gedidata.stages.extract import driver as extract

    scene = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    rows = grid_rows(scene, 40, 10, 900)
    subset = tmp_path / "subset.csv"
    pl.DataFrame(rows).write_csv(subset, separator=";")
    pools: list[int] = []
    runs: list[int] = []

    class Recording(SerialExecutor):
        def map_unordered(self, function, tasks, on_progress=None, on_retry=None):
            tasks = list(tasks)
            runs.append(len(tasks))
            return super().map_unordered(function, tasks, on_progress)

    class PoolStandIn(Recording):
        """Records the pool extract starts; runs its tasks here."""

        def __init__(self, processes: int, preload=()) -> None:
            pools.append(processes)

    monkeypatch.setattr(extract, "ProcessExecutor", PoolStandIn)
    monkeypatch.setattr(extract, "SerialExecutor", Recording)
    ledgers = []
    for minimum, name in ((2_000, "one"), (20, "shared")):
        monkeypatch.setattr(extract, "MIN_RUN_FOOTPRINTS", minimum)
        config = PipelineConfig(output_dir=tmp_path / name, batch_size=10, num_processors=2)
        ledgers.append(pl.read_csv(
            extract_split(config, "train", subset, profile, progress=False).ledger, separator=";"
        ))  # fmt: skip
        if name == "one":
            assert pools == [] and runs == [1]  # 4 batches of 10 < 2,000 footprints
    assert pools == [2] and runs == [1, 2]  # 2 runs of 2 batches, 20 footprints each
    assert ledgers[0].equals(ledgers[1]) and ledgers[0].height == 40
    for index in range(4):
        one, shared = (
            read_arrays(tmp_path / name / "train" / "hdf5_batch_data" / f"batch_10_{index}.h5")
            for name in ("one", "shared")
        )
        assert one.keys() == shared.keys()
        for key in one:
            np.testing.assert_array_equal(one[key], shared[key], err_msg=key)


def test_an_unreachable_stac_api_fails_every_footprint_and_writes_every_batch(
    world, served_world_factory, tmp_path
):
    """Searches are made by the main process, ahead of the workers: when they fail, each
    footprint still gets its outcome (a transient one: read again at the end of the run
    and by the next run), and every batch is written (empty)."""
    served = served_world_factory(world.root, world.item_files(PC), world.collection_files(PC))
    # an HTTP server that is not a STAC API: 404 for the landing page (not retried)
    broken = replace(
        PLANETARY_COMPUTER, stac_url=f"{served.files_url}/no-stac-here", gdal_env=served.gdal_env
    )
    alps = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    subset = tmp_path / "subset.csv"
    pl.DataFrame(grid_rows(alps, 3, 3, 900)).write_csv(subset, separator=";")
    config = PipelineConfig(
        output_dir=tmp_path / "out", batch_size=2, num_processors=1, retry_pause=0
    )
    result = extract_split(config, "train", subset, broken, SerialExecutor(), progress=False)
    assert result.outcomes == {"read_error": 3}
    assert result.retried == 3 and result.transient == 3
    ledger = pl.read_csv(result.ledger, separator=";")
    assert ledger["shot_number"].sort().to_list() == [900, 901, 902]
    # what failed, and where
    assert set(ledger["detail"]) == {f"STAC API {broken.stac_url}: APIError: not found"}
    batches = sorted((tmp_path / "out" / "train" / "hdf5_batch_data").glob("*.h5"))
    assert [path.name for path in batches] == ["batch_2_0.h5", "batch_2_1.h5"]
    for path in batches:
        assert check_file(path) == 0  # valid files without samples


def test_searches_keep_a_few_runs_ahead_of_the_runs_handed_out(monkeypatch, tmp_path):
    """The first runs' searches start at once (while the workers start); each run
    handed out starts one more, so a long job does not hold every run's results; runs
    go out as their searches finish, so a slow search holds back only its own run."""
    import threading
    import time
    from pathlib import Path

    from gedidata.sources.stac import SceneSearchResult
    from gedidata.stages.extract import driver as extract
    from gedidata.stages.extract.driver import BatchTask, ExtractSettings, RunScenes

    started: list[int] = []
    lock = threading.Lock()
    slow = threading.Event()

    def search_run(run, settings, local):  # stands in for the STAC searches
        with lock:
            started.append(run[0].index)
        if run[0].index == 0:
            slow.wait(10)  # a slow search: until the test lets it end
        return RunScenes(SceneSearchResult(), None, f"run {run[0].index}")

    monkeypatch.setattr(extract, "_search_run", search_run)
    settings = ExtractSettings.from_config(PipelineConfig(output_dir=tmp_path), PLANETARY_COMPUTER)
    runs = [(BatchTask(i, Path(f"b{i}.h5"), Path(f"l{i}.csv"), ()),) for i in range(5)]

    def settled(count: int) -> list[int]:
        deadline = time.monotonic() + 10
        while len(started) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # (time for a search too many to start)
        return sorted(started)

    ahead = extract._SearchAhead(runs, settings, threads=2)
    try:
        assert settled(2) == [0, 1]  # two searched at once, no more yet
        tasks = iter(ahead)
        first = next(tasks)  # run 1: run 0's search is still under way
        assert first.batches == runs[1] and first.scenes.error == "run 1"
        assert settled(3) == [0, 1, 2]
        second = next(tasks)  # run 2, whose search ended while run 0's goes on
        assert second.scenes.error == "run 2"
        slow.set()
        rest = [task.scenes.error for task in tasks]
        assert sorted(rest) == [f"run {i}" for i in (0, 3, 4)]
        assert sorted(started) == [0, 1, 2, 3, 4]
    finally:
        slow.set()
        ahead.close()


def test_the_bands_of_a_chunk_are_read_side_by_side(world, profile, monkeypatch, tmp_path):
    """Bands are read in threads, `PARALLEL_BANDS` at once (with a distant store, GDAL
    then fetches several bands' tiles in the same round trip), and what they read is
    what one band at a time reads."""
    import threading
    import time

    from gedidata.stages.extract import driver as extract

    alps = scene_on(world, "32TMT", datetime(2021, 7, 3, tzinfo=UTC))
    subset = tmp_path / "subset.csv"
    pl.DataFrame(grid_rows(alps, 3, 3, 950)).write_csv(subset, separator=";")

    def run(name: str) -> dict:
        config = PipelineConfig(output_dir=tmp_path / name, batch_size=10, num_processors=1)
        result = extract_split(config, "train", subset, profile, SerialExecutor(), progress=False)
        assert result.outcomes == {"ok": 3}
        return read_arrays(tmp_path / name / "train" / "hdf5_batch_data" / "batch_10_0.h5")

    monkeypatch.setattr(extract, "PARALLEL_BANDS", 1)
    one_at_a_time = run("serial")
    monkeypatch.undo()

    reading, most = 0, 0
    lock = threading.Lock()
    read_band = extract._read_band

    def counted(dataset, band, items):
        nonlocal reading, most
        with lock:
            reading += 1
            most = max(most, reading)
        try:
            time.sleep(0.05)  # long enough for the other threads to come in
            return read_band(dataset, band, items)
        finally:
            with lock:
                reading -= 1

    monkeypatch.setattr(extract, "_read_band", counted)
    side_by_side = run("threads")
    assert most == extract.PARALLEL_BANDS > 1
    for key in one_at_a_time:
        np.testing.assert_array_equal(one_at_a_time[key], side_by_side[key], err_msg=key)


class _HungStacApi:
    """An HTTP server on 127.0.0.1 that answers nothing until released, like a STAC API
    that hangs; `asked` is set once a request is in."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.asked = threading.Event()
        self.release = threading.Event()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.asked.set()
                api.release.wait(120)
                self.send_error(503)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("processes", [1, 2])
def test_ctrl_c_stops_extract_at_once_while_a_stac_search_hangs(processes, tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while extract waits
    for a STAC search that hangs: the run stops at once with exit status 130 and says how
    to resume, instead of waiting for the search's timeouts and retries (minutes)."""
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import SHORT_RUNS_CLI

    api = _HungStacApi()
    try:
        when = datetime(2021, 7, 3, 10, 30, tzinfo=UTC)
        rows = [shot_row(8.5 + 0.01 * i, 47.5, when, 700 + i) for i in range(4)]
        subset = tmp_path / "subset.csv"
        pl.DataFrame(rows).write_csv(subset, separator=";")
        toml = tmp_path / "hung.toml"
        toml.write_text(profile_toml(replace(PLANETARY_COMPUTER, stac_url=api.url)))
        out = tmp_path / "out"
        command = [*SHORT_RUNS_CLI, str(out),
                   "--path-subset-csv-train", str(subset), "--path-subset-csv-test", str(subset),
                   "--source", str(toml), "--batch-size", "2",
                   "--num-processors", str(processes), "--stop-after", "extract", "-q"]  # fmt: skip
        process = subprocess.Popen(
            command, start_new_session=True, stderr=subprocess.PIPE, text=True
        )
        try:
            assert api.asked.wait(60), "extract never asked the STAC API"
            time.sleep(0.5)  # (the main process is waiting for the search now)
            os.killpg(process.pid, signal.SIGINT)
            _, errors = process.communicate(timeout=30)  # the search would hang for 120 s
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    finally:
        api.close()
    assert process.returncode == 130, errors
    assert "interrupted; re-run the same command to resume" in errors
    assert not list(out.rglob(".*tmp*"))  # nothing half-written
