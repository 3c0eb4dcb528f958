"""Combine on the two real GEDI L4A granules: exactly the footprints that pass the filter.

The expectation is computed here with h5py + numpy straight from the files, not by
calling gedidata.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import polars as pl

from tests.conftest import run_cli


def expected_shots(path: Path) -> dict[int, tuple[float, float, float, float, float]]:
    """shot_number -> (agbd, agbd_se, lon, lat, delta_time) of shots passing SPEC §2."""
    kept: dict[int, tuple[float, float, float, float, float]] = {}
    with h5py.File(path, "r") as handle:
        for beam in (name for name in handle if name.startswith("BEAM")):
            group = handle[beam]
            agbd = group["agbd"][()].astype(np.float64)
            agbd_se = group["agbd_se"][()].astype(np.float64)
            keep = (
                (group["l2_quality_flag"][()] == 1)
                & (group["l4_quality_flag"][()] == 1)
                & (group["surface_flag"][()] == 1)
                & (agbd > 0)
                & (agbd_se > 0)
            )
            keep[keep] = agbd_se[keep] / agbd[keep] < 0.5
            for index in np.flatnonzero(keep):
                kept[int(group["shot_number"][index])] = (
                    float(group["agbd"][index]),
                    float(group["agbd_se"][index]),
                    float(group["lon_lowestmode"][index]),
                    float(group["lat_lowestmode"][index]),
                    float(group["delta_time"][index]),
                )
    return kept


def flag_passing_high_se(path: Path) -> int:
    """Shots that pass every flag but have relative SE >= 50 % (the reversed-filter trap)."""
    count = 0
    with h5py.File(path, "r") as handle:
        for beam in (name for name in handle if name.startswith("BEAM")):
            group = handle[beam]
            agbd = group["agbd"][()].astype(np.float64)
            agbd_se = group["agbd_se"][()].astype(np.float64)
            flags = (
                (group["l2_quality_flag"][()] == 1)
                & (group["l4_quality_flag"][()] == 1)
                & (group["surface_flag"][()] == 1)
                & (agbd > 0)
            )
            count += int((flags & (agbd_se / np.where(agbd > 0, agbd, 1) >= 0.5)).sum())
    return count


def read_csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(
        path,
        separator=";",
        schema_overrides={"shot_number": pl.UInt64, "agbd": pl.Float32, "agbd_se": pl.Float32},
    )


def test_real_granules_give_exactly_the_passing_footprints(real_granules, tmp_path):
    granule_2020, granule_2021 = real_granules
    inputs = tmp_path / "gedi"
    inputs.mkdir()
    for granule in real_granules:
        shutil.copy(granule, inputs)
    out = tmp_path / "out"

    result = run_cli("--input", inputs, "--output", out, "--stop-after", "combine", "-q")
    assert result.returncode == 0, result.stderr

    for split, granule in (("train", granule_2020), ("test", granule_2021)):
        expected = expected_shots(granule)
        frame = read_csv(out / f"{split}_combined.csv")
        assert frame.columns[:11] == [
            "agbd",
            "agbd_se",
            "lon_lowestmode",
            "lat_lowestmode",
            "shot_number",
            "delta_time",
            "l2_quality_flag",
            "l4_quality_flag",
            "surface_flag",
            "GEDI Filename",
            "acquisition_time",
        ]
        assert frame.height == len(expected)
        assert set(frame["shot_number"].to_list()) == set(expected)
        for row in frame.iter_rows(named=True):
            agbd, agbd_se, lon, lat, delta_time = expected[row["shot_number"]]
            assert np.float32(row["agbd"]) == np.float32(agbd)
            assert np.float32(row["agbd_se"]) == np.float32(agbd_se)
            assert row["lon_lowestmode"] == lon  # full float64 precision survives the CSV
            assert row["lat_lowestmode"] == lat
            assert row["delta_time"] == delta_time
            assert row["GEDI Filename"] == granule.name
        assert (frame["agbd"] > 0).all()
        assert (frame["agbd_se"] / frame["agbd"] < 0.5).all()

    # Coarse acquisition time comes from the file name (%Y%j%H%M%S).
    train = read_csv(out / "train_combined.csv")
    assert set(train["acquisition_time"]) == {"2020-02-05T15:13:58.000000"}
    test = read_csv(out / "test_combined.csv")
    assert set(test["acquisition_time"]) == {"2021-05-30T03:12:54.000000"}


def test_real_granules_exercise_every_trap(real_granules):
    """The fixtures hold fill values and high-SE shots, so the test above can catch a
    filter that forgets -9999 or keeps the original README's reversed `> 50` set."""
    granule_2020, granule_2021 = real_granules
    with h5py.File(granule_2021, "r") as handle:
        agbd = np.concatenate([handle[b]["agbd"][()] for b in handle if b.startswith("BEAM")])
    assert (agbd == -9999).any()
    assert flag_passing_high_se(granule_2020) > 0
    assert len(expected_shots(granule_2020)) > 0


def test_shuffle_is_seeded(real_granules, tmp_path):
    inputs = tmp_path / "gedi"
    inputs.mkdir()
    for granule in real_granules:
        shutil.copy(granule, inputs)
    orders = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = run_cli(
            "--input", inputs, tmp_path / name, "--stop-after", "combine", "--seed", seed, "-q"
        )
        assert result.returncode == 0, result.stderr
        orders[name] = read_csv(tmp_path / name / "test_combined.csv")["shot_number"].to_list()
    assert orders["a"] == orders["b"]
    assert orders["a"] != orders["c"]
    assert sorted(orders["a"]) == sorted(orders["c"])
    assert orders["a"] != sorted(orders["a"])  # shuffled, not in file order
