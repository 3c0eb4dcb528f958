"""Stage 1, combine: GEDI L4A granules → `OUT/train_combined.csv`, `OUT/test_combined.csv`.

Two phases, both with memory bounded independently of the number of granules:

1. Worker processes read granules in parallel (`granule.read_granule`), keep the
   footprints passing the quality rule, give each a random 64-bit shuffle key (seeded
   by the run seed and the granule name, so it does not depend on which worker ran
   first) and store them as a key-sorted part (`shuffle.write_part`), then a small
   JSON marker with the tally. A re-run skips granules whose marker exists.
2. The main process writes each split's CSV in key order, one key range at a time
   (`shuffle.write_shuffled_csv`): a uniform random permutation with memory bounded by
   one bucket, not by the number of granules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gedidata.config import SPLITS, PipelineConfig
from gedidata.domain.gedi import QualityRule, parse_granule_name
from gedidata.errors import GranuleReadError, InputError
from gedidata.runtime.executor import ProcessExecutor, TasksLost
from gedidata.stages.combine.granule import read_granule
from gedidata.stages.combine.shuffle import PART_SUFFIX, write_part, write_shuffled_csv
from gedidata.store.atomic import write_json_atomic
from gedidata.store.state import RunState, work_dir

logger = logging.getLogger(__name__)


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
            parts_dir / split / f"{tally.name}{PART_SUFFIX}"
            for tally in tallies
            if tally.split == split and tally.error is None and tally.kept
        ]
        write_shuffled_csv(parts, outputs[split], result.kept[split])
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
        "format": 3,
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
    # worker processes, not fork: h5py/HDF5 state must not be inherited. A granule whose
    # worker dies (twice) is reported unreadable; the step stays incomplete, so a
    # re-run tries it again.
    executor = ProcessExecutor(min(processes, len(tasks)), preload=[__name__])
    try:
        yield from executor.map_unordered(_combine_granule, tasks)
    except TasksLost as lost:
        for task, reason in lost.lost:
            yield GranuleTally(name=task.path.name, split=task.split, error=f"worker {reason}")


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
        write_part(frame, keys, task.parts_dir / task.split / f"{name}{PART_SUFFIX}")
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
