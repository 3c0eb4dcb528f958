"""GEDI L4A product facts and the footprint quality rules (pure: no file I/O).

Everything that describes the L4A product itself — beam names, field names, the fill
value, the granule file-name convention — and the rule that decides which footprints
are kept lives here, so the reader, the generator and the tests share one definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

FILL_VALUE = -9999.0
"""Fill value of the L4A float fields."""

DELTA_TIME_EPOCH = datetime(2018, 1, 1, tzinfo=UTC)
"""`delta_time` counts seconds from this instant."""

BEAM_NAMES: tuple[str, ...] = (
    "BEAM0000",
    "BEAM0001",
    "BEAM0010",
    "BEAM0011",
    "BEAM0101",
    "BEAM0110",
    "BEAM1000",
    "BEAM1011",
)
COVERAGE_BEAMS: tuple[str, ...] = BEAM_NAMES[:4]
FULL_POWER_BEAMS: tuple[str, ...] = BEAM_NAMES[4:]

REQUIRED_FIELDS: tuple[str, ...] = (
    "agbd",
    "agbd_se",
    "lat_lowestmode",
    "lon_lowestmode",
    "shot_number",
    "delta_time",
    "l2_quality_flag",
    "l4_quality_flag",
    "surface_flag",
)
"""Per-beam datasets combine needs; a granule lacking one is refused."""

REFERENCE_FIELDS: tuple[str, ...] = ("degrade_flag", "sensitivity")
"""Per-beam datasets carried along for reference when present."""

_GRANULE_RE = re.compile(
    r"^GEDI04_A_(?P<stamp>\d{13})_O(?P<orbit>\d{5})_(?:\d{2}_T(?P<track>\d{5})_)?"
    r".*?(?:V(?P<version>\d{3}))?\.h5$"
)


@dataclass(frozen=True)
class GranuleName:
    """The parts of a GEDI L4A granule file name."""

    acquisition_time: datetime
    """Coarse acquisition time from the name (`%Y%j%H%M%S`), naive UTC as the original tool."""
    orbit: int
    track: int
    version: int

    @property
    def year(self) -> int:
        return self.acquisition_time.year


def parse_granule_name(name: str) -> GranuleName:
    """Parse `GEDI04_A_<YYYYDDDHHMMSS>_O<orbit>_…_V00x.h5`.

    Raises:
        ValueError: if `name` is not a GEDI L4A granule file name.
    """
    match = _GRANULE_RE.match(name)
    if match is None:
        raise ValueError(
            f"{name!r} is not a GEDI L4A granule name "
            "(expected GEDI04_A_<YYYYDDDHHMMSS>_O<orbit>_..._V002.h5)"
        )
    stamp = match["stamp"]
    acquisition_time = datetime.strptime(stamp, "%Y%j%H%M%S")
    return GranuleName(
        acquisition_time=acquisition_time,
        orbit=int(match["orbit"]),
        track=int(match["track"] or 0),
        version=int(match["version"] or 0),
    )


def format_granule_name(
    acquisition_time: datetime, orbit: int, track: int = 1, version: int = 2
) -> str:
    """The file name of a granule acquired at `acquisition_time` (inverse of the parser)."""
    stamp = acquisition_time.strftime("%Y%j%H%M%S")
    return f"GEDI04_A_{stamp}_O{orbit:05d}_01_T{track:05d}_02_002_02_V{version:03d}.h5"


def delta_time_to_datetime(delta_time: float) -> datetime:
    """Exact shot time (UTC) of a `delta_time` value."""
    return DELTA_TIME_EPOCH + timedelta(seconds=float(delta_time))


REJECTION_REASONS: tuple[str, ...] = (
    "fill_value",
    "l2_quality_flag",
    "l4_quality_flag",
    "surface_flag",
    "agbd_not_positive",
    "agbd_se_not_positive",
    "relative_se",
    "outside_bbox",
)
"""Why combine drops a footprint; each shot is counted under its first failing rule."""


@dataclass(frozen=True)
class QualityRule:
    """The footprint filter of SPEC §2 (thresholds are configurable)."""

    max_relative_se: float = 0.5
    """Keep only `agbd_se / agbd` strictly below this."""
    bbox: tuple[float, float, float, float] | None = None
    """Optional (west, south, east, north) region filter in degrees."""


def classify_shots(fields: dict[str, np.ndarray], rule: QualityRule) -> np.ndarray:
    """Return a per-shot code: 0 = kept, k = rejected for `REJECTION_REASONS[k - 1]`.

    The first failing rule wins, in the order of `REJECTION_REASONS`.
    """
    agbd = fields["agbd"].astype(np.float64)
    agbd_se = fields["agbd_se"].astype(np.float64)
    lat = fields["lat_lowestmode"]
    lon = fields["lon_lowestmode"]
    fill = (
        (agbd == FILL_VALUE)
        | (agbd_se == FILL_VALUE)
        | (lat == FILL_VALUE)
        | (lon == FILL_VALUE)
        | ~np.isfinite(agbd)
        | ~np.isfinite(agbd_se)
        | ~np.isfinite(lat)
        | ~np.isfinite(lon)
    )
    with np.errstate(invalid="ignore"):
        failures = [
            fill,
            fields["l2_quality_flag"] != 1,
            fields["l4_quality_flag"] != 1,
            fields["surface_flag"] != 1,
            ~(agbd > 0),
            ~(agbd_se > 0),
            # agbd_se / agbd < limit, written without the division (agbd > 0 here).
            ~(agbd_se < rule.max_relative_se * agbd),
        ]
        if rule.bbox is not None:
            west, south, east, north = rule.bbox
            failures.append(~((lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)))
    code = np.zeros(agbd.shape, dtype=np.uint8)
    for index in range(len(failures), 0, -1):
        code[failures[index - 1]] = index
    return code
