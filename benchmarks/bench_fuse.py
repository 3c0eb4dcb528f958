"""Benchmark stage 4 (fuse) against a raw h5py copy of the same data.

Writes batch files with the real schema (Sentinel-2 windows with realistic entropy:
smooth ramps plus ±300 DN noise, as bench_extract's scene), then prints:

- fuse throughput (MB/s of uncompressed sample data) next to a raw h5py copy of the same
  batch files into a file of the same layout, block by block, with no checks, no
  duplicate handling and no statistics (what fuse cannot beat);
- peak RSS of a fuse of 10 and of 100 batch files (each in a fresh process);
- random-access reads from the fused file in one process: samples/s for the
  Sentinel-2 window alone and for a training record (Sentinel-2, CopDEM, WorldCover,
  AGBD raster and value), one sample per read, indexes drawn at random.

The batch files are in the page cache when timed (they were just written and read).
Run by hand:

    python benchmarks/bench_fuse.py [--batch-size 200] [--workdir /tmp/gedidata-bench-fuse]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from gedidata.domain.schema import DATASETS, GROUP
from gedidata.stages.fuse import batch_files, fuse_files
from gedidata.store.samples_h5 import BLOCK_SAMPLES, create_datasets, write_samples

TRAINING_RECORD = ("Sentinel-2 L2A", "CopDEM", "WorldCover", "AGBD Raster", "AGBD Values")


def synthetic_batch(first_shot: int, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`count` samples with the schema's dtypes and shapes and realistic entropy."""
    shots = np.arange(first_shot, first_shot + count, dtype=np.int64)
    ramp = (np.arange(32)[None, :] * 9 + np.arange(32)[:, None] * 5).astype(np.int32)
    s2 = 1200 + ramp[None, None] + rng.integers(-300, 300, size=(count, 12, 32, 32))
    s2[:, 0] = 4  # SCL: vegetation
    dem = 400 + ramp[None, None].astype(np.float32) / 7 + rng.normal(0, 0.05, (count, 2, 32, 32))
    raster = np.full((count, 1, 32, 32), -9999.0, dtype=np.float32)
    raster[:, 0, 15:17, 15:17] = 100.0
    product = np.array(
        [[f"S2A_MSIL2A_20200708T103031_R119_T32TMT_{s}"] for s in shots], dtype=object
    )

    def text(value: str) -> np.ndarray:
        return np.full((count, 1), value, dtype=object)

    scl_stats = np.tile(np.array([["vegetation", "1.0"]] * 12, dtype=object), (count, 1, 1))
    return {
        "Sentinel-2 L2A": s2.astype(np.uint16),
        "WorldCover": rng.choice(np.array([10, 20, 30], dtype=np.uint8), size=(count, 1, 32, 32)),
        "CopDEM": dem.astype(np.float32),
        "AGBD Raster": raster,
        "Transforms": np.tile(np.array([10.0, 0, 4e5, 0, -10.0, 5.3e6, 0, 0, 1]), (count, 1)),
        "CRS": text("EPSG:32632"),
        "S2 SCL Stats": scl_stats,
        "Sentinel-2 Product Name": product,
        "WorldCover Tile Name": text("ESA_WorldCover_10m_2020_v100_N45E006_Map"),
        "CopDEM Tile Name": text("Copernicus_DSM_COG_10_N47_00_E007_00_DEM"),
        "AGBD Values": np.full((count, 1), 100.0, dtype=np.float32),
        "AGBD Standard Error": np.full((count, 1), 10.0, dtype=np.float32),
        "GEDI Product Name": text("GEDI04_A_2020190103031_O08888_02_T01234_02_002_02_V002.h5"),
        "GEDI Shot Number": shots[:, None],
        "GEDI Acquisition Time": text("2020-07-08-10-30-31"),
        "GEDI Delta Time": text("80051431.2345678"),
        "GEDI Lat Lon": rng.uniform(-50, 50, size=(count, 2)),
        "Sentinel-2 Processing Baseline": text("02.14"),
        "Sentinel-2 Offset Removed": np.zeros((count, 1), dtype=np.uint16),
    }


def write_batch_files(directory: Path, files: int, size: int) -> list[Path]:
    """Write (once) `files` batch files of `size` samples."""
    marker = directory / f".complete-{files}x{size}"
    if not marker.exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for index in range(files):
            write_samples(
                directory / f"batch_{size}_{index}.h5", synthetic_batch(index * size, size, rng)
            )
        marker.touch()
    return batch_files(directory)


def sample_bytes() -> int:
    """Uncompressed bytes of one sample (strings counted as their UTF-8 text, ~)."""
    total = 0
    for spec in DATASETS:
        itemsize = 40 if spec.is_string else np.dtype(spec.dtype).itemsize
        total += itemsize * int(np.prod(spec.shape))
    return total


