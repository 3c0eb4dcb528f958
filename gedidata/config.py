"""Run settings: every threshold of the specification, with its default, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

Stage = Literal["combine", "subset", "extract", "fuse"]
STAGES: tuple[Stage, ...] = ("combine", "subset", "extract", "fuse")
SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class SclLimits:
    """Largest share (percent of the 32 x 32 window) of each SCL class group allowed."""

    cloud: float = 25.0
    shadow: float = 25.0
    snow: float = 25.0
    water: float = 25.0
    invalid: float = 5.0


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs to know; built by the CLI, read by the stages."""

    output_dir: Path
    input_dir: Path | None = None
    train_years: tuple[int, ...] = (2020,)
    test_years: tuple[int, ...] = (2021,)
    seed: int = 0
    max_relative_se: float = 0.5
    bbox: tuple[float, float, float, float] | None = None
    default_max_size: ClassVar[dict[str, int]] = {"train": 6_000_000, "test": 2_000_000}
    max_size: dict[str, int] = field(default_factory=lambda: dict(PipelineConfig.default_max_size))
    aggregated_csv: dict[str, Path] = field(default_factory=dict)
    subset_csv: dict[str, Path] = field(default_factory=dict)
    plot_distribution: bool = False
    num_processors: int = field(default_factory=lambda: os.cpu_count() or 1)
    batch_size: int = 1000
    source: str = "planetary-computer"
    stac_url: str | None = None
    max_cloud_cover: float = 25.0
    search_days: int = 10
    max_scene_candidates: int = 3
    max_slope: float = 15.0
    scl_limits: SclLimits = field(default_factory=SclLimits)
    http_timeout: float = 30.0
    """Seconds one network request (STAC, COG read) may take before it is retried."""
    retry_pause: float = 60.0
    """Seconds to wait before the footprints that failed to read are read once more."""
    fuse_compress: bool = False
    """Also gzip the raster chunks of fused files (smaller, slower random reads)."""
    stop_after: Stage | None = None
    overwrite: bool = False

    def split_of_year(self, year: int) -> str | None:
        """The split a footprint of `year` belongs to, or None when it is dropped."""
        if year in self.train_years:
            return "train"
        if year in self.test_years:
            return "test"
        return None
