"""Stage 4, fuse: batch files → one dataset file (SPEC §5).

`fuse_files` streams the batch files into one file with the layout of `gedidata.domain.schema`,
a block of samples at a time (memory does not grow with the dataset):

1. plan: every batch file is checked (`samples_h5.check_open_file`: readable, every dataset of
   the right dtype and shape, equal lengths); a file that fails is named with its reason
   and skipped. The shot numbers of the readable files decide what is kept: the first
   occurrence of each shot number (in file order, then sample order) wins, later ones
   are dropped as duplicates.
2. copy: every kept sample goes to the next slot of the new file, written under a
   temporary name and renamed at the end (a crash never leaves a partial file under
   the final name). Per-channel statistics of the valid pixels are gathered on the way
   and stored as attributes (`gedidata.report.stats`). A file that turns out unreadable while
   its data is copied is skipped and the fuse starts again without it. A failure to
   write the new file (disk full, quota, I/O error) ends the fuse with
   `OutputWriteError` naming it; no batch file is blamed, and the same command resumes
   once there is room.

`fuse_directory` adds what a run needs: the batch files of a folder, resume (an
unchanged earlier result is reused) and the refusal to replace a file gedidata did not
write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from gedidata.domain.schema import DATASETS, GROUP, SCHEMA_VERSION
from gedidata.errors import OutputWriteError
from gedidata.report.stats import new_statistics, write_statistics
from gedidata.store.atomic import HeldErrorFile, atomic_output, write_failure_reason
from gedidata.store.samples_h5 import (
    BLOCK_SAMPLES,
    SchemaError,
    check_open_file,
    create_datasets,
    open_schema_file,
)
from gedidata.store.state import RunState, file_stamp

logger = logging.getLogger(__name__)

FUSED_NAME = "fused_dataset.h5"
"""File written by ``--fuse-hdf5-datasets DIR`` (in OUT), as the original tool did."""

SHOT_NUMBER = "GEDI Shot Number"

# Root attributes that describe the schema rather than the run: `create_datasets`
# writes its own, so they are not copied from the batch files.
_SCHEMA_ATTRIBUTES = frozenset(
    {"schema_version", "band_names", "copdem_bands", "units", "nodata", "gedidata_version"}
)


@dataclass(frozen=True)
class SkippedFile:
    """A batch file left out of the fused file, and why."""

    path: Path
    reason: str


@dataclass
class FuseResult:
    """What a fuse did."""

    target: Path
    files: int
    """Batch files offered."""
    samples_in: int = 0
    """Samples in the readable batch files."""
    samples: int = 0
    """Samples in the fused file."""
    duplicates: int = 0
    """Samples dropped because their shot number came earlier."""
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: float = 0.0
    reused: bool = False
    """True when an earlier, unchanged result was kept."""


@dataclass(frozen=True)
class _Source:
    path: Path
    keep: np.ndarray
    """Per sample: copy it (first occurrence of its shot number)."""


class _CopyError(Exception):
    """A batch file that passed the plan could not be read while copying."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _natural_key(path: Path) -> list[Any]:
    """Sort ``batch_1000_10`` after ``batch_1000_9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def batch_files(directory: str | Path) -> list[Path]:
    """The ``.h5`` files of `directory` in natural name order (temporaries left out)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder")
    found = [
        path for path in directory.glob("*.h5") if path.is_file() and not path.name.startswith(".")
    ]
    return sorted(found, key=_natural_key)


def fuse_files(
    files: Sequence[str | Path],
    target: str | Path,
    *,
    attrs: Mapping[str, Any] | None = None,
    compress: bool = False,
    progress: bool = False,
) -> FuseResult:
    """Fuse the batch `files` (in this order) into `target`, atomically.

    `attrs` are added to the root attributes (after those of the first readable batch
    file). ``compress=True`` gzips the raster chunks too (smaller file, ~8× slower
    random reads). An empty or entirely unreadable input gives a valid empty file.
    """
    started = time.monotonic()
    paths = [Path(path) for path in files]
    target = Path(target)
    excluded: list[SkippedFile] = []
    while True:
        sources, skipped, samples_in, run_attrs = _plan(
            [path for path in paths if path not in {item.path for item in excluded}]
        )
        result = FuseResult(target=target, files=len(paths), samples_in=samples_in)
        result.skipped = excluded + skipped
        try:
            result.samples = _write(
                sources, target, {**run_attrs, **(attrs or {})}, result, compress, progress
            )
        except _CopyError as error:
            logger.warning("fuse: skipping %s: %s; starting again without it", error.path, error)
            excluded.append(SkippedFile(error.path, error.reason))
            continue
        result.duplicates = samples_in - result.samples
        result.seconds = time.monotonic() - started
        return result


