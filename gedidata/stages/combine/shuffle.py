"""External shuffle of footprint parts into one CSV, with memory bounded by a bucket.

Each granule's kept footprints are stored as a *part*: a NumPy structured array (`.npy`,
fixed-width, memory-mappable) sorted by a random 64-bit shuffle key. Writing the CSV
goes one key range (bucket) at a time: from every part it maps the slice of rows whose
keys fall in the range (a binary search: the part is sorted), sorts the bucket's rows
by key and formats them with polars. Sorting by random keys is a uniform random
permutation of all rows; only one bucket of rows is in memory, and every part is read
once in total, whatever the number of parts or buckets.

The granule name and acquisition time are the same for every row of a part, so they
are not stored per row but added back from the part's name when the CSV is written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from gedidata.domain.gedi import BEAM_NAMES, parse_granule_name
from gedidata.store.atomic import atomic_output
from gedidata.store.footprints_csv import (
    COLUMN_TYPES,
    CSV_COLUMNS,
    EXTRA_COLUMNS,
    SEPARATOR,
    empty_frame,
)

PART_SUFFIX = ".npy"
BUCKET_ROWS = 250_000
"""Target rows per key-range bucket: bounds the memory of writing the CSV."""
MAX_BUCKETS = 512
"""Caps the slices read (parts x buckets) for very large splits."""

SHUFFLE_KEY = "shuffle_key"
PART_DTYPE = np.dtype(
    [
        ("agbd", "<f4"),
        ("agbd_se", "<f4"),
        ("lon_lowestmode", "<f8"),
        ("lat_lowestmode", "<f8"),
        ("shot_number", "<u8"),
        ("delta_time", "<f8"),
        ("l2_quality_flag", "u1"),
        ("l4_quality_flag", "u1"),
        ("surface_flag", "u1"),
        ("beam", "u1"),  # index into BEAM_NAMES
        ("degrade_flag", "u1"),  # MISSING_FLAG when the granule lacks it
        ("sensitivity", "<f4"),  # NaN when the granule lacks it
        (SHUFFLE_KEY, "<u8"),
    ]
)
PART_NAMES: tuple[str, ...] = PART_DTYPE.names or ()
"""The field names of `PART_DTYPE`, in order."""
MISSING_FLAG = 255


def write_part(frame: pl.DataFrame, keys: np.ndarray, path: Path) -> None:
    """Store `frame` (the columns of `PART_DTYPE`, `beam` as names) sorted by `keys`."""
    order = np.argsort(keys, kind="stable")
    rows = np.empty(frame.height, dtype=PART_DTYPE)
    for name in PART_NAMES:
        if name == SHUFFLE_KEY:
            rows[name] = keys
        elif name == "beam":
            codes = {beam: index for index, beam in enumerate(BEAM_NAMES)}
            rows[name] = frame["beam"].replace_strict(codes, return_dtype=pl.UInt8).to_numpy()
        elif name == "degrade_flag":
            rows[name] = frame[name].fill_null(MISSING_FLAG).to_numpy()
        elif name == "sensitivity":
            rows[name] = frame[name].fill_null(np.nan).to_numpy()
        else:  # required fields: never null
            rows[name] = frame[name].to_numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        np.save(temporary, rows[order])


def write_shuffled_csv(parts: list[Path], output: Path, total_rows: int) -> None:
    """Write the rows of `parts` to `output` as one `;` CSV in shuffle-key order, atomically."""
    buckets = min(MAX_BUCKETS, max(1, math.ceil(total_rows / BUCKET_ROWS)))
    # Bucket b holds keys in [b * 2**64 / buckets, (b + 1) * 2**64 / buckets).
    edges = np.array([(b << 64) // buckets for b in range(buckets)], dtype=np.uint64)
    layouts = [_part_layout(part, edges) for part in parts]
    granules = [part.name.removesuffix(PART_SUFFIX) for part in parts]
    names = pl.Series("GEDI Filename", granules, dtype=pl.String)
    times = pl.Series(
        "acquisition_time",
        [f"{parse_granule_name(name).acquisition_time:%Y-%m-%dT%H:%M:%S.%f}" for name in granules],
        dtype=pl.String,
    )
    with atomic_output(output) as temporary, temporary.open("wb") as sink:
        empty_frame().write_csv(sink, separator=SEPARATOR)
        for bucket in range(buckets):
            pieces = [
                _read_rows(part, offset, int(bounds[bucket]), int(bounds[bucket + 1]))
                for part, (offset, bounds) in zip(parts, layouts, strict=True)
            ]
            owner = np.repeat(np.arange(len(parts), dtype=np.uint32), [len(p) for p in pieces])
            if owner.size == 0:
                continue
            rows = np.concatenate(pieces)
            order = np.argsort(rows[SHUFFLE_KEY], kind="stable")
            frame = _csv_frame(rows[order], owner[order], names, times)
            frame.write_csv(sink, separator=SEPARATOR, include_header=False)


def _part_layout(part: Path, edges: np.ndarray) -> tuple[int, np.ndarray]:
    """Byte offset of the rows in `part`, and the row where each bucket starts (+ count)."""
    rows = np.load(part, mmap_mode="r")
    # The map is dropped on return, so its pages do not stay resident.
    return rows.offset, np.append(np.searchsorted(rows[SHUFFLE_KEY], edges), len(rows))


def _read_rows(part: Path, offset: int, start: int, stop: int) -> np.ndarray:
    """Rows `start:stop` of a part, read from disk into fresh memory."""
    if stop <= start:
        return np.empty(0, dtype=PART_DTYPE)
    return np.fromfile(
        part, dtype=PART_DTYPE, count=stop - start, offset=offset + start * PART_DTYPE.itemsize
    )


def _csv_frame(
    rows: np.ndarray, owner: np.ndarray, names: pl.Series, times: pl.Series
) -> pl.DataFrame:
    """The CSV columns of `rows`; `owner` is the index of each row's part."""
    columns = {name: rows[name] for name in PART_NAMES if name != SHUFFLE_KEY}
    frame = pl.DataFrame(columns).with_columns(
        names.gather(owner),
        times.gather(owner),
        pl.Series("beam", BEAM_NAMES, dtype=pl.String).gather(rows["beam"]),
        pl.when(pl.col("degrade_flag") != MISSING_FLAG).then(pl.col("degrade_flag")),
        pl.col("sensitivity").fill_nan(None),
    )
    return frame.select(
        pl.col(name).cast(COLUMN_TYPES[name]) if name != "acquisition_time" else pl.col(name)
        for name in (*CSV_COLUMNS, *EXTRA_COLUMNS)
    )
