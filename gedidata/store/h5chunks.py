"""Writing rows of HDF5 datasets chunked one sample per chunk, compressed here.

HDF5 runs its deflate filter with the zlib it was built with: ~110 MB/s at level 1
on this project's machine, a sixth of an extract worker's time at high footprint
density. ISA-L's deflate (`isal`) writes the same kind of zlib stream ~3.5x faster,
at nearly the same size. So each sample's chunk goes through exactly the filters
the dataset declares (byte shuffle, then deflate) here, and is stored as it is with
``write_direct_chunk``: every HDF5 reader decodes it with its own filters, and the
file cannot be told apart from one HDF5 compressed itself (but for the bytes of the
deflate streams).
"""

from __future__ import annotations

import h5py
import numpy as np
from isal import isal_zlib

ISAL_MAX_LEVEL = 3
"""ISA-L's deflate has levels 0-3; a dataset declared with a higher gzip level is
left to HDF5."""


def write_rows(dataset: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """``dataset[start : start + len(values)] = values``.

    When the dataset's chunks are one sample each, deflate (with or without the shuffle
    filter) is its only compression and ``values`` already have its dtype, the chunks
    are compressed here and written directly; otherwise HDF5 writes them.
    """
    values = np.asarray(values)
    if not len(values):
        return
    if values.shape[1:] != dataset.shape[1:]:
        raise ValueError(
            f"dataset {dataset.name!r}: rows of shape {dataset.shape[1:]} expected, "
            f"got {values.shape[1:]}"
        )
    if start < 0 or start + len(values) > dataset.shape[0]:
        raise ValueError(
            f"dataset {dataset.name!r}: rows {start}..{start + len(values) - 1} are "
            f"outside its {dataset.shape[0]} samples"
        )
    # values of another dtype go through HDF5's conversion (it clips where a cast wraps)
    if values.dtype != dataset.dtype or not _compressed_per_sample(dataset):
        dataset[start : start + len(values)] = values
        return
    rest = (0,) * (len(dataset.shape) - 1)
    write = dataset.id.write_direct_chunk
    for offset, chunk in enumerate(encoded_chunks(values, dataset)):
        write((start + offset, *rest), chunk)


def encoded_chunks(values: np.ndarray, dataset: h5py.Dataset) -> list[bytes]:
    """Each row of ``values`` (of the dataset's dtype) as the bytes the dataset's filters
    (shuffle, if declared, then deflate at a level ISA-L has) make of it."""
    data = np.ascontiguousarray(values)
    size = data.dtype.itemsize
    rows = data.reshape(len(data), -1).view(np.uint8)
    if dataset.shuffle and size > 1:
        # HDF5's shuffle: every element's first byte, then every second byte, ...
        rows = rows.reshape(len(data), -1, size).transpose(0, 2, 1).reshape(len(data), -1)
        rows = np.ascontiguousarray(rows)
    level = int(dataset.compression_opts)
    return [isal_zlib.compress(row, level) for row in rows]


def _compressed_per_sample(dataset: h5py.Dataset) -> bool:
    return (
        dataset.chunks is not None
        and dataset.chunks == (1, *dataset.shape[1:])
        and dataset.compression == "gzip"
        and 0 <= int(dataset.compression_opts) <= ISAL_MAX_LEVEL
        and not dataset.fletcher32
        and dataset.scaleoffset is None
    )
