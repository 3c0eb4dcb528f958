"""The dataset layout of batch and fused files, without HDF5 (SPEC §6): pure definitions.

Every file has a group `GROUP` with the datasets of `DATASETS`, in that order, whose
first axis is the sample. Batch files (stage 3) and fused files (stage 4) are identical
in layout; `gedidata.store.samples_h5` writes, reads and checks them.

- `DatasetSpec` / `DATASETS`: name, dtype (a numpy dtype or ``"string"``), per-sample
  shape, fill value, units and description of every dataset; `BY_NAME`, `UNITS`.
- `S2_BANDS` / `BAND_NAMES`, `COPDEM_BANDS`: the channel orders; `NODATA` and the
  no-data value of each raster dataset.
- `Sample`: one sample's values; `SampleBuffer`: preallocated arrays that collect them;
  `coerce_value` and `validated_arrays`: the type and shape rules of a value and of a
  whole file's arrays.

Strings are ``object`` arrays of ``str`` in memory (`DatasetSpec.array_dtype`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

SCHEMA_VERSION = "1.0"
"""Version of the layout below; change it whenever a dataset changes."""

GROUP = "data"
"""Name of the group that holds every dataset."""

STRING = "string"
"""Marker dtype of string datasets (variable-length UTF-8 in the file)."""

WINDOW = 32
"""Side of a sample window, pixels (10 m)."""

S2_BANDS: tuple[str, ...] = (
    "SCL",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B11",
    "B12",
)
"""Channel order of the `Sentinel-2 L2A` dataset."""
BAND_NAMES: tuple[str, ...] = S2_BANDS
"""Channel order of `Sentinel-2 L2A` (the same tuple as `S2_BANDS`)."""
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


def validated_arrays(data: SampleBuffer | Mapping[str, Any]) -> dict[str, np.ndarray]:
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
