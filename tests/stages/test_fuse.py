"""Stage 4, fuse: batch files → one file; duplicates, unreadable files, statistics, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from gedidata.domain.schema import DATASETS, GROUP
from gedidata.errors import OutputExistsError
from gedidata.offline import truncate_file
from gedidata.report.stats import STATISTICS_DATASETS
from gedidata.stages.fuse import batch_files, fuse_directory, fuse_files
from gedidata.store.samples_h5 import check_file, read_arrays, write_samples
from tests.conftest import REPO, run_cli


def batch_arrays(shots: list[int]) -> dict[str, np.ndarray]:
    """Every dataset for samples with these shot numbers; each value a function of the shot.

    Sentinel-2 holds ``shot + channel + row`` (0, no data, in the first row of channel 1),
    CopDEM ``shot / 10 + channel`` with one -9999 pixel, the AGBD raster the agbd value on
    one pixel only.
    """
    shot = np.asarray(shots, dtype=np.int64)
    n = len(shots)
    rows = np.arange(32)[None, None, :, None]
    channels = np.arange(12)[None, :, None, None]
    s2 = np.broadcast_to(shot[:, None, None, None] + channels + rows, (n, 12, 32, 32))
    s2 = s2.astype(np.uint16).copy()
    s2[:, 1, 0, :] = 0
    dem = (shot[:, None, None, None] / 10 + np.arange(2)[None, :, None, None]).astype(np.float32)
    dem = np.broadcast_to(dem, (n, 2, 32, 32)).copy()
    dem[:, 0, 5, 5] = -9999.0
    agbd = (shot % 97 + 1).astype(np.float32)
    raster = np.full((n, 1, 32, 32), -9999.0, dtype=np.float32)
    raster[:, 0, 16, 16] = agbd
    text = np.array([[f"name-{s}"] for s in shots], dtype=object)
    return {
        "Sentinel-2 L2A": s2,
        "WorldCover": np.full((n, 1, 32, 32), 10, dtype=np.uint8),
        "CopDEM": dem,
        "AGBD Raster": raster,
        "Transforms": np.tile(np.arange(9, dtype=np.float64), (n, 1)) + shot[:, None],
        "CRS": np.full((n, 1), "EPSG:32632", dtype=object),
        "S2 SCL Stats": np.tile(np.array([["vegetation", "1.0"]] * 12, dtype=object), (n, 1, 1)),
        "Sentinel-2 Product Name": text,
        "WorldCover Tile Name": text,
        "CopDEM Tile Name": text,
        "AGBD Values": agbd[:, None],
        "AGBD Standard Error": agbd[:, None] / 10,
        "GEDI Product Name": text,
        "GEDI Shot Number": shot[:, None],
        "GEDI Acquisition Time": text,
        "GEDI Delta Time": text,
        "GEDI Lat Lon": np.stack([shot / 1e6, -shot / 1e6], axis=1),
        "Sentinel-2 Processing Baseline": np.full((n, 1), "05.00", dtype=object),
        "Sentinel-2 Offset Removed": np.full((n, 1), 1000, dtype=np.uint16),
    }


def write_batches(directory, shots_per_file: list[list[int]], size: int = 10) -> list:
    paths = []
    for index, shots in enumerate(shots_per_file):
        path = directory / f"batch_{size}_{index}.h5"
        write_samples(path, batch_arrays(shots), {"source_profile": "planetary-computer"})
        paths.append(path)
    return paths


def test_batches_become_one_file_without_duplicates(tmp_path):
    # shot 3 is in files 0 and 2, shot 7 twice in file 1: the first occurrence wins
    shots = [[1, 2, 3, 4, 5], [6, 7, 8, 7], [3, 9, 10, 11, 12, 13]]
    files = write_batches(tmp_path / "batches", shots)
    result = fuse_files(files, tmp_path / "fused.h5")
    expected_order = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert (result.samples_in, result.samples, result.duplicates) == (15, 13, 2)
    assert result.skipped == []
    assert check_file(tmp_path / "fused.h5") == 13
    fused = read_arrays(tmp_path / "fused.h5")
    assert fused["GEDI Shot Number"][:, 0].tolist() == expected_order
    reference = batch_arrays(expected_order)
    for spec in DATASETS:
        if spec.is_string:
            assert fused[spec.name].tolist() == reference[spec.name].tolist(), spec.name
        else:
            np.testing.assert_array_equal(fused[spec.name], reference[spec.name], spec.name)
    with h5py.File(tmp_path / "fused.h5") as file:
        assert file.attrs["source_profile"] == "planetary-computer"
        assert file.attrs["duplicates_dropped"] == 2
        assert file.attrs["fused_from_files"] == 3
        group = file[GROUP]
        # rasters: one uncompressed chunk per sample (fast random reads); rest gzip'd
        assert group["Sentinel-2 L2A"].chunks == (1, 12, 32, 32)
        assert group["Sentinel-2 L2A"].compression is None
        assert group["GEDI Shot Number"].compression == "gzip"


def test_statistics_of_valid_pixels_are_stored(tmp_path):
    shots = [list(range(100, 160)), list(range(160, 170))]
    files = write_batches(tmp_path / "batches", shots)
    fuse_files(files, tmp_path / "fused.h5")
    reference = batch_arrays(list(range(100, 170)))
    nodata = {"Sentinel-2 L2A": 0, "CopDEM": -9999.0, "AGBD Raster": -9999.0, "AGBD Values": None}
    with h5py.File(tmp_path / "fused.h5") as file:
        for name in STATISTICS_DATASETS:
            attrs = file[GROUP][name].attrs
            values = reference[name].astype(np.float64)
            for channel in range(values.shape[1]):
                valid = values[:, channel].ravel()
                if nodata[name] is not None:
                    valid = valid[valid != nodata[name]]
                where = f"{name} channel {channel}"
                assert attrs["valid_count"][channel] == valid.size, where
                assert attrs["mean"][channel] == pytest.approx(valid.mean(), rel=1e-12), where
                assert attrs["std"][channel] == pytest.approx(valid.std(), rel=1e-9), where
                assert attrs["min"][channel] == valid.min(), where
                assert attrs["max"][channel] == valid.max(), where
    # the no-data row of Sentinel-2 channel 1 is left out of its count
    with h5py.File(tmp_path / "fused.h5") as file:
        assert file[GROUP]["Sentinel-2 L2A"].attrs["valid_count"][1] == 70 * 31 * 32


def test_unreadable_batch_files_are_named_and_skipped(tmp_path):
    files = write_batches(tmp_path / "batches", [[1, 2], [3, 4, 5], [6], [7, 8]])
    truncate_file(files[1], 0.5)
    with h5py.File(files[2], "a") as file:  # wrong schema: a dataset missing
        del file[GROUP]["CopDEM"]
    result = fuse_files(files, tmp_path / "fused.h5")
    assert [item.path for item in result.skipped] == [files[1], files[2]]
    assert "not a readable HDF5 file" in result.skipped[0].reason
    assert result.skipped[1].reason == "missing"
    assert read_arrays(tmp_path / "fused.h5")["GEDI Shot Number"][:, 0].tolist() == [1, 2, 7, 8]
    with h5py.File(tmp_path / "fused.h5") as file:
        assert str(files[1]) in file.attrs["skipped_files"]


def test_a_file_that_breaks_while_copying_is_skipped(tmp_path):
    """Metadata fine (passes the plan), a raster chunk corrupt: fuse restarts without it."""
    files = write_batches(tmp_path / "batches", [[1, 2], [3, 4]])
    with h5py.File(files[0], "r") as file:
        offset = file[GROUP]["Sentinel-2 L2A"].id.get_chunk_info(1).byte_offset
    with open(files[0], "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * 64)  # no longer a deflate stream
    result = fuse_files(files, tmp_path / "fused.h5")
    assert [item.path for item in result.skipped] == [files[0]]
    assert read_arrays(tmp_path / "fused.h5")["GEDI Shot Number"][:, 0].tolist() == [3, 4]


def test_empty_input_gives_an_empty_valid_file(tmp_path):
    (tmp_path / "batches").mkdir()
    result = fuse_files(batch_files(tmp_path / "batches"), tmp_path / "fused.h5")
    assert result.samples == 0
    assert check_file(tmp_path / "fused.h5") == 0


def test_batch_files_in_natural_order(tmp_path):
    for index in (10, 2, 1):
        (tmp_path / f"batch_5_{index}.h5").touch()
    (tmp_path / ".batch_5_3.tmp-99.h5").touch()
    assert [p.name for p in batch_files(tmp_path)] == [
        "batch_5_1.h5",
        "batch_5_2.h5",
        "batch_5_10.h5",
    ]


def test_fuse_directory_resumes_and_protects_foreign_files(tmp_path):
    out = tmp_path / "out"
    write_batches(tmp_path / "batches", [[1, 2], [3]])
    target = out / "fused.h5"
    kwargs = {"output_dir": out, "key": "fuse:test"}
    first = fuse_directory(tmp_path / "batches", target, **kwargs)
    stamp = target.stat().st_mtime_ns
    again = fuse_directory(tmp_path / "batches", target, **kwargs)
    assert (first.reused, again.reused, again.samples) == (False, True, 3)
    assert target.stat().st_mtime_ns == stamp
    # a new batch file: the earlier result (made by gedidata) is rebuilt
    write_batches(tmp_path / "batches", [[1, 2], [3], [4]])
    assert fuse_directory(tmp_path / "batches", target, **kwargs).samples == 4
    # a file gedidata did not make is not replaced unless asked
    other = out / "other.h5"
    other.write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match=r"other\.h5"):
        fuse_directory(tmp_path / "batches", other, output_dir=out, key="fuse:other")
    fuse_directory(tmp_path / "batches", other, output_dir=out, key="fuse:other", overwrite=True)
    assert check_file(other) == 4


def test_compressed_fused_file(tmp_path):
    files = write_batches(tmp_path / "batches", [[1, 2, 3]])
    fuse_files(files, tmp_path / "fused.h5", compress=True)
    with h5py.File(tmp_path / "fused.h5") as file:
        assert file[GROUP]["Sentinel-2 L2A"].compression == "gzip"
    np.testing.assert_array_equal(
        read_arrays(tmp_path / "fused.h5")["Sentinel-2 L2A"],
        batch_arrays([1, 2, 3])["Sentinel-2 L2A"],
    )


def test_fuse_only_command_and_its_summary(tmp_path):
    write_batches(tmp_path / "batches", [[1, 2, 3], [3, 4]])
    truncate_file(write_batches(tmp_path / "bad", [[9]])[0])
    (tmp_path / "batches" / "batch_10_9.h5").write_bytes(
        (tmp_path / "bad" / "batch_10_0.h5").read_bytes()
    )
    result = run_cli(tmp_path / "out", "--fuse-hdf5-datasets", tmp_path / "batches", "-q")
    assert result.returncode == 0, result.stderr
    assert check_file(tmp_path / "out" / "fused_dataset.h5") == 4
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("fuse")]
    assert rows[0][:5] == ["fuse", "fused", "5", "4", "3"]  # in, kept, batch files
    assert rows[1] == ["fuse", "fused", "1", "duplicate", "shot"]
    assert "unreadable batch file" in result.stdout and "batch_10_9.h5" in result.stdout


def test_kill_during_fuse_leaves_no_partial_file(tmp_path):
    """SIGKILL while the fused file is being written: nothing under the final name; the
    re-run removes the temporary file and writes the whole file."""
    batches = tmp_path / "batches"
    write_batches(batches, [list(range(i * 400, (i + 1) * 400)) for i in range(6)], size=400)
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "create_dataset.py"), str(out)]
    command += ["--fuse-hdf5-datasets", str(batches), "-q", "--fuse-compress"]
    process = subprocess.Popen(command, cwd=REPO)
    deadline = time.monotonic() + 60
    try:
        while not list(out.glob(".fused_dataset.tmp-*.h5")):
            assert process.poll() is None, "fuse finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert not (out / "fused_dataset.h5").exists()
    assert list(out.glob(".fused_dataset.tmp-*.h5"))
    again = run_cli(out, "--fuse-hdf5-datasets", batches, "-q", "--fuse-compress")
    assert again.returncode == 0, again.stderr
    assert check_file(out / "fused_dataset.h5") == 2400
    assert not list(out.glob(".fused_dataset.tmp-*"))
