"""Batch planning and bookkeeping of stage 3 (pure, apart from listing a folder).

Footprints are cut into batches of `--batch-size`; batch `i` of size `n` becomes
`OUT/<split>/hdf5_batch_data/batch_<n>_<i>.h5`. Before cutting, footprints are ordered
by Sentinel-2 tile, date window and the tile's internal COG tiles (then shot number),
so a batch touches few scenes and few internal tiles. The order depends on the
footprints alone (not on what a catalogue answers): a re-run cuts the same batches and
skips the complete ones. `batch_runs` hands consecutive batches to one worker, which
keeps its datasets and block cache from one batch to the next.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
from pyproj import Transformer

from gedidata.errors import InputError

BATCH_DIR_NAME = "hdf5_batch_data"
_BATCH_NAME = re.compile(r"^batch_(?P<size>\d+)_(?P<index>\d+)\.h5$")


def batch_dir(output_dir: Path, split: str) -> Path:
    return output_dir / split / BATCH_DIR_NAME


def batch_name(size: int, index: int) -> str:
    return f"batch_{size}_{index}.h5"


def complete_batches(directory: Path, size: int) -> set[int]:
    """Indexes of the complete batch files in `directory` (temporary files don't count).

    Raises:
        InputError: when the folder holds batches of another size: their footprints
            would be cut differently, so resuming would duplicate or lose samples.
    """
    if not directory.is_dir():
        return set()
    found: dict[int, dict[str, int]] = {}  # size -> {file name: batch index}
    for path in directory.iterdir():
        match = _BATCH_NAME.match(path.name)
        if match:
            found.setdefault(int(match["size"]), {})[path.name] = int(match["index"])
    other = sorted(set(found) - {size})
    if other:
        example = sorted(found[other[0]])[0]
        raise InputError(
            f"{directory} holds batches of size {other[0]} ({example}, …) but this run asks "
            f"for --batch-size {size}; re-run with --batch-size {other[0]} to resume, or "
            "use another --output folder"
        )
    return set(found.get(size, {}).values())


def batch_order(
    lon: np.ndarray,
    lat: np.ndarray,
    day: np.ndarray,
    shot_number: np.ndarray,
    window_days: int = 20,
) -> np.ndarray:
    """Row order that keeps footprints of the same Sentinel-2 tile and dates together.

    Footprints go by UTM zone, then by the 100 km MGRS square of their Sentinel-2 tile
    (north to south, west to east), then by date window, then by the tile's internal
    1024-pixel COG tiles (`s2_internal_tile`) column by column, so a batch reads few
    internal tiles, each of them whole, and shares few with other batches. Column-major
    order puts the points of the 9.8 km overlap east of a square (read from the western
    scene as often as not) right after the square's last column.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    zone, south = utm_zones(lon, lat)
    square_east = np.zeros(lon.shape, np.int64)
    square_north = np.zeros(lon.shape, np.int64)
    col = np.zeros(lon.shape, np.int64)
    row = np.zeros(lon.shape, np.int64)
    for key in set(zip(zone.tolist(), south.tolist(), strict=True)):
        members = (zone == key[0]) & (south == key[1])
        x, y = _to_utm(*key).transform(lon[members], lat[members])
        where = s2_internal_tile(np.asarray(x), np.asarray(y), south=key[1])
        square_east[members], square_north[members], col[members], row[members] = where
    window = np.floor(np.asarray(day) / max(1, window_days)).astype(np.int64)
    # lexsort: the last key is the primary one
    return np.lexsort(
        (np.asarray(shot_number), row, col, window, square_east, -square_north, south, zone)
    )


S2_SQUARE_M = 100_000
"""Side of an MGRS square; a Sentinel-2 tile covers its square plus 9.8 km east and south."""
S2_LATTICE_M = 60
"""Sentinel-2 tile corners are MGRS square corners snapped (out) to a 60 m lattice."""
S2_INTERNAL_TILE_M = 10_240
"""An internal COG tile of a 10 m band: 1024 pixels (20 m and 60 m: 2 x 2 and 6 x 6)."""


def utm_zones(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard UTM zone (1-60) and hemisphere (True = south) of each point."""
    zone = (np.floor((np.asarray(lon) + 180.0) / 6.0).astype(np.int64) % 60) + 1
    return zone, np.asarray(lat) < 0.0


def s2_internal_tile(
    x: np.ndarray, y: np.ndarray, south: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(square east, square north, internal tile column, row) of UTM points.

    The square is the MGRS 100 km square holding the point (east and north edge, in
    metres); the internal tile counts from the upper-left corner of that square's
    Sentinel-2 tile, which is the square's north-west corner snapped out to the 60 m
    lattice (northings relative to the equator, so south of it without the false
    northing).
    """
    false_northing = 10_000_000.0 if south else 0.0
    north = np.asarray(y) - false_northing
    square_east = np.floor(np.asarray(x) / S2_SQUARE_M) * S2_SQUARE_M
    square_north = (np.floor(north / S2_SQUARE_M) + 1) * S2_SQUARE_M
    left = np.floor(square_east / S2_LATTICE_M) * S2_LATTICE_M
    top = np.ceil(square_north / S2_LATTICE_M) * S2_LATTICE_M
    col = np.floor((x - left) / S2_INTERNAL_TILE_M)
    row = np.floor((top - north) / S2_INTERNAL_TILE_M)
    return (
        square_east.astype(np.int64),
        square_north.astype(np.int64),
        col.astype(np.int64),
        row.astype(np.int64),
    )


@functools.lru_cache(maxsize=128)
def _to_utm(zone: int, south: bool) -> Transformer:
    return Transformer.from_crs(4326, (32700 if south else 32600) + zone, always_xy=True)


def plan_batches(order: np.ndarray, size: int) -> list[np.ndarray]:
    """Row indexes of each batch: consecutive runs of `size` rows of `order`."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [order[start : start + size] for start in range(0, len(order), size)]


def batch_runs(
    indexes: list[int], workers: int, max_run: int = 8, min_run: int = 1
) -> list[list[int]]:
    """Batches handed to one worker together: consecutive runs of `indexes`.

    Neighbouring batches share the internal tiles along their common edge and the
    scenes of their area; a worker that extracts them one after the other keeps those
    in its block cache and searches the catalogue once. There is a run for every
    worker as long as each run keeps `min_run` batches (two runs both fetch the tiles
    along the edge between them, which a short run does not make up for), and at most
    `max_run` batches in a run (so results and progress keep coming); runs are as even
    in length as possible.
    """
    if not indexes:
        return []
    sharing = min(max(workers, 1), max(len(indexes) // max(min_run, 1), 1))
    count = max(sharing, -(-len(indexes) // max(max_run, 1)))
    return [part.tolist() for part in np.array_split(np.asarray(indexes), count)]
