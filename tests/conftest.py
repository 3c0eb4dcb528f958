"""Shared fixtures: paths to the real files in ../shared and a runner for the CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gedidata.offline.world import default_test_world, write_world
from gedidata.sources.profiles import PLANETARY_COMPUTER, profile_toml

pytest_plugins = ["gedidata.offline.pytest_plugin"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GEDI_FIXTURES = SHARED / "fixtures" / "gedi"
GEDI_2020 = GEDI_FIXTURES / "GEDI04_A_2020036151358_O06515_02_T00198_02_002_01_V002.h5"
GEDI_2021 = GEDI_FIXTURES / "GEDI04_A_2021150031254_O13948_03_T06447_02_002_01_V002.h5"


@pytest.fixture
def real_granules() -> list[Path]:
    """The two real GEDI L4A granules of shared/fixtures (skips when shared/ is absent)."""
    if not (GEDI_2020.exists() and GEDI_2021.exists()):
        pytest.skip("shared/fixtures/gedi is not beside the checkout")
    return [GEDI_2020, GEDI_2021]


SHORT_RUNS_CLI = [
    sys.executable,
    "-c",
    "import sys, gedidata.stages.extract.driver as extract; extract.MIN_RUN_FOOTPRINTS = 1; "
    "from gedidata.cli import main; sys.exit(main())",
]
"""The command line, with extract sharing even a few batches among its workers (as it
does from `extract.MIN_RUN_FOOTPRINTS` footprints on): a test's few footprints go
through the worker pool."""


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `python create_dataset.py ARGS` as a user would; capture its output."""
    return subprocess.run(
        [sys.executable, str(REPO / "create_dataset.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# The offline world, served (file server + STAC API), and its profile as a `--source`
# file: one of each per test module that asks.

PC_LAYOUT = "planetary-computer"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(default_test_world(tmp_path_factory.mktemp("world")))


@pytest.fixture(scope="module")
def served(world, served_world_factory):
    return served_world_factory(
        world.root, world.item_files(PC_LAYOUT), world.collection_files(PC_LAYOUT)
    )


@pytest.fixture(scope="module")
def source(served, tmp_path_factory) -> Path:
    """The profile of the served world, as a file for `--source`."""
    profile = replace(PLANETARY_COMPUTER, stac_url=served.stac_url, gdal_env=served.gdal_env)
    path = tmp_path_factory.mktemp("profile") / "offline.toml"
    path.write_text(profile_toml(profile))
    return path
