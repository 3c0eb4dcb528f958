"""Reading GEDI L4A granules with h5py (the I/O half of stage 1).

A granule is read beam by beam — only the fields combine needs — so memory follows the
size of one beam, not of the file or of the whole input folder.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import polars as pl

from gedidata.domain.gedi import (
    REFERENCE_FIELDS,
    REJECTION_REASONS,
    REQUIRED_FIELDS,
    QualityRule,
    classify_shots,
    parse_granule_name,
)
from gedidata.errors import GranuleReadError
from gedidata.store.footprints_csv import COLUMN_TYPES, CSV_COLUMNS, EXTRA_COLUMNS


@dataclass
class GranuleFootprints:
    """The footprints of one granule that pass the quality rule, and the tally."""

    frame: pl.DataFrame
    shots: int
    rejected: Counter[str] = field(default_factory=Counter)


def read_granule(path: Path, rule: QualityRule) -> GranuleFootprints:
    """Read `path`, keep the footprints passing `rule`, and count the others by reason.

    Raises:
        GranuleReadError: when the file is not a readable GEDI L4A granule; the reason
            says why (bad name, truncated / not HDF5, not L4A, missing field).
    """
    try:
        name = parse_granule_name(path.name)
    except ValueError as error:
        raise GranuleReadError(str(path), str(error)) from error
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise GranuleReadError(
            str(path), f"cannot open as HDF5, truncated or corrupt ({error})"
        ) from error
    with handle:
        short_name = _text_attr(handle, "short_name")
        if short_name is not None and short_name != "GEDI_L4A":
            raise GranuleReadError(str(path), f"not a GEDI L4A granule (short_name={short_name!r})")
        beams = sorted(key for key in handle if key.startswith("BEAM"))
        if not beams:
            raise GranuleReadError(str(path), "no BEAMxxxx groups: not a GEDI L4A granule")
        frames: list[pl.DataFrame] = []
        rejected: Counter[str] = Counter()
        shots = 0
        for beam in beams:
            fields = _read_beam(handle, beam, path)
            code = classify_shots(fields, rule)
            shots += code.size
            counts = np.bincount(code, minlength=len(REJECTION_REASONS) + 1)
            for reason, count in zip(REJECTION_REASONS, counts[1:], strict=True):
                if count:
                    rejected[reason] += int(count)
            keep = code == 0
            if keep.any():
                frames.append(_beam_frame(fields, keep, beam))
    frame = pl.concat(frames) if frames else _empty_beam_frame()
    frame = frame.with_columns(
        pl.lit(path.name, dtype=pl.String).alias("GEDI Filename"),
        pl.lit(name.acquisition_time, dtype=pl.Datetime("us")).alias("acquisition_time"),
    ).select(*CSV_COLUMNS, *EXTRA_COLUMNS)
    return GranuleFootprints(frame=frame, shots=shots, rejected=rejected)


def _text_attr(handle: h5py.File, name: str) -> str | None:
    value = handle.attrs.get(name)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_beam(handle: h5py.File, beam: str, path: Path) -> dict[str, np.ndarray]:
    group = handle[beam]
    fields: dict[str, np.ndarray] = {}
    try:
        for name in REQUIRED_FIELDS:
            if name not in group:
                raise GranuleReadError(
                    str(path), f"{beam}/{name} is missing: not a complete GEDI L4A granule"
                )
            fields[name] = group[name][()]
        for name in REFERENCE_FIELDS:
            if name in group:
                fields[name] = group[name][()]
    except OSError as error:  # a chunk cut off by truncation
        raise GranuleReadError(str(path), f"{beam}: cannot read data ({error})") from error
    lengths = {name: array.shape[0] for name, array in fields.items()}
    if len(set(lengths.values())) > 1:
        raise GranuleReadError(str(path), f"{beam}: datasets differ in length {lengths}")
    return fields


def _beam_frame(fields: dict[str, np.ndarray], keep: np.ndarray, beam: str) -> pl.DataFrame:
    count = int(keep.sum())
    columns: dict[str, pl.Series] = {}
    for name in (*CSV_COLUMNS[:9], "degrade_flag", "sensitivity"):
        dtype = COLUMN_TYPES[name]
        if name in fields:
            columns[name] = pl.Series(name, fields[name][keep]).cast(dtype)
        else:
            columns[name] = pl.repeat(None, count, dtype=dtype, eager=True).alias(name)
    columns["beam"] = pl.repeat(beam, count, dtype=pl.String, eager=True).alias("beam")
    return pl.DataFrame(columns)


def _empty_beam_frame() -> pl.DataFrame:
    names = (*CSV_COLUMNS[:9], "degrade_flag", "sensitivity", "beam")
    return pl.DataFrame(schema={name: COLUMN_TYPES[name] for name in names})
