"""Issue 16, items 1-6: runs on the served offline world with faults injected.

Each test runs the command line as a user would (a subprocess), against the file
server's and a STAC proxy's fault modes, and asserts the exact outcome: output identical
to a clean run's where the fault is transient, the ledger's outcomes and the exit status
where it is not, a bound on the wall time where a service hung. Items 7-11 (inputs,
options, disk, lock, fuse) are in `test_faults_io.py`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gedidata.offline import pixels
from gedidata.offline.servers import StacProxy, sign_hrefs
from gedidata.store.samples_h5 import check_file, read_arrays
from tests.conftest import SHORT_RUNS_CLI
from tests.stages.test_extract import PC, grid_rows, scene_on

EXIT_TRANSIENT = 3
CLEAN_DAY = datetime(2021, 7, 3, tzinfo=UTC)  # 32TMT: cloud-free, baseline 05.00


@pytest.fixture
def file_faults(served):
    """The file server, its fault rules cleared after the test."""
    yield served.file_server
    served.file_server.reset()


@pytest.fixture
def proxy(served):
    """A STAC proxy in front of the served STAC API (`--stac-url proxy.url`)."""
    with StacProxy(served.stac_url, timeout=60) as stac_proxy:
        yield stac_proxy


def write_csv(path: Path, rows: list[dict]) -> Path:
    pl.DataFrame(rows).write_csv(path, separator=";")
    return path


def empty_csv(path: Path, like: list[dict]) -> Path:
    """A header-only subset CSV: a split with no footprint."""
    pl.DataFrame(like).head(0).write_csv(path, separator=";")
    return path


def gedidata(
    out: Path, train: Path, test: Path, source: Path, *extra: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """The command line on given subset CSVs, up to extract, failed reads retried at once."""
    command = [*SHORT_RUNS_CLI, str(out), "--path-subset-csv-train", str(train),
               "--path-subset-csv-test", str(test), "--source", str(source),
               "--stop-after", "extract", "--retry-pause", "0", "-q", *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def outcomes(out: Path, split: str = "train") -> dict[int, str]:
    ledger = pl.read_csv(out / f"{split}_ledger.csv", separator=";")
    return dict(zip(ledger["shot_number"].to_list(), ledger["outcome"].to_list(), strict=True))


def samples(out: Path, split: str = "train") -> dict[int, str]:
    """Each sample of the split's batch files: shot number → digest of all its datasets."""
    found: dict[int, str] = {}
    for batch in sorted((out / split / "hdf5_batch_data").glob("batch_*.h5")):
        check_file(batch)
        arrays = read_arrays(batch)
        for k, shot in enumerate(arrays["GEDI Shot Number"][:, 0].tolist()):
            digest = hashlib.sha256()
            for name in sorted(arrays):
                value = np.asarray(arrays[name][k])
                digest.update(name.encode())
                digest.update(repr(value.tolist()).encode())
            assert int(shot) not in found, f"shot {shot} twice"
            found[int(shot)] = digest.hexdigest()
    return found


def clean_rows(world, count: int, first_shot: int) -> list[dict]:
    return grid_rows(scene_on(world, "32TMT", CLEAN_DAY), count, 14, first_shot)


@pytest.fixture(scope="module")
def reference(world, source, tmp_path_factory):
    """A clean run of 28 footprints on the clean scene: what every transient fault must
    end in."""
    tmp = tmp_path_factory.mktemp("reference")
    rows = clean_rows(world, 28, 5000)
    train, test = write_csv(tmp / "train.csv", rows), empty_csv(tmp / "test.csv", rows)
    done = gedidata(tmp / "out", train, test, source, "--batch-size", "4", "--num-processors", "2")
    assert done.returncode == 0, done.stderr
    assert set(outcomes(tmp / "out").values()) == {"ok"}
    return train, test, samples(tmp / "out")


# ----------------------------------------------------------------------------- item 1


def slope_strip_rows(world) -> tuple[list[dict], list[dict]]:
    """Footprints of the clean scene whose whole window lies in the DEM's 20 % strip
    (steep: rejected by the default --max-slope 15), and ones in its 3.6 % or 8.5 %
    strips (kept); by `pixels.dem_strip`, 300 m around each footprint."""
    steep, gentle = [], []
    for row in clean_rows(world, 14 * 14, 6000):
        lat = row["lat_lowestmode"]
        strips = set(pixels.dem_strip(np.array([lat - 0.0008, lat, lat + 0.0008])).tolist())
        if strips == {1}:
            steep.append(row)
        elif strips in ({0}, {2}):
            gentle.append(row)
    return steep[:30], gentle[:30]


