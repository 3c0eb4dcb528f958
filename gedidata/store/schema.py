"""The HDF5 layout of batch and fused files: the one place that defines it (SPEC §6).

Every file has a group ``data`` with the datasets of `DATASETS`, in that order, whose
first axis is the sample. Batch files (stage 3) and fused files (stage 4) are identical
in layout; both are written through this module.

- `DatasetSpec` / `DATASETS`: name, dtype (a numpy dtype or ``"string"``), per-sample
  shape, fill value, units and description of every dataset.
- `Sample`: one sample's values; `SampleBuffer`: preallocated arrays that collect them.
- `write_samples`: write a whole file atomically; `create_datasets` and
  `root_attributes` give a streaming writer (fuse) the same layout.
- `read_schema`, `check_file`, `read_arrays`: look at a file written before.

Strings are stored as variable-length UTF-8 (``h5py.string_dtype()``); h5py returns
them as ``bytes`` unless read with ``.asstr()`` (as `read_arrays` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from affine import Affine

from gedidata import __version__
from gedidata.errors import GedidataError
from gedidata.sources.profiles import S2_BANDS
from gedidata.store.atomic import atomic_output
from gedidata.store.h5chunks import write_rows

SCHEMA_VERSION = "1.0"
"""Version of the layout below; change it whenever a dataset changes."""

GROUP = "data"
"""Name of the group that holds every dataset."""

STRING = "string"
"""Marker dtype of string datasets (variable-length UTF-8 in the file)."""

WINDOW = 32
"""Side of a sample window, pixels (10 m)."""

BAND_NAMES: tuple[str, ...] = S2_BANDS
"""Channel order of `Sentinel-2 L2A`."""
COPDEM_BANDS: tuple[str, ...] = ("elevation", "slope")
"""Channel order of `CopDEM`."""

S2_NODATA = 0
"""`Sentinel-2 L2A`: DN 0 is no data (and SCL class 0 is `no_data`)."""
WORLDCOVER_NODATA = 0
"""`WorldCover`: class 0 is no data in the ESA WorldCover maps."""
COPDEM_NODATA = -9999.0
"""`CopDEM`: elevation and slope where the DEM has no value."""
AGBD_NODATA = -9999.0
"""`AGBD Raster`: every pixel outside the footprint disk (also the GEDI fill value)."""

NODATA: Mapping[str, int | float] = {
    "Sentinel-2 L2A": S2_NODATA,
    "WorldCover": WORLDCOVER_NODATA,
    "CopDEM": COPDEM_NODATA,
    "AGBD Raster": AGBD_NODATA,
}
"""No-data value of each raster dataset (stored in the root attributes)."""

SMALL_CHUNK = 1024
"""Samples per chunk of the small (per-sample scalar or vector) datasets."""

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


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of group ``data``: ``(N, *shape)`` values of ``dtype``."""

    name: str
    dtype: np.dtype | str
    """A numpy dtype, or `STRING`."""
    shape: tuple[int, ...]
    """Shape of one sample (the file's dataset is ``(N, *shape)``)."""
    fill: Any
    """Value of a slot that was never written."""
    field: str
    """Attribute of `Sample` that holds this dataset's value."""
    units: str
    description: str

    @property
    def is_string(self) -> bool:
        return isinstance(self.dtype, str)

    @property
    def h5_dtype(self) -> np.dtype:
        """The dtype in the file."""
        if isinstance(self.dtype, str):
            return h5py.string_dtype("utf-8")
        return self.dtype

    @property
    def array_dtype(self) -> np.dtype:
        """The dtype in memory (strings as an ``object`` array of ``str``)."""
        if isinstance(self.dtype, str):
            return np.dtype(object)
        return self.dtype

    @property
    def per_sample_chunk(self) -> bool:
        """Rasters are chunked one sample per chunk; small datasets by `SMALL_CHUNK`."""
        return len(self.shape) == 3

    def chunks(self) -> tuple[int, ...]:
        return (1 if self.per_sample_chunk else SMALL_CHUNK, *self.shape)


def _spec(
    name: str, dtype: str, shape: tuple[int, ...], field: str, units: str, description: str
) -> DatasetSpec:
    if dtype == STRING:
        return DatasetSpec(name, STRING, shape, "", field, units, description)
    numpy_dtype = np.dtype(dtype)
    fill = NODATA.get(name, -9999 if numpy_dtype.kind in "fi" else 0)
    return DatasetSpec(name, numpy_dtype, shape, fill, field, units, description)


