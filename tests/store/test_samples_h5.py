"""Sample HDF5 files (SPEC §6): round trip, attributes, chunking, checks, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from gedidata import __version__
from gedidata.domain.schema import BAND_NAMES, SCHEMA_VERSION, SampleBuffer
from gedidata.store.samples_h5 import (
    SchemaError,
    check_file,
    read_arrays,
    read_schema,
    write_samples,
)
from tests.domain.test_schema import EXPECTED, dtype_name, filled_buffer, make_sample


def test_round_trip_three_samples(tmp_path: Path) -> None:
    path = tmp_path / "batch_3_0.h5"
    buffer = filled_buffer(3)
    assert buffer.count == 3
    attrs = {"thresholds": {"slope": 15.0, "cloud": 25}, "source_profile": "planetary-computer"}
    assert write_samples(path, buffer, attrs) == 3
    assert check_file(path) == 3
    assert [(n, dtype_name(d), s) for n, d, s in read_schema(path)] == EXPECTED

    back = read_arrays(path)
    samples = [make_sample(i) for i in range(3)]
    np.testing.assert_array_equal(back["Sentinel-2 L2A"], [s.sentinel2 for s in samples])
    np.testing.assert_array_equal(back["CopDEM"], [s.copdem for s in samples])
    np.testing.assert_array_equal(back["WorldCover"][:, 0, 0, 0], [10, 11, 12])
    np.testing.assert_array_equal(back["Transforms"][1], tuple(samples[1].transform))
    assert back["CRS"].tolist() == [["EPSG:32630"], ["EPSG:32631"], ["EPSG:32632"]]
    assert back["S2 SCL Stats"][2].tolist() == samples[2].scl_stats.tolist()
    assert back["AGBD Values"].dtype == np.float32
    np.testing.assert_array_equal(back["AGBD Values"][:, 0], [12.5, 13.5, 14.5])
    np.testing.assert_array_equal(back["AGBD Standard Error"][:, 0], [1.25, 2.25, 3.25])
    assert back["GEDI Shot Number"][:, 0].tolist() == [65150600200301000 + i for i in range(3)]
    assert back["GEDI Delta Time"][2, 0] == "66150849.212345678"
    np.testing.assert_array_equal(back["GEDI Lat Lon"], [[45.5, 9.25], [46.5, 8.25], [47.5, 7.25]])
    assert back["Sentinel-2 Processing Baseline"][:, 0].tolist() == ["02.14", "04.00", "02.14"]
    assert back["Sentinel-2 Offset Removed"][:, 0].tolist() == [0, 1000, 0]
    assert back["Sentinel-2 Offset Removed"].dtype == np.uint16

    with h5py.File(path, "r") as file:
        attrs_back = dict(file.attrs)
        data = file["data"]
        assert list(data) == [name for name, _, _ in EXPECTED]  # creation order kept
        s2 = data["Sentinel-2 L2A"]
        assert s2.chunks == (1, 12, 32, 32)
        assert s2.compression == "gzip"
        for name in ("WorldCover", "CopDEM", "AGBD Raster"):
            assert data[name].chunks[0] == 1
        assert data["GEDI Shot Number"].chunks == (1024, 1)
        assert h5py.check_string_dtype(data["CRS"].dtype).encoding == "utf-8"
        assert h5py.check_string_dtype(data["CRS"].dtype).length is None  # variable length
    assert attrs_back["schema_version"] == SCHEMA_VERSION
    assert attrs_back["gedidata_version"] == __version__
    assert list(attrs_back["band_names"]) == list(BAND_NAMES)
    assert json.loads(attrs_back["units"])["AGBD Values"] == "Mg/ha"
    assert json.loads(attrs_back["nodata"]) == {
        "Sentinel-2 L2A": 0,
        "WorldCover": 0,
        "CopDEM": -9999.0,
        "AGBD Raster": -9999.0,
    }
    assert json.loads(attrs_back["thresholds"]) == {"slope": 15.0, "cloud": 25}
    assert attrs_back["source_profile"] == "planetary-computer"


def test_write_from_arrays_mapping(tmp_path: Path) -> None:
    arrays = filled_buffer(2).arrays()
    assert write_samples(tmp_path / "a.h5", arrays, {}) == 2
    assert check_file(tmp_path / "a.h5") == 2


def test_zero_samples(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    assert write_samples(path, SampleBuffer(5), {"note": "empty batch"}) == 0
    assert check_file(path) == 0
    assert [(n, dtype_name(d), s) for n, d, s in read_schema(path)] == EXPECTED
    back = read_arrays(path)
    assert back["Sentinel-2 L2A"].shape == (0, 12, 32, 32)
    assert back["CRS"].shape == (0, 1)


def test_write_rejects_unequal_lengths(tmp_path: Path) -> None:
    arrays = dict(filled_buffer(2).arrays())
    arrays["GEDI Lat Lon"] = arrays["GEDI Lat Lon"][:1]
    with pytest.raises(ValueError, match="'GEDI Lat Lon'"):
        write_samples(tmp_path / "x.h5", arrays, {})
    assert not list(tmp_path.iterdir())


def _copy_with(src: Path, dst: Path, change: str, name: str) -> None:
    """Copy `src` to `dst`, changing dataset `name`: drop, wrong dtype, or one sample short."""
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        group = b.create_group("data")
        for key, item in a["data"].items():
            if key == name and change == "drop":
                continue
            data = item[...]
            if key == name and change == "dtype":
                data = data.astype(np.float64)
            if key == name and change == "short":
                data = data[:-1]
            if key == name and change == "shape":
                data = data[..., :16]
            keep_dtype = key != name or change != "dtype"
            group.create_dataset(key, data=data, dtype=item.dtype if keep_dtype else None)
        if change == "extra":
            group.create_dataset(name, data=np.zeros((3, 1)))


@pytest.mark.parametrize(
    ("change", "name", "message"),
    [
        ("drop", "WorldCover", "missing"),
        ("dtype", "Sentinel-2 Offset Removed", "dtype float64"),
        ("dtype", "Sentinel-2 L2A", "dtype float64"),
        ("short", "GEDI Lat Lon", "2 samples, but 'Sentinel-2 L2A' has 3"),
        ("shape", "CopDEM", "shape"),
        ("extra", "Extra Thing", "not part of the schema"),
    ],
)
def test_check_file_names_the_dataset(tmp_path: Path, change: str, name: str, message: str) -> None:
    good = tmp_path / "good.h5"
    write_samples(good, filled_buffer(3), {})
    bad = tmp_path / "bad.h5"
    _copy_with(good, bad, change, name)
    with pytest.raises(SchemaError) as caught:
        check_file(bad)
    text = str(caught.value)
    assert str(bad) in text
    assert repr(name) in text
    assert message in text
    assert caught.value.dataset == name


def test_check_file_string_dataset_stored_as_number(tmp_path: Path) -> None:
    good = tmp_path / "good.h5"
    write_samples(good, filled_buffer(1), {})
    with h5py.File(good, "a") as file:
        del file["data/CRS"]
        file["data"].create_dataset("CRS", data=np.array([[32632]]))
    with pytest.raises(SchemaError, match="'CRS': dtype int64, expected string"):
        check_file(good)


def test_check_file_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "broken.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(SchemaError, match=r"broken\.h5: not a readable HDF5 file"):
        check_file(path)
    with h5py.File(tmp_path / "nogroup.h5", "w"):
        pass
    with pytest.raises(SchemaError, match="no group 'data'"):
        check_file(tmp_path / "nogroup.h5")


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "batch_3_0.h5"
    real = h5py.Group.create_dataset
    calls = []

    def failing(self: h5py.Group, name: str, *args: object, **kwargs: object) -> h5py.Dataset:
        calls.append(name)
        if name == "GEDI Shot Number":
            raise RuntimeError("disk full")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_samples(path, filled_buffer(3), {})
    assert "Sentinel-2 L2A" in calls  # it failed midway, after writing started
    assert list(tmp_path.iterdir()) == []

    # an existing file under the final name is left as it was
    monkeypatch.setattr(h5py.Group, "create_dataset", real)
    write_samples(path, filled_buffer(1), {})
    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError):
        write_samples(path, filled_buffer(3), {})
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert check_file(path) == 1


def test_attrs_cannot_change_schema_version(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="schema_version"):
        write_samples(tmp_path / "x.h5", SampleBuffer(0), {"schema_version": "0.1"})
