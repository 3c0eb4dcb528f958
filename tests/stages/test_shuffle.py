"""The external shuffle: order is a sort by random key, whatever the bucket count."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl

from gedidata.config import PipelineConfig
from gedidata.offline import write_granule
from gedidata.stages.combine import shuffle
from gedidata.stages.combine.combine import combine


def test_bucketed_output_equals_one_global_sort(tmp_path, monkeypatch):
    gedi = tmp_path / "gedi"
    for day, orbit in ((10, 1), (11, 2), (12, 3)):
        write_granule(gedi, datetime(2020, 1, day), orbit=orbit, shots_per_beam=150, seed=day)
    out = tmp_path / "out"
    combine(PipelineConfig(output_dir=out, input_dir=gedi, num_processors=1), progress=False)
    parts = sorted(out.glob(".gedidata/combine/*/train/*.npy"))
    assert len(parts) == 3
    rows = np.concatenate([np.load(part) for part in parts])
    expected = rows["shot_number"][np.argsort(rows[shuffle.SHUFFLE_KEY], kind="stable")]

    outputs = {}
    for bucket_rows in (10**9, 37, 1):
        monkeypatch.setattr(shuffle, "BUCKET_ROWS", bucket_rows)
        target = tmp_path / f"shuffled_{bucket_rows}.csv"
        shuffle.write_shuffled_csv(parts, target, len(rows))
        outputs[bucket_rows] = target.read_bytes()
    assert outputs[37] == outputs[10**9]
    assert outputs[1] == outputs[10**9]  # capped at MAX_BUCKETS, still identical
    frame = pl.read_csv(tmp_path / "shuffled_37.csv", separator=";")
    assert frame["shot_number"].to_list() == expected.tolist()
    assert frame.height == len(rows) == frame["shot_number"].n_unique()
    # The combined CSV written by the stage is the same text.
    assert (out / "train_combined.csv").read_bytes() == outputs[10**9]
