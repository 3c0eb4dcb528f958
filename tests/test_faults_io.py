"""Issue 16, items 7-11: inputs, options, disk, lock and fuse faults, end to end.

Each test runs the command line as a user would (a subprocess, on the served offline
world where footprints are extracted) and asserts the exact outcome: ledger rows and
their details, exit statuses, the one-line error and what it names, files left or not
rewritten, and output identical to a clean run's where the fault is one to recover
from. Items 1-6 (services failing) are in `test_faults.py`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gedidata.offline.servers import StacProxy
from gedidata.store.lock import lock_path
from gedidata.store.samples_h5 import check_file, read_arrays
from tests.conftest import SHORT_RUNS_CLI, run_cli
from tests.store.test_output_dir import SEGFAULT, in_namespace, one_line_error, user_namespaces
from tests.test_faults import clean_rows

EXIT_ERROR = 2
FOOTPRINTS = 20
BATCH = 4  # 20 footprints: batches batch_4_0 … batch_4_4
TIMEOUT = 240


def write_csv(path: Path, rows: list[dict]) -> Path:
    pl.DataFrame(rows).write_csv(path, separator=";")
    return path


def empty_csv(path: Path, like: list[dict]) -> Path:
    """A header-only subset CSV: a split with no footprint."""
    pl.DataFrame(like).head(0).write_csv(path, separator=";")
    return path


def split_args(train: Path, test: Path, source: Path) -> list[str]:
    return ["--path-subset-csv-train", str(train), "--path-subset-csv-test", str(test),
            "--source", str(source), "--retry-pause", "0"]  # fmt: skip


def command(out: Path, *args: str | Path) -> list[str]:
    """The command line with workers even for a few footprints (`SHORT_RUNS_CLI`)."""
    return [*SHORT_RUNS_CLI, str(out), *map(str, args)]


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, **kwargs
    )


def summary_line(stdout: str, pattern: str) -> str:
    """The one line of the run summary that matches `pattern` whole."""
    found = [line for line in stdout.splitlines() if re.fullmatch(pattern, line)]
    assert len(found) == 1, (pattern, stdout)
    return found[0]


def assert_same_file(a: Path, b: Path) -> None:
    """Two HDF5 dataset files hold the same samples, array for array."""
    left, right = read_arrays(a), read_arrays(b)
    assert left.keys() == right.keys()
    for name in left:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


def assert_same_output(out: Path, clean: Path) -> None:
    """`out` holds what the clean run's OUT holds: ledgers and fused files."""
    for split in ("train", "test"):
        ledger = f"{split}_ledger.csv"
        assert (out / ledger).read_text() == (clean / ledger).read_text(), ledger
        assert_same_file(out / f"{split}_dataset.h5", clean / f"{split}_dataset.h5")


