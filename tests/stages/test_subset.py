"""Stage 2: exact-size, water-filled day-of-year balance, seeded; and the CSVs it accepts."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gedidata.stages.subset import choose_rows, water_fill_quotas
from tests.conftest import run_cli

# --- pure: quotas -------------------------------------------------------------------


def test_quotas_hand_computed():
    counts = np.array([0, 10, 1, 5, 0, 3])
    # level 3 fills exactly 10 = 3 + 1 + 3 + 3
    assert water_fill_quotas(counts, 10).tolist() == [0, 3, 1, 3, 0, 3]
    # 11: level 3 gives 10; one leftover slot to the first day with more than 3 (day 1)
    assert water_fill_quotas(counts, 11).tolist() == [0, 4, 1, 3, 0, 3]
    # 12: both days with spare footprints get one
    assert water_fill_quotas(counts, 12).tolist() == [0, 4, 1, 4, 0, 3]
    assert water_fill_quotas(counts, 19).tolist() == counts.tolist()
    assert water_fill_quotas(counts, 10**9).tolist() == counts.tolist()
    assert water_fill_quotas(counts, 0).tolist() == [0] * 6
    assert water_fill_quotas(np.zeros(5, dtype=int), 7).tolist() == [0] * 5


def test_quotas_properties_on_random_counts():
    rng = np.random.default_rng(42)
    for _ in range(300):
        counts = rng.integers(0, 60, size=367) * (rng.random(367) < 0.7)
        size = int(rng.integers(0, counts.sum() + 50))
        quotas = water_fill_quotas(counts, size)
        assert quotas.sum() == min(size, counts.sum())
        assert (quotas >= 0).all() and (quotas <= counts).all()
        spare = quotas < counts  # days with footprints to spare
        if spare.any():
            assert quotas[spare].max() - quotas[spare].min() <= 1
            # no day was cut below a day that was given more
            assert quotas.max() <= quotas[spare].min() + 1


# --- pure: row choice ---------------------------------------------------------------


def test_choose_rows_meets_quotas_and_is_seeded():
    rng = np.random.default_rng(0)
    days = rng.integers(1, 367, size=5000)
    counts = np.bincount(days, minlength=367)
    quotas = water_fill_quotas(counts, 1000)
    rows = choose_rows(days, quotas, seed=7)
    assert rows.size == 1000
    assert np.unique(rows).size == 1000
    assert (np.bincount(days[rows], minlength=367) == quotas).all()
    assert (choose_rows(days, quotas, seed=7) == rows).all()
    other = choose_rows(days, quotas, seed=8)
    assert set(other.tolist()) != set(rows.tolist())


# --- through the CLI, on CSVs in the original tool's format --------------------------

DAY_COUNTS_2020 = {1: 50, 2: 3, 3: 20, 5: 7, 366: 12}  # 2020 is a leap year: day 366 exists
DAY_COUNTS_2021 = {10: 4, 200: 9}


def original_csv(path: Path, day_counts: dict[int, int], year: int, separator: str = ";") -> Path:
    """A combined CSV as the original tool wrote it (polars datetime, `;`)."""
    rows = []
    shot = 10**12 * year
    for day, count in day_counts.items():
        when = datetime(year, 1, 1, 12, 30, 15) + timedelta(days=day - 1)
        name = f"GEDI04_A_{when:%Y%j%H%M%S}_O01234_02_T00001_02_002_01_V002.h5"
        for index in range(count):
            shot += 1
            rows.append(
                {
                    "agbd": 100.0 + index,
                    "agbd_se": 10.0,
                    "lon_lowestmode": 8.0 + index * 1e-3,
                    "lat_lowestmode": 47.0 + day * 1e-3,
                    "shot_number": shot,
                    "delta_time": 6.6e7 + index,
                    "l2_quality_flag": 1,
                    "l4_quality_flag": 1,
                    "surface_flag": 1,
                    "GEDI Filename": name,
                    "acquisition_time": when,
                }
            )
    pl.DataFrame(rows).write_csv(path, separator=separator)
    return path


def subset_day_counts(path: Path) -> dict[int, int]:
    frame = pl.read_csv(path, separator=";", try_parse_dates=True)
    days = frame["acquisition_time"].dt.ordinal_day().to_list()
    return {day: days.count(day) for day in sorted(set(days))}


@pytest.mark.parametrize("separator", [";", ","])
def test_subset_from_given_combined_csvs(tmp_path, separator):
    train = original_csv(tmp_path / "train.csv", DAY_COUNTS_2020, 2020, separator)
    test = original_csv(tmp_path / "test.csv", DAY_COUNTS_2021, 2021, separator)
    out = tmp_path / "out"
    result = run_cli(
        out,
        "--path-aggregated-csv-train", train,
        "--path-aggregated-csv-test", test,
        "--max-size-training", "30",
        "--max-size-test", "100",
        "--stop-after", "subset",
        "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # level 6 fills 27 (6+3+6+6+6); 3 leftover slots go to days 1, 3, 5 in day order
    assert subset_day_counts(out / "train_subset.csv") == {1: 7, 2: 3, 3: 7, 5: 7, 366: 6}
    # fewer footprints than the cap: all of them
    assert subset_day_counts(out / "test_subset.csv") == DAY_COUNTS_2021
    for split in ("train", "test"):
        png = (out / f"{split}_distribution_subset.png").read_bytes()
        assert png.startswith(b"\x89PNG")
    assert not (out / "train_combined.csv").exists()  # combine was skipped


def test_subset_is_seeded(tmp_path):
    train = original_csv(tmp_path / "train.csv", DAY_COUNTS_2020, 2020)
    test = original_csv(tmp_path / "test.csv", DAY_COUNTS_2021, 2021)
    shots = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        result = run_cli(
            tmp_path / name,
            "--path-aggregated-csv-train", train,
            "--path-aggregated-csv-test", test,
            "--max-size-training", "30",
            "--stop-after", "subset",
            "--seed", seed,
            "-q",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        frame = pl.read_csv(tmp_path / name / "train_subset.csv", separator=";")
        shots[name] = frame["shot_number"].to_list()
    assert shots["a"] == shots["b"]
    assert set(shots["a"]) != set(shots["c"])


def test_csv_missing_a_column_is_refused_by_name(tmp_path):
    train = original_csv(tmp_path / "train.csv", DAY_COUNTS_2020, 2020)
    test = tmp_path / "test.csv"
    pl.read_csv(original_csv(test, DAY_COUNTS_2021, 2021), separator=";").drop(
        "shot_number"
    ).write_csv(test, separator=";")
    for flags in (
        ("--path-aggregated-csv-train", train, "--path-aggregated-csv-test", test),
        ("--path-subset-csv-train", train, "--path-subset-csv-test", test),
    ):
        result = run_cli(tmp_path / "out", *flags, "--stop-after", "subset", "-q")
        assert result.returncode != 0
        assert "shot_number" in result.stderr
        assert str(test) in result.stderr
    assert not (tmp_path / "out" / "train_subset.csv").exists()  # refused before any work


def test_rerun_resumes_and_does_not_clobber_user_files(tmp_path):
    train = original_csv(tmp_path / "train.csv", DAY_COUNTS_2020, 2020)
    test = original_csv(tmp_path / "test.csv", DAY_COUNTS_2021, 2021)
    out = tmp_path / "out"
    args = (
        out,
        "--path-aggregated-csv-train", train,
        "--path-aggregated-csv-test", test,
        "--max-size-training", "30",
        "--stop-after", "subset",
        "-q",
    )  # fmt: skip
    assert run_cli(*args).returncode == 0
    first = (out / "train_subset.csv").stat().st_mtime_ns
    again = run_cli(*args)
    assert again.returncode == 0
    assert "reused" in again.stdout
    assert (out / "train_subset.csv").stat().st_mtime_ns == first

    # A file the user edited is not overwritten without --overwrite.
    (out / "test_subset.csv").write_text("my notes\n")
    refused = run_cli(*args[:-3], "--max-size-training", "20", "--stop-after", "subset", "-q")
    assert refused.returncode != 0
    assert "test_subset.csv" in refused.stderr and "--overwrite" in refused.stderr
    assert (out / "test_subset.csv").read_text() == "my notes\n"
    forced = run_cli(*args, "--overwrite")
    assert forced.returncode == 0
    assert subset_day_counts(out / "test_subset.csv") == DAY_COUNTS_2021
