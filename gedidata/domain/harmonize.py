"""Sentinel-2 L2A harmonization: which DN offset to remove from an item's bands (pure).

All samples share one scale, DN = 10000 x reflectance (the convention before processing
baseline 04.00). Products of baseline 04.00 or later carry a +1000 DN offset
(BOA_ADD_OFFSET). Where an asset publishes `raster:bands` scale/offset (Earth Search
does, and shifts older scenes to the new convention), those decide; otherwise the
item's `s2:processing_baseline` does — never the acquisition date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gedidata.errors import GedidataError

OFFSET_BASELINE = (4, 0)
BOA_ADD_OFFSET = 1000
REFLECTANCE_SCALE = 1e-4
"""DN = reflectance / REFLECTANCE_SCALE in the harmonized convention."""

_BASELINE_IN_URI = re.compile(r"_N(\d{2})(\d{2})_")


class HarmonizationError(GedidataError):
    """An item does not say how its DNs relate to reflectance."""


@dataclass(frozen=True)
class Harmonization:
    """What to do with one item's reflectance DNs."""

    processing_baseline: str
    """e.g. ``04.00``; ``unknown`` when the item does not say (raster:bands decided)."""
    offset_dn: int
    """DN subtracted (then clipped at 0): 0 or 1000."""


def processing_baseline(properties: Mapping[str, Any]) -> str | None:
    """`s2:processing_baseline`, or the `_Nxxyy_` part of `s2:product_uri`."""
    baseline = properties.get("s2:processing_baseline")
    if baseline:
        return str(baseline)
    match = _BASELINE_IN_URI.search(str(properties.get("s2:product_uri", "")))
    return f"{match[1]}.{match[2]}" if match else None


def baseline_offset(baseline: str) -> int:
    """The BOA offset a product of `baseline` carries."""
    try:
        major, minor = (int(part) for part in baseline.split("."))
    except ValueError:
        raise HarmonizationError(f"processing baseline {baseline!r} is not like '04.00'") from None
    return BOA_ADD_OFFSET if (major, minor) >= OFFSET_BASELINE else 0


def harmonization(item: Mapping[str, Any], reflectance_asset: str) -> Harmonization:
    """How to bring `item`'s reflectance DNs to DN = 10000 x reflectance.

    `reflectance_asset` is the key of one reflectance band's asset (all bands of an
    item share the convention).
    """
    properties = item.get("properties", {})
    baseline = processing_baseline(properties)
    asset = item.get("assets", {}).get(reflectance_asset, {})
    bands = asset.get("raster:bands") or []
    scale = bands[0].get("scale") if bands else None
    offset = bands[0].get("offset") if bands else None
    if scale is not None and offset is not None:
        if abs(scale - REFLECTANCE_SCALE) > 1e-12:
            raise HarmonizationError(
                f"item {item.get('id')}: asset {reflectance_asset} has raster:bands scale "
                f"{scale}; only {REFLECTANCE_SCALE} (DN = 10000 x reflectance) is supported"
            )
        return Harmonization(baseline or "unknown", round(-offset / scale))
    if baseline is None:
        raise HarmonizationError(
            f"item {item.get('id')}: no raster:bands scale/offset and no "
            "s2:processing_baseline; cannot tell whether the +1000 DN offset applies"
        )
    return Harmonization(baseline, baseline_offset(baseline))
