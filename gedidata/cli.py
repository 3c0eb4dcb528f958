"""Command line: parse arguments, build a `PipelineConfig`, call the stages. Nothing else."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from gedidata import __version__
from gedidata.config import STAGES, PipelineConfig, SclLimits
from gedidata.errors import GedidataError, InputError
from gedidata.runtime.logs import configure_logging  # (every handler it installs redacts tokens)

logger = logging.getLogger("gedidata")

EXIT_ERROR = 2
"""A refusal or failure the message explains (bad input, OUT unusable, disk full)."""
EXIT_TRANSIENT = 3
"""The run ended, but footprints failed to read: re-running the same command retries them."""
EXIT_INTERRUPTED = 130


GEDI_FIRST_YEAR = 2019
"""GEDI began science operations in 2019: no footprints exist before it."""
LAST_YEAR = 2100


def _refuse(text: str, accepted: str) -> NoReturn:
    """Refuse `text`; argparse prefixes the option's name and exits with status 2."""
    raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {accepted}")


def _finite(text: str, accepted: str) -> float:
    """`text` as a float; `nan` and `inf` (or `1e400`) are refused, never compared."""
    try:
        value = float(text)
    except ValueError:
        _refuse(text, accepted)
    if not math.isfinite(value):
        _refuse(text, accepted)
    return value


def _whole(text: str, minimum: int, maximum: int | None = None, noun: str = "whole number") -> int:
    """A whole number in [minimum, maximum]; `6e6` as the original tool's users write it."""
    accepted = (
        f"a {noun} >= {minimum}" if maximum is None else f"a {noun} from {minimum} to {maximum}"
    )
    try:
        value = int(text)  # exact, also for more digits than a float holds
    except ValueError:
        number = _finite(text, accepted)
        if not number.is_integer():
            _refuse(text, accepted)
        value = int(number)
    if value < minimum or (maximum is not None and value > maximum):
        _refuse(text, accepted)
    return value


def _non_negative_int(text: str) -> int:
    return _whole(text, 0)


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _year(text: str) -> int:
    return _whole(text, GEDI_FIRST_YEAR, LAST_YEAR, noun="year")


def _non_negative_float(text: str) -> float:
    value = _finite(text, accepted := "a finite number >= 0")
    if value < 0:
        _refuse(text, accepted)
    return value


def _positive_float(text: str) -> float:
    value = _finite(text, accepted := "a finite number > 0")
    if value <= 0:
        _refuse(text, accepted)
    return value


def _percent(text: str) -> float:
    value = _finite(text, accepted := "a percentage from 0 to 100")
    if not 0 <= value <= 100:
        _refuse(text, accepted)
    return value


def _positive_percent(text: str) -> float:
    """A percentage where 0 would keep nothing (e.g. `eo:cloud_cover < 0`)."""
    value = _finite(text, accepted := "a percentage > 0 and <= 100")
    if not 0 < value <= 100:
        _refuse(text, accepted)
    return value


def _http_url(text: str) -> str:
    """An absolute http(s) URL with a host: anything else would only fail at the first search."""
    accepted = "an absolute http:// or https:// URL with a host"
    if not text or any(character.isspace() for character in text):
        _refuse(text, accepted)
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        _refuse(text, accepted)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _refuse(text, accepted)
    return text


