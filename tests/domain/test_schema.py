"""The dataset layout (SPEC §6) without HDF5: the table, channel order, sample values."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from gedidata.domain import schema
from gedidata.domain.schema import DATASETS, Sample, SampleBuffer

S = "string"
EXPECTED = [
    ("Sentinel-2 L2A", "uint16", (12, 32, 32)),
    ("WorldCover", "uint8", (1, 32, 32)),
    ("CopDEM", "float32", (2, 32, 32)),
    ("AGBD Raster", "float32", (1, 32, 32)),
    ("Transforms", "float64", (9,)),
    ("CRS", S, (1,)),
    ("S2 SCL Stats", S, (12, 2)),
    ("Sentinel-2 Product Name", S, (1,)),
    ("WorldCover Tile Name", S, (1,)),
    ("CopDEM Tile Name", S, (1,)),
    ("AGBD Values", "float32", (1,)),
    ("AGBD Standard Error", "float32", (1,)),
    ("GEDI Product Name", S, (1,)),
    ("GEDI Shot Number", "int64", (1,)),
    ("GEDI Acquisition Time", S, (1,)),
    ("GEDI Delta Time", S, (1,)),
    ("GEDI Lat Lon", "float64", (2,)),
    ("Sentinel-2 Processing Baseline", S, (1,)),
    ("Sentinel-2 Offset Removed", "uint16", (1,)),
]


def dtype_name(dtype: object) -> str:
    return dtype if isinstance(dtype, str) else np.dtype(dtype).name


def make_sample(i: int) -> Sample:
    rng = np.random.default_rng(i)
    transform = Affine(10.0, 0.0, 500000.0 + 320 * i, 0.0, -10.0, 6000000.0)
    return Sample(
        sentinel2=rng.integers(0, 12000, (12, 32, 32)).astype(np.uint16),
        worldcover=np.full((1, 32, 32), 10 + i, dtype=np.uint8),
        copdem=rng.normal(100, 5, (2, 32, 32)).astype(np.float32),
        agbd_raster=np.full((1, 32, 32), -9999.0, dtype=np.float32),
        transform=transform,
        crs=f"EPSG:3263{i}",
        scl_stats=np.array([[f"class{k}", f"{k / 66:.4f}"] for k in range(12)]),
        sentinel2_product=f"S2A_MSIL2A_2020060{i}T103021_N0214_R108_T32TMT_20200601T130513",
        worldcover_tile="ESA_WorldCover_10m_2020_v100_N45E009_Map",
        copdem_tile="Copernicus_DSM_COG_10_N45_00_E009_00_DEM",
        agbd=12.5 + i,
        agbd_se=1.25 + i,
        gedi_product="GEDI04_A_2020036151358_O06515_02_T00198_02_002_01_V002.h5",
        shot_number=65150600200301000 + i,
        acquisition_time="2020-02-05 15:13:58",
        delta_time=f"66150849.{i}12345678",
        lat_lon=(45.5 + i, 9.25 - i),
        processing_baseline="04.00" if i % 2 else "02.14",
        offset_removed=1000 if i % 2 else 0,
    )


def filled_buffer(n: int) -> SampleBuffer:
    buffer = SampleBuffer(n)
    for i in range(n):
        buffer.append(make_sample(i))
    return buffer


def test_datasets_match_spec_table() -> None:
    got = [(spec.name, dtype_name(spec.dtype), spec.shape) for spec in DATASETS]
    assert got == EXPECTED
    assert len(DATASETS) == 19


def test_band_names_are_the_channel_order() -> None:
    assert schema.BAND_NAMES == (
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


def test_buffer_rejects_bad_values_naming_the_dataset() -> None:
    buffer = SampleBuffer(2)
    good = make_sample(0)
    bad_shape = good.__class__(**{**good.__dict__, "copdem": np.zeros((1, 32, 32), np.float32)})
    with pytest.raises(ValueError, match="'CopDEM'"):
        buffer.append(bad_shape)
    bad_dtype = good.__class__(**{**good.__dict__, "sentinel2": np.zeros((12, 32, 32), np.float32)})
    with pytest.raises(ValueError, match="'Sentinel-2 L2A'"):
        buffer.append(bad_dtype)
    bad_string = good.__class__(**{**good.__dict__, "crs": 32632})
    with pytest.raises(ValueError, match="'CRS'"):
        buffer.append(bad_string)
    out_of_range = good.__class__(**{**good.__dict__, "offset_removed": -1000})
    with pytest.raises(ValueError, match="'Sentinel-2 Offset Removed'"):
        buffer.append(out_of_range)
    assert buffer.count == 0  # nothing half-appended
    buffer.append(good)
    buffer.append(good)
    with pytest.raises(ValueError, match="full"):
        buffer.append(good)
