"""The whole pipeline, end to end, on the demo's generated world served on 127.0.0.1."""

from __future__ import annotations

import h5py
import numpy as np
import polars as pl
import pytest

from gedidata.domain.schema import GROUP
from gedidata.store.samples_h5 import check_file, read_arrays
from tests.conftest import run_cli

DEMO_ARGS = ("--max-size-training", "200", "--max-size-test", "120", "--batch-size", "70",
             "--num-processors", "2", "-q")  # fmt: skip


def outputs(out):
    """Every file the run wrote (not the demo's world and bookkeeping) and its stamp."""
    return {
        path.relative_to(out).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.relative_to(out).parts[0] not in ("demo-world", ".gedidata")
    }


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    first = run_cli("--demo", "--output", out, *DEMO_ARGS)
    assert first.returncode == 0, first.stderr
    return out, first


def test_both_splits_are_fused_and_match_their_ledgers(demo_run):
    out, first = demo_run
    for split, cap in (("train", 200), ("test", 120)):
        subset = pl.read_csv(out / f"{split}_subset.csv", separator=";")
        assert subset.height == cap
        ledger = pl.read_csv(out / f"{split}_ledger.csv", separator=";")
        # one outcome per footprint of the subset
        assert sorted(ledger["shot_number"]) == sorted(subset["shot_number"])
        kept = ledger.filter(pl.col("outcome") == "ok")["shot_number"]
        fused = out / f"{split}_dataset.h5"
        assert check_file(fused) == kept.len() > 0
        arrays = read_arrays(fused)
        assert sorted(arrays["GEDI Shot Number"][:, 0]) == sorted(kept)
        # the fused samples are the batches' samples
        batches = sorted((out / split / "hdf5_batch_data").glob("batch_70_*.h5"))
        assert len(batches) == -(-cap // 70)
        assert sum(check_file(path) for path in batches) == kept.len()
        with h5py.File(fused) as file:
            s2 = file[GROUP]["Sentinel-2 L2A"]
            assert s2.attrs["valid_count"][1] > 0 and s2.attrs["max"][1] > s2.attrs["min"][1]
            assert file.attrs["source_profile"] == "demo-offline"
        # agbd of each sample equals the subset CSV's value for its shot
        agbd = dict(zip(subset["shot_number"], subset["agbd"], strict=True))
        expected = np.array([agbd[s] for s in arrays["GEDI Shot Number"][:, 0]], dtype=np.float32)
        np.testing.assert_array_equal(arrays["AGBD Values"][:, 0], expected)
    rows = [line.split() for line in first.stdout.splitlines()]
    assert any(row[:2] == ["fuse", "train"] for row in rows)
    assert any(row[:2] == ["fuse", "test"] for row in rows)


def test_running_again_changes_nothing(demo_run):
    out, _ = demo_run
    before = outputs(out)
    again = run_cli("--demo", "--output", out, *DEMO_ARGS)
    assert again.returncode == 0, again.stderr
    assert outputs(out) == before
    assert again.stdout.count("reused earlier output") == 5  # combine, subset ×2, fuse ×2
    assert "(2 already complete)" in again.stdout and "(3 already complete)" in again.stdout