def _plan(paths: list[Path]) -> tuple[list[_Source], list[SkippedFile], int, dict[str, Any]]:
    """Check every file; decide which samples to keep; the run attributes of the first."""
    skipped: list[SkippedFile] = []
    readable: list[tuple[Path, np.ndarray]] = []
    run_attrs: dict[str, Any] | None = None
    for path in paths:
        try:
            with open_schema_file(path) as file:
                check_open_file(file, path)
                version = file.attrs.get("schema_version")
                if version is not None and str(version) != SCHEMA_VERSION:
                    raise SchemaError(
                        path, None, f"schema version {version}, expected {SCHEMA_VERSION}"
                    )
                shots = np.asarray(file[GROUP][SHOT_NUMBER][:, 0])
                attrs = {k: v for k, v in file.attrs.items() if k not in _SCHEMA_ATTRIBUTES}
        except SchemaError as error:
            logger.warning("fuse: skipping %s: %s", path, error.reason)
            skipped.append(SkippedFile(path, error.reason))
            continue
        except (OSError, KeyError) as error:
            logger.warning("fuse: skipping %s: %s", path, error)
            skipped.append(SkippedFile(path, f"unreadable ({error})"))
            continue
        if run_attrs is None:
            run_attrs = attrs
        else:
            _warn_different_settings(path, run_attrs, attrs)
        readable.append((path, shots))
    if not readable:
        return [], skipped, 0, run_attrs or {}
    every_shot = np.concatenate([shots for _, shots in readable])
    _, first = np.unique(every_shot, return_index=True)
    keep = np.zeros(every_shot.size, dtype=bool)
    keep[first] = True
    sources: list[_Source] = []
    offset = 0
    for path, shots in readable:
        sources.append(_Source(path, keep[offset : offset + shots.size]))
        offset += shots.size
    return sources, skipped, int(every_shot.size), run_attrs or {}


def _warn_different_settings(
    path: Path, first: Mapping[str, Any], attrs: Mapping[str, Any]
) -> None:
    differing = sorted(
        key for key in set(first) | set(attrs) if not _same_value(first.get(key), attrs.get(key))
    )
    if differing:
        logger.warning(
            "fuse: %s was made with other settings than the first batch file (%s); "
            "the fused file records the first file's",
            path,
            ", ".join(differing),
        )