_W = (WINDOW, WINDOW)

DATASETS: tuple[DatasetSpec, ...] = (
    _spec(
        "Sentinel-2 L2A",
        "uint16",
        (len(BAND_NAMES), *_W),
        "sentinel2",
        "DN",
        "SCL class, then B02..B12 as DN = 10000 x reflectance (offset removed, clipped at 0)",
    ),
    _spec("WorldCover", "uint8", (1, *_W), "worldcover", "class", "ESA WorldCover land cover"),
    _spec(
        "CopDEM",
        "float32",
        (len(COPDEM_BANDS), *_W),
        "copdem",
        "m, %",
        "Copernicus DEM GLO-30 elevation [m] and slope [%] (Horn, 10 m spacing)",
    ),
    _spec(
        "AGBD Raster",
        "float32",
        (1, *_W),
        "agbd_raster",
        "Mg/ha",
        "agbd on the 12.5 m footprint disk (all-touched), -9999 elsewhere",
    ),
    _spec(
        "Transforms",
        "float64",
        (9,),
        "transform",
        "",
        "affine transform of the window (a, b, c, d, e, f, g, h, i)",
    ),
    _spec("CRS", STRING, (1,), "crs", "", "CRS of the window, e.g. EPSG:32632"),
    _spec(
        "S2 SCL Stats",
        STRING,
        (12, 2),
        "scl_stats",
        "",
        "SCL class name and fraction of the window, classes 0..11",
    ),
    _spec("Sentinel-2 Product Name", STRING, (1,), "sentinel2_product", "", "S2 L2A product"),
    _spec("WorldCover Tile Name", STRING, (1,), "worldcover_tile", "", "WorldCover tile(s)"),
    _spec("CopDEM Tile Name", STRING, (1,), "copdem_tile", "", "Copernicus DEM tile(s)"),
    _spec("AGBD Values", "float32", (1,), "agbd", "Mg/ha", "GEDI L4A agbd"),
    _spec("AGBD Standard Error", "float32", (1,), "agbd_se", "Mg/ha", "GEDI L4A agbd_se"),
    _spec("GEDI Product Name", STRING, (1,), "gedi_product", "", "GEDI L4A granule file name"),
    _spec("GEDI Shot Number", "int64", (1,), "shot_number", "", "GEDI shot_number"),
    _spec(
        "GEDI Acquisition Time",
        STRING,
        (1,),
        "acquisition_time",
        "",
        "coarse acquisition time, from the granule file name",
    ),
    _spec(
        "GEDI Delta Time",
        STRING,
        (1,),
        "delta_time",
        "s since 2018-01-01T00:00Z",
        "exact acquisition time, full precision",
    ),
    _spec("GEDI Lat Lon", "float64", (2,), "lat_lon", "degree", "lat_lowestmode, lon_lowestmode"),
    _spec(
        "Sentinel-2 Processing Baseline",
        STRING,
        (1,),
        "processing_baseline",
        "",
        "s2:processing_baseline of the scene, e.g. 04.00",
    ),
    _spec(
        "Sentinel-2 Offset Removed",
        "uint16",
        (1,),
        "offset_removed",
        "DN",
        "DN subtracted from the reflectance bands (0 or 1000)",
    ),
)
"""Every dataset of group ``data``, in file order."""

BY_NAME: Mapping[str, DatasetSpec] = {spec.name: spec for spec in DATASETS}
UNITS: Mapping[str, str] = {spec.name: spec.units for spec in DATASETS if spec.units}


@dataclass(frozen=True)
class Sample:
    """One sample's values, one attribute per dataset (see `DatasetSpec.field`).

    Arrays must have the dataset's per-sample shape; the ``(1,)`` datasets also take a
    plain scalar, `transform` also takes an `affine.Affine`, `lat_lon` is
    ``(lat, lon)``.
    """

    sentinel2: np.ndarray
    worldcover: np.ndarray
    copdem: np.ndarray
    agbd_raster: np.ndarray
    transform: Affine | Sequence[float] | np.ndarray
    crs: str
    scl_stats: np.ndarray
    sentinel2_product: str
    worldcover_tile: str
    copdem_tile: str
    agbd: float
    agbd_se: float
    gedi_product: str
    shot_number: int
    acquisition_time: str
    delta_time: str
    lat_lon: Sequence[float] | np.ndarray
    processing_baseline: str
    offset_removed: int