def test_item1_a_chunk_rejected_whole_by_slope_ends_well(world, source, tmp_path):
    """30 footprints on steep ground (all rejected by `slope`), then mixed with 30 on
    gentle ground: exit 0, every outcome as the DEM says, and the re-run changes nothing."""
    steep, gentle = slope_strip_rows(world)
    assert len(steep) == 30 and len(gentle) == 30  # (the grid reaches every strip)
    empty = empty_csv(tmp_path / "empty.csv", steep)
    alone = gedidata(tmp_path / "steep", write_csv(tmp_path / "steep.csv", steep), empty, source)
    assert alone.returncode == 0, alone.stderr
    assert outcomes(tmp_path / "steep") == {row["shot_number"]: "slope" for row in steep}
    assert samples(tmp_path / "steep") == {}

    mixed_csv = write_csv(tmp_path / "mixed.csv", steep + gentle)
    mixed = gedidata(tmp_path / "mixed", mixed_csv, empty, source, "--batch-size", "7")
    assert mixed.returncode == 0, mixed.stderr
    expected = {row["shot_number"]: "slope" for row in steep}
    expected.update({row["shot_number"]: "ok" for row in gentle})
    assert outcomes(tmp_path / "mixed") == expected
    kept = samples(tmp_path / "mixed")
    assert sorted(kept) == sorted(row["shot_number"] for row in gentle)
    again = gedidata(tmp_path / "mixed", mixed_csv, empty, source, "--batch-size", "7")
    assert again.returncode == 0, again.stderr
    assert samples(tmp_path / "mixed") == kept


# ----------------------------------------------------------------------------- item 2


