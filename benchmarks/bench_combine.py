"""Benchmark stage 1 (combine): input shots per second and peak memory.

Generates GEDI L4A granules with the real layout (default 500,000 shots each), then runs
combine on the first 5 and on all 20 in a fresh process each and prints, per run, the
input shots per second and the peak resident memory of the main process and of the
largest worker (ru_maxrss). Run by hand:

    python benchmarks/bench_combine.py [--counts 5 20] [--shots 500000] [--workdir DIR]

Generated granules are kept in the work folder and reused by the next run.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHOTS_PER_BEAM_DIVISOR = 8


def generate(gedi_dir: Path, count: int, shots: int) -> list[Path]:
    from gedidata.offline import write_granules

    marker = gedi_dir / f".complete-{count}x{shots}"
    if marker.exists():
        return sorted(gedi_dir.glob("*.h5"))
    shutil.rmtree(gedi_dir, ignore_errors=True)
    started = time.monotonic()
    paths = write_granules(
        gedi_dir,
        count,
        year=2020,
        shots_per_beam=shots // SHOTS_PER_BEAM_DIVISOR,
        seed=1,
        bbox=(-60.0, -15.0, 30.0, 50.0),
    )
    marker.touch()
    size = sum(path.stat().st_size for path in paths) / 1e9
    print(
        f"generated {count} granules x {shots:,} shots ({size:.1f} GB) in "
        f"{time.monotonic() - started:.0f} s"
    )
    return sorted(paths)


def run_child(input_dir: Path, output_dir: Path, processes: int) -> None:
    """Run combine in this (fresh) process and print its figures as JSON."""
    from gedidata.config import PipelineConfig
    from gedidata.stages.combine.combine import combine

    started = time.monotonic()
    result = combine(
        PipelineConfig(output_dir=output_dir, input_dir=input_dir, num_processors=processes),
        progress=False,
    )
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "shots": result.shots,
                "kept": sum(result.kept.values()),
                "seconds": seconds,
                "main_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--shots", type=int, default=500_000, help="shots per granule")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gedidata-bench-combine"))
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], args.child[1], args.processes)
        return

    gedi_all = args.workdir / "gedi"
    granules = generate(gedi_all, max(args.counts), args.shots)
    rows = []
    for count in args.counts:
        subset_dir = args.workdir / f"gedi-{count}"
        shutil.rmtree(subset_dir, ignore_errors=True)
        subset_dir.mkdir(parents=True)
        for granule in granules[:count]:
            (subset_dir / granule.name).symlink_to(granule)
        output_dir = args.workdir / f"out-{count}"
        shutil.rmtree(output_dir, ignore_errors=True)
        child = subprocess.run(
            [sys.executable, __file__, "--processes", str(args.processes),
             "--child", str(subset_dir), str(output_dir)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        figures["granules"] = count
        rows.append(figures)
        csv_mb = sum(p.stat().st_size for p in output_dir.glob("*_combined.csv")) / 1e6
        print(
            f"{count:>3} granules: {figures['shots']:>11,} shots in {figures['seconds']:6.2f} s"
            f" = {figures['shots'] / figures['seconds']:>11,.0f} shots/s;"
            f" kept {figures['kept']:,} ({csv_mb:,.0f} MB CSV);"
            f" peak RSS main {figures['main_rss_mb']:,.0f} MB,"
            f" largest worker {figures['worker_rss_mb']:,.0f} MB"
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        for key, label in (("main_rss_mb", "main"), ("worker_rss_mb", "worker")):
            print(
                f"peak RSS {label} at {last['granules']} vs {first['granules']} granules: "
                f"{last[key] / first[key]:.2f}x"
            )


if __name__ == "__main__":
    main()
