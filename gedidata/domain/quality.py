"""Per-window quality rules of stage 3 (pure numpy): SCL shares and DEM slope.

SPEC §4 step 3 (SCL) and step 5 (slope). Each rule returns ``None`` when the window
passes, or the rejection reason.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from gedidata.config import SclLimits

SCL_CLASSES: Mapping[int, str] = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
"""Sentinel-2 L2A scene classification: value -> name (the names of `S2 SCL Stats`)."""

WORLDCOVER_CLASSES: Mapping[int, str] = {
    0: "no data",
    10: "tree cover",
    20: "shrubland",
    30: "grassland",
    40: "cropland",
    50: "built-up",
    60: "bare / sparse vegetation",
    70: "snow and ice",
    80: "permanent water bodies",
    90: "herbaceous wetland",
    95: "mangroves",
    100: "moss and lichen",
}
"""ESA WorldCover class values and names."""

CENTRE_CLASSES = frozenset({4, 5})
"""Classes the central 4 x 4 pixels must all have: vegetation, not vegetated."""

SCL_GROUPS: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("scl_invalid", "invalid", frozenset({0, 1, 7})),
    ("scl_cloud", "cloud", frozenset({8, 9, 10})),
    ("scl_shadow", "shadow", frozenset({2, 3})),
    ("scl_snow", "snow", frozenset({11})),
    ("scl_water", "water", frozenset({6})),
)
"""(reason, `SclLimits` field, classes) of the window-wide rules, in the order checked.

Values outside 0..11 (not SCL classes) count as invalid.
"""

SCL_REASONS: tuple[str, ...] = (*(reason for reason, _, _ in SCL_GROUPS), "scl_centre")
"""Every reason `scl_rejection` returns, in the order the rules are checked."""

CENTRE_HALF = 2
"""The centre block spans rows/cols size/2 - 2 .. size/2 + 1 (14-17 for 32)."""

DEFAULT_MAX_SLOPE = 15.0
"""Largest slope (percent) allowed in the central 4 x 4 pixels."""


def _centre(array: np.ndarray) -> np.ndarray:
    rows, cols = array.shape[-2:]
    r, c = rows // 2, cols // 2
    return array[..., r - CENTRE_HALF : r + CENTRE_HALF, c - CENTRE_HALF : c + CENTRE_HALF]


def _as_window(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 2 * CENTRE_HALF:
        raise ValueError(f"{what}: expected a 2-D window, got shape {array.shape}")
    return array


def scl_rejection(scl: np.ndarray, limits: SclLimits | None = None) -> str | None:
    """None when the SCL window passes, else the reason.

    Rules, checked in this order (the first that fails is the reason), shares over the
    whole window and "≤ limit" passing (25 % of 1024 pixels = 256 pixels passes):

    1. ``scl_invalid``: no data, saturated/defective, unclassified (0, 1, 7)
       ≤ ``limits.invalid`` %;
    2. ``scl_cloud``: cloud medium/high probability, thin cirrus (8, 9, 10)
       ≤ ``limits.cloud`` %;
    3. ``scl_shadow``: dark area pixels, cloud shadows (2, 3) ≤ ``limits.shadow`` %;
    4. ``scl_snow``: snow (11) ≤ ``limits.snow`` %;
    5. ``scl_water``: water (6) ≤ ``limits.water`` %;
    6. ``scl_centre``: the central 4 x 4 pixels (rows/cols 14-17) all vegetation (4)
       or not vegetated (5).

    The window-wide rules come first because they name the cause (a cloud over the
    footprint fails the centre rule as well, and ``scl_cloud`` says more).
    """
    limits = limits or SclLimits()
    scl = _as_window(scl, "SCL")
    counts = np.bincount(scl.ravel().astype(np.int64), minlength=12)
    total = scl.size
    for reason, field, classes in SCL_GROUPS:
        count = int(sum(counts[c] for c in classes))
        if field == "invalid":
            count += int(counts[12:].sum())
        # count / total * 100 <= limit, without the division
        if count * 100 > getattr(limits, field) * total:
            return reason
    centre = _centre(scl)
    accepted = np.zeros(centre.shape, dtype=bool)
    for value in CENTRE_CLASSES:  # (np.isin costs ~40 µs a call, this ~3 µs)
        accepted |= centre == value
    if not accepted.all():
        return "scl_centre"
    return None


def scl_stats(scl: np.ndarray) -> np.ndarray:
    """The `S2 SCL Stats` value: (12, 2) strings, class name and fraction, classes 0..11.

    The fraction is the shortest text that reads back as the exact float
    ``count / pixels`` (e.g. ``'0.25'``, ``'0.0009765625'``; exact for 1024 pixels).
    """
    scl = _as_window(scl, "SCL")
    counts = np.bincount(scl.ravel().astype(np.int64), minlength=12)[:12]
    total = scl.size
    return np.array(
        [[SCL_CLASSES[value], repr(float(counts[value] / total))] for value in range(12)],
        dtype=str,
    )


def horn_slope_percent(elevation: np.ndarray, spacing_m: float = 10.0) -> np.ndarray:
    """Slope in percent, ``100 * sqrt((dz/dx)**2 + (dz/dy)**2)``, by Horn's method.

    `elevation` is ``(..., h + 2, w + 2)``: the window (or a stack of windows) with a
    one-pixel margin all round, so every output pixel has its eight real neighbours; the
    result is ``(..., h, w)`` (float64).
    With the 3 x 3 neighbourhood ``a b c / d e f / g h i``::

        dz/dx = ((c + 2f + i) - (a + 2d + g)) / (8 * spacing)
        dz/dy = ((g + 2h + i) - (a + 2b + c)) / (8 * spacing)

    NaN elevations give NaN slopes where they are used.
    """
    z: npt.NDArray[np.float64] = np.asarray(elevation, dtype=np.float64)
    if z.ndim < 2 or min(z.shape[-2:]) < 3:
        raise ValueError(f"elevation: expected (..., h, w) of at least 3 x 3, got {z.shape}")
    if not spacing_m > 0:
        raise ValueError(f"spacing_m must be > 0, got {spacing_m}")

    def shifted(dr: int, dc: int) -> npt.NDArray[np.float64]:
        rows, cols = z.shape[-2:]
        return z[..., 1 + dr : rows - 1 + dr, 1 + dc : cols - 1 + dc]

    a, b, c = shifted(-1, -1), shifted(-1, 0), shifted(-1, 1)
    d, f = shifted(0, -1), shifted(0, 1)
    g, h, i = shifted(1, -1), shifted(1, 0), shifted(1, 1)
    dz_dx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * spacing_m)
    dz_dy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * spacing_m)
    return 100.0 * np.sqrt(dz_dx**2 + dz_dy**2)


def slope_rejection(slope: np.ndarray, max_slope: float = DEFAULT_MAX_SLOPE) -> str | None:
    """``'slope'`` if any central 4 x 4 slope exceeds `max_slope` (percent), else None.

    Exactly `max_slope` passes. A NaN in the centre (no DEM value) also fails: the
    slope there is unknown. Callers that want a ``nodata`` reason check the DEM first.
    """
    centre = _centre(_as_window(slope, "slope"))
    if not (centre <= max_slope).all():
        return "slope"
    return None
