"""`h5chunks.write_rows`: chunks compressed outside HDF5 are the ones HDF5 would make."""

from __future__ import annotations

import zlib

import h5py
import numpy as np
import pytest

from gedidata.store.h5chunks import encoded_chunks, write_rows


def _dataset(file: h5py.File, name: str, values: np.ndarray, **options) -> h5py.Dataset:
    return file.create_dataset(
        name,
        shape=values.shape,
        dtype=values.dtype,
        chunks=(1, *values.shape[1:]),
        fillvalue=7,
        **({"compression_opts": 1} if options.get("compression") == "gzip" else {}) | options,
    )


def _samples(dtype: str, shape: tuple[int, ...], step: int = 1) -> np.ndarray:
    """A ramp across both bytes of a uint16 (compressible, as rasters are)."""
    top = 200 if np.dtype(dtype).itemsize == 1 else 5000
    return (np.arange(int(np.prod(shape))) * step % top).reshape(shape).astype(dtype)


@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("uint16", (6, 12, 32, 32)), ("float32", (5, 2, 32, 32)), ("uint8", (4, 1, 32, 32))],
)
def test_rows_read_back_through_hdf5s_own_filters(tmp_path, dtype, shape) -> None:
    values = _samples(dtype, shape)
    with h5py.File(tmp_path / "a.h5", "w") as file:
        dataset = _dataset(file, "x", values, compression="gzip", compression_opts=1, shuffle=True)
        write_rows(dataset, 0, values)
    with h5py.File(tmp_path / "a.h5", "r") as file:
        dataset = file["x"]
        assert (dataset.compression, dataset.compression_opts, dataset.shuffle) == ("gzip", 1, True)
        np.testing.assert_array_equal(dataset[...], values)
        mask, raw = dataset.id.read_direct_chunk((2,) + (0,) * (len(shape) - 1))
        assert mask == 0  # every declared filter was applied
        assert len(raw) < values[2].nbytes / 2  # compressed


@pytest.mark.parametrize(
    ("dtype", "shuffle"), [("uint16", True), ("float32", True), ("uint16", False)]
)
def test_filtered_bytes_equal_what_hdf5_makes(tmp_path, dtype, shuffle) -> None:
    """Inflated, each chunk is byte for byte what HDF5's own shuffle filter produced."""
    values = _samples(dtype, (3, 2, 32, 32), step=3)
    with h5py.File(tmp_path / "b.h5", "w") as file:
        by_hdf5 = _dataset(file, "h", values, compression="gzip", shuffle=shuffle)
        by_hdf5[...] = values
        ours = _dataset(file, "o", values, compression="gzip", shuffle=shuffle)
        mine = encoded_chunks(values, ours)
        for index in range(len(values)):
            _, raw = by_hdf5.id.read_direct_chunk((index, 0, 0, 0))
            assert zlib.decompress(mine[index]) == zlib.decompress(raw)
    if not shuffle:
        assert zlib.decompress(mine[0]) == values[0].tobytes()


def test_rows_at_an_offset_leave_the_others_alone(tmp_path) -> None:
    values = _samples("uint16", (10, 1, 32, 32))
    with h5py.File(tmp_path / "c.h5", "w") as file:
        dataset = _dataset(file, "x", values, compression="gzip", shuffle=True)
        write_rows(dataset, 4, values[:3])
        write_rows(dataset, 9, values[3:4])
        write_rows(dataset, 0, values[:0])  # nothing
        stored = dataset[...]
    np.testing.assert_array_equal(stored[4:7], values[:3])
    np.testing.assert_array_equal(stored[9], values[3])
    assert (stored[[0, 1, 2, 3, 7, 8]] == 7).all()  # the fill value: never written


@pytest.mark.parametrize(
    "options",
    [
        {},  # uncompressed
        {"compression": "gzip", "compression_opts": 4},  # a level ISA-L does not have
        {"compression": "lzf"},
        {"compression": "gzip", "fletcher32": True},
    ],
)
def test_other_layouts_are_left_to_hdf5(tmp_path, options) -> None:
    values = _samples("uint16", (4, 1, 32, 32))
    with h5py.File(tmp_path / "d.h5", "w") as file:
        dataset = _dataset(file, "x", values, **options)
        write_rows(dataset, 0, values)
        np.testing.assert_array_equal(dataset[...], values)
        # a dataset chunked by many samples at a time goes to HDF5 too
        many = file.create_dataset("m", shape=(4, 9), dtype="f8", chunks=(4, 9), compression="gzip")
        write_rows(many, 0, np.arange(36.0).reshape(4, 9))
        np.testing.assert_array_equal(many[...], np.arange(36.0).reshape(4, 9))


def test_rows_that_do_not_fit_are_refused(tmp_path) -> None:
    values = _samples("uint16", (3, 1, 32, 32))
    with h5py.File(tmp_path / "e.h5", "w") as file:
        dataset = _dataset(file, "x", values, compression="gzip", shuffle=True)
        with pytest.raises(ValueError, match=r"'/x'.*outside its 3 samples"):
            write_rows(dataset, 1, values)
        with pytest.raises(ValueError, match=r"'/x'.*\(1, 32, 32\) expected"):
            write_rows(dataset, 0, values[:, :, :16])


def test_values_of_another_dtype_are_converted_by_hdf5(tmp_path) -> None:
    """A cast numpy would wrap (70000 into uint16) is left to HDF5, which clips it."""
    with h5py.File(tmp_path / "f.h5", "w") as file:
        dataset = file.create_dataset(
            "x", shape=(2, 1, 2, 2), dtype="uint16", chunks=(1, 1, 2, 2),
            compression="gzip", compression_opts=1, shuffle=True,
        )  # fmt: skip
        write_rows(dataset, 0, np.array([[[[1, 70000], [3, 4]]], [[[5, 6], [7, 8]]]]))
        stored = dataset[...]
    assert stored[0, 0].tolist() == [[1, 65535], [3, 4]]
    assert stored[1, 0].tolist() == [[5, 6], [7, 8]]
