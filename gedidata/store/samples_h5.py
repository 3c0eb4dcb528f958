"""Sample HDF5 files: write, read and check batch and fused files (SPEC §6).

The layout itself (dataset names, dtypes, shapes, fill values, `Sample`,
`SampleBuffer`) is `gedidata.domain.schema`; this module puts it into HDF5.

- `write_samples`: write a whole file atomically; `create_datasets` and
  `root_attributes` give a streaming writer (fuse) the same layout.
- `read_schema`, `check_file`, `read_arrays`: look at a file written before;
  `BLOCK_SAMPLES` bounds the samples a reader holds at once.

Strings are stored as variable-length UTF-8 (``h5py.string_dtype()``); h5py returns
them as ``bytes`` unless read with ``.asstr()`` (as `read_arrays` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gedidata import __version__
from gedidata.domain.schema import (
    BAND_NAMES,
    BY_NAME,
    COPDEM_BANDS,
    DATASETS,
    GROUP,
    NODATA,
    SCHEMA_VERSION,
    STRING,
    UNITS,
    DatasetSpec,
    SampleBuffer,
    validated_arrays,
)
from gedidata.errors import GedidataError
from gedidata.store.atomic import atomic_output
from gedidata.store.h5chunks import write_rows

COMPRESSION = "gzip"
COMPRESSION_LEVEL = 1
# gzip level 1 with the byte shuffle filter, not lzf: deflate is built into every HDF5
# library (h5dump, HDFView, netCDF, MATLAB, Julia, GDAL read these files without a
# filter plugin, while lzf exists only in h5py). The shuffle filter groups the high and
# low bytes of the uint16/float32 rasters, which is what makes them compress well.
# Decoding is not free for random access, though: one process reads ~9,000 random
# gzip'd 24 KiB Sentinel-2 chunks per second against ~85,000 uncompressed ones. Batch
# files (written once, read once in order) are compressed; fused files store the
# per-sample raster chunks uncompressed by default (fuse's `compress` option).


class SchemaError(GedidataError):
    """A file does not follow the layout: names the file and the dataset at fault."""

    def __init__(self, path: str | Path, dataset: str | None, reason: str) -> None:
        where = f"{path}" if dataset is None else f"{path}: dataset {dataset!r}"
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.dataset = dataset
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        # workers send errors through pipes; the default would call cls(message)
        return (type(self), (self.path, self.dataset, self.reason))


BLOCK_SAMPLES = 256
"""Samples copied per read/write (~8 MiB of rasters): bounds fuse's and inspect's memory."""


def h5_dtype(spec: DatasetSpec) -> np.dtype[Any]:
    """The dtype of `spec`'s dataset in the file."""
    if isinstance(spec.dtype, str):
        return h5py.string_dtype("utf-8")
    return spec.dtype


