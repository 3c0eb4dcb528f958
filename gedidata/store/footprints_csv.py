"""The footprint CSV: its columns, and reading CSVs from this tool or the original one.

Combined and subset CSVs are `;`-separated with the columns of `CSV_COLUMNS` first
(extra columns may follow). A CSV given through a skip flag may come from the original
tool (same columns, `acquisition_time` as ``2020-02-05T15:13:58.000000``) or be
`,`-separated; a CSV lacking a column the later stages need is refused by name.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from gedidata.errors import CsvFormatError

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

SEPARATOR = ";"

CSV_COLUMNS: tuple[str, ...] = (
    "agbd",
    "agbd_se",
    "lon_lowestmode",
    "lat_lowestmode",
    "shot_number",
    "delta_time",
    "l2_quality_flag",
    "l4_quality_flag",
    "surface_flag",
    "GEDI Filename",
    "acquisition_time",
)
"""Columns of a combined CSV, in order (as the original tool wrote them)."""

EXTRA_COLUMNS: tuple[str, ...] = ("beam", "degrade_flag", "sensitivity")
"""Columns gedidata appends for reference."""

NEEDED_COLUMNS: tuple[str, ...] = (
    "agbd",
    "agbd_se",
    "lon_lowestmode",
    "lat_lowestmode",
    "shot_number",
    "delta_time",
    "GEDI Filename",
    "acquisition_time",
)
"""Columns subset, extract and fuse read; a CSV lacking one is refused."""

COLUMN_TYPES: dict[str, pl.DataType] = {
    "agbd": pl.Float32(),
    "agbd_se": pl.Float32(),
    "lon_lowestmode": pl.Float64(),
    "lat_lowestmode": pl.Float64(),
    "shot_number": pl.UInt64(),
    "delta_time": pl.Float64(),
    "l2_quality_flag": pl.UInt8(),
    "l4_quality_flag": pl.UInt8(),
    "surface_flag": pl.UInt8(),
    "GEDI Filename": pl.String(),
    "acquisition_time": pl.Datetime("us"),
    "beam": pl.String(),
    "degrade_flag": pl.UInt8(),
    "sensitivity": pl.Float32(),
}


def empty_frame() -> pl.DataFrame:
    """A frame with the combined CSV's columns and types and no rows."""
    columns = (*CSV_COLUMNS, *EXTRA_COLUMNS)
    return pl.DataFrame(schema={name: COLUMN_TYPES[name] for name in columns})


HEAD_BYTES = 64 * 1024
"""Bytes read to tell a text CSV from a binary file (and to find the header line)."""


def _header_line(path: Path) -> str:
    """The first line of `path`, after checking that its start is UTF-8 text.

    Raises:
        CsvFormatError: for a folder, an unreadable file, or one that is not a text CSV
            (a NUL byte or invalid UTF-8 in the first `HEAD_BYTES`, e.g. an .h5 granule).
    """
    if path.is_dir():
        raise CsvFormatError(f"{path}: is a folder, expected a CSV file")
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as error:
        raise CsvFormatError(f"{path}: cannot read ({error.strerror or error})") from error
    not_text = f"{path}: not a text CSV (expected UTF-8 text"
    if b"\x00" in head:
        raise CsvFormatError(f"{not_text}; found a NUL byte, as in a binary file)")
    # Incremental: a character cut by the HEAD_BYTES limit is not an error; a BOM is
    # dropped as polars drops it, so the header matches the columns polars reads.
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        text = decoder.decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError as error:
        raise CsvFormatError(f"{not_text}; byte {error.start} is not UTF-8)") from error
    return text.split("\n", 1)[0].rstrip("\r")


def detect_separator(path: Path) -> str:
    """`;` or `,`, from the header line of `path`."""
    header = _header_line(path)
    if not header.strip():
        raise CsvFormatError(f"{path}: empty file, expected a header line")
    if ";" in header:
        return ";"
    if "," in header:
        return ","
    return SEPARATOR


def csv_header(path: Path) -> list[str]:
    """The column names of `path`."""
    separator = detect_separator(path)
    header = _header_line(path)
    return [name.strip().strip('"') for name in header.split(separator)]


def scan_footprints(path: str | Path, needed: tuple[str, ...] = NEEDED_COLUMNS) -> pl.LazyFrame:
    """Lazily read a footprint CSV, checking its columns and typing the known ones.

    Raises:
        CsvFormatError: when a needed column is missing (the message names it and the file).
    """
    csv_path = Path(path)
    if not (csv_path.is_file() or csv_path.is_dir()):  # a folder gets its own message below
        raise CsvFormatError(f"{csv_path}: no such file")
    columns = csv_header(csv_path)
    missing = [name for name in needed if name not in columns]
    if missing:
        raise CsvFormatError(
            f"{csv_path}: missing column {missing[0]!r}"
            + (f" (and {', '.join(repr(m) for m in missing[1:])})" if len(missing) > 1 else "")
            + f"; found columns {columns}"
        )
    overrides = {
        name: (pl.String() if name == "acquisition_time" else COLUMN_TYPES[name])
        for name in columns
        if name in COLUMN_TYPES
    }
    frame = pl.scan_csv(csv_path, separator=detect_separator(csv_path), schema_overrides=overrides)
    if "acquisition_time" in columns:
        frame = frame.with_columns(parse_acquisition_time(pl.col("acquisition_time")))
    return frame