class _BboxAction(argparse.Action):
    """`--bbox WEST SOUTH EAST NORTH`: a `type=` sees one value, not whether it is a lon or lat."""

    LIMITS: ClassVar[tuple[tuple[str, int], ...]] = (
        ("WEST", 180),
        ("SOUTH", 90),
        ("EAST", 180),
        ("NORTH", 90),
    )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        corners: list[float] = []
        for (name, limit), text in zip(self.LIMITS, values or (), strict=True):
            accepted = f"{name} as a finite number from -{limit} to {limit} (degrees)"
            try:
                value = _finite(text, accepted)
                if not -limit <= value <= limit:
                    _refuse(text, accepted)
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentError(self, str(error)) from error
            corners.append(value)
        setattr(namespace, self.dest, corners)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gedidata",
        description=(
            "Build ML datasets for aboveground-biomass estimation: GEDI L4A footprints with "
            "co-located Sentinel-2 L2A, Copernicus DEM and ESA WorldCover windows, as HDF5."
        ),
        epilog=(
            "Stages: combine (GEDI granules -> CSV), subset (day-of-year balanced sample), "
            "extract (windows -> batch HDF5), fuse (batches -> one HDF5). Re-running the same "
            "command resumes where it stopped. `gedidata inspect FILE [--gallery PNG]` "
            "summarises a dataset file."
        ),
    )
    parser.add_argument("output_positional", nargs="?", metavar="OUT_DIR", help="output folder")
    parser.add_argument("--output", "-o", help="output folder (same as OUT_DIR)")
    parser.add_argument("--input", "-i", help="folder with GEDI L4A .h5 granules")
    parser.add_argument("--version", action="version", version=f"gedidata {__version__}")

    stages = parser.add_argument_group("stages and skip flags")
    stages.add_argument("--stop-after", choices=STAGES[:3], help="end the run after this stage")
    stages.add_argument("--path-aggregated-csv-train", metavar="CSV", help="use this combined CSV")
    stages.add_argument("--path-aggregated-csv-test", metavar="CSV", help="use this combined CSV")
    stages.add_argument("--path-subset-csv-train", metavar="CSV", help="use this subset CSV")
    stages.add_argument("--path-subset-csv-test", metavar="CSV", help="use this subset CSV")
    stages.add_argument(
        "--fuse-hdf5-datasets", metavar="DIR", help="only fuse the batch files in DIR"
    )
    stages.add_argument(
        "--fuse-compress",
        action="store_true",
        help="also gzip the raster chunks of fused files (about 2x smaller, ~8x slower "
        "random reads)",
    )
    stages.add_argument(
        "--demo", action="store_true", help="run the whole pipeline on a generated offline world"
    )
    stages.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs not made by this run"
    )

    combine = parser.add_argument_group("combine and subset")
    combine.add_argument(
        "--train-years", type=_year, nargs="+", default=[2020], metavar="YEAR", help="default 2020"
    )
    combine.add_argument(
        "--test-years", type=_year, nargs="+", default=[2021], metavar="YEAR", help="default 2021"
    )
    combine.add_argument(
        "--seed", type=_non_negative_int, default=0, help="seed of every random choice"
    )
    combine.add_argument(
        "--max-relative-se",
        type=_positive_percent,
        default=50.0,
        metavar="PERCENT",
        help="keep footprints with agbd_se / agbd below this (default 50)",
    )
    combine.add_argument(
        "--bbox",
        action=_BboxAction,
        nargs=4,
        metavar=("WEST", "SOUTH", "EAST", "NORTH"),
        help="keep only footprints inside this box (degrees)",
    )
    combine.add_argument(
        "--max-size-training",
        type=_non_negative_int,
        metavar="N",
        help="train subset cap (default 6e6)",
    )
    combine.add_argument(
        "--max-size-test", type=_non_negative_int, metavar="N", help="test subset cap (default 2e6)"
    )
    combine.add_argument(
        "--plot-distribution",
        action="store_true",
        help="also plot the distribution of the full combined sets",
    )

    extract = parser.add_argument_group("extract (scene search and quality rules)")
    extract.add_argument(
        "--source",
        default="planetary-computer",
        help="planetary-computer, earth-search, or a profile .toml file",
    )
    extract.add_argument(
        "--stac-url", type=_http_url, help="override the source profile's STAC API URL"
    )
    extract.add_argument(
        "--max-cloud-cover",
        type=_positive_percent,
        default=25.0,
        metavar="PERCENT",
        help="scene eo:cloud_cover limit (default 25)",
    )
    extract.add_argument(
        "--search-days",
        type=_non_negative_int,
        default=10,
        metavar="DAYS",
        help="± days around GEDI (10)",
    )
    extract.add_argument(
        "--max-scene-candidates",
        type=_positive_int,
        default=3,
        metavar="N",
        help="scenes tried per footprint (default 3)",
    )
    extract.add_argument(
        "--max-slope",
        type=_non_negative_float,
        default=15.0,
        metavar="PERCENT",
        help="largest slope in the central 4x4 pixels (default 15)",
    )
    defaults = SclLimits()
    for name in ("cloud", "shadow", "snow", "water", "invalid"):
        extract.add_argument(
            f"--scl-max-{name}",
            type=_percent,
            default=getattr(defaults, name),
            metavar="PERCENT",
            help=f"largest {name} share of the window (default {getattr(defaults, name):g})",
        )
    extract.add_argument(
        "--http-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="a STAC request or COG read taking longer is retried (default 30)",
    )
    extract.add_argument(
        "--retry-pause",
        type=_non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="wait before reading failed footprints once more at the end (default 60)",
    )
    extract.add_argument("--batch-size", type=_positive_int, default=1000, metavar="N")
    extract.add_argument(
        "--num-processors", type=_positive_int, default=os.cpu_count() or 1, metavar="N"
    )

    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-file", help="also write the log to this file")
    logs.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    logs.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    output = args.output or args.output_positional
    if args.output and args.output_positional and args.output != args.output_positional:
        raise InputError(f"two output folders given: {args.output_positional} and {args.output}")
    if not output:
        raise InputError("an output folder is required (OUT_DIR or --output)")
    if args.bbox is not None:
        west, south, east, north = args.bbox
        if not (west < east and south < north):
            raise InputError(f"--bbox {args.bbox}: expected WEST < EAST and SOUTH < NORTH")
    overlap = set(args.train_years) & set(args.test_years)
    if overlap:
        raise InputError(f"years {sorted(overlap)} are both train and test years")

    def given(train: str | None, test: str | None) -> dict[str, Path]:
        return {split: Path(path) for split, path in (("train", train), ("test", test)) if path}

    return PipelineConfig(
        output_dir=Path(output),
        input_dir=Path(args.input) if args.input else None,
        train_years=tuple(args.train_years),
        test_years=tuple(args.test_years),
        seed=args.seed,
        max_relative_se=args.max_relative_se / 100.0,
        bbox=tuple(args.bbox) if args.bbox else None,
        max_size={
            split: value if value is not None else PipelineConfig.default_max_size[split]
            for split, value in (("train", args.max_size_training), ("test", args.max_size_test))
        },
        aggregated_csv=given(args.path_aggregated_csv_train, args.path_aggregated_csv_test),
        subset_csv=given(args.path_subset_csv_train, args.path_subset_csv_test),
        plot_distribution=args.plot_distribution,
        num_processors=args.num_processors,
        batch_size=args.batch_size,
        source=args.source,
        stac_url=args.stac_url,
        max_cloud_cover=args.max_cloud_cover,
        search_days=args.search_days,
        max_scene_candidates=args.max_scene_candidates,
        max_slope=args.max_slope,
        scl_limits=SclLimits(
            cloud=args.scl_max_cloud,
            shadow=args.scl_max_shadow,
            snow=args.scl_max_snow,
            water=args.scl_max_water,
            invalid=args.scl_max_invalid,
        ),
        http_timeout=args.http_timeout,
        retry_pause=args.retry_pause,
        fuse_compress=args.fuse_compress,
        stop_after=args.stop_after,
        overwrite=args.overwrite,
    )