def _attr_value(value: Any) -> Any:
    """An attribute value h5py stores natively, else its JSON text."""
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def root_attributes(attrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The root attributes of a file: the schema's own, then `attrs` (JSON for dicts).

    `attrs` carries the run's facts (thresholds, source profile, harmonization, ...); it
    may not change the schema version.
    """
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "band_names": list(BAND_NAMES),
        "copdem_bands": list(COPDEM_BANDS),
        "units": json.dumps(dict(UNITS), sort_keys=True),
        "nodata": json.dumps(dict(NODATA), sort_keys=True),
        "gedidata_version": __version__,
    }
    for key, value in (attrs or {}).items():
        if key == "schema_version" and value != SCHEMA_VERSION:
            raise ValueError(f"attribute schema_version={value!r}; this is {SCHEMA_VERSION}")
        out[key] = value if key in ("band_names", "copdem_bands") else _attr_value(value)
    return out


def create_datasets(
    file: h5py.File,
    length: int,
    attrs: Mapping[str, Any] | None = None,
    *,
    compress_rasters: bool = True,
) -> dict[str, h5py.Dataset]:
    """Create group ``data`` with every dataset (``length`` samples, growable) in `file`.

    Also sets the root attributes. A streaming writer fills the datasets slice by slice
    (and may ``resize`` them along axis 0). ``compress_rasters=False`` stores the
    per-sample raster chunks uncompressed (fused files made for fast random reads);
    the small datasets are always compressed.
    """
    for key, value in root_attributes(attrs).items():
        file.attrs[key] = value
    group = file.create_group(GROUP, track_order=True)
    datasets: dict[str, h5py.Dataset] = {}
    for spec in DATASETS:
        options: dict[str, Any] = {}
        if not spec.is_string:
            options["fillvalue"] = spec.fill
        if compress_rasters or not spec.per_sample_chunk:
            options.update(compression=COMPRESSION, compression_opts=COMPRESSION_LEVEL)
            options["shuffle"] = not spec.is_string
        dataset = group.create_dataset(
            spec.name,
            shape=(length, *spec.shape),
            maxshape=(None, *spec.shape),
            dtype=h5_dtype(spec),
            chunks=spec.chunks(),
            **options,
        )
        dataset.attrs["description"] = spec.description
        if spec.units:
            dataset.attrs["units"] = spec.units
        if spec.name in NODATA:
            dataset.attrs["nodata"] = spec.fill
        datasets[spec.name] = dataset
    return datasets


def write_samples(
    path: str | Path,
    data: SampleBuffer | Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
) -> int:
    """Write every dataset of `data` to a new file at `path`, atomically; the sample count.

    `data` is a `SampleBuffer` or a mapping of every dataset name to an ``(N, *shape)``
    array. Zero samples give a valid, empty file.
    """
    arrays = validated_arrays(data)
    count = len(arrays[DATASETS[0].name])
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as file:
        datasets = create_datasets(file, count, attrs)
        if count:
            for name, array in arrays.items():
                write_rows(datasets[name], 0, array)
    return count


def _file_dtype(dataset: h5py.Dataset) -> np.dtype | str:
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return STRING
    return dataset.dtype


def read_schema(path: str | Path) -> list[tuple[str, np.dtype | str, tuple[int, ...]]]:
    """``(name, dtype, per-sample shape)`` of every dataset in group ``data``, file order.

    dtype is `STRING` for string datasets. Raises `SchemaError` when the file cannot be
    read or has no group ``data``.
    """
    with open_schema_file(path) as file:
        group = _data_group(file, path)
        return [
            (name, _file_dtype(item), tuple(item.shape[1:]))
            for name, item in group.items()
            if isinstance(item, h5py.Dataset)
        ]


def check_file(path: str | Path) -> int:
    """The number of samples in `path`, after checking it follows the layout exactly.

    Raises `SchemaError` naming the file and the dataset when a dataset is missing,
    unexpected, of the wrong dtype or shape, or when the datasets differ in length.
    """
    with open_schema_file(path) as file:
        return check_open_file(file, path)


def check_open_file(file: h5py.File, path: str | Path) -> int:
    """`check_file` for a file that is already open (`path` names it in errors)."""
    group = _data_group(file, path)
    length: int | None = None
    first = ""
    for spec in DATASETS:
        item = group.get(spec.name)
        if not isinstance(item, h5py.Dataset):
            raise SchemaError(path, spec.name, "missing")
        dtype = _file_dtype(item)
        if spec.is_string != (dtype == STRING) or (
            not spec.is_string and not _same_dtype(np.dtype(dtype), np.dtype(spec.dtype))
        ):
            raise SchemaError(path, spec.name, f"dtype {dtype}, expected {spec.dtype}")
        if item.ndim != 1 + len(spec.shape) or tuple(item.shape[1:]) != spec.shape:
            raise SchemaError(path, spec.name, f"shape {item.shape}, expected (N, *{spec.shape})")
        if length is None:
            length, first = item.shape[0], spec.name
        elif item.shape[0] != length:
            raise SchemaError(
                path, spec.name, f"{item.shape[0]} samples, but {first!r} has {length}"
            )
    extra = sorted(set(group) - set(BY_NAME))
    if extra:
        raise SchemaError(path, extra[0], "not part of the schema")
    return int(length or 0)


def read_arrays(
    path: str | Path, selection: slice | np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Every dataset of group ``data`` (or a selection of samples along axis 0).

    Strings come back as ``object`` arrays of ``str``.
    """
    key = slice(None) if selection is None else selection
    with open_schema_file(path) as file:
        group = _data_group(file, path)
        out: dict[str, np.ndarray] = {}
        for name, item in group.items():
            if not isinstance(item, h5py.Dataset):
                continue
            if h5py.check_string_dtype(item.dtype) is not None:
                out[name] = np.asarray(item.asstr()[key], dtype=object)
            else:
                out[name] = item[key]
        return out


def _same_dtype(found: np.dtype, expected: np.dtype) -> bool:
    """Same kind and size; byte order does not matter (h5py converts on read)."""
    return found.kind == expected.kind and found.itemsize == expected.itemsize


def open_schema_file(path: str | Path) -> h5py.File:
    """Open `path` for reading; `SchemaError` (naming it) when it is not readable HDF5."""
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise SchemaError(path, None, f"not a readable HDF5 file ({error})") from error


def _data_group(file: h5py.File, path: str | Path) -> h5py.Group:
    group = file.get(GROUP)
    if not isinstance(group, h5py.Group):
        raise SchemaError(path, None, f"no group {GROUP!r}")
    return group
