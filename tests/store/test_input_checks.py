"""Input checked where it enters: option ranges by the parser, CSV rows and files by footprints."""

from __future__ import annotations

import math

import polars as pl
import pytest

from gedidata.cli import build_parser
from gedidata.errors import CsvFormatError
from gedidata.store.footprints_csv import (
    COLUMN_TYPES,
    NEEDED_COLUMNS,
    scan_footprints,
    split_invalid_rows,
)


def parse(*args: str):
    return build_parser().parse_args(["out", "--input", "gedi", *args])


@pytest.mark.parametrize(
    "args",
    [
        ("--search-days", "-3"),
        ("--max-cloud-cover", "-5"),
        ("--max-cloud-cover", "0"),
        ("--scl-max-cloud", "500"),
        ("--scl-max-water", "nan"),
        ("--stac-url", "not-a-url"),
        ("--stac-url", "ftp://host/stac"),
        ("--stac-url", "http://"),
        ("--max-size-training", "inf"),
        ("--max-size-training", "1e400"),
        ("--max-size-test", "-1"),
        ("--max-size-test", "2.5"),
        ("--max-slope", "-1"),
        ("--max-slope", "inf"),
        ("--max-relative-se", "0"),
        ("--max-relative-se", "101"),
        ("--seed", "-1"),
        ("--train-years", "2018"),
        ("--test-years", "21"),
        ("--bbox", "10", "0", "10", "-200"),
        ("--bbox", "0", "0", "10", "-91"),
        ("--bbox", "0", "0", "10", "nan"),
    ],
)
def test_options_that_cannot_work_are_refused_by_name(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*args)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert args[0] in error and args[-1] in error, error


def test_option_values_in_range_are_kept():
    args = parse(
        "--search-days", "0", "--max-cloud-cover", "100", "--scl-max-cloud", "0",
        "--stac-url", "https://example.org:8080/api/stac/v1", "--max-size-training", "6e6",
        "--max-size-test", "0", "--max-slope", "0", "--seed", "7",
        "--bbox", "-180", "-90", "180", "90", "--train-years", "2019", "2020",
    )  # fmt: skip
    assert args.search_days == 0 and args.max_cloud_cover == 100.0
    assert args.scl_max_cloud == 0.0 and args.max_slope == 0.0
    assert args.max_size_training == 6_000_000 and args.max_size_test == 0
    assert args.bbox == [-180.0, -90.0, 180.0, 90.0] and args.train_years == [2019, 2020]
    assert args.stac_url == "https://example.org:8080/api/stac/v1"


def footprint_rows(**changes: list) -> pl.DataFrame:
    rows = 4
    values: dict[str, list] = {
        "agbd": [50.0] * rows,
        "agbd_se": [5.0] * rows,
        "lon_lowestmode": [10.0] * rows,
        "lat_lowestmode": [-1.0] * rows,
        "shot_number": list(range(1, rows + 1)),
        "delta_time": [1e8] * rows,
        "GEDI Filename": ["GEDI04_A_x.h5"] * rows,
        "acquisition_time": [None] * rows,
    }
    values.update(changes)
    frame = pl.DataFrame(values, schema={name: COLUMN_TYPES[name] for name in NEEDED_COLUMNS})
    if "acquisition_time" not in changes:
        frame = frame.with_columns(pl.lit(0).cast(pl.Datetime("us")).alias("acquisition_time"))
    return frame


def test_valid_rows_pass_untouched():
    frame = footprint_rows()
    valid, invalid = split_invalid_rows(frame)
    assert valid.equals(frame) and invalid.height == 0
    assert invalid.columns == ["shot_number", "detail"]


@pytest.mark.parametrize(
    ("column", "bad", "detail"),
    [
        ("agbd", -9999.0, "agbd=-9999.0: not a positive number"),
        ("agbd", 0.0, "agbd=0.0: not a positive number"),
        ("agbd_se", math.nan, "agbd_se=NaN: not a finite number"),
        ("agbd_se", None, "agbd_se=null: empty"),
        ("lat_lowestmode", 95.0, "lat_lowestmode=95.0: outside [-90, 90]"),
        ("lat_lowestmode", math.nan, "lat_lowestmode=NaN: not a finite number"),
        ("lon_lowestmode", 200.0, "lon_lowestmode=200.0: outside [-180, 180]"),
        ("delta_time", None, "delta_time=null: empty"),
        ("GEDI Filename", " ", 'GEDI Filename=" ": empty'),
        ("shot_number", None, "shot_number=null: empty"),
    ],
)
def test_each_bad_value_is_named_with_its_column(column, bad, detail):
    original = footprint_rows()[column].to_list()
    frame = footprint_rows(**{column: [original[0], bad, *original[2:]]})
    valid, invalid = split_invalid_rows(frame)
    assert valid.height == 3 and 2 not in valid["shot_number"].to_list()
    assert invalid["detail"].to_list() == [detail]
    assert invalid["shot_number"].to_list() == ([None] if column == "shot_number" else [2])


def test_first_failing_column_is_reported():
    frame = footprint_rows(agbd=[-1.0] * 4, lat_lowestmode=[99.0] * 4)
    _, invalid = split_invalid_rows(frame)
    assert invalid["detail"].to_list() == ["agbd=-1.0: not a positive number"] * 4


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x89HDF\r\n\x1a\n\x00\x00binary", "NUL byte"),
        (b"agbd;agbd_se\n\xff\xfe1;2\n", "not UTF-8"),
        (b"", "empty file"),
    ],
)
def test_files_that_are_not_text_csvs_are_named(tmp_path, content, needle):
    path = tmp_path / "subset.csv"
    path.write_bytes(content)
    with pytest.raises(CsvFormatError) as error:
        scan_footprints(path)
    assert str(path) in str(error.value) and needle in str(error.value)


def test_a_folder_is_not_a_csv(tmp_path):
    with pytest.raises(CsvFormatError, match="is a folder"):
        scan_footprints(tmp_path)
