"""The footprint CSV: its columns, and reading CSVs from this tool or the original one.

Combined and subset CSVs are `;`-separated with the columns of `CSV_COLUMNS` first
(extra columns may follow). A CSV given through a skip flag may come from the original
tool (same columns, `acquisition_time` as ``2020-02-05T15:13:58.000000``) or be
`,`-separated; a CSV lacking a column the later stages need is refused by name.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from gedidata.errors import CsvFormatError

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


def detect_separator(path: Path) -> str:
    """`;` or `,`, from the header line of `path`."""
    try:
        with path.open("r", encoding="utf-8") as handle:
            header = handle.readline()
    except OSError as error:
        raise CsvFormatError(f"{path}: cannot read ({error.strerror or error})") from error
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
    with path.open("r", encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n")
    return [name.strip().strip('"') for name in header.split(separator)]


def scan_footprints(path: str | Path, needed: tuple[str, ...] = NEEDED_COLUMNS) -> pl.LazyFrame:
    """Lazily read a footprint CSV, checking its columns and typing the known ones.

    Raises:
        CsvFormatError: when a needed column is missing (the message names it and the file).
    """
    csv_path = Path(path)
    if not csv_path.is_file():
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
