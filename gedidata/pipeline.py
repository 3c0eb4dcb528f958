"""The whole run: combine → subset → extract → fuse, honouring skip flags and --stop-after."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from gedidata.config import SPLITS, PipelineConfig
from gedidata.domain.batches import batch_dir
from gedidata.domain.gedi import REJECTION_REASONS
from gedidata.errors import InputError
from gedidata.sources.profiles import load_profile
from gedidata.stages.combine.combine import CombineResult, combine, combined_csv_path
from gedidata.stages.extract.driver import ExtractResult, extract_split
from gedidata.stages.fuse import FUSED_NAME, FuseResult, batch_files, fuse_directory
from gedidata.stages.subset import SubsetResult, subset_csv_path, subset_split
from gedidata.store.atomic import write_failures_named
from gedidata.store.footprints_csv import scan_footprints
from gedidata.store.lock import OutputLock, prepare_output_dir

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did, for the closing table."""

    combine: CombineResult | None = None
    subsets: dict[str, SubsetResult] = field(default_factory=dict)
    extracts: dict[str, ExtractResult] = field(default_factory=dict)
    fuses: dict[str, FuseResult] = field(default_factory=dict)
    given: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def transient(self) -> int:
        """Footprints that failed to read (or were never extracted) after the run's own
        retries: the same command reads them again."""
        return sum(extract.transient for extract in self.extracts.values())


def run_pipeline(config: PipelineConfig, progress: bool = True) -> RunSummary:
    """Run the stages `config` asks for; return the summary (also on --stop-after).

    OUT is created and checked first, and held (`OutputLock`) for the whole run: a
    second run into the same folder stops at once, naming this one.
    """
    prepare_output_dir(config.output_dir)
    with OutputLock(config.output_dir), write_failures_named(config.output_dir):
        return _run_pipeline_locked(config, progress)


def _run_pipeline_locked(config: PipelineConfig, progress: bool) -> RunSummary:
    started = time.monotonic()
    summary = RunSummary()
    _check_given_csvs(config)
    # A bad --source fails now, not after hours of combining.
    profile = load_profile(config.source, config.stac_url)
    needs_combine = [
        split
        for split in SPLITS
        if split not in config.subset_csv and split not in config.aggregated_csv
    ]
    combined: dict[str, Path] = dict(config.aggregated_csv)
    if needs_combine:
        if config.input_dir is None:
            raise InputError(
                "--input is required (or give --path-aggregated-csv-* / --path-subset-csv-* "
                f"for the {' and '.join(needs_combine)} split)"
            )
        summary.combine = combine(config, progress=progress)
        for split in needs_combine:
            combined[split] = combined_csv_path(config.output_dir, split)
    summary.given = {**config.aggregated_csv, **config.subset_csv}
    if config.stop_after == "combine":
        summary.seconds = time.monotonic() - started
        return summary

    for split in SPLITS:
        if split in config.subset_csv:
            continue
        summary.subsets[split] = subset_split(
            split,
            combined[split],
            config.output_dir,
            config.max_size[split],
            config.seed,
            plot_full=config.plot_distribution,
            overwrite=config.overwrite,
        )
    if config.stop_after == "subset":
        summary.seconds = time.monotonic() - started
        return summary

    for split in SPLITS:
        subset = config.subset_csv.get(split) or subset_csv_path(config.output_dir, split)
        summary.extracts[split] = extract_split(config, split, subset, profile, progress=progress)
    if config.stop_after == "extract":
        summary.seconds = time.monotonic() - started
        return summary

    for split in SPLITS:
        summary.fuses[split] = _fuse(
            config, batch_dir(config.output_dir, split), fused_path(config.output_dir, split),
            f"fuse:{split}", progress,
        )  # fmt: skip
    summary.seconds = time.monotonic() - started
    return summary


def fuse_only(config: PipelineConfig, batches: Path, progress: bool = True) -> RunSummary:
    """``--fuse-hdf5-datasets DIR``: fuse the batch files of DIR into `OUT/fused_dataset.h5`."""
    started = time.monotonic()
    if not batches.is_dir():
        raise InputError(f"--fuse-hdf5-datasets {batches}: not a folder")
    if not batch_files(batches):  # (an empty fused file would only hide the mistake)
        raise InputError(f"no batch files (*.h5) in {batches}: nothing to fuse")
    prepare_output_dir(config.output_dir)
    with OutputLock(config.output_dir), write_failures_named(config.output_dir):
        summary = RunSummary()
        target = config.output_dir / FUSED_NAME
        key = f"fuse:{batches.resolve()}"
        summary.fuses["fused"] = _fuse(config, batches, target, key, progress)
    summary.seconds = time.monotonic() - started
    return summary