def parse_acquisition_time(column: pl.Expr) -> pl.Expr:
    """ISO date-times as both tools write them (``T`` or space, optional fraction)."""
    return column.str.replace(" ", "T").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=True
    )


def collect_footprints(frame: pl.LazyFrame, path: str | Path) -> pl.DataFrame:
    """Collect `frame`, turning parse failures into an error that names the file."""
    try:
        return frame.collect()
    except pl.exceptions.PolarsError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise CsvFormatError(f"{path}: cannot parse ({first_line})") from error


_Check = tuple[pl.Expr, pl.Expr]
"""(row fails, detail of the failure) for one rule of one column."""


def _present(name: str) -> list[_Check]:
    return [(pl.col(name).is_null(), pl.lit(f"{name}=null: empty"))]


def _said(name: str, reason: str) -> pl.Expr:
    """`name=value: reason`, the value as polars prints it (-9999.0, NaN, inf)."""
    return pl.concat_str([pl.lit(f"{name}="), pl.col(name).cast(pl.String), pl.lit(f": {reason}")])


def _finite(name: str) -> list[_Check]:
    # NaN and inf come from `nan`/`inf` text (or an overflowing 1e400); null from an empty field.
    return [*_present(name), (~pl.col(name).is_finite(), _said(name, "not a finite number"))]


def _positive(name: str) -> list[_Check]:
    # `<= 0` catches GEDI's -9999 fill value as well as 0.
    return [*_finite(name), (pl.col(name) <= 0, _said(name, "not a positive number"))]


def _within(bound: int) -> Callable[[str], list[_Check]]:
    def checks(name: str) -> list[_Check]:
        outside = ~pl.col(name).is_between(-bound, bound)
        return [*_finite(name), (outside, _said(name, f"outside [-{bound}, {bound}]"))]

    return checks


def _text(name: str) -> list[_Check]:
    blank = pl.col(name).str.strip_chars() == ""  # a quoted "" field reads as "", not null
    detail = pl.concat_str([pl.lit(f'{name}="'), pl.col(name), pl.lit('": empty')])
    return [*_present(name), (blank, detail)]


_ROW_RULES: tuple[tuple[str, Callable[[str], list[_Check]]], ...] = (
    ("shot_number", _present),
    ("agbd", _positive),
    ("agbd_se", _positive),
    ("lat_lowestmode", _within(90)),
    ("lon_lowestmode", _within(180)),
    ("delta_time", _finite),
    ("acquisition_time", _present),
    ("GEDI Filename", _text),
)
"""Each column's rules, in the order a row's first failure is reported."""


def split_invalid_rows(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split footprint rows into (valid rows, invalid rows); pure, vectorised, order kept.

    `frame` is typed as `scan_footprints` reads it. A row is invalid when `shot_number`,
    `acquisition_time` or `GEDI Filename` is empty, `agbd` or `agbd_se` is not a finite
    number > 0 (GEDI's fill value -9999 included), `lat_lowestmode` / `lon_lowestmode` is
    not finite within [-90, 90] / [-180, 180], or `delta_time` is not finite. Columns
    absent from `frame` are not checked.

    Returns:
        The valid rows (all columns), and a frame of the invalid rows with the columns
        `shot_number` (as read, may be null) and `detail` (the first failing column and
        its value, e.g. ``agbd=-9999.0: not a positive number``).
    """
    checks = [check for name, rules in _ROW_RULES if name in frame.columns for check in rules(name)]
    shot_number = (
        pl.col("shot_number")
        if "shot_number" in frame.columns
        else pl.lit(None, dtype=COLUMN_TYPES["shot_number"]).alias("shot_number")
    )
    if not checks:
        return frame, frame.head(0).select(shot_number, detail=pl.lit(None, dtype=pl.String()))
    # Kleene logic: a null value's later checks are null, but its `is_null` check is true.
    invalid = frame.select(pl.any_horizontal(fails for fails, _ in checks)).to_series()
    (fails, detail), *rest = checks
    chain: Then | ChainedThen = pl.when(fails).then(detail)
    for fails, detail in rest:  # a chain over the columns, not a loop over rows
        chain = chain.when(fails).then(detail)
    # Details are built for the invalid rows only: on millions of rows most are valid.
    rejected = frame.filter(invalid).select(shot_number, detail=chain.otherwise(None))
    return frame.filter(~invalid), rejected
