"""Combine on generated granules: each filter rule, bad files, year split, resume."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from gedidata.config import PipelineConfig
from gedidata.offline import truncate_file, write_granule, write_non_l4a_granule
from gedidata.stages.combine.combine import combine
from tests.conftest import run_cli

# One pinned beam: each row is a case of SPEC §2; `keep` is what must survive.
CASES = [
    # agbd,   agbd_se, l2, l4, sf, keep, why
    (100.0, 10.0, 1, 1, 1, True, "clean"),
    (-9999.0, -9999.0, 1, 1, 1, False, "fill values (flags alone would keep it)"),
    (0.0, 5.0, 1, 1, 1, False, "agbd == 0"),
    (-5.0, 1.0, 1, 1, 1, False, "agbd < 0 (ratio would be negative, i.e. < 0.5)"),
    (100.0, 50.0, 1, 1, 1, False, "relative SE exactly 50 %"),
    (100.0, 49.99, 1, 1, 1, True, "relative SE just under 50 %"),
    (100.0, 60.0, 1, 1, 1, False, "relative SE 60 %: the original README's `> 50` keeps it"),
    (100.0, 0.0, 1, 1, 1, False, "agbd_se == 0"),
    (100.0, 10.0, 0, 1, 1, False, "l2_quality_flag 0"),
    (100.0, 10.0, 1, 0, 1, False, "l4_quality_flag 0"),
    (100.0, 10.0, 1, 1, 0, False, "surface_flag 0"),
    (1.0, 0.2, 1, 1, 1, True, "low biomass, 20 %"),
]


def pinned_beam() -> dict[str, np.ndarray]:
    columns = list(zip(*CASES, strict=True))
    return {
        "agbd": np.array(columns[0], dtype=np.float32),
        "agbd_se": np.array(columns[1], dtype=np.float32),
        "l2_quality_flag": np.array(columns[2], dtype=np.uint8),
        "l4_quality_flag": np.array(columns[3], dtype=np.uint8),
        "surface_flag": np.array(columns[4], dtype=np.uint8),
        "lat_lowestmode": np.full(len(CASES), 47.5),
        "lon_lowestmode": np.linspace(8.0, 8.1, len(CASES)),
    }


def shots_of(path: Path, beam: str) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as handle:
        return handle[beam]["shot_number"][()]


def test_each_rule_of_the_filter(tmp_path):
    granule = write_granule(
        tmp_path / "gedi", datetime(2020, 6, 1, 10, 0, 0), beams={"BEAM0101": pinned_beam()}
    )
    result = combine(
        PipelineConfig(output_dir=tmp_path / "out", input_dir=tmp_path / "gedi"), progress=False
    )
    shots = shots_of(granule, "BEAM0101")
    expected = {int(shots[i]) for i, case in enumerate(CASES) if case[5]}
    frame = pl.read_csv(tmp_path / "out" / "train_combined.csv", separator=";")
    assert set(frame["shot_number"].to_list()) == expected
    assert result.kept == {"train": 3, "test": 0}
    assert dict(result.rejected) == {
        "fill_value": 1,
        "agbd_not_positive": 2,
        "relative_se": 2,
        "agbd_se_not_positive": 1,
        "l2_quality_flag": 1,
        "l4_quality_flag": 1,
        "surface_flag": 1,
    }
    test_csv = pl.read_csv(tmp_path / "out" / "test_combined.csv", separator=";")
    assert test_csv.height == 0 and "agbd" in test_csv.columns  # header-only, still readable


def test_relative_se_limit_and_bbox_are_options(tmp_path):
    write_granule(tmp_path / "gedi", datetime(2020, 6, 1), beams={"BEAM0101": pinned_beam()})
    out = tmp_path / "out"
    result = run_cli(
        "--input", tmp_path / "gedi", out, "--stop-after", "combine",
        "--max-relative-se", "55", "--bbox", "8.0", "47.0", "8.05", "48.0", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    frame = pl.read_csv(out / "train_combined.csv", separator=";")
    # 55 % admits the 50 % case; the box keeps lon <= 8.05 (cases 0..6 of 12 evenly spaced)
    lon = np.linspace(8.0, 8.1, len(CASES))
    kept = [
        i
        for i, case in enumerate(CASES)
        if case[2:5] == (1, 1, 1)
        and case[0] > 0
        and 0 < case[1] < 0.55 * case[0]
        and lon[i] <= 8.05
    ]
    assert sorted(frame["agbd_se"].to_list()) == sorted(CASES[i][1] for i in kept)
    assert "outside_bbox" in result.stdout


def test_bad_granules_are_named_and_skipped(tmp_path):
    gedi = tmp_path / "gedi"
    good = write_granule(gedi, datetime(2020, 3, 1), orbit=11, shots_per_beam=50, seed=1)
    broken = write_granule(gedi, datetime(2020, 3, 2), orbit=12, shots_per_beam=3000, seed=2)
    truncate_file(broken, 0.4)
    other = write_non_l4a_granule(gedi, datetime(2020, 3, 3))
    missing = write_granule(
        gedi, datetime(2021, 3, 4), orbit=13, beams={"BEAM0000": {"agbd_se": None}}
    )
    (gedi / "notes.h5").write_bytes(b"not a granule")

    result = run_cli("--input", gedi, tmp_path / "out", "--stop-after", "combine", "-q")

    assert result.returncode == 0, result.stderr
    report = result.stdout + result.stderr
    assert f"{broken.name}: cannot open as HDF5, truncated or corrupt" in report
    assert other.name in report and "GEDI_L2A" in report
    assert missing.name in report and "agbd_se is missing" in report
    assert "notes.h5" in report and "not a GEDI L4A granule name" in report
    frame = pl.read_csv(tmp_path / "out" / "train_combined.csv", separator=";")
    assert frame.height > 0
    assert set(frame["GEDI Filename"].to_list()) == {good.name}


def test_years_split_and_other_years_are_dropped(tmp_path):
    gedi = tmp_path / "gedi"
    for year, orbit in ((2019, 1), (2020, 2), (2021, 3), (2022, 4)):
        write_granule(gedi, datetime(year, 7, 1), orbit=orbit, shots_per_beam=40, seed=year)
    result = combine(
        PipelineConfig(
            output_dir=tmp_path / "out",
            input_dir=gedi,
            train_years=(2019, 2020),
            test_years=(2022,),
            num_processors=2,
        ),
        progress=False,
    )
    train = pl.read_csv(tmp_path / "out" / "train_combined.csv", separator=";")
    test = pl.read_csv(tmp_path / "out" / "test_combined.csv", separator=";")
    assert {name[9:13] for name in train["GEDI Filename"]} == {"2019", "2020"}
    assert {name[9:13] for name in test["GEDI Filename"]} == {"2022"}
    assert result.other_years > 0  # 2021 footprints counted, then dropped
    assert result.kept == {"train": train.height, "test": test.height}


def test_new_granule_reuses_the_granules_already_read(tmp_path):
    gedi = tmp_path / "gedi"
    first = write_granule(gedi, datetime(2020, 5, 1), orbit=21, shots_per_beam=40, seed=1)
    out = tmp_path / "out"
    assert run_cli("--input", gedi, out, "--stop-after", "combine", "-q").returncode == 0
    before = pl.read_csv(out / "train_combined.csv", separator=";")

    second = write_granule(gedi, datetime(2020, 5, 2), orbit=22, shots_per_beam=40, seed=2)
    again = run_cli("--input", gedi, out, "--stop-after", "combine")
    assert again.returncode == 0, again.stderr
    assert "1 granules already read, 1 to go" in again.stderr
    after = pl.read_csv(out / "train_combined.csv", separator=";")
    assert set(after["GEDI Filename"]) == {first.name, second.name}
    assert set(before["shot_number"]) < set(after["shot_number"])
    assert after["shot_number"].n_unique() == after.height

    # Nothing changed: the third run reads no granule and rewrites nothing.
    stamp = (out / "train_combined.csv").stat().st_mtime_ns
    third = run_cli("--input", gedi, out, "--stop-after", "combine")
    assert "up to date" in third.stderr
    assert (out / "train_combined.csv").stat().st_mtime_ns == stamp


def test_user_csv_in_the_way_is_not_overwritten(tmp_path):
    gedi = tmp_path / "gedi"
    write_granule(gedi, datetime(2020, 5, 1), shots_per_beam=20)
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_combined.csv").write_text("precious\n")
    refused = run_cli("--input", gedi, out, "--stop-after", "combine", "-q")
    assert refused.returncode != 0
    assert "train_combined.csv" in refused.stderr and "--overwrite" in refused.stderr
    assert (out / "train_combined.csv").read_text() == "precious\n"
    shutil.rmtree(out / ".gedidata", ignore_errors=True)
