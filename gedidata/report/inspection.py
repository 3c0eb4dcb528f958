"""`gedidata inspect FILE`: what is in a batch or fused dataset file.

`inspect_file` gathers the facts (sample count, schema check, root attributes,
per-band statistics of valid pixels, WorldCover classes, scenes and CRSs) without
loading the file into memory; `format_report` prints them. Statistics stored by fuse are
used as they are; a batch file's are computed on the way, block by block.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gedidata.domain.quality import WORLDCOVER_CLASSES
from gedidata.domain.schema import BAND_NAMES, COPDEM_BANDS, GROUP
from gedidata.report.stats import STATISTICS_DATASETS, ChannelStats, read_statistics
from gedidata.store.samples_h5 import BLOCK_SAMPLES, SchemaError, check_file

CHANNEL_NAMES: dict[str, tuple[str, ...]] = {
    "Sentinel-2 L2A": BAND_NAMES,
    "CopDEM": COPDEM_BANDS,
    "AGBD Raster": ("agbd disk",),
    "AGBD Values": ("agbd",),
}


@dataclass
class FileReport:
    """The facts `inspect_file` found."""

    path: Path
    size_bytes: int
    samples: int = 0
    schema_error: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    statistics: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    statistics_stored: bool = False
    """True when the statistics come from the file's attributes (a fused file)."""
    worldcover_classes: Counter[int] = field(default_factory=Counter)
    crs: Counter[str] = field(default_factory=Counter)
    scenes: int = 0
    shots_unique: int = 0


def inspect_file(path: str | Path) -> FileReport:
    """Look at a batch or fused dataset file; a schema problem is reported, not raised."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    report = FileReport(path=path, size_bytes=path.stat().st_size)
    try:
        report.samples = check_file(path)
    except SchemaError as error:
        report.schema_error = str(error)
        return report
    with h5py.File(path, "r") as file:
        report.attributes = {key: _plain(value) for key, value in file.attrs.items()}
        group = file[GROUP]
        read = {name: read_statistics(group[name]) for name in STATISTICS_DATASETS}
        stored = {name: stats for name, stats in read.items() if stats is not None}
        report.statistics_stored = len(stored) == len(read)
        computed = {} if report.statistics_stored else {n: ChannelStats(n) for n in read}
        scenes: set[str] = set()
        for start in range(0, report.samples, BLOCK_SAMPLES):
            block = slice(start, start + BLOCK_SAMPLES)
            for name, stats in computed.items():
                stats.update(group[name][block])
            classes = np.bincount(group["WorldCover"][block].ravel(), minlength=256)
            report.worldcover_classes.update(
                {int(value): int(classes[value]) for value in np.flatnonzero(classes)}
            )
            report.crs.update(group["CRS"].asstr()[block][:, 0].tolist())
            scenes.update(group["Sentinel-2 Product Name"].asstr()[block][:, 0].tolist())
        report.scenes = len(scenes)
        report.shots_unique = int(np.unique(group["GEDI Shot Number"][:, 0]).size)
        report.statistics = (
            stored
            if report.statistics_stored
            else {name: computed[name].result() for name in STATISTICS_DATASETS}
        )
    return report


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def format_report(report: FileReport) -> str:
    """Plain text for the terminal."""
    lines = [f"{report.path} ({report.size_bytes / 1e6:,.1f} MB)"]
    if report.schema_error:
        lines.append(f"schema: NOT OK: {report.schema_error}")
        return "\n".join(lines)
    attrs = report.attributes
    lines.append(f"schema: ok (version {attrs.get('schema_version', '?')})")
    lines.append(f"samples: {report.samples:,} ({report.shots_unique:,} distinct shot numbers)")
    lines.append(f"scenes: {report.scenes:,}; CRS: " + _counts(report.crs))
    for key in ("source_profile", "gedidata_version", "fused_from_files", "duplicates_dropped"):
        if key in attrs:
            lines.append(f"{key}: {attrs[key]}")
    for key in ("thresholds", "skipped_files"):
        if attrs.get(key):
            lines.append(f"{key}: {json.dumps(attrs[key], sort_keys=True)}")
    origin = "stored by fuse" if report.statistics_stored else "computed now"
    lines.append(f"per-band statistics of valid pixels ({origin}):")
    header = ("dataset", "band", "valid", "mean", "std", "min", "max")
    rows: list[tuple[str, ...]] = [header]
    for name, stats in report.statistics.items():
        for channel, band in enumerate(CHANNEL_NAMES[name]):
            rows.append(
                (
                    name,
                    band,
                    f"{int(stats['valid_count'][channel]):,}",
                    *(f"{float(stats[key][channel]):.4g}" for key in ("mean", "std", "min", "max")),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    total = sum(report.worldcover_classes.values()) or 1
    lines.append("WorldCover classes (share of pixels):")
    for value, count in sorted(report.worldcover_classes.items()):
        name = WORLDCOVER_CLASSES.get(value, "unknown")
        lines.append(f"  {value:>3} {name:<26} {100 * count / total:6.2f} %")
    return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} ({count:,})" for key, count in counter.most_common())
