"""`gedidata inspect`: the report of a dataset file and its gallery."""

from __future__ import annotations

import h5py
import numpy as np
from matplotlib.image import imread

from gedidata.cli import EXIT_ERROR
from gedidata.domain.schema import GROUP
from gedidata.report.gallery import choose_samples, true_colour
from gedidata.report.inspection import inspect_file
from gedidata.stages.fuse import fuse_files
from tests.conftest import run_cli
from tests.stages.test_fuse import batch_arrays, write_batches


def test_report_of_a_fused_and_of_a_batch_file(tmp_path):
    files = write_batches(tmp_path / "batches", [[10, 11, 12], [13, 14]])
    fuse_files(files, tmp_path / "fused.h5")
    fused = inspect_file(tmp_path / "fused.h5")
    batch = inspect_file(files[0])
    assert (fused.samples, fused.statistics_stored, fused.shots_unique) == (5, True, 5)
    assert (batch.samples, batch.statistics_stored) == (3, False)
    # the batch file's statistics are computed: B04 (channel 3) = shot + 3 + row
    b04 = batch_arrays([10, 11, 12])["Sentinel-2 L2A"][:, 3].astype(float)
    stats = batch.statistics["Sentinel-2 L2A"]
    assert stats["valid_count"][3] == b04.size
    assert stats["mean"][3] == b04.mean() and stats["max"][3] == b04.max()
    assert fused.worldcover_classes == {10: 5 * 32 * 32}
    assert fused.crs == {"EPSG:32632": 5}


def test_inspect_command_prints_the_report_and_draws_the_gallery(tmp_path):
    files = write_batches(tmp_path / "batches", [list(range(20, 32))])
    fuse_files(files, tmp_path / "fused.h5")
    png = tmp_path / "gallery.png"
    result = run_cli("inspect", tmp_path / "fused.h5", "--gallery", png, "--samples", "3")
    assert result.returncode == 0, result.stderr
    assert "samples: 12 (12 distinct shot numbers)" in result.stdout
    assert "schema: ok" in result.stdout
    b02 = next(line.split() for line in result.stdout.splitlines() if " B02 " in line)
    # B02 (channel 1) has its first row set to 0 (no data): 31 valid rows of 32
    assert b02[:4] == ["Sentinel-2", "L2A", "B02", f"{12 * 31 * 32:,}"]
    image = imread(png)
    # 3 rows of windows: (2.1 x 3 + 1.4) inches x 110 dpi high, 6 columns wide
    assert image.shape[:2] == (round(7.7 * 110), round(13.6 * 110))
    assert image[..., :3].std() > 0.1  # not blank


def test_a_broken_file_is_named_with_its_dataset(tmp_path):
    files = write_batches(tmp_path / "batches", [[1, 2]])
    with h5py.File(files[0], "a") as file:
        del file[GROUP]["WorldCover"]
    result = run_cli("inspect", files[0])
    assert result.returncode == EXIT_ERROR
    assert "schema: NOT OK" in result.stdout and "'WorldCover': missing" in result.stdout
    missing = run_cli("inspect", tmp_path / "nothing.h5")
    assert missing.returncode == EXIT_ERROR and "nothing.h5" in missing.stderr


def test_true_colour_stretch_and_sample_choice():
    window = np.zeros((12, 32, 32), dtype=np.uint16)
    window[3] = np.arange(32)[None, :] * 100 + 100  # B04 ramps from 100 to 3200
    window[2] = 500
    window[1] = 500
    rgb = true_colour(window)
    assert rgb.shape == (32, 32, 3)
    assert rgb[:, 0, 0].max() == 0.0 and rgb[:, -1, 0].min() == 1.0  # 2-98 % stretch
    assert np.array_equal(choose_samples(10, 4, 0), choose_samples(10, 4, 0))
    assert choose_samples(3, 8, 0).tolist() == [0, 1, 2]
