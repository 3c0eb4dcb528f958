"""Per-channel statistics of valid pixels, merged block by block."""

from __future__ import annotations

import numpy as np
import pytest

from gedidata.report.stats import ChannelStats


def test_uint16_histogram_statistics_equal_numpy_over_valid_pixels():
    rng = np.random.default_rng(1)
    data = rng.integers(0, 12000, size=(50, 12, 32, 32), dtype=np.uint16)
    data[:, 3] = 0  # a channel without valid pixels
    stats = ChannelStats("Sentinel-2 L2A")
    for start in range(0, 50, 7):  # uneven blocks
        stats.update(data[start : start + 7])
    result = stats.result()
    for channel in range(12):
        values = data[:, channel].ravel().astype(np.float64)
        valid = values[values != 0]
        if channel == 3:
            assert result["valid_count"][3] == 0
            assert np.isnan(result["mean"][3]) and np.isnan(result["max"][3])
            continue
        assert result["valid_count"][channel] == valid.size
        assert result["mean"][channel] == pytest.approx(valid.mean(), rel=1e-12)
        assert result["std"][channel] == pytest.approx(valid.std(), rel=1e-10)
        assert (result["min"][channel], result["max"][channel]) == (valid.min(), valid.max())


def test_float_statistics_skip_nodata_and_nan_and_keep_a_small_std_exact():
    # elevation near 8,000 m varying by centimetres: a naive sum of squares loses it
    rng = np.random.default_rng(2)
    data = (8000.0 + rng.normal(0.0, 0.01, size=(40, 2, 32, 32))).astype(np.float32)
    data[0, 0, 0, :5] = -9999.0
    data[1, 1, 3, 3] = np.nan
    stats = ChannelStats("CopDEM")
    for start in range(0, 40, 3):
        stats.update(data[start : start + 3])
    result = stats.result()
    for channel in range(2):
        values = data[:, channel].ravel().astype(np.float64)
        valid = values[np.isfinite(values) & (values != -9999.0)]
        assert result["valid_count"][channel] == valid.size
        assert result["mean"][channel] == pytest.approx(valid.mean(), rel=1e-12)
        assert result["std"][channel] == pytest.approx(valid.std(), rel=1e-6)
        assert result["min"][channel] == valid.min()


def test_wrong_block_shape_and_string_datasets_are_refused():
    with pytest.raises(ValueError, match="CopDEM"):
        ChannelStats("CopDEM").update(np.zeros((2, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="strings"):
        ChannelStats("CRS")
