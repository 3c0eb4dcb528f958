"""Stage 3, extract: footprints → batch HDF5 files of co-located windows (SPEC §4).

`extract_split` cuts a split's footprints into batches (`batches.py`) and hands runs of
consecutive batches that are not complete yet to worker processes (`executor.py`,
`extract_run`). The main process finds each run's scenes with one grouped STAC search
(`sources.search`) and its DEM and WorldCover tiles, in threads, while the workers
start and work (`_search_run`). A worker opens each asset once, reads every
footprint's SCL window, checks it (`quality.py`) and falls back to the next candidate
scene (up to `max_scene_candidates`); then, a column of internal tiles at a time, it
reads the bands (`reader.py`), DEM and slope, WorldCover, and draws the AGBD disk
(`agbd.py`), each step for all the column's footprints at once. Every footprint ends
with one outcome, written to the batch's ledger and reported to the progress bar as
its column finishes; samples go to `batch_<size>_<index>.h5` (`schema.py`), written
atomically after the ledger, so a complete HDF5 file marks a complete batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import transform as warp_transform

from gedidata import __version__
from gedidata.config import PipelineConfig, SclLimits
from gedidata.domain.agbd import agbd_disk
from gedidata.domain.batches import (
    batch_dir,
    batch_name,
    batch_order,
    batch_runs,
    complete_batches,
    plan_batches,
)
from gedidata.domain.gedi import delta_time_to_datetime
from gedidata.domain.geometry import WINDOW_SIZE
from gedidata.domain.harmonize import Harmonization, harmonization
from gedidata.domain.quality import scl_rejection, scl_stats, slope_rejection
from gedidata.errors import AssetReadError, GedidataError
from gedidata.raster.reader import (
    read_dem_with_slope_many,
    read_exact_many,
    read_mosaic_many,
    read_resampled_many,
)
from gedidata.runtime.executor import (
    DaemonThreads,
    Executor,
    ProcessExecutor,
    SerialExecutor,
    TasksLost,
    report_progress,
)
from gedidata.sources.assets import open_asset
from gedidata.sources.profiles import BAND_RESOLUTION, S2_BANDS, SourceProfile
from gedidata.sources.signing import HrefSigner, redact, signer_modules
from gedidata.sources.stac import (
    FootprintQuery,
    SceneCandidate,
    SceneSearch,
    SceneSearchResult,
    retrying_stac_io,
)
from gedidata.store.ledger import (
    INVALID_INPUT,
    OK,
    READ_ERROR,
    LedgerEntry,
    merge_ledgers,
    read_entries,
    read_outcomes,
    transient_count,
    write_ledger,
)
from gedidata.store.schema import Sample, SampleBuffer, check_file, write_samples

logger = logging.getLogger(__name__)

CLOUD_OPTIMIZED_GDAL: dict[str, str | int] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    # rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64, i.e. in *bytes*
    # (rasterio#2336): 512 would leave no block cache and decode a 1024 x 1024 tile for
    # every 32 x 32 read. 512 MiB holds the tiles a batch has in use for a band.
    "GDAL_CACHEMAX": 512 * 2**20,
    "VSI_CACHE": "TRUE",
    # /vsicurl/ doubles a download that starts where the last one ended (a "sequential"
    # read), up to 128 chunks: reading an internal tile right after its neighbour in the
    # file then fetches the next tile too, often one this worker never needs (reads go
    # in descending file order to avoid it, see `reader._read_windows`). Small chunks
    # also waste less at tile edges.
    "CPL_VSIL_CURL_CHUNK_SIZE": 8192,
    # a read across a column of blocks fetches them together, up to this many compressed
    # bytes (GDAL's default, 10 MiB, stops at 6 of a column's 11 textured 10 m tiles)
    "GDAL_MAX_RAW_BLOCK_CACHE_SIZE": 64 * 2**20,
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    # a request that cannot connect or stalls ends (and is retried) instead of holding
    # its worker for as long as the server keeps the connection; the read timeout is
    # the run's --http-timeout (`gdal_env`)
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
}
"""GDAL settings for cloud-optimized reads: no directory listing, merged ranges, caches."""

CONNECT_TIMEOUT = 10.0
"""Seconds to connect to a STAC API or a file server before the attempt counts as failed."""

SEARCH_DEADLINE_TIMEOUTS = 20
"""A run's STAC searches get this many --http-timeout in all (retries and pages
included); past it the run's footprints are read errors, retried at the end."""

DEM_MARGIN_DEG = 0.0006
"""How far beyond a window DEM tiles are read: the slope's extra pixel (10 m) plus a
bilinear neighbour (one CopDEM pixel, at most 1.5" = 0.00042° in lon within GEDI's
±51.6°). A window that ends within that of a tile edge needs the next tile's first
pixels, as a warp of the whole mosaic would use them."""

PROGRESS_FOOTPRINTS = 100
"""Footprints (at least) a worker reads and finishes before it reports their outcomes."""

CHUNK_COLUMNS = 1024
"""Chunks of footprints end where a new column of 1024-pixel internal tiles of the 10 m
bands starts. A tile that two chunks share (under windows on a column edge, or a 20 m
or 60 m tile spanning several columns) must stay in the block cache from one chunk to
the next; with one tile column per chunk, what is read in between (~170 MB for a whole
column of all bands) is well under the 512 MiB cache, and each tile is still fetched
once. Chunks of 500 footprints (~3 columns) refetched 6 % more on the benchmark."""

PARALLEL_BANDS = 4
"""Bands a worker reads at once, in threads (`_read_bands`). With every file request
delayed by 20 ms, 4 ran 258 footprints/s and 12 ran 273, against 180 one band at a
time; 12 raised a worker's peak RSS by ~400 MB (each read holds its run of compressed
tiles), 4 by ~80 MB. Over loopback it makes no measurable difference."""

RUN_FOOTPRINTS = 20_000
"""Footprints of consecutive batches one worker extracts together (see `batch_runs`).
A run opens its datasets once and keeps their tiles in the block cache, so the tiles
on the edge between two runs are fetched by both: fewer, longer runs fetch less (on
16,000 footprints of one scene, runs of 4,000 read 1.64x the unique tiles, one run
per worker 1.27x). Batches are written as they complete, so a run's length bounds
neither its memory nor what a killed worker loses."""