def test_item2_an_empty_split_flows_through_every_stage(world, source, tmp_path):
    """A split with no footprint (header-only subset CSV) gives an empty ledger and an
    empty fused file; the run ends with its summary and exit status 0."""
    rows = clean_rows(world, 3, 7000)
    train, test = write_csv(tmp_path / "train.csv", rows), empty_csv(tmp_path / "test.csv", rows)
    command = [*SHORT_RUNS_CLI, str(tmp_path / "out"), "--path-subset-csv-train", str(train),
               "--path-subset-csv-test", str(test), "--source", str(source), "-q",
               "--retry-pause", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "gedidata run summary" in done.stdout
    assert check_file(tmp_path / "out" / "test_dataset.h5") == 0
    assert check_file(tmp_path / "out" / "train_dataset.h5") == 3
    assert outcomes(tmp_path / "out", "test") == {}


@pytest.mark.parametrize(
    ("granules", "extra", "unreadable"),
    [
        ("both", ["--bbox", "0", "0", "1", "1"], 0),  # a box with no footprint in it
        ("2020", ["--max-size-training", "0"], 0),  # one year only, and no training size
        ("garbage", [], 1),  # every granule unreadable
    ],
    ids=["empty-bbox", "one-year-size-0", "unreadable-granules"],
)
def test_item2_empty_splits_from_combine_end_well(
    granules, extra, unreadable, real_granules, source, tmp_path
):
    """Both splits empty, from the real granules: every stage runs, the fused files are
    empty, the summary is printed (naming an unreadable granule), exit status 0."""
    inputs = tmp_path / "granules"
    inputs.mkdir()
    if granules == "garbage":
        (inputs / real_granules[0].name).write_bytes(b"not HDF5 at all" * 100)
    for granule in real_granules if granules == "both" else real_granules[:1]:
        if granules != "garbage":
            (inputs / granule.name).symlink_to(granule)
    out = tmp_path / "out"
    command = [*SHORT_RUNS_CLI, str(out), "--input", str(inputs), "--source", str(source),
               "-q", "--retry-pause", "0", *extra]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "gedidata run summary" in done.stdout
    for split in ("train", "test"):
        assert check_file(out / f"{split}_dataset.h5") == 0
        assert outcomes(out, split) == {}
    assert done.stdout.count("unreadable granule") == unreadable


# ----------------------------------------------------------------------------- item 3


@pytest.mark.slow
def test_item3_a_stac_outage_is_retried_by_the_next_run(reference, source, proxy, tmp_path):
    """With the STAC API down, every footprint is a read error and the run exits 3;
    once it is back, the same command reads them and the output equals a clean run's."""
    train, test, clean = reference
    out = tmp_path / "out"
    proxy.down()
    started = time.monotonic()
    down = gedidata(out, train, test, source, "--stac-url", proxy.url, "--batch-size", "4",
                    "--num-processors", "1")  # fmt: skip
    assert down.returncode == EXIT_TRANSIENT, down.stderr
    assert time.monotonic() - started < 120
    assert set(outcomes(out).values()) == {"read_error"} and len(outcomes(out)) == 28
    assert "re-run the same command" in down.stderr
    proxy.up()
    back = gedidata(out, train, test, source, "--stac-url", proxy.url, "--batch-size", "4",
                    "--num-processors", "1")  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert samples(out) == clean


def test_item3_a_burst_of_403s_loses_no_sample(reference, source, file_faults, tmp_path):
    """An expired token's burst of 403s on the COG reads: the footprints it hits are read
    again at the end of the run (new process, new signatures); nothing is lost."""
    train, test, clean = reference
    # (the first requests of each run, the SCL opens and their re-signed retries, meet
    # them: those scenes are given up for the run, and read again at its end)
    file_faults.fail("/", status=403, count=6)
    done = gedidata(tmp_path / "out", train, test, source, "--batch-size", "4",
                    "--num-processors", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "failed to read; reading them again" in done.stderr
    assert samples(tmp_path / "out") == clean
    assert set(outcomes(tmp_path / "out").values()) == {"ok"}


# ----------------------------------------------------------------------------- item 4


@pytest.mark.slow
def test_item4_a_stac_api_that_never_answers_holds_a_run_a_bounded_time(
    reference, source, proxy, tmp_path
):
    """Searches that hang end after --http-timeout (with retries, within a deadline per
    run's searches); the run exits 3 within a bound; released, the re-run completes."""
    train, test, clean = reference
    out = tmp_path / "out"
    proxy.hang(search_only=True)
    started = time.monotonic()
    hung = gedidata(out, train, test, source, "--stac-url", proxy.url, "--http-timeout", "1",
                    "--batch-size", "4", "--num-processors", "1", timeout=200)  # fmt: skip
    seconds = time.monotonic() - started
    assert hung.returncode == EXIT_TRANSIENT, hung.stderr
    assert seconds < 100, seconds  # two rounds of searches: the run's and the retry's
    assert set(outcomes(out).values()) == {"read_error"}
    proxy.release()
    proxy.reset()
    back = gedidata(out, train, test, source, "--stac-url", proxy.url, "--batch-size", "4",
                    "--num-processors", "1")  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert samples(out) == clean


def test_item4_a_stalled_cog_request_times_out(world, reference, source, file_faults, tmp_path):
    """One band request that would stall for 150 s is cut at --http-timeout and read
    again: the run ends in well under the stall with the clean run's output."""
    train, test, clean = reference
    scene = scene_on(world, "32TMT", CLEAN_DAY)
    file_faults.delay("/" + scene.asset_path("B11", PC), seconds=150, count=1)
    started = time.monotonic()
    done = gedidata(tmp_path / "out", train, test, source, "--http-timeout", "2",
                    "--batch-size", "4", "--num-processors", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    assert samples(tmp_path / "out") == clean


def test_item4_a_killed_worker_never_hangs_the_run(reference, source, tmp_path):
    """SIGKILL of one pool worker (the OOM killer) mid-run: its run is extracted again
    on a new worker, the run finishes in a bounded time with the clean run's output."""
    psutil = pytest.importorskip("psutil")
    train, test, clean = reference
    out = tmp_path / "out"
    command = [*SHORT_RUNS_CLI, str(out), "--path-subset-csv-train", str(train),
               "--path-subset-csv-test", str(test), "--source", str(source),
               "--stop-after", "extract", "--retry-pause", "0", "-q",
               "--batch-size", "1", "--num-processors", "2"]  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        main = psutil.Process(process.pid)
        batches = out / "train" / "hdf5_batch_data"
        victim = None
        while victim is None and time.monotonic() - started < 120:
            written = len(list(batches.glob("batch_*.h5"))) if batches.is_dir() else 0
            # workers are the forkserver's children (grandchildren of the main process)
            workers = [p for c in main.children() for p in c.children()]
            if written >= 2 and workers:
                victim = workers[0]
            else:
                time.sleep(0.02)
        assert victim is not None, "no worker to kill"
        os.kill(victim.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "running its task again" in stderr  # (the worker died with a task)
    assert time.monotonic() - started < 120
    assert samples(out) == clean
    assert set(outcomes(out).values()) == {"ok"}


# ----------------------------------------------------------------------------- item 5


@pytest.mark.slow
def test_item5_an_asset_failing_for_good_is_given_up_once(world, source, file_faults, tmp_path):
    """One band answering 500 for good: its footprints are read errors at once, not after
    every footprint's own retries (88 footprints; the band is requested a bounded
    number of times, in the run and in its retry), and the run exits 3. Footprints read
    from other scenes (SCL fallback) end as in a clean run."""
    scene = scene_on(world, "32TMT", CLEAN_DAY)
    rows = clean_rows(world, 88, 8000)
    train = write_csv(tmp_path / "train.csv", rows)
    test = empty_csv(tmp_path / "test.csv", rows)
    clean = gedidata(tmp_path / "clean", train, test, source, "--batch-size", "10")
    assert clean.returncode == 0, clean.stderr
    clean_ledger = pl.read_csv(tmp_path / "clean" / "train_ledger.csv", separator=";")
    on_scene = set(clean_ledger.filter(pl.col("scene") == scene.id)["shot_number"])
    assert len(on_scene) > 60  # (most of the grid is on the clean scene)
    expected = {
        shot: "read_error" if shot in on_scene else outcome
        for shot, outcome in outcomes(tmp_path / "clean").items()
    }

    band = "/" + scene.asset_path("B05", PC)
    file_faults.fail(band, status=500, count=100_000)
    mark = file_faults.log.mark()
    started = time.monotonic()
    done = gedidata(tmp_path / "out", train, test, source, "--batch-size", "10",
                    "--num-processors", "1")  # fmt: skip
    seconds = time.monotonic() - started
    assert done.returncode == EXIT_TRANSIENT, done.stderr
    assert outcomes(tmp_path / "out") == expected
    ledger = pl.read_csv(tmp_path / "out" / "train_ledger.csv", separator=";")
    failed = ledger.filter(pl.col("outcome") == "read_error")
    assert all("B05" in detail for detail in failed["detail"])
    requests = len(file_faults.log.entries(since=mark, path_prefix=band))
    print(f"{requests} requests of the failing band; {seconds:.1f} s")
    assert requests <= 24, requests  # (GDAL's 1 + 4 retries, per open, per pass)
    assert seconds < 60, seconds


@pytest.mark.slow
def test_item5_every_dem_tile_failing_ends_fast(world, source, file_faults, tmp_path):
    """Every DEM tile answering 500: 154 footprints are read errors within a bound."""
    rows = clean_rows(world, 154, 9000)  # (all on the scene)
    train = write_csv(tmp_path / "train.csv", rows)
    test = empty_csv(tmp_path / "test.csv", rows)
    dem_dir = "/" + world.dem_tiles[0].pc_path.rsplit("/", 1)[0] + "/"
    file_faults.fail(dem_dir, status=500, count=100_000)
    started = time.monotonic()
    done = gedidata(tmp_path / "out", train, test, source, "--batch-size", "50",
                    "--num-processors", "1")  # fmt: skip
    seconds = time.monotonic() - started
    assert done.returncode == EXIT_TRANSIENT, done.stderr
    assert outcomes(tmp_path / "out") == {row["shot_number"]: "read_error" for row in rows}
    assert seconds < 90, seconds


# ----------------------------------------------------------------------------- item 6

FAKE_TOKEN = "FAKEsecret0token4242"


@pytest.mark.slow
@pytest.mark.parametrize("verbosity", [[], ["-v"]], ids=["default", "-v"])
def test_item6_no_token_reaches_any_log(
    verbosity, world, reference, source, proxy, file_faults, tmp_path
):
    """Hrefs carry a fake SAS token (as Planetary Computer's signed hrefs do); COG
    requests fail (500s, a reset connection), so GDAL and rasterio warn about the URLs.
    Not one line of stdout, stderr, the log file or the ledger holds the token."""
    train, test, _ = reference
    proxy.rewrite_items(sign_hrefs(f"st=2026-12-04&se=2026-12-05&sp=rl&sv=2021&sig={FAKE_TOKEN}"))
    scene = scene_on(world, "32TMT", CLEAN_DAY)
    file_faults.fail("/" + scene.asset_path("B05", PC), status=500, count=100_000)
    file_faults.drop("/" + scene.asset_path("B8A", PC), count=2)
    out, log = tmp_path / "out", tmp_path / "run.log"
    command = [*SHORT_RUNS_CLI, str(out), "--path-subset-csv-train", str(train),
               "--path-subset-csv-test", str(test), "--source", str(source),
               "--stac-url", proxy.url, "--stop-after", "extract", "--retry-pause", "0",
               "--batch-size", "4", "--num-processors", "2", "--log-file", str(log),
               *verbosity]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == EXIT_TRANSIENT, done.stderr
    texts = {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "log file": log.read_text(),
        "ledger": (out / "train_ledger.csv").read_text(),
    }
    # the faults were logged, with the URLs (redacted)
    assert "B05" in texts["log file"] and "500" in texts["log file"]
    for where, text in texts.items():
        assert FAKE_TOKEN not in text, f"token in the {where}"
        assert "sig=" not in text and "sig%3D" not in text.replace("%253D", "%3D"), where
