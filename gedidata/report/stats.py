"""Per-channel statistics of valid pixels (mean, std, min, max), merged block by block.

Fuse stores them as attributes of the fused datasets for normalisation; inspect prints
them for any file. Both stream: a `ChannelStats` takes one block of samples at a time,
so memory does not grow with the file.

Integer rasters (uint16 reflectance) are counted in per-channel histograms, which are
exact and cheap to merge; float rasters keep a count, mean and sum of squared
deviations per channel, merged with Chan et al.'s pairwise update so that the std
stays accurate when it is small next to the mean (elevation, for instance).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gedidata.domain.schema import BY_NAME, NODATA

STATISTICS_DATASETS: tuple[str, ...] = ("Sentinel-2 L2A", "CopDEM", "AGBD Raster", "AGBD Values")
"""Datasets whose channels get statistics (WorldCover is a class map: no mean)."""

STATISTICS_ATTRIBUTES: tuple[str, ...] = ("valid_count", "mean", "std", "min", "max")
"""Attribute names written on each dataset of `STATISTICS_DATASETS`."""


class ChannelStats:
    """Running statistics of the valid values of each channel of one dataset.

    A block is ``(n, channels, ...)``; a value is valid when it is finite and not the
    dataset's no-data value (datasets without one count every finite value).
    """

    def __init__(self, name: str) -> None:
        spec = BY_NAME[name]
        if spec.is_string:
            raise ValueError(f"dataset {name!r} holds strings: no statistics")
        self.name = name
        self.channels = spec.shape[0]
        self.nodata = NODATA.get(name)
        self.integer = np.dtype(spec.dtype).kind in "iu" and np.dtype(spec.dtype).itemsize <= 2
        if self.integer:
            self._bins = int(np.iinfo(spec.dtype).max) + 1
            self._histogram = np.zeros((self.channels, self._bins), dtype=np.int64)
        self._count = np.zeros(self.channels, dtype=np.int64)
        self._mean = np.zeros(self.channels, dtype=np.float64)
        self._m2 = np.zeros(self.channels, dtype=np.float64)
        self._min = np.full(self.channels, np.inf)
        self._max = np.full(self.channels, -np.inf)

    def update(self, block: np.ndarray) -> None:
        """Add the values of ``block`` (``(n, channels, ...)``)."""
        if block.ndim < 2 or block.shape[1] != self.channels:
            raise ValueError(
                f"{self.name}: block of shape {block.shape}, expected (n, {self.channels}, …)"
            )
        if not len(block):
            return
        for channel in range(self.channels):
            # one channel at a time: a small contiguous copy, not the whole block's
            values = block[:, channel].reshape(-1)
            if self.integer:
                self._histogram[channel] += np.bincount(values, minlength=self._bins)
                continue
            mask = np.isfinite(values)
            if self.nodata is not None:
                mask &= values != self.nodata
            valid = values if mask.all() else values[mask]
            if valid.size:
                self._merge(channel, valid)

    def _merge(self, channel: int, values: np.ndarray) -> None:
        count = values.size
        mean = float(values.sum(dtype=np.float64)) / count
        m2 = float(np.square(np.subtract(values, mean, dtype=np.float64)).sum())
        total = self._count[channel] + count
        delta = mean - self._mean[channel]
        self._m2[channel] += m2 + delta * delta * self._count[channel] * count / total
        self._mean[channel] += delta * count / total
        self._count[channel] = total
        self._min[channel] = min(self._min[channel], float(values.min()))
        self._max[channel] = max(self._max[channel], float(values.max()))

    def result(self) -> dict[str, np.ndarray]:
        """``valid_count``, ``mean``, ``std`` (population), ``min``, ``max`` per channel.

        A channel without valid values has count 0 and NaN elsewhere.
        """
        if self.integer:
            return self._histogram_result()
        count = self._count.copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(self._m2 / count)
        empty = count == 0
        return {
            "valid_count": count,
            "mean": np.where(empty, np.nan, self._mean),
            "std": np.where(empty, np.nan, std),
            "min": np.where(empty, np.nan, self._min),
            "max": np.where(empty, np.nan, self._max),
        }

    def _histogram_result(self) -> dict[str, np.ndarray]:
        histogram = self._histogram.copy()
        if self.nodata is not None:
            histogram[:, int(self.nodata)] = 0
        values = np.arange(histogram.shape[1], dtype=np.float64)
        count = histogram.sum(axis=1)
        out = {name: np.full(self.channels, np.nan) for name in STATISTICS_ATTRIBUTES[1:]}
        for channel in np.flatnonzero(count):
            weights = histogram[channel].astype(np.float64)
            mean = float(weights @ values) / count[channel]
            out["mean"][channel] = mean
            out["std"][channel] = np.sqrt(float(weights @ (values - mean) ** 2) / count[channel])
            present = np.flatnonzero(histogram[channel])
            out["min"][channel] = present[0]
            out["max"][channel] = present[-1]
        return {"valid_count": count, **out}


def new_statistics() -> dict[str, ChannelStats]:
    """One empty `ChannelStats` per dataset of `STATISTICS_DATASETS`."""
    return {name: ChannelStats(name) for name in STATISTICS_DATASETS}


def write_statistics(datasets: Mapping[str, Any], statistics: Mapping[str, ChannelStats]) -> None:
    """Store each dataset's statistics as its attributes (`STATISTICS_ATTRIBUTES`)."""
    for name, stats in statistics.items():
        for key, value in stats.result().items():
            datasets[name].attrs[key] = value


def read_statistics(dataset: Any) -> dict[str, np.ndarray] | None:
    """The statistics stored on an h5py dataset by `write_statistics`, if any."""
    if not all(key in dataset.attrs for key in STATISTICS_ATTRIBUTES):
        return None
    return {key: np.asarray(dataset.attrs[key]) for key in STATISTICS_ATTRIBUTES}
