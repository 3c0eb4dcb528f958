"""Quality rules: SCL shares and centre, SCL stats, Horn slope, slope rejection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gedidata.config import SclLimits
from gedidata.domain.quality import (
    SCL_CLASSES,
    SCL_REASONS,
    horn_slope_percent,
    scl_rejection,
    scl_stats,
    slope_rejection,
)


def window(fill: int = 4) -> np.ndarray:
    return np.full((32, 32), fill, dtype=np.uint8)


def with_pixels(classes: list[int], count: int, base: int = 4) -> np.ndarray:
    """A vegetation window whose first `count` pixels (row-major, outside the centre
    rows 14-17 as long as count <= 448) cycle through `classes`."""
    scl = window(base)
    flat = scl.reshape(-1)
    flat[:count] = np.resize(np.array(classes, dtype=np.uint8), count)
    return scl


def test_clean_window_passes() -> None:
    assert scl_rejection(window(4)) is None
    assert scl_rejection(window(5)) is None
    mixed = window(4)
    mixed[::2] = 5
    assert scl_rejection(mixed) is None


def test_default_limits_match_spec() -> None:
    limits = SclLimits()
    assert (limits.cloud, limits.shadow, limits.snow, limits.water, limits.invalid) == (
        25.0,
        25.0,
        25.0,
        25.0,
        5.0,
    )


# 25 % of 1024 = 256 pixels; 5 % of 1024 = 51.2 -> 51 pass, 52 fail
@pytest.mark.parametrize(
    ("classes", "at_limit", "reason"),
    [
        ([8, 9, 10], 256, "scl_cloud"),
        ([8], 256, "scl_cloud"),
        ([10], 256, "scl_cloud"),
        ([2, 3], 256, "scl_shadow"),
        ([11], 256, "scl_snow"),
        ([6], 256, "scl_water"),
        ([0, 1, 7], 51, "scl_invalid"),
        ([7], 51, "scl_invalid"),
    ],
)
def test_share_rules_at_and_over_limit(classes: list[int], at_limit: int, reason: str) -> None:
    assert scl_rejection(with_pixels(classes, at_limit), SclLimits()) is None
    assert scl_rejection(with_pixels(classes, at_limit + 1), SclLimits()) == reason


def test_limits_are_used() -> None:
    scl = with_pixels([6], 100)  # 9.77 % water
    assert scl_rejection(scl, SclLimits(water=10.0)) is None
    assert scl_rejection(scl, SclLimits(water=9.0)) == "scl_water"
    assert scl_rejection(with_pixels([0], 0), SclLimits(invalid=0.0)) is None
    assert scl_rejection(with_pixels([0], 1), SclLimits(invalid=0.0)) == "scl_invalid"


def test_centre_rule() -> None:
    for row, col in [(14, 14), (17, 17), (14, 17), (16, 15)]:
        scl = window(4)
        scl[row, col] = 6
        assert scl_rejection(scl) == "scl_centre", (row, col)
    # just outside the centre 4 x 4: passes
    for row, col in [(13, 14), (18, 17), (14, 13), (17, 18)]:
        scl = window(4)
        scl[row, col] = 6
        assert scl_rejection(scl) is None, (row, col)
    scl = window(5)
    scl[14:18, 14:18] = 4
    assert scl_rejection(scl) is None


def test_rule_order() -> None:
    assert SCL_REASONS == (
        "scl_invalid",
        "scl_cloud",
        "scl_shadow",
        "scl_snow",
        "scl_water",
        "scl_centre",
    )
    # every rule fails at once (limits of 20 %: 205 of 1024 pixels fail, 5 %: 52 fail);
    # removing the class of the reported rule, in turn, reveals the next rule
    limits = SclLimits(cloud=20.0, shadow=20.0, snow=20.0, water=20.0, invalid=5.0)
    scl = window(4)
    scl[14:18, 14:18] = 6  # centre: water (16 pixels)
    centre = np.zeros((32, 32), dtype=bool)
    centre[14:18, 14:18] = True
    outside = np.flatnonzero(~centre.reshape(-1))
    flat = scl.reshape(-1)
    start = 0
    for value, count in [(0, 52), (9, 205), (3, 205), (11, 205), (6, 205 - 16)]:
        flat[outside[start : start + count]] = value
        start += count
    assert [int((scl == v).sum()) for v in (0, 9, 3, 11, 6)] == [52, 205, 205, 205, 205]
    for value, reason in [
        (0, "scl_invalid"),
        (9, "scl_cloud"),
        (3, "scl_shadow"),
        (11, "scl_snow"),
        (6, "scl_water"),
    ]:
        assert scl_rejection(scl, limits) == reason
        scl[(scl == value) & ~centre] = 4
    assert scl_rejection(scl, limits) == "scl_centre"
    scl[centre] = 5
    assert scl_rejection(scl, limits) is None


def test_out_of_range_values_count_as_invalid() -> None:
    assert scl_rejection(with_pixels([255], 52)) == "scl_invalid"
    assert scl_rejection(with_pixels([12], 51)) is None


def test_scl_stats() -> None:
    scl = window(4)
    flat = scl.reshape(-1)
    counts = {0: 1, 2: 3, 6: 256, 8: 100, 11: 7}
    start = 0
    for value, count in counts.items():
        flat[start : start + count] = value
        start += count
    stats = scl_stats(scl)
    assert stats.shape == (12, 2)
    assert stats[:, 0].tolist() == [SCL_CLASSES[k] for k in range(12)]
    assert stats[:, 0].tolist()[:3] == ["no_data", "saturated_or_defective", "dark_area_pixels"]
    fractions = [float(v) for v in stats[:, 1]]
    expected = {k: counts.get(k, 0) for k in range(12)}
    expected[4] = 1024 - sum(counts.values())
    assert fractions == [expected[k] / 1024 for k in range(12)]  # exact
    assert math.fsum(fractions) == 1.0
    assert stats[6, 1] == "0.25"
    assert stats[0, 1] == "0.0009765625"


def test_horn_slope_of_a_plane_is_exact() -> None:
    a, b = 0.03, -0.12
    rows, cols = np.mgrid[0:34, 0:34].astype(np.float64)
    x, y = cols * 10.0, rows * 10.0
    slope = horn_slope_percent(a * x + b * y + 250.0, spacing_m=10.0)
    assert slope.shape == (32, 32)
    np.testing.assert_allclose(slope, 100 * math.hypot(a, b), rtol=0, atol=1e-9)
    # other spacing: same plane sampled every 30 m
    slope30 = horn_slope_percent(a * cols * 30 + b * rows * 30, spacing_m=30.0)
    np.testing.assert_allclose(slope30, 100 * math.hypot(a, b), rtol=0, atol=1e-9)


def test_horn_slope_hand_computed() -> None:
    # 3 x 3 neighbourhood a b c / d e f / g h i
    z = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0], [2.0, 9.0, 8.0]])
    # dz/dx = ((3 + 2*7 + 8) - (1 + 2*4 + 2)) / 80 = 14 / 80
    # dz/dy = ((2 + 2*9 + 8) - (1 + 2*2 + 3)) / 80 = 20 / 80
    expected = 100 * math.sqrt((14 / 80) ** 2 + (20 / 80) ** 2)
    slope = horn_slope_percent(z, 10.0)
    assert slope.shape == (1, 1)
    assert slope[0, 0] == pytest.approx(expected, abs=1e-12)


def test_horn_slope_of_a_parabola() -> None:
    # z = x^2 with x = 10 * col on a 4 x 5 grid (2 x 3 interior)
    cols = np.arange(5, dtype=np.float64)
    z = np.tile((10 * cols) ** 2, (4, 1))
    slope = horn_slope_percent(z, 10.0)
    # interior col c: ((x+10)^2 - (x-10)^2) * 4 / 80 = 40x * 4 / 80 = 2x, x = 10c -> 2000c %
    np.testing.assert_allclose(slope, [[2000.0, 4000.0, 6000.0]] * 2, rtol=0, atol=1e-9)


def test_horn_slope_reads_the_margin() -> None:
    # flat window, a spike only in the margin row: the edge pixels feel it
    z = np.zeros((34, 34))
    z[0, 5] = 80.0
    slope = horn_slope_percent(z)
    # pixel (0, c) is z[1, c+1]; its neighbourhood row above is z[0, c:c+3]
    # spike at z[0, 5]: for output col 4 it is `b` (weight 2), for cols 3 and 5 it is c / a
    assert slope[0, 4] == pytest.approx(100 * (2 * 80 / 80))
    assert slope[0, 3] == pytest.approx(100 * math.hypot(1.0, 1.0))
    assert slope[1].max() == 0.0


def test_slope_rejection() -> None:
    slope = np.zeros((32, 32))
    slope[14:18, 14:18] = 15.0
    assert slope_rejection(slope) is None
    slope[17, 14] = 15.01
    assert slope_rejection(slope) == "slope"
    slope = np.full((32, 32), 90.0)
    slope[14:18, 14:18] = 3.0
    assert slope_rejection(slope) is None  # only the centre counts
    assert slope_rejection(slope, max_slope=2.9) == "slope"
    slope[15, 15] = np.nan
    assert slope_rejection(slope) == "slope"
