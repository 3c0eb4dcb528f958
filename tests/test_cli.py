"""The command line: bad values are refused by name."""

from __future__ import annotations

from datetime import datetime

from gedidata.cli import EXIT_ERROR
from gedidata.offline import write_granule
from tests.conftest import run_cli


def test_stop_after_subset_ends_cleanly(tmp_path):
    write_granule(tmp_path / "gedi", datetime(2020, 4, 1), shots_per_beam=30)
    result = run_cli("--input", tmp_path / "gedi", tmp_path / "out", "--stop-after", "subset")
    assert result.returncode == 0, result.stderr
    assert "gedidata run summary" in result.stdout
    assert (tmp_path / "out" / "train_subset.csv").exists()
    assert not (tmp_path / "out" / "train").exists()  # extract did not start


def test_bad_source_fails_before_any_work(tmp_path):
    write_granule(tmp_path / "gedi", datetime(2020, 4, 1), shots_per_beam=30)
    result = run_cli("--input", tmp_path / "gedi", tmp_path / "out", "--source", "nowhere")
    assert result.returncode != 0
    assert "nowhere" in result.stderr
    assert not (tmp_path / "out" / "train_combined.csv").exists()


def test_fuse_only_names_a_missing_folder(tmp_path):
    result = run_cli(tmp_path / "out", "--fuse-hdf5-datasets", tmp_path / "nowhere")
    assert result.returncode == EXIT_ERROR
    assert "nowhere" in result.stderr and "not a folder" in result.stderr


def test_bad_values_are_named(tmp_path):
    cases = [
        (("--input", tmp_path),),  # no output folder
        ((tmp_path / "out", "--bbox", "10", "0", "5", "1", "--input", tmp_path),),
        ((tmp_path / "out", "--input", tmp_path / "missing"),),
        ((tmp_path / "out", "--input", tmp_path, "--train-years", "2021"),),
        ((tmp_path / "out", "--input", tmp_path, "--max-size-training", "1.5"),),
    ]
    expected = ["output folder", "--bbox", "missing", "2021", "1.5"]
    for (args,), needle in zip(cases, expected, strict=True):
        result = run_cli(*args)
        assert result.returncode != 0, args
        assert needle in result.stderr, (args, result.stderr)


def test_empty_input_folder_is_refused(tmp_path):
    (tmp_path / "gedi").mkdir()
    result = run_cli("--input", tmp_path / "gedi", tmp_path / "out")
    assert result.returncode != 0
    assert "no .h5 files" in result.stderr


def test_world_command_writes_granules(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gedidata.offline", "gedi", tmp_path / "g", "--count", "3",
         "--year", "2021", "--shots-per-beam", "20"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = sorted(path.name for path in (tmp_path / "g").glob("*.h5"))
    assert len(names) == 3 and all(name.startswith("GEDI04_A_2021") for name in names)
