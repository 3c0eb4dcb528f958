"""`--demo`: the whole pipeline on a small generated world, fully offline.

The demo writes (once; a re-run reuses it) the test world of `default_test_world` below
`OUT/demo-world/`: Sentinel-2 L2A scenes of four MGRS tiles (Alps, Amazon, Fiji across
±180°, northern Iran) in 2020 and 2021, their Copernicus DEM and WorldCover tiles, and
GEDI L4A granules with the real layout whose tracks cross each scene a few days before
and after it. It then serves the world exactly as Planetary Computer is served — a STAC
API process and a range-capable HTTP file server on 127.0.0.1 — and runs combine →
subset → extract → fuse against it through a source profile file that points there:
the same code path as a real run. The servers stop when the run ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from gedidata.config import PipelineConfig
from gedidata.offline import orbit_at, write_granule
from gedidata.offline.servers import serve_world
from gedidata.offline.world import GeneratedScene, World, default_test_world, write_world
from gedidata.sources.profiles import PLANETARY_COMPUTER, profile_toml

logger = logging.getLogger(__name__)

PROFILE = "planetary-computer"
GRANULE_OFFSETS = (timedelta(days=-4, hours=3), timedelta(days=3, hours=-5))
"""GEDI granules per scene, relative to its sensing time (inside the ±10-day search)."""
SHOTS_PER_BEAM = 90
DEMO_MAX_SIZE = {"train": 1500, "test": 1000}
"""Subset caps of the demo unless given: the extraction takes seconds, not hours."""


def demo_root(output_dir: Path) -> Path:
    return output_dir / "demo-world"


def write_demo_world(root: Path) -> tuple[World, Path]:
    """Write (or reuse) the demo's scenes, DEM, WorldCover and GEDI granules."""
    world = write_world(default_test_world(root / "world"))
    gedi_dir = root / "gedi"
    marker = gedi_dir / ".complete"
    if marker.exists():
        logger.info("demo: reusing the generated granules in %s", gedi_dir)
        return world, gedi_dir
    orbits: set[int] = set()
    for index, scene in enumerate(sorted(world.scenes, key=lambda s: s.datetime)):
        for offset_index, offset in enumerate(GRANULE_OFFSETS):
            moment = scene.datetime + offset
            orbit = orbit_at(moment)
            while orbit in orbits:  # shot numbers must stay unique
                orbit += 1
            orbits.add(orbit)
            write_granule(
                gedi_dir,
                moment,
                orbit=orbit,
                track=1 + (17 * orbit) % 4000,
                shots_per_beam=SHOTS_PER_BEAM,
                seed=100 * index + offset_index,
                bbox=granule_box(scene),
                full_layout=False,
            )
    logger.info("demo: %d GEDI L4A granules in %s", len(orbits), gedi_dir)
    marker.touch()
    return world, gedi_dir


def granule_box(scene: GeneratedScene) -> tuple[float, float, float, float]:
    """The lon/lat box the granule's tracks cross: the scene's, west of ±180° if split."""
    west, south, east, north = scene.bbox
    if west > east:  # crosses the antimeridian (RFC 7946 bbox): keep the western part
        east = 179.9999
    return (west, south, east, north)


def demo_gallery(output_dir: Path) -> Path | None:
    """Draw 8 windows of the demo's fused train set into `OUT/train_gallery.png`.

    Kept when it is newer than the dataset (a re-run changes nothing); None when the
    train set is empty.
    """
    from gedidata.report.gallery import draw_gallery
    from gedidata.store.samples_h5 import check_file

    dataset, gallery = output_dir / "train_dataset.h5", output_dir / "train_gallery.png"
    if gallery.exists() and gallery.stat().st_mtime_ns >= dataset.stat().st_mtime_ns:
        return gallery
    if not check_file(dataset):
        logger.warning("demo: %s holds no samples: no gallery drawn", dataset)
        return None
    return draw_gallery(dataset, gallery)


@contextmanager
def demo_run(
    config: PipelineConfig, max_train: int | None = None, max_test: int | None = None
) -> Iterator[PipelineConfig]:
    """Serve the demo world on 127.0.0.1; yield the config that runs the pipeline on it."""
    root = demo_root(config.output_dir)
    world, gedi_dir = write_demo_world(root)
    with serve_world(
        world.root, world.item_files(PROFILE), world.collection_files(PROFILE)
    ) as served:
        logger.info("demo: STAC API at %s, files at %s", served.stac_url, served.files_url)
        profile = replace(
            PLANETARY_COMPUTER,
            name="demo-offline",
            stac_url=served.stac_url,
            gdal_env=served.gdal_env,
        )
        profile_file = root / "demo-profile.toml"
        profile_file.write_text(profile_toml(profile))
        yield replace(
            config,
            input_dir=gedi_dir,
            source=str(profile_file),
            plot_distribution=True,
            max_size={
                "train": max_train if max_train is not None else DEMO_MAX_SIZE["train"],
                "test": max_test if max_test is not None else DEMO_MAX_SIZE["test"],
            },
        )