MIN_RUN_FOOTPRINTS = 2_000
"""Footprints (at least) of a run when the work is shared among workers. Two runs
both fetch and decode the internal tiles along the edge between their areas, above
all the 20 m and 60 m tiles (2 and 6 columns of 10 m tiles wide). On 2,000 footprints
of one scene (`bench_extract.py`), two runs of 1,000 read 1.14-1.23x the unique tiles
on GEDI passes and ran about as fast as one run, whose worker reads 4 bands at once in
threads (5.5, 6.1 and 9.1 s on 1, 2 and 4 passes against 5.8, 6.7 and 8.4 s; one run
read 0.99-1.02x); anywhere on the scene they were 12 % faster for 1.09x the tiles. On
8,000 and 16,000 footprints two runs were 29-48 % faster (1.17-1.26x the tiles)."""


@dataclass(frozen=True)
class ExtractSettings:
    """What a worker needs to extract a batch (picklable)."""

    profile: SourceProfile
    max_cloud_cover: float
    search_days: int
    max_scene_candidates: int
    max_slope: float
    scl_limits: SclLimits
    http_timeout: float = 30.0
    """Seconds a network request may take (GDAL reads, STAC requests) before a retry."""

    @classmethod
    def from_config(cls, config: PipelineConfig, profile: SourceProfile) -> ExtractSettings:
        return cls(
            profile=profile,
            max_cloud_cover=config.max_cloud_cover,
            search_days=config.search_days,
            max_scene_candidates=config.max_scene_candidates,
            max_slope=config.max_slope,
            scl_limits=config.scl_limits,
            http_timeout=config.http_timeout,
        )

    def gdal_env(self) -> dict[str, str | int]:
        """The GDAL settings of a worker's reads: `CLOUD_OPTIMIZED_GDAL`, the timeout,
        then the source profile's own."""
        timeout = str(max(1, round(self.http_timeout)))
        return {**CLOUD_OPTIMIZED_GDAL, "GDAL_HTTP_TIMEOUT": timeout, **self.profile.gdal_env}


@dataclass(frozen=True)
class BatchTask:
    index: int
    path: Path
    ledger: Path
    footprints: tuple[dict[str, Any], ...]
    """The batch's rows of the subset CSV, in batch order (plain values: a worker need
    not import polars, which would add ~0.15 s to every pool's start)."""


@dataclass(frozen=True)
class RunTask:
    """Consecutive batches that one worker extracts one after the other."""

    batches: tuple[BatchTask, ...]
    settings: ExtractSettings
    scenes: RunScenes


@dataclass(frozen=True)
class RunScenes:
    """What a run's STAC searches found: made in the main process (`_search_run`)."""

    found: SceneSearchResult
    auxiliary: _AuxiliaryItems | None
    error: str = ""
    """Why the searches failed (then every footprint of the run is a read error)."""


@dataclass
class BatchResult:
    index: int
    outcomes: Counter[str]
    samples: int
    seconds: float


@dataclass
class ExtractResult:
    split: str
    footprints: int = 0
    batches: int = 0
    skipped_batches: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    ledger: Path | None = None
    seconds: float = 0.0
    retried: int = 0
    """Footprints with a transient outcome that the run read again at its end."""
    unfinished: int = 0
    """Footprints of batches that were never written (their worker kept dying)."""

    @property
    def transient(self) -> int:
        """Footprints a later run of the same command reads again (read errors, unfinished)."""
        return transient_count(self.outcomes) + self.unfinished