def _fuse(
    config: PipelineConfig, batches: Path, target: Path, key: str, progress: bool
) -> FuseResult:
    return fuse_directory(
        batches,
        target,
        output_dir=config.output_dir,
        key=key,
        overwrite=config.overwrite,
        compress=config.fuse_compress,
        progress=progress,
    )


def fused_path(output_dir: Path, split: str) -> Path:
    """`OUT/train_dataset.h5` / `OUT/test_dataset.h5`."""
    return output_dir / f"{split}_dataset.h5"


def _check_given_csvs(config: PipelineConfig) -> None:
    """Refuse a CSV given through a skip flag before any work starts."""
    for given in (config.aggregated_csv, config.subset_csv):
        for path in given.values():
            scan_footprints(path)  # checks the file and its columns


def format_summary(summary: RunSummary) -> str:
    """A plain-text table: footprints in, kept per stage, rejected per reason, files."""
    header = ("stage", "split", "in", "kept", "rejected", "notes")
    rows: list[tuple[str, ...]] = [header]
    files: list[Path] = []
    result = summary.combine
    if result is not None:
        note = f"{result.granules} granules"
        if result.failed:
            note += f", {len(result.failed)} unreadable (skipped)"
        note += "; reused earlier output" if result.skipped else f"; {result.seconds:.1f} s"
        rows.append(("combine", "all", f"{result.shots:,}", "", "", "shots in " + note))
        for split in SPLITS:
            rows.append(("combine", split, "", f"{result.kept[split]:,}", "", ""))
        if result.other_years:
            rows.append(("combine", "-", "", "", f"{result.other_years:,}", "other years"))
        for reason in REJECTION_REASONS:
            if result.rejected.get(reason):
                rows.append(("combine", "-", "", "", f"{result.rejected[reason]:,}", reason))
        files.extend(result.outputs.values())
    for split, subset in summary.subsets.items():
        if subset.skipped:
            rows.append(("subset", split, "", f"{subset.selected:,}", "", "reused earlier output"))
        else:
            note = f"{subset.days_with_data} days with data; {subset.seconds:.1f} s"
            rows.append(
                ("subset", split, f"{subset.available:,}", f"{subset.selected:,}", "", note)
            )
        files.extend(subset.outputs)
    for split, extract in summary.extracts.items():
        kept = extract.outcomes.get("ok", 0)
        note = f"{extract.batches} batches ({extract.skipped_batches} already complete)"
        note += f"; {extract.seconds:.1f} s"
        rows.append(("extract", split, f"{extract.footprints:,}", f"{kept:,}", "", note))
        for reason, count in sorted(extract.outcomes.items()):
            if reason != "ok":
                rows.append(("extract", split, "", "", f"{count:,}", reason))
        if extract.ledger is not None:
            files.append(extract.ledger)
    notes: list[str] = []
    for split, extract in summary.extracts.items():
        if extract.transient:
            notes.append(
                f"{split}: {extract.transient:,} footprints could not be read (services down, "
                "throttled or tokens expired, also when read again at the end of the run): "
                "re-run the same command to read them again"
            )
        if extract.unfinished:
            notes.append(
                f"{split}: {extract.unfinished:,} of them were never extracted: the worker "
                "process reading them died each time (out of memory?)"
            )
        fused_split = summary.fuses.get(split)
        kept = extract.outcomes.get("ok", 0)
        if fused_split is not None and fused_split.samples_in != kept:
            why = []
            if fused_split.skipped:
                why.append(f"{len(fused_split.skipped)} batch files unreadable (skipped)")
            if fused_split.samples_in > kept:
                why.append("the batch folder holds batches from other runs")
            notes.append(
                f"{split}: extract kept {kept:,} samples, fuse read {fused_split.samples_in:,}: "
                + ("; ".join(why) or "see the log")
            )
    for split, fused in summary.fuses.items():
        if fused.reused:
            note = "reused earlier output"
        else:
            note = f"{fused.files} batch files; {fused.seconds:.1f} s"
        if fused.skipped:
            note += f"; {len(fused.skipped)} unreadable batch files (skipped)"
        rows.append(("fuse", split, f"{fused.samples_in:,}", f"{fused.samples:,}", "", note))
        if fused.duplicates:
            rows.append(("fuse", split, "", "", f"{fused.duplicates:,}", "duplicate shot"))
        files.append(fused.target)
    for split, path in summary.given.items():
        rows.append(("given", split, "", "", "", str(path)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"gedidata run summary ({summary.seconds:.1f} s)"]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if files:
        lines.append("outputs:")
        lines += [f"  {path}" for path in files]
    for failed in result.failed if result is not None else []:
        lines.append(f"unreadable granule {failed.name}: {failed.error}")
    for fused in summary.fuses.values():
        lines += [f"unreadable batch file {item.path}: {item.reason}" for item in fused.skipped]
    lines += notes
    return "\n".join(line.rstrip() for line in lines)