def _same_value(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return a == b


def _write(
    sources: list[_Source],
    target: Path,
    attrs: Mapping[str, Any],
    result: FuseResult,
    compress: bool,
    progress: bool,
) -> int:
    """Copy the kept samples of `sources` into `target` (atomically); the sample count."""
    total = int(sum(int(source.keep.sum()) for source in sources))
    _remove_stale_temporaries(target)
    fuse_attrs = {
        "fused_from_files": len(sources),
        "duplicates_dropped": result.samples_in - total,
        "skipped_files": [[str(item.path), item.reason] for item in result.skipped],
    }
    bar = tqdm(total=total, unit="sample", desc=f"fuse {target.name}", disable=not progress)
    # HDF5 writes through `sink`, which keeps a failed write (disk full) from HDF5: it
    # would crash the process when the file is closed (see `HeldErrorFile`)
    with bar, atomic_output(target) as temporary, HeldErrorFile(temporary, target) as sink:
        try:
            with h5py.File(sink, "w") as out:
                datasets = create_datasets(
                    out, total, {**attrs, **fuse_attrs}, compress_rasters=compress
                )
                statistics = new_statistics()
                position = 0
                for source in sources:
                    copied = _copy_source(source, datasets, statistics, position, sink)
                    position += copied
                    bar.update(copied)
                write_statistics(datasets, statistics)
        except (OSError, RuntimeError) as error:
            # (batch files are read in `_copy_source`, whose errors are `_CopyError`s:
            # what is left is the target's)
            sink.raise_if_failed()  # the write that failed first, if any
            raise OutputWriteError(str(target), write_failure_reason(error)) from error
        sink.raise_if_failed()  # (a write of the final flush)
    return position


def _copy_source(
    source: _Source,
    datasets: Mapping[str, h5py.Dataset],
    statistics: Mapping[str, Any],
    position: int,
    sink: HeldErrorFile,
) -> int:
    """Append the kept samples of one batch file at `position`; how many were copied.

    A batch file that cannot be read raises `_CopyError`; a failure to write the target
    raises `OutputWriteError` (or the h5py error), never blaming the batch file.
    """
    try:
        file = h5py.File(source.path, "r")
    except OSError as error:
        raise _CopyError(source.path, f"unreadable while copying ({error})") from error
    with file:
        try:
            group = file[GROUP]
            inputs = [(spec.name, group[spec.name]) for spec in DATASETS]  # looked up once
        except (OSError, KeyError) as error:
            raise _CopyError(source.path, f"unreadable while copying ({error})") from error
        for start in range(0, source.keep.size, BLOCK_SAMPLES):
            keep = source.keep[start : start + BLOCK_SAMPLES]
            count = int(keep.sum())
            if not count:
                continue
            for name, dataset in inputs:
                try:
                    block = dataset[start : start + keep.size]
                except (OSError, KeyError) as error:
                    message = f"unreadable while copying ({error})"
                    raise _CopyError(source.path, message) from error
                if count < keep.size:
                    block = block[keep]
                # (HDF5's own deflate: its streams are ~4 % smaller and ~9 % faster to
                # inflate than ISA-L's, which counts in a file read again and again)
                datasets[name][position : position + count] = block
                sink.raise_if_failed()  # stop at the first failed write, not at the end
                if name in statistics:
                    statistics[name].update(block)
            position += count
    return int(source.keep.sum())


def _remove_stale_temporaries(target: Path) -> None:
    """Temporary files of a fuse that was killed (see `atomic.temporary_sibling`)."""
    for stale in target.parent.glob(f".{target.stem}.tmp-*{target.suffix}"):
        logger.info("fuse: removing %s, left by an interrupted run", stale)
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def fuse_directory(
    batch_dir: str | Path,
    target: str | Path,
    *,
    output_dir: str | Path,
    key: str,
    overwrite: bool = False,
    compress: bool = False,
    progress: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> FuseResult:
    """Fuse every batch file of `batch_dir` into `target`, resuming through OUT's state.

    An earlier fuse of the same files (same names, sizes and times) with the same
    options is reused. `target` is replaced only when an earlier gedidata run made it,
    or with ``overwrite``.
    """
    batch_dir, target = Path(batch_dir), Path(target)
    files = batch_files(batch_dir)
    signature = {
        "inputs": [[path.name, *file_stamp(path).values()] for path in files],
        "compress": compress,
        "attrs": dict(attrs or {}),
    }
    state = RunState(Path(output_dir))
    if state.is_complete(key, signature):
        logger.info("fuse: %s is up to date with %s", target, batch_dir)
        return _reused(target, len(files))
    state.ensure_writable(key, [target], overwrite)
    if not files:
        logger.warning("fuse: no batch files (*.h5) in %s", batch_dir)
    result = fuse_files(files, target, attrs=attrs, compress=compress, progress=progress)
    state = RunState(Path(output_dir))  # another split may have recorded meanwhile
    state.record(key, signature, [target], complete=not result.skipped)
    logger.info(
        "fuse: %s: %d samples from %d files (%d duplicates dropped, %d files skipped)",
        target,
        result.samples,
        result.files,
        result.duplicates,
        len(result.skipped),
    )
    return result


def _reused(target: Path, files: int) -> FuseResult:
    with h5py.File(target, "r") as file:
        samples = int(file[GROUP][SHOT_NUMBER].shape[0])
        duplicates = int(file.attrs.get("duplicates_dropped", 0))
        skipped = [
            SkippedFile(Path(name), reason)
            for name, reason in json.loads(file.attrs.get("skipped_files", "[]"))
        ]
    return FuseResult(
        target=target,
        files=files,
        samples_in=samples + duplicates,
        samples=samples,
        duplicates=duplicates,
        skipped=skipped,
        reused=True,
    )