def extract_split(
    config: PipelineConfig,
    split: str,
    subset_csv: Path,
    profile: SourceProfile,
    executor: Executor | None = None,
    progress: bool = True,
) -> ExtractResult:
    """Extract every footprint of `subset_csv` into `OUT/<split>/hdf5_batch_data/`.

    Rows that cannot be footprints (`footprints.split_invalid_rows`) are ``invalid_input``
    at once. Batches that are complete are kept; the others are extracted, and those
    that end with transient outcomes (read errors) are extracted once more at the end,
    after `config.retry_pause` seconds, in new worker processes.
    """
    # here, not at the top: the workers import this module and need neither
    from gedidata.store.footprints_csv import (
        collect_footprints,
        scan_footprints,
        split_invalid_rows,
    )

    started = time.monotonic()
    frame, invalid = split_invalid_rows(collect_footprints(scan_footprints(subset_csv), subset_csv))
    directory = batch_dir(config.output_dir, split)
    ledger_dir = directory.parent / "ledger"
    directory.mkdir(parents=True, exist_ok=True)  # (also for a split with no footprint)
    ledger_dir.mkdir(exist_ok=True)
    refused = [LedgerEntry(_shot_or_zero(s), INVALID_INPUT, "", d) for s, d in invalid.iter_rows()]
    if read_entries(ledger_dir / INVALID_LEDGER) != refused:  # (a re-run changes no file)
        write_ledger(ledger_dir / INVALID_LEDGER, refused)
    if invalid.height:
        logger.warning(
            "extract %s: %d rows of %s are not usable footprints (invalid_input), e.g. %s",
            split, invalid.height, subset_csv, invalid["detail"][0],
        )  # fmt: skip
    count = -(-frame.height // config.batch_size)
    done = _complete_batches(directory, ledger_dir, config.batch_size, count)
    _remove_stale_temporaries(directory, ledger_dir)
    pending = count - len(done)
    runs_wanted = len(_runs(list(range(pending)), config))
    # with more than one run, a pool's workers fork from a server that starts importing
    # now, while the footprints are planned
    pool = _pool(config, profile) if executor is None and pending and runs_wanted > 1 else None
    day = frame["delta_time"].to_numpy() / 86400.0
    order = batch_order(
        frame["lon_lowestmode"].to_numpy(),
        frame["lat_lowestmode"].to_numpy(),
        day,
        frame["shot_number"].to_numpy(),
        window_days=2 * config.search_days,
    )
    plans = plan_batches(order, config.batch_size)
    settings = ExtractSettings.from_config(config, profile)
    tasks = [
        BatchTask(
            index=index,
            path=directory / batch_name(config.batch_size, index),
            ledger=_ledger_path(ledger_dir, config.batch_size, index),
            footprints=tuple(frame[rows].to_dicts()),
        )
        for index, rows in enumerate(plans)
        if index not in done
    ]
    result = ExtractResult(split, footprints=frame.height + invalid.height, batches=len(plans))
    result.skipped_batches = len(plans) - len(tasks)
    if result.skipped_batches:
        logger.info("extract %s: %d of %d batches already complete", split, len(done), len(plans))
    run = _BatchRunner(config, split, settings, executor or pool or SerialExecutor(), progress)
    run.extract(tasks, total=result.footprints, already=result.footprints - sum(
        len(task.footprints) for task in tasks
    ))  # fmt: skip
    # What failed to read is read again once, in new processes (GDAL remembers failed
    # requests per process), after a pause that lets a throttled service recover.
    again = [task for task in tasks if not _batch_complete(task.path, task.ledger)]
    if again:
        result.retried = sum(len(task.footprints) for task in again)
        logger.warning(
            "extract %s: %d footprints of %d batches failed to read; reading them again in %g s",
            split, result.retried, len(again), config.retry_pause,
        )  # fmt: skip
        time.sleep(config.retry_pause)
        retry_executor = executor or _pool(config, profile, len(_runs(again, config)))
        _BatchRunner(config, split, settings, retry_executor, progress, "again").extract(
            again, total=result.retried
        )
    ledgers = [ledger_dir / INVALID_LEDGER] + [
        _ledger_path(ledger_dir, config.batch_size, index) for index in range(len(plans))
    ]
    for index, path in enumerate(ledgers):
        outcomes = read_outcomes(path)
        if outcomes is not None:
            result.outcomes.update(outcomes)
        elif index:  # a batch never written: its worker died every time
            result.unfinished += len(plans[index - 1])
    result.ledger = config.output_dir / f"{split}_ledger.csv"
    if tasks or not result.ledger.exists():  # an unchanged ledger is not rewritten
        merge_ledgers(ledgers, result.ledger)
    result.seconds = time.monotonic() - started
    return result


INVALID_LEDGER = "invalid.csv"
"""The ledger of the rows refused before any read (in `OUT/<split>/ledger/`)."""


def _ledger_path(ledger_dir: Path, size: int, index: int) -> Path:
    return ledger_dir / f"batch_{size}_{index}.csv"


def _shot_or_zero(shot: int | None) -> int:
    return 0 if shot is None else int(shot)


def _runs(items: list[Any], config: PipelineConfig) -> list[list[Any]]:
    """`items` (pending batches) cut into runs for the workers (`batch_runs`)."""
    indexes = batch_runs(
        list(range(len(items))),
        config.num_processors,
        max_run=max(1, RUN_FOOTPRINTS // config.batch_size),
        min_run=-(-MIN_RUN_FOOTPRINTS // config.batch_size),
    )
    return [[items[i] for i in run] for run in indexes]


def _pool(config: PipelineConfig, profile: SourceProfile, runs: int | None = None) -> Executor:
    processes = config.num_processors if runs is None else min(config.num_processors, runs)
    return ProcessExecutor(max(1, processes), preload=[__name__, *signer_modules(profile)])


def _complete_batches(directory: Path, ledger_dir: Path, size: int, count: int) -> set[int]:
    """Batches done for good: their HDF5 file and ledger agree, and no footprint of
    theirs has a transient outcome (those batches are extracted again)."""
    return {
        index
        for index in complete_batches(directory, size)
        if index < count
        and _batch_complete(
            directory / batch_name(size, index), _ledger_path(ledger_dir, size, index)
        )
    }


def _batch_complete(path: Path, ledger: Path) -> bool:
    """Whether a batch's files are whole and final (see `_complete_batches`)."""
    outcomes = read_outcomes(ledger) if path.exists() else None
    if outcomes is None or transient_count(outcomes):
        return False
    try:
        return check_file(path) == outcomes[OK]
    except (GedidataError, OSError):
        return False


class _BatchRunner:
    """Extracts batches in runs on an executor, with a progress bar."""

    def __init__(
        self,
        config: PipelineConfig,
        split: str,
        settings: ExtractSettings,
        executor: Executor,
        progress: bool,
        label: str = "",
    ) -> None:
        self.config = config
        self.split = split
        self.settings = settings
        self.executor = executor
        self.progress = progress
        self.label = f"extract {split}" + (f" ({label})" if label else "")

    def extract(self, tasks: list[BatchTask], total: int, already: int = 0) -> None:
        from tqdm import tqdm  # (the workers import this module and do not need it)

        runs = [tuple(run) for run in _runs(tasks, self.config)]
        bar = tqdm(total=total, unit="footprint", desc=self.label, disable=not self.progress)
        shown: Counter[str] = Counter()

        def show(outcomes: Counter[str]) -> None:
            shown.update(outcomes)
            kept = shown[OK]
            bar.set_postfix(kept=kept, rejected=shown.total() - kept, refresh=False)
            bar.update(sum(outcomes.values()))  # (draws the bar with the counts above)

        # the first runs' searches start now, while the workers start
        workers = max(1, min(self.config.num_processors, len(runs)))
        searched = _SearchAhead(runs, self.settings, workers)
        with bar:
            bar.update(already)
            try:
                for _ in self.executor.map_unordered(
                    extract_run,
                    searched,
                    on_progress=show if self.progress else None,
                    on_retry=_unwritten,
                ):
                    pass
            except TasksLost as lost:  # (their batches stay incomplete: the next run redoes them)
                logger.error("extract %s: %s", self.split, lost)
            finally:
                searched.close()
            bar.n = total  # the batches of workers that died did not report
            bar.refresh()


def _unwritten(task: RunTask) -> RunTask | None:
    """A run whose worker died, less the batches it wrote before dying (None: all)."""
    left = tuple(batch for batch in task.batches if not _batch_complete(batch.path, batch.ledger))
    return replace(task, batches=left) if left else None


def _remove_stale_temporaries(*directories: Path) -> None:
    """Half-written files of a run that was killed (their batches are simply redone)."""
    for directory in directories:
        if directory.is_dir():
            for stale in directory.glob(".batch_*.tmp-*"):
                logger.info("removing %s left by an interrupted run", stale)
                stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------- one batch


def extract_run(task: RunTask) -> list[BatchResult]:
    """Worker: extract consecutive batches, each written as its ledger, then its HDF5 file.

    The batches are read as one: with the scenes of one scene search and the tiles of
    one DEM and one WorldCover search (made by the main process), the bands are read
    band by band over the footprints of a column of internal tiles at a time, so each
    internal tile is fetched and decoded once, also along the edges between the batches
    (GDAL's block cache only needs the tiles of about one column). A batch is written as
    soon as its last footprint is done (batches follow the tile columns, so only a few
    are open at a time); its ledger and samples come out as if it had been extracted
    alone.
    """
    started = time.monotonic()
    settings = task.settings
    env = settings.gdal_env()
    batches = [list(batch.footprints) for batch in task.batches]
    results: list[BatchResult] = []

    def write(index: int, ledger: list[LedgerEntry], samples: list[Sample]) -> None:
        seconds = time.monotonic() - started
        results.append(_write_batch(task.batches[index], ledger, samples, settings, seconds))

    with rasterio.Env(**env), _AssetCache(settings.profile) as assets:
        scenes = task.scenes
        if scenes.auxiliary is None:
            for index, rows in enumerate(batches):
                write(index, [_entry(row, READ_ERROR, "", scenes.error) for row in rows], [])
        else:
            _extract_footprints(batches, settings, assets, scenes.found, scenes.auxiliary, write)
    return results


BatchWriter = Callable[[int, list[LedgerEntry], list[Sample]], None]
"""Takes a finished batch: its index in the run, ledger entries and samples in order."""


def _extract_footprints(
    batches: list[list[dict[str, Any]]],
    settings: ExtractSettings,
    assets: _AssetCache,
    found: SceneSearchResult,
    auxiliary: _AuxiliaryItems,
    write: BatchWriter,
) -> None:
    """Every footprint's outcome; each batch goes to ``write`` once all of its are in.

    Footprints are read in whatever order reads fastest (`_reading_order`); each
    result goes back to its footprint's place in its batch, so a batch's files do not
    depend on the reading order or on the other batches of the run.
    """
    place = {
        id(row): (index, position)
        for index, rows in enumerate(batches)
        for position, row in enumerate(rows)
    }
    ledgers: list[list[tuple[int, LedgerEntry]]] = [[] for _ in batches]
    samples: list[list[tuple[int, Sample]]] = [[] for _ in batches]
    remaining = [len(rows) for rows in batches]
    for index, count in enumerate(remaining):
        if count == 0:
            write(index, [], [])

    unreported: Counter[str] = Counter()

    def record(row: dict[str, Any], outcome: str, scene: str, detail: str) -> None:
        """A footprint's outcome (after its sample, if any, is in `samples`)."""
        index, position = place[id(row)]
        ledgers[index].append((position, _entry(row, outcome, scene, detail)))
        unreported[outcome] += 1
        remaining[index] -= 1
        if remaining[index] == 0:  # the batch is complete: write it, let its samples go
            ledger = [entry for _, entry in sorted(ledgers[index], key=_first)]
            kept = [sample for _, sample in sorted(samples[index], key=_first)]
            ledgers[index], samples[index] = [], []
            write(index, ledger, kept)

    def report() -> None:
        if unreported:
            report_progress(Counter(unreported))
            unreported.clear()

    # Pass 1: a scene per footprint (SCL check, fallback to the next candidate).
    everything = [row for rows in batches for row in rows]
    searched = []
    for row in _reading_order(everything, found.candidates):
        shot = int(row["shot_number"])
        if shot in found.errors:
            record(row, READ_ERROR, "", found.errors[shot])
        else:
            searched.append(row)
    chosen, rejected = _choose_scenes(searched, found, settings, assets)
    for row, outcome in rejected:
        record(row, *outcome)
    report()
    # In tile order, a column of tiles at a time (`_chunks`), so progress shows while
    # the run goes on and each internal tile is still fetched once.
    chosen.sort(key=lambda item: _tile_order(item.candidate, item.row))
    for chunk in _chunks(chosen):
        # Pass 2: band by band (one dataset at a time reads fastest).
        failed = _read_bands(chunk, settings, assets)
        for item, detail in failed.items():
            record(item.row, READ_ERROR, item.candidate.item_id, detail)
        # Pass 3: DEM, slope, WorldCover, AGBD disk (the windows of one CRS together).
        by_crs: dict[CRS, list[_Chosen]] = {}
        for item in chunk:
            if item not in failed:
                by_crs.setdefault(item.crs, []).append(item)
        for items in by_crs.values():
            for item, (outcome, scene, detail, sample) in zip(
                items, _finish(items, settings, assets, auxiliary), strict=True
            ):
                if sample is not None:
                    index, position = place[id(item.row)]
                    samples[index].append((position, sample))
                record(item.row, outcome, scene, detail)
        for item in chunk:
            item.sentinel2 = None  # a kept footprint's sample has them
        report()


def _chunks(chosen: list[_Chosen]) -> Iterator[list[_Chosen]]:
    """Consecutive footprints (in tile order), cut where the scene or the tile column
    (`CHUNK_COLUMNS`) changes once a chunk holds `PROGRESS_FOOTPRINTS`."""
    chunk: list[_Chosen] = []
    previous = None
    for item in chosen:
        key = (item.candidate.item_id, item.candidate.window.col_off // CHUNK_COLUMNS)
        if len(chunk) >= PROGRESS_FOOTPRINTS and key != previous:
            yield chunk
            chunk = []
        chunk.append(item)
        previous = key
    if chunk:
        yield chunk


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def _write_batch(
    task: BatchTask,
    ledger: list[LedgerEntry],
    samples: list[Sample],
    settings: ExtractSettings,
    seconds: float,
) -> BatchResult:
    """A batch's ledger, then its HDF5 file (whose presence marks the batch written)."""
    write_ledger(task.ledger, ledger)
    buffer = SampleBuffer(len(task.footprints))
    for sample in samples:
        buffer.append(sample)
    write_samples(task.path, buffer, _batch_attrs(settings))
    outcomes = Counter(entry.outcome for entry in ledger)
    logger.debug("batch %d: %s", task.index, dict(outcomes))
    return BatchResult(task.index, outcomes, buffer.count, seconds)


def _entry(row: dict[str, Any], outcome: str, scene: str, detail: str) -> LedgerEntry:
    return LedgerEntry(int(row["shot_number"]), outcome, scene, detail)


def _query(row: dict[str, Any]) -> FootprintQuery:
    return FootprintQuery(
        int(row["shot_number"]),
        float(row["lon_lowestmode"]),
        float(row["lat_lowestmode"]),
        _shot_time(row),
    )


def _shot_time(row: dict[str, Any]) -> datetime:
    """Exact shot time from delta_time (the coarse file-name time if it is missing)."""
    if row.get("delta_time") is not None:
        return delta_time_to_datetime(row["delta_time"])
    return row["acquisition_time"]


def _reading_order(
    rows: list[dict[str, Any]], candidates: dict[int, list[SceneCandidate]]
) -> Iterator[dict[str, Any]]:
    """Footprints by best scene, then by internal tile, so each COG tile is read once.

    Internal tiles go column by column: tiles one below the other are not neighbours
    in the file, so GDAL's /vsicurl/ does not take the reads for sequential and fetch
    (up to 2 MB) ahead into the next tile in the file, which is often not needed.
    """

    def key(row: dict[str, Any]) -> tuple[str, int, int, int]:
        options = candidates.get(int(row["shot_number"])) or []
        return _tile_order(options[0] if options else None, row)

    return iter(sorted(rows, key=key))


def _tile_order(candidate: SceneCandidate | None, row: dict[str, Any]) -> tuple[str, int, int, int]:
    """Sort key: scene, then 1024-pixel tile column, tile row, then shot number."""
    shot = int(row["shot_number"])
    if candidate is None:
        return ("", 0, 0, shot)
    window = candidate.window
    return (candidate.item_id, window.col_off // 1024, window.row_off // 1024, shot)


class _AssetCache:
    """Datasets opened once per run (signed just before opening), and the assets that
    failed for good in this run.

    A failed open (after GDAL's retries and a re-signing on 403) marks its asset
    failed at once; a failed read closes the dataset so the next use opens it afresh,
    with a new signature, and a second failed read marks it failed. The footprints of a
    failed asset are read errors at once (retried at the end of the run, in a new
    process), instead of each waiting through the retries again.
    """

    def __init__(self, profile: SourceProfile) -> None:
        self.signer = HrefSigner(profile)
        self.datasets: dict[str, DatasetReader] = {}
        self.href_of: dict[int, str] = {}  # id(dataset) → href
        self.failed: dict[str, str] = {}  # href → why
        self.read_failures: Counter[str] = Counter()

    def __enter__(self) -> _AssetCache:
        return self

    def __exit__(self, *exc: object) -> None:
        for dataset in self.datasets.values():
            dataset.close()
        self.datasets.clear()

    def open(self, href: str) -> DatasetReader:
        if href in self.failed:
            raise AssetReadError(self.failed[href])
        if href not in self.datasets:
            try:
                dataset = open_asset(href, self.signer)
            except AssetReadError as error:
                self._give_up(href, str(error))
                raise
            self.datasets[href] = dataset
            self.href_of[id(dataset)] = href
        return self.datasets[href]

    def read_failed(self, error: BaseException) -> None:
        """Note a failed read (`DatasetReadError`); other errors say nothing of an asset."""
        dataset = getattr(error, "dataset", None)
        href = self.href_of.pop(id(dataset), None)
        if href is None or self.datasets.get(href) is not dataset:
            return
        del self.datasets[href]
        dataset.close()  # type: ignore[union-attr]
        self.read_failures[href] += 1
        if self.read_failures[href] == 1:
            self.signer.refresh()  # (a 403 of an expired token reads like any failure)
        else:
            self._give_up(href, f"{redact(href)}: {error}")

    def _give_up(self, href: str, reason: str) -> None:
        reason = redact(reason)[:300]
        self.failed[href] = reason
        logger.warning("giving up on an asset for the rest of this run: %s", reason)


class _SearchAhead:
    """The runs as `RunTask`s, their STAC searches made in threads of this process ahead
    of the worker that takes them.

    The first ``threads`` runs' searches start at once (while the workers start); each
    run handed out starts the search of the next, so only a few runs' results are held
    at a time. Runs are handed out as their searches finish, so a slow search holds
    back only its own run. A pool takes a task when a worker is free, so the searches
    keep ahead of the extraction.
    """

    def __init__(
        self, runs: list[tuple[BatchTask, ...]], settings: ExtractSettings, threads: int
    ) -> None:
        threads = max(1, threads)
        self._runs = iter(runs)
        self._settings = settings
        self._threads = DaemonThreads(threads, "gedidata-stac")
        self._local = threading.local()  # a `SceneSearch` (HTTP session) per thread
        self._ahead: dict[Future[RunScenes], tuple[BatchTask, ...]] = {}
        self._deadline = SEARCH_DEADLINE_TIMEOUTS * settings.http_timeout
        self._deadlines: dict[Future[RunScenes], float] = {}
        for _ in range(threads):
            self._start_next()

    def _start_next(self) -> None:
        run = next(self._runs, None)
        if run is not None:
            search = self._threads.submit(_search_run, run, self._settings, self._local)
            self._ahead[search] = run
            self._deadlines[search] = time.monotonic() + self._deadline

    def __iter__(self) -> Iterator[RunTask]:
        while self._ahead:
            now = time.monotonic()
            first_deadline = min(self._deadlines[search] for search in self._ahead)
            finished, _ = wait(
                self._ahead, timeout=max(0.0, first_deadline - now), return_when=FIRST_COMPLETED
            )
            late = {s for s in self._ahead if s not in finished and self._deadlines[s] <= now}
            for search in [*finished, *late]:
                run = self._ahead.pop(search)
                self._deadlines.pop(search)
                self._start_next()
                yield RunTask(run, self._settings, self._scenes(search))

    def _scenes(self, search: Future[RunScenes]) -> RunScenes:
        if search.done():
            return search.result()
        # (the thread goes on until its own timeouts end it; its result is dropped)
        search.cancel()
        seconds = self._deadline
        message = f"STAC API {self._settings.profile.stac_url}: no answer within {seconds:g} s"
        logger.warning("%s", message)
        return RunScenes(SceneSearchResult(), None, message)

    def close(self) -> None:
        """Stop searching: searches not started are cancelled; one under way ends on its
        own, in a daemon thread, so it keeps neither Ctrl-C nor the process waiting."""
        for search in list(self._ahead):
            search.cancel()  # (only those not started yet)
        self._threads.shutdown()


def _search_run(
    run: tuple[BatchTask, ...], settings: ExtractSettings, local: threading.local
) -> RunScenes:
    """A run's scene search (grouped) and its DEM and WorldCover searches.

    Runs in a thread of the main process (`_SearchAhead`); each thread keeps its own
    `SceneSearch` in ``local``. Any failure, once the retries are spent, is the run's
    error: its footprints become read errors, the other runs go on.
    """
    batches = [list(batch.footprints) for batch in run]
    try:
        search = getattr(local, "search", None)
        if search is None:
            search = local.search = SceneSearch(
                settings.profile,
                max_cloud_cover=settings.max_cloud_cover,
                search_days=settings.search_days,
                stac_io=retrying_stac_io(timeout=(CONNECT_TIMEOUT, settings.http_timeout)),
            )
        found = search.find([_query(row) for rows in batches for row in rows])
        auxiliary = _AuxiliaryItems(search, batches, settings)
    except Exception as error:  # the STAC API is unreachable: every footprint fails
        where = f"STAC API {settings.profile.stac_url}"
        message = redact(f"{where}: {type(error).__name__}: {str(error).strip()}")[:300]
        return RunScenes(SceneSearchResult(), None, message)
    return RunScenes(found, auxiliary)


class _AuxiliaryItems:
    """DEM and WorldCover items around the batches of a run, found with one search each."""

    def __init__(
        self, search: SceneSearch, batches: list[list[dict[str, Any]]], settings: ExtractSettings
    ) -> None:
        profile = settings.profile
        # One box per batch: the run's batches may lie far apart (a run can go on in
        # the next MGRS square or UTM zone), and their common box would be huge.
        box = shapely.union_all([_batch_box(rows) for rows in batches if rows])
        self.dem = _Tiles(self._items(search, profile.dem_collection, box))
        self.worldcover = _Tiles(
            self._items(search, profile.worldcover_collection, box)
            if profile.worldcover_collection
            else []
        )

    @staticmethod
    def _items(search: SceneSearch, collection: str, box: shapely.Geometry) -> list[dict]:
        items = search.client.search(
            method="POST",
            collections=[collection],
            intersects=shapely.geometry.mapping(box),
            limit=100,
        ).items_as_dicts()
        return list(items)


class _Tiles:
    """DEM or WorldCover items with their footprint geometries (parsed once)."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items
        self.geometries = np.array([shapely.geometry.shape(i["geometry"]) for i in items])

    def covering(self, lonlat: shapely.Geometry) -> list[dict]:
        """Items whose footprint meets the lon/lat box, by id."""
        meets = shapely.intersects(self.geometries, lonlat) if self.items else []
        chosen = [item for item, ok in zip(self.items, meets, strict=True) if ok]
        return sorted(chosen, key=lambda item: item["id"])


def _batch_box(rows: list[dict[str, Any]], margin: float = 0.02) -> shapely.Geometry:
    """Lon/lat box around a batch's footprints, `margin` degrees wider than a window."""
    lons = [float(row["lon_lowestmode"]) for row in rows]
    lats = [float(row["lat_lowestmode"]) for row in rows]
    if max(lons) - min(lons) > 180.0:  # footprints on both sides of ±180°
        lons = [lon + 360.0 if lon < 0 else lon for lon in lons]
    return _lonlat_box(
        min(lons) - margin,
        max(-90.0, min(lats) - margin),
        max(lons) + margin,
        min(90.0, max(lats) + margin),
    )


@dataclass(eq=False)
class _Chosen:
    """A footprint, the scene that passed its SCL check, and what is read for it."""

    row: dict[str, Any]
    candidate: SceneCandidate
    scl: np.ndarray
    crs: CRS
    transform: Affine
    sentinel2: np.ndarray | None = None
    """The 12 harmonized channels, while the footprint's chunk is read (then the sample
    holds them, and nothing once its batch is written)."""
    harmonization: Harmonization | None = None


def _choose_scenes(
    rows: list[dict[str, Any]],
    found: SceneSearchResult,
    settings: ExtractSettings,
    assets: _AssetCache,
) -> tuple[list[_Chosen], list[tuple[dict[str, Any], tuple[str, str, str]]]]:
    """For each footprint the first candidate whose SCL window passes, or why none did.

    Round k checks every footprint still open against its k-th candidate; the SCL
    windows of one scene are read together. A footprint with no candidate is
    ``no_scene``; one whose candidates all fail gets the last candidate's reason; a read
    error ends a footprint's search with ``read_error``.
    """
    chosen: list[_Chosen] = []
    rejected: list[tuple[dict[str, Any], tuple[str, str, str]]] = []
    last: dict[int, tuple[str, str, str]] = {}
    open_rows = []
    for row in rows:
        if found.candidates.get(int(row["shot_number"])):
            open_rows.append(row)
        else:
            rejected.append((row, ("no_scene", "", "")))
    for attempt in range(settings.max_scene_candidates):
        by_href: dict[str, list[tuple[dict[str, Any], SceneCandidate]]] = {}
        for row in open_rows:
            options = found.candidates[int(row["shot_number"])]
            if attempt < len(options):
                candidate = options[attempt]
                try:
                    href = candidate.item["assets"][settings.profile.asset_key("SCL")]["href"]
                except KeyError as error:
                    last[id(row)] = ("read_error", candidate.item_id, redact(str(error))[:300])
                    continue
                by_href.setdefault(href, []).append((row, candidate))
        open_rows = []
        for href, members in by_href.items():
            windows = _read_scl(href, members, assets)
            for (row, candidate), scl in zip(members, windows, strict=True):
                if isinstance(scl, str):
                    last[id(row)] = ("read_error", candidate.item_id, scl)
                    continue
                reason = scl_rejection(scl, settings.scl_limits)
                if reason is None:
                    crs = CRS.from_epsg(candidate.epsg)
                    transform = candidate.window.transform(candidate.grid)
                    chosen.append(_Chosen(row, candidate, scl, crs, transform))
                else:
                    last[id(row)] = (reason, candidate.item_id, "")
                    open_rows.append(row)
    done = {id(item.row) for item in chosen}
    rejected.extend((row, last[id(row)]) for row in rows if id(row) in last and id(row) not in done)
    return chosen, rejected


def _read_scl(
    href: str, members: list[tuple[dict[str, Any], SceneCandidate]], assets: _AssetCache
) -> list[np.ndarray | str]:
    """The SCL windows of footprints on one scene, or per footprint why it failed."""
    transforms = [candidate.window.transform(candidate.grid) for _, candidate in members]
    crs = CRS.from_epsg(members[0][1].epsg)
    try:
        dataset = assets.open(href)
        return list(read_resampled_many(dataset, transforms, crs, resampling=Resampling.nearest))
    except (GedidataError, KeyError, OSError) as error:
        assets.read_failed(error)
        if len(members) == 1:
            return [redact(str(error))[:300]]
    return [_read_scl(href, [member], assets)[0] for member in members]


def _read_bands(
    chosen: list[_Chosen], settings: ExtractSettings, assets: _AssetCache
) -> dict[_Chosen, str]:
    """Fill every footprint's harmonized bands; the footprints that failed, with why."""
    profile = settings.profile
    failed: dict[_Chosen, str] = {}
    for item in chosen:
        item.sentinel2 = np.zeros((12, WINDOW_SIZE, WINDOW_SIZE), np.uint16)
        item.sentinel2[0] = item.scl
        try:
            item.harmonization = harmonization(item.candidate.item, profile.asset_key("B04"))
        except GedidataError as error:
            failed[item] = str(error)[:300]
    # the footprints of one scene are read together, each internal tile once
    jobs: list[tuple[int, str, str, list[_Chosen]]] = []  # channel, band, href, footprints
    for channel, band in enumerate(S2_BANDS[1:], start=1):
        groups: dict[str, list[_Chosen]] = {}
        for item in chosen:
            if item in failed:
                continue
            try:
                href = item.candidate.item["assets"][profile.asset_key(band)]["href"]
            except KeyError as error:
                failed[item] = redact(str(error))[:300]
                continue
            groups.setdefault(href, []).append(item)
        jobs.extend((channel, band, href, items) for href, items in groups.items())
    # every band at once, in threads (each its own dataset): GDAL fetches and decodes
    # them side by side, so with an object store's latency a column of tiles of all the
    # bands costs about one round of requests instead of one per band
    with ThreadPoolExecutor(max(1, min(len(jobs), PARALLEL_BANDS))) as threads:
        reads: list[Future[np.ndarray] | None] = []
        for _, band, href, items in jobs:
            dataset = _open_or_none(assets, href)  # (opened here: the cache is not shared)
            read = None if dataset is None else threads.submit(_read_band, dataset, band, items)
            reads.append(read)
        for (channel, band, href, items), read in zip(jobs, reads, strict=True):
            try:
                values = _harmonized(read.result(), items) if read is not None else None
            except (GedidataError, KeyError, OSError) as error:
                assets.read_failed(error)
                values = None  # one footprint at a time below, so each gets its own outcome
            for index, item in enumerate(items):
                try:
                    value = (
                        values[index]
                        if values is not None
                        else _harmonized(_read_band(assets.open(href), band, [item]), [item])[0]
                    )
                except (GedidataError, KeyError, OSError) as error:
                    assets.read_failed(error)
                    failed[item] = redact(str(error))[:300]
                    continue
                assert item.sentinel2 is not None  # allocated above
                item.sentinel2[channel] = value
    return failed


def _open_or_none(assets: _AssetCache, href: str) -> DatasetReader | None:
    """The open dataset, or None when it cannot be opened (the caller reports why)."""
    try:
        return assets.open(href)
    except (GedidataError, OSError):
        return None


def _harmonized(values: np.ndarray, items: list[_Chosen]) -> np.ndarray:
    """Each footprint's band values (N, 32, 32) less its scene's offset, clipped at 0;
    nodata (0) stays 0."""
    offsets = np.zeros(len(items), np.int32)
    for k, item in enumerate(items):
        assert item.harmonization is not None  # set for every footprint not failed
        offsets[k] = item.harmonization.offset_dn
    shifted = values.astype(np.int32) - offsets[:, None, None]
    return np.where(values == 0, 0, np.clip(shifted, 0, None)).astype(np.uint16)


def _read_band(dataset: DatasetReader, band: str, items: list[_Chosen]) -> np.ndarray:
    """One band's window of every footprint (all on the dataset's scene): (N, 32, 32)."""
    if BAND_RESOLUTION[band] == 10:
        return read_exact_many(dataset, [item.candidate.window for item in items])
    return read_resampled_many(dataset, [item.transform for item in items], items[0].crs)


Finished = tuple[str, str, str, Sample | None]
"""A footprint's outcome, scene id, detail and (if ok) sample."""


def _finish(
    items: list[_Chosen], settings: ExtractSettings, assets: _AssetCache, auxiliary: _AuxiliaryItems
) -> list[Finished]:
    """DEM and slope, WorldCover, AGBD disk of footprints on one CRS, read together.

    If reading fails, each footprint is done on its own, so each gets its own outcome.
    """
    try:
        return _finish_together(items, settings, assets, auxiliary)
    except (GedidataError, KeyError, OSError) as error:
        assets.read_failed(error)
        if len(items) == 1:
            return [(READ_ERROR, items[0].candidate.item_id, redact(str(error))[:300], None)]
        return [_finish([item], settings, assets, auxiliary)[0] for item in items]


def _finish_together(
    items: list[_Chosen], settings: ExtractSettings, assets: _AssetCache, auxiliary: _AuxiliaryItems
) -> list[Finished]:
    profile = settings.profile
    crs = items[0].crs
    transforms = [item.transform for item in items]
    bounds = _lonlat_bounds(items)
    boxes = [_lonlat_box(*b) for b in bounds]  # each window's box, for DEM and WorldCover
    dem_items = [auxiliary.dem.covering(box) for box in boxes]  # the tiles under a window
    dem_sets = [  # the tiles the kernels reach, a little beyond the window
        [assets.open(i["assets"][profile.dem_asset]["href"]) for i in auxiliary.dem.covering(box)]
        for box in (_lonlat_box(*_grown(b, DEM_MARGIN_DEG)) for b in bounds)
    ]
    elevations, slopes = read_dem_with_slope_many(dem_sets, transforms, crs)
    results: list[Finished | None] = [None] * len(items)
    wc_items: dict[int, list[dict]] = {}
    for k, item in enumerate(items):
        # (the slope's edge pixels use the DEM one pixel beyond the window)
        if not dem_sets[k] or np.isnan(elevations[k]).any() or np.isnan(slopes[k]).any():
            results[k] = ("nodata", item.candidate.item_id, "no DEM for the whole window", None)
        elif (reason := slope_rejection(slopes[k], settings.max_slope)) is not None:
            results[k] = (reason, item.candidate.item_id, "", None)
        else:
            year = _worldcover_year_of(item.row)
            wc_items[k] = [
                i for i in auxiliary.worldcover.covering(boxes[k]) if _worldcover_year(i) == year
            ]
    survivors = list(wc_items)
    worldcover = read_mosaic_many(
        [[assets.open(i["assets"][profile.worldcover_asset]["href"]) for i in wc_items[k]]
         for k in survivors],
        [transforms[k] for k in survivors], crs, (WINDOW_SIZE, WINDOW_SIZE),
        Resampling.nearest, np.uint8, 0,
    )  # fmt: skip
    xs, ys = _to_crs(
        [float(items[k].row["lon_lowestmode"]) for k in survivors],
        [float(items[k].row["lat_lowestmode"]) for k in survivors],
        crs,
    )
    for j, k in enumerate(survivors):
        item = items[k]
        if not wc_items[k] or (worldcover[j] == 0).any():
            year = _worldcover_year_of(item.row)
            detail = f"no WorldCover {year} for the whole window"
            results[k] = ("nodata", item.candidate.item_id, detail, None)
            continue
        copdem = np.stack([elevations[k], slopes[k]]).astype(np.float32)
        tiles = (",".join(i["id"] for i in wc_items[k]), ",".join(i["id"] for i in dem_items[k]))
        sample = _sample(item, worldcover[j], copdem, tiles, xs[j], ys[j])
        results[k] = ("ok", item.candidate.item_id, "", sample)
    finished = [result for result in results if result is not None]
    assert len(finished) == len(items)  # every branch above sets its footprint's result
    return finished


def _sample(
    item: _Chosen,
    worldcover: np.ndarray,
    copdem: np.ndarray,
    tiles: tuple[str, str],
    x: float,
    y: float,
) -> Sample:
    """The sample of a footprint that passed every check; ``tiles`` are the names of the
    WorldCover and DEM tiles, (x, y) the footprint in the window's CRS."""
    row, candidate = item.row, item.candidate
    harmonized = item.harmonization
    # both set by _read_bands for every footprint not failed
    assert harmonized is not None and item.sentinel2 is not None
    return Sample(
        sentinel2=item.sentinel2,
        worldcover=worldcover[None],
        copdem=copdem,
        agbd_raster=agbd_disk(x, y, item.transform, float(row["agbd"])),
        transform=item.transform,
        crs=f"EPSG:{candidate.epsg}",
        scl_stats=scl_stats(item.scl),
        sentinel2_product=candidate.item_id,
        worldcover_tile=tiles[0],
        copdem_tile=tiles[1],
        agbd=float(row["agbd"]),
        agbd_se=float(row["agbd_se"]),
        gedi_product=str(row["GEDI Filename"]),
        shot_number=int(row["shot_number"]),
        acquisition_time=row["acquisition_time"].strftime("%Y-%m-%d-%H-%M-%S"),
        delta_time=repr(float(row["delta_time"])),
        lat_lon=(float(row["lat_lowestmode"]), float(row["lon_lowestmode"])),
        processing_baseline=harmonized.processing_baseline,
        offset_removed=harmonized.offset_dn,
    )


LonLatBounds = tuple[float, float, float, float]
"""(west, south, east, north); west > east for a window across ±180°."""


def _lonlat_bounds(items: list[_Chosen]) -> list[LonLatBounds]:
    """Each window's lon/lat bounds from its corners (windows of one CRS)."""
    corners = np.array([item.candidate.window.bounds(item.candidate.grid) for item in items])
    left, bottom, right, top = corners.T
    lons, lats = warp_transform(
        items[0].crs,
        "EPSG:4326",
        np.concatenate([left, right, right, left]),
        np.concatenate([top, top, bottom, bottom]),
    )
    lons = np.asarray(lons).reshape(4, -1).T
    lats = np.asarray(lats).reshape(4, -1).T
    bounds = []
    for lon, lat in zip(lons, lats, strict=True):
        west, east = float(lon.min()), float(lon.max())
        if east - west > 180.0:  # across ±180°: from the least positive to the greatest negative
            west, east = float(lon[lon > 0].min()), float(lon[lon < 0].max())
        bounds.append((west, float(lat.min()), east, float(lat.max())))
    return bounds


def _grown(bounds: LonLatBounds, margin: float) -> LonLatBounds:
    """`margin` degrees wider on every side (latitudes kept within ±90°)."""
    west, south, east, north = bounds
    return west - margin, max(south - margin, -90.0), east + margin, min(north + margin, 90.0)


def _worldcover_year_of(row: dict[str, Any]) -> int:
    """The WorldCover map of a shot: 2020 up to the end of 2020, 2021 after."""
    return 2020 if row["acquisition_time"].year <= 2020 else 2021


def _lonlat_box(west: float, south: float, east: float, north: float) -> shapely.Geometry:
    """A lon/lat box; one reaching beyond ±180° (or with west > east, as bounds across
    the antimeridian are given) is cut there into a part on each side."""
    if west > east:
        east += 360.0
    parts = []
    for shift in (-360.0, 0.0, 360.0):
        lo, hi = max(west + shift, -180.0), min(east + shift, 180.0)
        if lo < hi:
            parts.append(shapely.box(lo, south, hi, north))
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _worldcover_year(item: dict) -> int:
    properties = item.get("properties", {})
    stamp = properties.get("start_datetime") or properties.get("datetime") or ""
    return int(stamp[:4]) if stamp[:4].isdigit() else 0


def _to_crs(lons: list[float], lats: list[float], crs: CRS) -> tuple[list[float], list[float]]:
    if not lons:
        return [], []
    xs, ys = warp_transform("EPSG:4326", crs, lons, lats)
    return list(xs), list(ys)


def _batch_attrs(settings: ExtractSettings) -> dict[str, Any]:
    return {
        "source_profile": settings.profile.name,
        "thresholds": {
            "max_cloud_cover": settings.max_cloud_cover,
            "search_days": settings.search_days,
            "max_scene_candidates": settings.max_scene_candidates,
            "max_slope": settings.max_slope,
            "scl_limits": settings.scl_limits.__dict__,
        },
        "harmonization": "DN = 10000 x reflectance; BOA_ADD_OFFSET removed where it applies",
        "gedidata_version": __version__,
    }