def raw_copy(files: list[Path], target: Path) -> int:
    """What fuse does minus every check: read each batch block by block, append it."""
    lengths = []
    for path in files:
        with h5py.File(path, "r") as file:
            lengths.append(file[GROUP]["GEDI Shot Number"].shape[0])
    with h5py.File(target, "w") as out:
        datasets = create_datasets(out, sum(lengths), compress_rasters=False)
        position = 0
        for path, length in zip(files, lengths, strict=True):
            with h5py.File(path, "r") as file:
                group = file[GROUP]
                for start in range(0, length, BLOCK_SAMPLES):
                    stop = min(start + BLOCK_SAMPLES, length)
                    for spec in DATASETS:
                        datasets[spec.name][position : position + stop - start] = group[spec.name][
                            start:stop
                        ]
                    position += stop - start
    return position


def read_everything(files: list[Path]) -> None:
    for path in files:
        path.read_bytes()


def peak_rss_of_fuse(files: list[Path], target: Path) -> float:
    """Peak RSS (MB) of a fresh process that fuses `files`."""
    code = (
        "import json, resource, sys\nfrom pathlib import Path\n"
        "from gedidata.stages.fuse import fuse_files\n"
        "files = [Path(p) for p in json.loads(sys.argv[1])]\n"
        "fuse_files(files, Path(sys.argv[2]))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code, json.dumps([str(p) for p in files]), str(target)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(output.split()[-1]) / 1024


def random_reads(path: Path, names: tuple[str, ...], reads: int, seed: int = 1) -> float:
    """Samples per second, one random sample per read of each dataset in `names`.

    A warm-up of other random samples first (file metadata, the index of the chunks),
    as a training loop is after its first steps; then `reads` new random samples.
    """
    with h5py.File(path, "r") as file:
        datasets = [file[GROUP][name] for name in names]
        count = datasets[0].shape[0]
        warm_up = np.random.default_rng(seed + 1000).integers(0, count, size=reads // 10)
        indexes = np.random.default_rng(seed).integers(0, count, size=reads)
        for index in warm_up:
            for dataset in datasets:
                dataset[index]
        started = time.perf_counter()
        for index in indexes:
            for dataset in datasets:
                dataset[index]
        return reads / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=200, help="samples per batch file")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gedidata-bench-fuse"))
    parser.add_argument("--reads", type=int, default=20_000, help="random reads timed")
    args = parser.parse_args()
    size, work = args.batch_size, args.workdir
    print(f"batch files of {size} samples, {sample_bytes() / 1024:.1f} KiB per sample uncompressed")

    files = write_batch_files(work / "batches100", 100, size)
    on_disk = sum(path.stat().st_size for path in files) / 1e6
    read_everything(files)
    megabytes = 100 * size * sample_bytes() / 1e6
    print(f"100 batch files: {100 * size:,} samples, {megabytes:,.0f} MB of sample data, "
          f"{on_disk:,.0f} MB on disk")  # fmt: skip

    timings: dict[str, list[float]] = {"raw h5py copy": [], "gedidata fuse": []}
    targets = {"raw h5py copy": work / "raw_copy.h5", "gedidata fuse": work / "fused.h5"}
    runs = {
        "raw h5py copy": lambda: raw_copy(files, targets["raw h5py copy"]),
        "gedidata fuse": lambda: fuse_files(files, targets["gedidata fuse"]).samples,
    }
    for order in (list(runs), list(runs)[::-1]):  # each goes first once; best of two
        for name in order:
            # Same start for both: no earlier output to delete, no dirty pages from the
            # other's writes still being flushed (either would bill one for the other).
            targets[name].unlink(missing_ok=True)
            os.sync()
            started = time.perf_counter()
            assert runs[name]() == 100 * size
            timings[name].append(time.perf_counter() - started)
    best = {name: min(values) for name, values in timings.items()}
    for name, seconds in best.items():
        print(f"{name:>14}: {seconds:6.2f} s  {megabytes / seconds:7.1f} MB/s  "
              f"{100 * size / seconds:9,.0f} samples/s")  # fmt: skip
    ratio = best["raw h5py copy"] / best["gedidata fuse"]
    print(f"fuse / raw copy: {ratio:.0%} of the raw copy's throughput")

    files10 = write_batch_files(work / "batches10", 10, size)
    rss10 = peak_rss_of_fuse(files10, work / "fused10.h5")
    rss100 = peak_rss_of_fuse(files, work / "fused100.h5")
    print(f"peak RSS of fuse: 10 files {rss10:.0f} MB, 100 files {rss100:.0f} MB "
          f"({rss100 / rss10:.2f}x)")  # fmt: skip

    fused = work / "fused.h5"
    reads = args.reads
    print(f"random reads from the fused file ({fused.stat().st_size / 1e6:,.0f} MB, "
          f"{reads:,} reads, one process):")  # fmt: skip
    alone = random_reads(fused, ("Sentinel-2 L2A",), reads)
    print(f"  Sentinel-2 window alone: {alone:9,.0f} samples/s")
    record = random_reads(fused, TRAINING_RECORD, reads)
    print(f"  training record ({', '.join(TRAINING_RECORD)}): {record:,.0f} samples/s")
    compressed = work / "fused_gzip.h5"
    fuse_files(files, compressed, compress=True)
    gzip_alone = random_reads(compressed, ("Sentinel-2 L2A",), reads)
    print(f"  with --fuse-compress ({compressed.stat().st_size / 1e6:,.0f} MB): "
          f"Sentinel-2 alone {gzip_alone:,.0f} samples/s")  # fmt: skip


if __name__ == "__main__":
    main()
