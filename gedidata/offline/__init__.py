"""Helpers that build the offline world for tests, the demo and the benchmarks."""

from gedidata.offline.gedi_granules import (
    orbit_at,
    shot_fields,
    truncate_file,
    write_granule,
    write_granules,
    write_non_l4a_granule,
)

__all__ = [
    "orbit_at",
    "shot_fields",
    "truncate_file",
    "write_granule",
    "write_granules",
    "write_non_l4a_granule",
]