def coerce_value(spec: DatasetSpec, value: Any) -> np.ndarray:
    """`value` as an array of the dataset's per-sample shape and in-memory dtype.

    Raises ValueError naming the dataset when the shape is wrong or the value's type
    does not fit the dataset (a float into an integer dataset, an out-of-range integer,
    a number into a string dataset).
    """
    if isinstance(value, Affine):
        value = tuple(value)
    array = np.asarray(value)
    if array.ndim == 0 and spec.shape == (1,):
        array = array.reshape(1)
    if array.shape != spec.shape:
        raise ValueError(f"dataset {spec.name!r}: expected shape {spec.shape}, got {array.shape}")
    return _coerce_array(spec, array)


def _coerce_array(spec: DatasetSpec, array: np.ndarray) -> np.ndarray:
    """Convert an array of any leading shape; the type rules of `coerce_value`."""
    kind = array.dtype.kind
    if spec.is_string:
        if kind == "U":
            return array.astype(object)
        if kind == "O" and all(isinstance(item, str) for item in array.flat):
            return array
        if kind in "SO":  # bytes (as h5py reads them) are decoded
            try:
                return np.vectorize(_as_str, otypes=[object])(array) if array.size else array
            except (TypeError, UnicodeDecodeError):
                pass
        raise ValueError(f"dataset {spec.name!r}: expected strings, got dtype {array.dtype}")
    target = np.dtype(spec.dtype)
    if kind not in "iuf" or (target.kind in "iu" and kind == "f"):
        raise ValueError(f"dataset {spec.name!r}: cannot store {array.dtype} as {target}")
    if array.dtype != target:
        if target.kind in "iu" and array.size:
            info = np.iinfo(target)
            low, high = int(array.min()), int(array.max())
            if low < info.min or high > info.max:
                raise ValueError(f"dataset {spec.name!r}: values {low}..{high} do not fit {target}")
        array = array.astype(target)
    return array


def _as_str(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode("utf-8")
    if isinstance(item, str):
        return item
    raise TypeError(f"not a string: {item!r}")


class SampleBuffer:
    """Preallocated arrays for up to `capacity` samples, filled by `append`."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.count = 0
        self._arrays: dict[str, np.ndarray] = {
            spec.name: np.full((capacity, *spec.shape), spec.fill, dtype=spec.array_dtype)
            for spec in DATASETS
        }

    def __len__(self) -> int:
        return self.count

    def append(self, sample: Sample) -> None:
        """Add one sample; ValueError (naming the dataset) if a value does not fit."""
        if self.count >= self.capacity:
            raise ValueError(f"the buffer is full ({self.capacity} samples)")
        values = {spec.name: coerce_value(spec, getattr(sample, spec.field)) for spec in DATASETS}
        for name, value in values.items():
            self._arrays[name][self.count] = value
        self.count += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The filled part of every dataset (views, ``count`` samples long)."""
        return {name: array[: self.count] for name, array in self._arrays.items()}


def _validated_arrays(data: SampleBuffer | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every dataset as an ``(N, *shape)`` array of its in-memory dtype, equal N."""
    source = data.arrays() if isinstance(data, SampleBuffer) else data
    missing = [spec.name for spec in DATASETS if spec.name not in source]
    if missing:
        raise ValueError(f"dataset {missing[0]!r} is missing (all missing: {missing})")
    unknown = sorted(set(source) - set(BY_NAME))
    if unknown:
        raise ValueError(f"dataset {unknown[0]!r} is not part of the schema")
    arrays: dict[str, np.ndarray] = {}
    length: int | None = None
    for spec in DATASETS:
        array = np.asarray(source[spec.name])
        if array.ndim != 1 + len(spec.shape) or array.shape[1:] != spec.shape:
            raise ValueError(
                f"dataset {spec.name!r}: expected shape (N, {', '.join(map(str, spec.shape))}), "
                f"got {array.shape}"
            )
        if length is None:
            length = array.shape[0]
        elif array.shape[0] != length:
            raise ValueError(
                f"dataset {spec.name!r} has {array.shape[0]} samples, "
                f"{DATASETS[0].name!r} has {length}"
            )
        arrays[spec.name] = _coerce_array(spec, array)
    return arrays


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
            dtype=spec.h5_dtype,
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
    arrays = _validated_arrays(data)
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
