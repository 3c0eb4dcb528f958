"""Stage 1, combine: GEDI L4A granules → `OUT/train_combined.csv`, `OUT/test_combined.csv`.

Two phases, both with memory bounded independently of the number of granules:

1. Worker processes read granules in parallel (`granule.read_granule`), keep the
   footprints passing the quality rule, give every kept footprint a random 64-bit
   shuffle key (seeded by the run seed and the granule name, so it does not depend on
   which worker ran first) and write one Parquet part per granule, plus a small JSON
   marker with the tally. A re-run skips granules whose marker exists.
2. The main process writes each split's CSV in shuffle-key order: an external shuffle
   that spills the parts into key-range buckets of a bounded size, then sorts and writes
   one bucket at a time. Sorting by random keys is a uniform random permutation.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import multiprocessing
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from gedidata.atomic import atomic_output, write_json_atomic
from gedidata.config import SPLITS, PipelineConfig
from gedidata.errors import GranuleReadError, InputError
from gedidata.footprints import CSV_COLUMNS, EXTRA_COLUMNS, SEPARATOR, empty_frame
from gedidata.gedi import QualityRule, parse_granule_name
from gedidata.granule import read_granule
from gedidata.state import RunState, work_dir

logger = logging.getLogger(__name__)

SHUFFLE_KEY = "_shuffle_key"
BUCKET_ROWS = 250_000
"""Target rows per shuffle bucket: bounds the memory of phase 2."""
MAX_BUCKETS = 256
"""At most this many spill files are open at once."""


@dataclass
class GranuleTally:
    """What became of one granule."""

    name: str
    split: str | None
    size: int = 0
    """File size when read: a marker of a file that changed since is not trusted."""
    shots: int = 0
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    error: str | None = None


@dataclass
class CombineResult:
    """Counts of stage 1, for the run summary."""

    granules: int = 0
    failed: list[GranuleTally] = field(default_factory=list)
    shots: int = 0
    kept: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    other_years: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    outputs: dict[str, Path] = field(default_factory=dict)
    skipped: bool = False
    seconds: float = 0.0


def combined_csv_path(output_dir: Path, split: str) -> Path:
    return output_dir / f"{split}_combined.csv"


def find_granules(input_dir: Path) -> list[Path]:
    """The `.h5` files of `input_dir`, sorted by name."""
    if not input_dir.is_dir():
        raise InputError(f"--input {input_dir}: not a folder")
    granules = sorted(path for path in input_dir.iterdir() if path.suffix.lower() == ".h5")
    if not granules:
        raise InputError(f"--input {input_dir}: no .h5 files (GEDI L4A granules) in it")
    return granules


def combine(config: PipelineConfig, progress: bool = True) -> CombineResult:
    """Run stage 1 for every granule in `config.input_dir` (resumable)."""
    started = time.monotonic()
    if config.input_dir is None:
        raise InputError("--input is required to combine GEDI granules")
    granules = find_granules(config.input_dir)
    outputs = {split: combined_csv_path(config.output_dir, split) for split in SPLITS}
    signature = _signature(config, granules)
    state = RunState(config.output_dir)
    result = CombineResult(granules=len(granules), outputs=outputs)
    if state.is_complete("combine", signature):
        logger.info("combine: up to date, reusing %s", ", ".join(map(str, outputs.values())))
        _tally_from_markers(result, _load_markers(_parts_dir(config, signature)))
        result.skipped = True
        result.seconds = time.monotonic() - started
        return result
    state.ensure_writable("combine", list(outputs.values()), config.overwrite)

    parts_dir = _parts_dir(config, signature)
    tallies = _read_granules(config, granules, parts_dir, progress)
    _tally_from_markers(result, tallies)
    for tally in result.failed:
        logger.warning("skipped granule %s: %s", tally.name, tally.error)

    for split in SPLITS:
        parts = [
            parts_dir / split / f"{tally.name}.parquet"
            for tally in tallies
            if tally.split == split and tally.error is None and tally.kept
        ]
        write_shuffled_csv(parts, outputs[split], result.kept[split], parts_dir / "spill")
        logger.info("combine: wrote %s (%d footprints)", outputs[split], result.kept[split])
    # With failed granules the step stays incomplete, so a re-run retries them.
    state.record("combine", signature, list(outputs.values()), complete=not result.failed)
    result.seconds = time.monotonic() - started
    return result


def _signature(config: PipelineConfig, granules: list[Path]) -> dict[str, object]:
    return {
        "rule": _rule_signature(config),
        "granules": [[path.name, path.stat().st_size] for path in granules],
    }


def _rule_signature(config: PipelineConfig) -> dict[str, object]:
    return {
        "format": 1,
        "seed": config.seed,
        "max_relative_se": config.max_relative_se,
        "bbox": config.bbox,
        "train_years": config.train_years,
        "test_years": config.test_years,
    }


def _parts_dir(config: PipelineConfig, signature: dict[str, object]) -> Path:
    """Parts made under other rules live elsewhere, so a changed setting never reuses them."""
    digest = hashlib.sha256(json.dumps(signature["rule"], sort_keys=True).encode()).hexdigest()[:12]
    return work_dir(config.output_dir) / "combine" / digest


@dataclass(frozen=True)
class _GranuleTask:
    path: Path
    parts_dir: Path
    split: str | None
    rule: QualityRule
    seed: int


def _read_granules(
    config: PipelineConfig, granules: list[Path], parts_dir: Path, progress: bool
) -> list[GranuleTally]:
    sizes = {path.name: path.stat().st_size for path in granules}
    done = {
        name: tally
        for name, tally in _load_markers(parts_dir).items()
        if sizes.get(name) == tally.size
    }
    tallies: list[GranuleTally] = [done[path.name] for path in granules if path.name in done]
    tasks = [
        _GranuleTask(
            path=path,
            parts_dir=parts_dir,
            split=_split_of(config, path),
            rule=QualityRule(max_relative_se=config.max_relative_se, bbox=config.bbox),
            seed=config.seed,
        )
        for path in granules
        if path.name not in done
    ]
    if tallies:
        logger.info("combine: %d granules already read, %d to go", len(tallies), len(tasks))
    bar = tqdm(
        total=len(granules),
        initial=len(tallies),
        unit="granule",
        desc="combine",
        disable=not progress,
    )
    with bar:
        for tally in _run_tasks(tasks, config.num_processors):
            tallies.append(tally)
            bar.update(1)
            bar.set_postfix(shots=sum(t.shots for t in tallies), kept=sum(t.kept for t in tallies))
    tallies.sort(key=lambda tally: tally.name)
    return tallies


def _split_of(config: PipelineConfig, path: Path) -> str | None:
    try:
        return config.split_of_year(parse_granule_name(path.name).year)
    except ValueError:
        return None  # read_granule reports the bad name


def _run_tasks(tasks: list[_GranuleTask], processes: int) -> Iterator[GranuleTally]:
    if processes <= 1 or len(tasks) <= 1:
        yield from map(_combine_granule, tasks)
        return
    # spawn: h5py/HDF5 state must not be inherited through fork.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(processes, len(tasks))) as pool:
        yield from pool.imap_unordered(_combine_granule, tasks)


def _combine_granule(task: _GranuleTask) -> GranuleTally:
    """Worker: read one granule, write its part (if it has a split) and its marker."""
    name = task.path.name
    try:
        footprints = read_granule(task.path, task.rule)
    except GranuleReadError as error:
        return GranuleTally(name=name, split=task.split, error=error.reason)
    size = task.path.stat().st_size
    frame = footprints.frame
    if task.split is not None and frame.height:
        keys = _shuffle_keys(task.seed, name, frame.height)
        part = task.parts_dir / task.split / f"{name}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(part) as temporary:
            frame.with_columns(pl.Series(SHUFFLE_KEY, keys)).write_parquet(
                temporary, compression="lz4", statistics=False
            )
    tally = GranuleTally(
        name=name,
        split=task.split,
        size=size,
        shots=footprints.shots,
        kept=frame.height,
        rejected=dict(footprints.rejected),
    )
    write_json_atomic(task.parts_dir / f"{name}.json", tally.__dict__)
    return tally


def _shuffle_keys(seed: int, granule_name: str, count: int) -> np.ndarray:
    name_key = int.from_bytes(hashlib.sha256(granule_name.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, name_key])
    return rng.integers(0, np.iinfo(np.uint64).max, size=count, dtype=np.uint64, endpoint=True)


def _load_markers(parts_dir: Path) -> dict[str, GranuleTally]:
    markers: dict[str, GranuleTally] = {}
    if parts_dir.is_dir():
        for marker in parts_dir.glob("*.json"):
            tally = GranuleTally(**json.loads(marker.read_text()))
            markers[tally.name] = tally
    return markers


def _tally_from_markers(
    result: CombineResult, tallies: dict[str, GranuleTally] | Iterable[GranuleTally]
) -> None:
    values = tallies.values() if isinstance(tallies, dict) else tallies
    for tally in values:
        if tally.error is not None:
            result.failed.append(tally)
            continue
        result.shots += tally.shots
        result.rejected.update(tally.rejected)
        if tally.split is None:
            result.other_years += tally.kept
        else:
            result.kept[tally.split] += tally.kept


def write_shuffled_csv(parts: list[Path], output: Path, total_rows: int, spill_dir: Path) -> None:
    """Write the rows of `parts` to `output` in shuffle-key order, atomically.

    Memory holds one bucket of about `BUCKET_ROWS` rows (or `total_rows / MAX_BUCKETS`
    when that is larger), never the whole split.
    """
    buckets = min(MAX_BUCKETS, max(1, math.ceil(total_rows / BUCKET_ROWS)))
    columns = [*CSV_COLUMNS, *EXTRA_COLUMNS]
    with atomic_output(output) as temporary, temporary.open("wb") as sink:
        empty_frame().write_csv(sink, separator=SEPARATOR)
        for bucket in _sorted_buckets(parts, buckets, spill_dir):
            bucket.select(columns).write_csv(sink, separator=SEPARATOR, include_header=False)


def _sorted_buckets(parts: list[Path], buckets: int, spill_dir: Path) -> Iterator[pl.DataFrame]:
    order = [SHUFFLE_KEY, "shot_number"]
    if not parts:
        return
    if buckets == 1:
        yield pl.concat([pl.read_parquet(part) for part in parts]).sort(order)
        return
    # Spill: each bucket file holds consecutive Arrow IPC streams, one per part.
    if spill_dir.exists():
        shutil.rmtree(spill_dir)
    spill_dir.mkdir(parents=True)
    index: list[list[tuple[int, int]]] = [[] for _ in range(buckets)]
    handles = [(spill_dir / f"bucket_{i:04d}.arrows").open("wb") for i in range(buckets)]
    try:
        for part in parts:
            frame = pl.read_parquet(part)
            keys = frame[SHUFFLE_KEY].to_numpy()
            # Key-range buckets: bucket order is key order.
            bucket_of = ((keys >> np.uint64(32)) * np.uint64(buckets)) >> np.uint64(32)
            frame = frame.with_columns(pl.Series("_bucket", bucket_of.astype(np.int32)))
            for (bucket,), piece in frame.partition_by("_bucket", as_dict=True).items():
                buffer = io.BytesIO()
                piece.drop("_bucket").write_ipc_stream(buffer)
                payload = buffer.getvalue()
                index[bucket].append((handles[bucket].tell(), len(payload)))
                handles[bucket].write(payload)
    finally:
        for handle in handles:
            handle.close()
    try:
        for bucket in range(buckets):
            if not index[bucket]:
                continue
            data = (spill_dir / f"bucket_{bucket:04d}.arrows").read_bytes()
            pieces = [
                pl.read_ipc_stream(io.BytesIO(data[offset : offset + length]))
                for offset, length in index[bucket]
            ]
            del data
            yield pl.concat(pieces).sort(order)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
