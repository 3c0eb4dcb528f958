"""`--demo`: the pipeline on a small generated world, fully offline.

The demo world is written below `OUT/demo-world/` (and reused by a re-run): GEDI L4A
granules with the real layout for the train and test years, over two regions. Stages
that are built run on it exactly as they would on downloaded granules.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gedidata.testing import write_granules

logger = logging.getLogger(__name__)

DEMO_REGIONS: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("Black Forest", (7.6, 47.6, 8.6, 48.6)),
    ("Amazon near Manaus", (-60.6, -3.6, -59.6, -2.6)),
)
GRANULES_PER_REGION = {2020: 24, 2021: 12}
SHOTS_PER_BEAM = 500
DEMO_MAX_SIZE = {"train": 20_000, "test": 5_000}
"""Subset caps of the demo unless given: small enough to show the day-of-year balance."""


def prepare_demo_inputs(output_dir: Path, years: dict[int, int] | None = None) -> Path:
    """Write (once) the demo's GEDI granules and return their folder."""
    gedi_dir = output_dir / "demo-world" / "gedi"
    marker = gedi_dir / ".complete"
    if marker.exists():
        logger.info("demo: reusing the generated granules in %s", gedi_dir)
        return gedi_dir
    counts = years or GRANULES_PER_REGION
    logger.info("demo: generating GEDI L4A granules in %s", gedi_dir)
    for index, (name, bbox) in enumerate(DEMO_REGIONS):
        for year, count in counts.items():
            paths = write_granules(
                gedi_dir,
                count,
                year=year,
                shots_per_beam=SHOTS_PER_BEAM,
                seed=1000 * index + year,
                bbox=bbox,
                start_doy=1 + 20 * index,
            )
            logger.info("demo: %d granules of %d over %s", len(paths), year, name)
    marker.touch()
    return gedi_dir
