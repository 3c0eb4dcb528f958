"""Stage 2, subset: an exact-size sample spread as evenly as possible over day of year.

`water_fill_quotas` and `choose_rows` are pure; `subset_split` reads the combined CSV,
writes `OUT/<split>_subset.csv` and the distribution plot.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from gedidata.errors import CsvFormatError
from gedidata.report.plots import plot_footprint_distribution
from gedidata.store.atomic import atomic_output
from gedidata.store.footprints_csv import SEPARATOR, collect_footprints, scan_footprints
from gedidata.store.state import RunState, file_stamp

logger = logging.getLogger(__name__)

DAYS = 367
"""Index 1..366 is the day of year (366 in leap years); index 0 is unused."""


def water_fill_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    """Per-day quotas summing to exactly `min(size, counts.sum())`.

    Every day gets `min(count, T)` for the largest level `T` that fits; the leftover
    slots (fewer than the days holding more than `T`) go one each to those days in
    day order. So among days with footprints to spare, quotas differ by at most 1.
    """
    counts = np.asarray(counts, dtype=np.int64)
    target = min(int(size), int(counts.sum()))
    if target <= 0:
        return np.zeros_like(counts)
    low, high = 0, int(counts.max())  # filled(low) <= target always holds
    while low < high:
        level = (low + high + 1) // 2
        if np.minimum(counts, level).sum() <= target:
            low = level
        else:
            high = level - 1
    quotas = np.minimum(counts, low)
    leftover = target - int(quotas.sum())
    if leftover:
        spare_days = np.flatnonzero(counts > low)[:leftover]
        quotas[spare_days] += 1
    return quotas


def choose_rows(day_of_year: np.ndarray, quotas: np.ndarray, seed: int) -> np.ndarray:
    """Row indices holding `quotas[d]` rows of each day `d`, chosen at random (seeded).

    The result is itself in a seeded random order, so the subset CSV is shuffled.
    """
    rng = np.random.default_rng(seed)
    order = np.argsort(day_of_year, kind="stable")
    starts = np.searchsorted(day_of_year[order], np.arange(len(quotas) + 1))
    chosen: list[np.ndarray] = []
    for day in np.flatnonzero(quotas):
        rows = order[starts[day] : starts[day + 1]]
        chosen.append(rows[rng.choice(rows.size, size=int(quotas[day]), replace=False)])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return rng.permutation(np.concatenate(chosen)).astype(np.int64)


def day_counts(day_of_year: np.ndarray) -> np.ndarray:
    """Footprints per day of year, indexed 0..366."""
    return np.bincount(day_of_year, minlength=DAYS)[:DAYS]


@dataclass
class SubsetResult:
    """Counts of stage 2 for one split, for the run summary."""

    split: str
    available: int = 0
    selected: int = 0
    days_with_data: int = 0
    outputs: list[Path] = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0


def subset_csv_path(output_dir: Path, split: str) -> Path:
    return output_dir / f"{split}_subset.csv"


def subset_plot_path(output_dir: Path, split: str, which: str = "subset") -> Path:
    return output_dir / f"{split}_distribution_{which}.png"


def subset_split(
    split: str,
    combined_csv: Path,
    output_dir: Path,
    max_size: int,
    seed: int,
    *,
    plot_full: bool = False,
    overwrite: bool = False,
) -> SubsetResult:
    """Write `OUT/<split>_subset.csv` and its plot from `combined_csv` (resumable)."""
    started = time.monotonic()
    output = subset_csv_path(output_dir, split)
    plot = subset_plot_path(output_dir, split)
    outputs = [output, plot]
    if plot_full:
        outputs.append(subset_plot_path(output_dir, split, "combined"))
    key = f"subset:{split}"
    signature = {
        "input": str(combined_csv.resolve()),
        "input_stamp": file_stamp(combined_csv) if combined_csv.exists() else None,
        "max_size": max_size,
        "seed": seed,
        "plot_full": plot_full,
    }
    state = RunState(output_dir)
    if state.is_complete(key, signature):
        logger.info("subset %s: up to date, reusing %s", split, output)
        rows = scan_footprints(output).select(pl.len()).collect().item()
        return SubsetResult(split, selected=rows, outputs=outputs, skipped=True)
    state.ensure_writable(key, outputs, overwrite)

    frame = scan_footprints(combined_csv)
    coordinates = collect_footprints(
        frame.select(
            pl.col("acquisition_time").dt.ordinal_day().alias("doy"),
            "lat_lowestmode",
            "lon_lowestmode",
        ),
        combined_csv,
    )
    if coordinates["doy"].null_count():
        raise CsvFormatError(f"{combined_csv}: empty values in column 'acquisition_time'")
    day_of_year = coordinates["doy"].to_numpy().astype(np.int64)
    counts = day_counts(day_of_year)
    quotas = water_fill_quotas(counts, max_size)
    rows = choose_rows(day_of_year, quotas, seed)

    if plot_full:
        plot_footprint_distribution(
            coordinates["lat_lowestmode"].to_numpy(),
            coordinates["lon_lowestmode"].to_numpy(),
            day_of_year,
            outputs[2],
            title=f"{split}: all combined footprints",
        )
    del coordinates

    selection = pl.DataFrame(
        {"_row": rows.astype(np.uint64), "_order": np.arange(rows.size, dtype=np.uint64)}
    )
    subset = collect_footprints(
        frame.with_row_index("_row")
        .with_columns(pl.col("_row").cast(pl.UInt64))
        .join(selection.lazy(), on="_row", how="inner")
        .sort("_order")
        .drop("_row", "_order"),
        combined_csv,
    )
    with atomic_output(output) as temporary:
        subset.write_csv(temporary, separator=SEPARATOR)
    plot_footprint_distribution(
        subset["lat_lowestmode"].to_numpy(),
        subset["lon_lowestmode"].to_numpy(),
        subset["acquisition_time"].dt.ordinal_day().to_numpy(),
        plot,
        title=f"{split}: subset",
    )
    state = RunState(output_dir)  # another split may have recorded meanwhile
    state.record(key, signature, outputs)
    logger.info(
        "subset %s: %d of %d footprints over %d days -> %s",
        split,
        subset.height,
        day_of_year.size,
        int((counts > 0).sum()),
        output,
    )
    return SubsetResult(
        split,
        available=int(day_of_year.size),
        selected=subset.height,
        days_with_data=int((counts > 0).sum()),
        outputs=outputs,
        seconds=time.monotonic() - started,
    )