def build_inspect_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gedidata inspect",
        description="Summarise a batch or fused dataset file (sample count, schema check, "
        "per-band statistics) and optionally draw a gallery PNG of sample windows.",
    )
    parser.add_argument("file", help="a batch or fused .h5 file")
    parser.add_argument("--gallery", metavar="PNG", help="draw sample windows into this PNG")
    parser.add_argument("--samples", type=_positive_int, default=8, help="windows drawn (8)")
    parser.add_argument("--seed", type=int, default=0, help="which samples are drawn (0)")
    return parser


def inspect_main(argv: Sequence[str]) -> int:
    """`gedidata inspect FILE [--gallery PNG]`: exit 0 when the file follows the schema."""
    from gedidata.report.inspection import format_report, inspect_file

    args = build_inspect_parser().parse_args(argv)
    configure_logging(0, False, None)
    try:
        report = inspect_file(args.file)
    except FileNotFoundError as error:
        logger.error("%s", error)
        return EXIT_ERROR
    print(format_report(report))
    if report.schema_error:
        return EXIT_ERROR
    if args.gallery:
        if not report.samples:
            logger.error("%s holds no samples: no gallery drawn", args.file)
            return EXIT_ERROR
        from gedidata.report.gallery import draw_gallery

        print(f"gallery: {draw_gallery(args.file, args.gallery, args.samples, args.seed)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["inspect"]:
        return inspect_main(argv[1:])
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.log_file)
    from gedidata.pipeline import format_summary, fuse_only, run_pipeline
    from gedidata.runtime.interrupts import restore_python_sigint

    restore_python_sigint()  # (after polars is imported: Ctrl-C must stop waits too)
    if hasattr(signal, "SIGXFSZ"):  # past a file size limit: an OSError to report, not a kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    extra_outputs: list[Path] = []
    try:
        config = config_from_args(args)
        if args.fuse_hdf5_datasets:
            summary = fuse_only(config, Path(args.fuse_hdf5_datasets), progress=not args.quiet)
        elif args.demo:
            from gedidata.demo import demo_gallery, demo_run

            with demo_run(config, args.max_size_training, args.max_size_test) as demo_config:
                summary = run_pipeline(demo_config, progress=not args.quiet)
            gallery = demo_gallery(config.output_dir)
            extra_outputs += [gallery] if gallery else []
        else:
            summary = run_pipeline(config, progress=not args.quiet)
    except GedidataError as error:
        logger.error("%s", error)
        return EXIT_ERROR
    except KeyboardInterrupt:
        logger.error("interrupted; re-run the same command to resume")
        return EXIT_INTERRUPTED
    print(format_summary(summary))
    for path in extra_outputs:
        print(f"  {path}")
    if summary.transient:
        logger.warning(
            "%d footprints failed to read: re-run the same command to read them again "
            "(exit status %d)",
            summary.transient,
            EXIT_TRANSIENT,
        )
        return EXIT_TRANSIENT
    return 0