def stamps(out: Path) -> dict[str, tuple[int, int]]:
    """Every file of OUT (but the lock, which each run takes) → (mtime_ns, size)."""
    return {
        str(path.relative_to(out)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in sorted(out.rglob("*"))
        if path.is_file() and path != lock_path(out)
    }


@dataclass(frozen=True)
class Clean:
    """A finished clean run (extract and fuse) of `FOOTPRINTS` footprints."""

    train: Path
    test: Path
    args: list[str]
    """The command's arguments after OUT."""
    out: Path
    shots: list[int]


@pytest.fixture(scope="module")
def clean(world, source, tmp_path_factory) -> Clean:
    tmp = tmp_path_factory.mktemp("clean")
    rows = clean_rows(world, FOOTPRINTS, 5000)
    train, test = write_csv(tmp / "train.csv", rows), empty_csv(tmp / "test.csv", rows)
    args = [*split_args(train, test, source), "--batch-size", str(BATCH),
            "--num-processors", "2", "-q"]  # fmt: skip
    done = run(command(tmp / "out", *args))
    assert done.returncode == 0, done.stderr
    shots = [row["shot_number"] for row in rows]
    ledger = pl.read_csv(tmp / "out" / "train_ledger.csv", separator=";")
    assert sorted(ledger["shot_number"]) == shots and set(ledger["outcome"]) == {"ok"}
    assert check_file(tmp / "out" / "train_dataset.h5") == FOOTPRINTS
    assert check_file(tmp / "out" / "test_dataset.h5") == 0
    return Clean(train, test, args, tmp / "out", shots)


# ----------------------------------------------------------------------------- item 7


def test_item7_unusable_rows_are_invalid_input_and_the_rest_is_extracted(world, source, tmp_path):
    """Six rows of a given subset CSV that cannot be footprints, between good ones: each
    is an `invalid_input` ledger row naming its column and value; the 12 good rows are
    extracted (`ok`, in 3 batches of 4). A split of bad rows only has no batch at all."""
    good = clean_rows(world, 12, 100)
    bad = clean_rows(world, 6, 200)  # (places where they would be extracted)
    changes = [
        ("agbd", -9999.0, "agbd=-9999.0: not a positive number"),
        ("agbd_se", math.nan, "agbd_se=NaN: not a finite number"),
        ("lat_lowestmode", math.nan, "lat_lowestmode=NaN: not a finite number"),
        ("lat_lowestmode", 95.0, "lat_lowestmode=95.0: outside [-90, 90]"),
        ("lon_lowestmode", 200.0, "lon_lowestmode=200.0: outside [-180, 180]"),
        ("delta_time", None, "delta_time=null: empty"),  # an empty field
    ]
    for row, (column, value, _) in zip(bad, changes, strict=True):
        row[column] = value
    train = write_csv(tmp_path / "train.csv", good[:3] + bad[:3] + good[3:8] + bad[3:] + good[8:])
    # the test split: two of the bad rows only
    test = write_csv(tmp_path / "test.csv", [bad[2], bad[4]])
    text = train.read_text()
    assert ";NaN;" in text and ";;" in text  # (the file holds what a user's file would)
    out = tmp_path / "out"
    done = run(command(out, *split_args(train, test, source), "--batch-size", str(BATCH),
                       "--num-processors", "2", "--stop-after", "extract", "-q"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

    invalid_rows = [
        f"{row['shot_number']};invalid_input;;{detail}"
        for row, (_, _, detail) in zip(bad, changes, strict=True)
    ]
    header = "shot_number;outcome;scene;detail"
    assert (out / "train" / "ledger" / "invalid.csv").read_text().splitlines() == [
        header,
        *invalid_rows,
    ]
    ledger = pl.read_csv(out / "train_ledger.csv", separator=";")
    assert ledger.columns == ["shot_number", "outcome", "scene", "detail"]
    outcome = dict(zip(ledger["shot_number"], ledger["outcome"], strict=True))
    assert outcome == {
        **{row["shot_number"]: "ok" for row in good},
        **{row["shot_number"]: "invalid_input" for row in bad},
    }
    details = dict(zip(ledger["shot_number"], ledger["detail"], strict=True))
    assert [details[row["shot_number"]] for row in bad] == [detail for *_, detail in changes]
    batches = sorted((out / "train" / "hdf5_batch_data").glob("*.h5"))
    assert [path.name for path in batches] == ["batch_4_0.h5", "batch_4_1.h5", "batch_4_2.h5"]
    stored = sorted(int(s) for b in batches for s in read_arrays(b)["GEDI Shot Number"][:, 0])
    assert stored == [row["shot_number"] for row in good]

    assert (out / "test_ledger.csv").read_text().splitlines() == [
        header,
        invalid_rows[2],
        invalid_rows[4],
    ]
    assert list((out / "test" / "hdf5_batch_data").iterdir()) == []
    summary_line(
        done.stdout, r"extract  train  18  12  +3 batches \(0 already complete\); [\d.]+ s"
    )
    summary_line(done.stdout, r"extract  train +6 +invalid_input")
    summary_line(done.stdout, r"extract  test  +2 +0 +0 batches \(0 already complete\); [\d.]+ s")
    summary_line(done.stdout, r"extract  test +2 +invalid_input")
    assert (
        f"extract train: 6 rows of {train} are not usable footprints (invalid_input), "
        "e.g. agbd=-9999.0: not a positive number"
    ) in done.stderr


def test_item7_a_binary_subset_csv_is_refused_in_one_line(world, source, tmp_path):
    rows = clean_rows(world, 2, 300)
    binary = tmp_path / "train.csv"
    binary.write_bytes(bytes(range(256)))
    test = write_csv(tmp_path / "test.csv", rows)
    out = tmp_path / "out"
    done = run(command(out, *split_args(binary, test, source), "--num-processors", "1"))
    assert done.returncode == EXIT_ERROR, done.stderr
    line = one_line_error(done.stderr)
    assert line.endswith(
        f" ERROR gedidata: {binary}: not a text CSV (expected UTF-8 text; found a NUL byte, "
        "as in a binary file)"
    ), line
    assert done.stdout == ""
    assert not list(out.glob("*_ledger.csv")) and not (out / "test").exists()  # no work done


# ----------------------------------------------------------------------------- item 8


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--search-days", "-3", "a whole number >= 0"),
        ("--max-cloud-cover", "-5", "a percentage > 0 and <= 100"),
        ("--scl-max-cloud", "500", "a percentage from 0 to 100"),
        ("--stac-url", "not-a-url", "an absolute http:// or https:// URL with a host"),
        ("--max-size-training", "inf", "a whole number >= 0"),
        ("--max-slope", "-1", "a finite number >= 0"),
        ("--http-timeout", "0", "a finite number > 0"),
        ("--retry-pause", "-1", "a finite number >= 0"),
    ],
)
def test_item8_options_that_cannot_work_are_refused_before_any_work(
    option, value, expected, tmp_path
):
    out = tmp_path / "out"
    csv = tmp_path / "subset.csv"
    csv.write_text("agbd;agbd_se\n")  # (refused too, had the parser let the run start)
    done = run_cli(out, "--path-subset-csv-train", csv, "--path-subset-csv-test", csv,
                   "--stop-after", "extract", option, value)  # fmt: skip
    assert done.returncode == EXIT_ERROR
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("usage: gedidata ")
    assert lines[-1] == (
        f"gedidata: error: argument {option}: invalid value '{value}': expected {expected}"
    )
    assert not out.exists()


# ----------------------------------------------------------------------------- item 9


def test_item9_an_output_that_is_a_file_is_refused_in_one_line(clean, tmp_path):
    out = tmp_path / "out"
    out.write_text("mine")
    done = run(command(out, *clean.args))
    assert done.returncode == EXIT_ERROR, done.stderr
    line = one_line_error(done.stderr)
    assert line.endswith(f" ERROR gedidata: {out}: exists and is not a folder"), line
    assert out.read_text() == "mine"


class SmallDisk:
    """Runs commands whose OUT has `room` bytes of disk (after `FullDisk` of
    test_output_dir, with the room given).

    ``tmpfs``: OUT lies on a tmpfs of `room` bytes in a private mount namespace, copied
    to and from `saved` around each run. ``fsize``: OUT is an ordinary folder; no file
    the command writes may grow past `room` (RLIMIT_FSIZE: EFBIG, as a full disk).
    """

    def __init__(self, kind: str, tmp_path: Path, room: int) -> None:
        self.kind, self.room = kind, room
        if kind == "tmpfs":
            self.mount = tmp_path / "small"
            self.mount.mkdir()
            self.saved = tmp_path / "saved"
            self.out = self.mount / "out"
        else:
            self.out = tmp_path / "out"

    @property
    def result_dir(self) -> Path:
        """Where OUT's content can be looked at after a run."""
        return self.saved if self.kind == "tmpfs" else self.out

    def run(self, argv: list[str], freed: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `argv`; ``freed``: with room enough (the re-run once space is freed)."""
        if self.kind == "fsize":
            return run(argv, preexec_fn=None if freed else self._limit)
        size = "256m" if freed else f"{-(-self.room // 4096) * 4}k"
        saved, out = shlex.quote(str(self.saved)), shlex.quote(str(self.out))
        restore = f"if [ -d {saved} ]; then cp -a {saved} {out}; fi"
        keep = f"rm -rf {saved}; if [ -d {out} ]; then cp -a {out} {saved}; fi"
        return in_namespace(
            f"mount -t tmpfs -o size={size} none {shlex.quote(str(self.mount))} && {restore} && "
            f"{shlex.join(argv)}; status=$?; {keep}; exit $status"
        )

    def _limit(self) -> None:  # in the child, before exec
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (else the kernel kills the writer)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.room, hard))


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            "tmpfs",
            marks=pytest.mark.skipif(not user_namespaces(), reason="unshare -rm cannot mount"),
        ),
        "fsize",
    ],
)
def test_item9_a_full_disk_during_fuse_is_one_line_and_the_same_command_completes(
    kind, clean, tmp_path
):
    """Room for the batches but not for the fused train file: exit 2 naming it, no
    segfault, nothing half-written; once there is room the same command completes,
    extracting nothing again, with the clean run's output."""
    fused = (clean.out / "train_dataset.h5").stat().st_size
    batches = [path.stat().st_size for path in clean.out.rglob("batch_*.h5")]
    assert len(batches) == 5 and max(batches) < fused // 2  # (a batch file fits)
    if kind == "tmpfs":  # all of OUT but the fused files, and half the train one
        rest = [path for path in clean.out.rglob("*") if not path.name.endswith("_dataset.h5")]
        room = sum(path.stat().st_size + 4096 for path in rest) + fused // 2
    else:  # one file's size
        room = fused // 2
    disk = SmallDisk(kind, tmp_path, room)
    argv = command(disk.out, *clean.args)

    full = disk.run(argv)
    assert full.returncode not in SEGFAULT, full.stderr
    assert full.returncode == EXIT_ERROR, full.stderr
    line = one_line_error(full.stderr)
    assert line.endswith(
        f" ERROR gedidata: {disk.out / 'train_dataset.h5'}: cannot write (disk full)"
    ), line
    left = sorted(path.name for path in disk.result_dir.iterdir())
    assert left == [".gedidata", "test", "test_ledger.csv", "train", "train_ledger.csv"]
    assert len(list((disk.result_dir / "train" / "hdf5_batch_data").glob("batch_*.h5"))) == 5

    again = disk.run(argv, freed=True)
    assert again.returncode == 0, again.stderr
    summary_line(again.stdout, r"extract  train  20  20  +5 batches \(5 already complete\); .*")
    assert "unreadable batch" not in again.stdout
    assert_same_output(disk.result_dir, clean.out)


def test_item9_a_moved_output_folder_resumes_without_rewriting(clean, tmp_path):
    """A finished OUT moved elsewhere: the same command there does nothing again (state
    paths are relative to OUT). test_output_dir covers combine, subset and fuse-only."""
    first = tmp_path / "first" / "out"
    shutil.copytree(clean.out, first)  # (copy2: the times are kept)
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    before = stamps(moved)
    again = run(command(moved, *clean.args))
    assert again.returncode == 0, again.stderr
    summary_line(again.stdout, r"extract  train  20  20  +5 batches \(5 already complete\); .*")
    summary_line(again.stdout, r"fuse  +train  20  20  +reused earlier output")
    summary_line(again.stdout, r"fuse  +test  +0  +0  +reused earlier output")
    assert stamps(moved) == before  # nothing written but the lock
    state = (moved / ".gedidata" / "state.json").read_text()
    assert str(tmp_path) not in state and str(clean.out) not in state
    assert_same_output(moved, clean.out)


# ----------------------------------------------------------------------------- item 10


@pytest.fixture
def proxy(served):
    """A STAC proxy in front of the served STAC API (`--stac-url proxy.url`)."""
    with StacProxy(served.stac_url, timeout=60) as stac_proxy:
        yield stac_proxy


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def lock_holder(out: Path) -> dict:
    try:
        return json.loads(lock_path(out).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def test_item10_a_second_run_on_the_same_output_stops_at_once(clean, proxy, tmp_path):
    """Run A holds OUT (its scene search held by the STAC proxy); run B on the same OUT
    exits 2 at once naming A's pid, while A waits; A then ends with the clean output.
    Run C, SIGKILLed while it holds OUT, leaves its lock behind: the next run takes
    it over and ends with the clean output."""
    out = tmp_path / "out"
    argv = command(out, *clean.args, "--stac-url", proxy.url)
    proxy.hang(search_only=True)
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proxy.searches >= 1)  # A is extracting: it holds OUT
        assert lock_holder(out)["pid"] == first.pid
        started = time.monotonic()
        second = run(argv)
        seconds = time.monotonic() - started
        assert first.poll() is None  # B did not wait for A
        proxy.release()
        stdout, stderr = first.communicate(timeout=TIMEOUT)
    finally:
        proxy.reset()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == EXIT_ERROR, second.stderr
    assert seconds < 10, seconds  # (a Python start and the import of gedidata)
    line = one_line_error(second.stderr)
    assert f" ERROR gedidata: {out} is in use by another gedidata run (pid {first.pid} on " \
        f"{socket.gethostname()} since " in line, line  # fmt: skip
    assert line.endswith("; wait for it to finish or use another output folder"), line
    assert first.returncode == 0, stderr
    assert "gedidata run summary" in stdout
    assert lock_path(out).read_text() == ""  # released
    assert_same_output(out, clean.out)

    killed_out = tmp_path / "killed"
    killed_argv = command(killed_out, *clean.args, "--stac-url", proxy.url)
    proxy.hang(search_only=True)
    searches = proxy.searches
    killed = subprocess.Popen(killed_argv, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: proxy.searches > searches)  # C holds OUT
        assert lock_holder(killed_out)["pid"] == killed.pid
        os.killpg(killed.pid, signal.SIGKILL)  # (its workers too)
        assert killed.wait(timeout=60) == -signal.SIGKILL
    finally:
        proxy.reset()
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait()
    assert lock_holder(killed_out)["pid"] == killed.pid  # left behind
    resumed = run([arg for arg in killed_argv if arg != "-q"])  # (INFO names the takeover)
    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"taking over the lock of an earlier run that ended without releasing it (pid {killed.pid})"
    ) in resumed.stderr
    assert lock_path(killed_out).read_text() == ""
    assert_same_output(killed_out, clean.out)


# ----------------------------------------------------------------------------- item 11


def test_item11_fusing_an_empty_folder_is_refused_before_out_is_made(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    done = run_cli(out, "--fuse-hdf5-datasets", empty, "-q")
    assert done.returncode == EXIT_ERROR
    line = one_line_error(done.stderr)
    assert line.endswith(f" ERROR gedidata: no batch files (*.h5) in {empty}: nothing to fuse")
    assert done.stdout == ""
    assert not out.exists()  # (so no fused_dataset.h5 either)


CORRUPTING_CLI = [
    sys.executable,
    "-c",
    textwrap.dedent("""
        import os, sys
        from pathlib import Path
        import gedidata.stages.extract.driver as extract
        import gedidata.stages.fuse as fuse
        extract.MIN_RUN_FOOTPRINTS = 1
        batch_files = fuse.batch_files
        def corrupting(directory):
            # a batch file goes bad after extract checked it, before fuse looks at it
            for path in batch_files(directory):
                if path.name == os.environ["CORRUPT_BATCH"]:
                    with path.open("r+b") as handle:
                        handle.truncate(path.stat().st_size // 2)
            return batch_files(directory)
        fuse.batch_files = corrupting
        from gedidata.cli import main
        sys.exit(main())
    """),
]
"""The command line (as `SHORT_RUNS_CLI`), truncating the batch file named by
$CORRUPT_BATCH just before fuse reads it."""


def test_item11_an_unreadable_batch_file_is_explained_by_the_summary(world, source, tmp_path):
    """A truncated batch file: a fuse of the folder skips and names it, and counts the
    samples of the others; the full command re-extracts it; truncated between extract
    and fuse of one run, the summary says why extract and fuse disagree."""
    rows = clean_rows(world, 12, 400)
    train, test = write_csv(tmp_path / "train.csv", rows), empty_csv(tmp_path / "test.csv", rows)
    out = tmp_path / "out"
    args = [*split_args(train, test, source), "--batch-size", str(BATCH),
            "--num-processors", "2", "-q"]  # fmt: skip
    extracted = run(command(out, *args, "--stop-after", "extract"))
    assert extracted.returncode == 0, extracted.stderr
    batch_dir = out / "train" / "hdf5_batch_data"
    victim = batch_dir / "batch_4_1.h5"
    lost = set(pl.read_csv(out / "train" / "ledger" / "batch_4_1.csv", separator=";")
               ["shot_number"])  # fmt: skip
    assert len(lost) == 4 and check_file(victim) == 4
    size = victim.stat().st_size
    with victim.open("r+b") as handle:
        handle.truncate(size // 2)

    fused_out = tmp_path / "fused"
    fused = run_cli(fused_out, "--fuse-hdf5-datasets", batch_dir, "-q")
    assert fused.returncode == 0, fused.stderr
    summary_line(
        fused.stdout,
        r"fuse   fused  8   8 +3 batch files; [\d.]+ s; 1 unreadable batch files \(skipped\)",
    )
    reason = "not a readable HDF5 file (Unable to synchronously open file (truncated file: "
    skipped = summary_line(fused.stdout, r"unreadable batch file .*")
    assert skipped.startswith(f"unreadable batch file {victim}: {reason}eof = {size // 2}, ")
    assert f"fuse: skipping {victim}: {reason}" in fused.stderr
    shots = read_arrays(fused_out / "fused_dataset.h5")["GEDI Shot Number"][:, 0]
    assert sorted(shots.tolist()) == sorted({row["shot_number"] for row in rows} - lost)

    # The full command finds the batch incomplete (its file holds fewer samples than its
    # ledger's ok count) and extracts it again.
    repaired = run(command(out, *args))
    assert repaired.returncode == 0, repaired.stderr
    summary_line(repaired.stdout, r"extract  train  12  12  +3 batches \(2 already complete\); .*")
    summary_line(repaired.stdout, r"fuse  +train  12  12  +3 batch files; [\d.]+ s")
    assert "unreadable batch" not in repaired.stdout and "extract kept" not in repaired.stdout
    assert check_file(out / "train_dataset.h5") == 12

    # Gone bad after extract's check, before fuse: the summary says why 12 became 8.
    broken = run(
        [*CORRUPTING_CLI, str(out), *args], env={**os.environ, "CORRUPT_BATCH": victim.name}
    )
    assert broken.returncode == 0, broken.stderr
    summary_line(broken.stdout, r"extract  train  12  12  +3 batches \(3 already complete\); .*")
    summary_line(
        broken.stdout,
        r"fuse  +train  8  +8  +3 batch files; [\d.]+ s; 1 unreadable batch files \(skipped\)",
    )
    assert summary_line(broken.stdout, r"train: extract kept .*") == (
        "train: extract kept 12 samples, fuse read 8: 1 batch files unreadable (skipped)"
    )
    summary_line(broken.stdout, rf"unreadable batch file {re.escape(str(victim))}: .*")
    assert check_file(out / "train_dataset.h5") == 8
