"""Batch planning and bookkeeping of stage 3 (pure, apart from listing a folder).

Footprints are cut into batches of `--batch-size`; batch `i` of size `n` becomes
`OUT/<split>/hdf5_batch_data/batch_<n>_<i>.h5`. Before cutting, footprints are ordered
by area and date (the same 1° cell / 20-day grouping as the scene search, then shot
number), so a batch touches few scenes and each scene's tiles are fetched once. The
order is deterministic: a re-run cuts the same batches and skips the complete ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

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
    found: dict[int, list[str]] = {}
    for path in directory.iterdir():
        match = _BATCH_NAME.match(path.name)
        if match:
            found.setdefault(int(match["size"]), []).append(path.name)
    other = sorted(set(found) - {size})
    if other:
        example = sorted(found[other[0]])[0]
        raise InputError(
            f"{directory} holds batches of size {other[0]} ({example}, …) but this run asks "
            f"for --batch-size {size}; re-run with --batch-size {other[0]} to resume, or "
            "use another --output folder"
        )
    return {int(_BATCH_NAME.match(name)["index"]) for name in found.get(size, [])}


def batch_order(
    lon: np.ndarray,
    lat: np.ndarray,
    day: np.ndarray,
    shot_number: np.ndarray,
    cell_deg: float = 1.0,
    window_days: int = 20,
    sub_cell_deg: float = 0.1,
) -> np.ndarray:
    """Row order that keeps footprints of the same area and date window together.

    Within a cell and date window, footprints go by `sub_cell_deg` sub-cells (rows of
    them, south to north), so a batch covers a compact part of a scene and decompresses
    few of its internal tiles.
    """
    lon = np.asarray(lon)
    lat = np.asarray(lat)
    cell_x = np.floor(lon / cell_deg).astype(np.int64)
    cell_y = np.floor(lat / cell_deg).astype(np.int64)
    window = np.floor(np.asarray(day) / max(1, window_days)).astype(np.int64)
    sub_x = np.floor(lon / sub_cell_deg).astype(np.int64)
    sub_y = np.floor(lat / sub_cell_deg).astype(np.int64)
    # lexsort: the last key is the primary one
    return np.lexsort((np.asarray(shot_number), sub_x, sub_y, window, cell_y, cell_x))


def plan_batches(order: np.ndarray, size: int) -> list[np.ndarray]:
    """Row indexes of each batch: consecutive runs of `size` rows of `order`."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [order[start : start + size] for start in range(0, len(order), size)]
