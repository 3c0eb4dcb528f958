"""Regenerate `gedidata/data/land_mask.npz`, the land/ocean backdrop of the plots.

Run by hand (`pip install global-land-mask && python scripts/make_land_mask.py`); the
result is committed so that plotting needs neither the network nor the ~1 GB
full-resolution mask at run time. Source: the GLOBE 1 km land mask as shipped by the
`global-land-mask` package (MIT; GLOBE is public domain), reduced to 0.05° (~5 km) cells that
are land when at least half of their 1 km pixels are land.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from global_land_mask import globe

CELL_DEG = 0.05
TARGET = Path(__file__).resolve().parents[1] / "gedidata" / "data" / "land_mask.npz"


def main() -> None:
    mask = globe._mask  # (21600, 43200) at 1/120°, row 0 at 90°N, column 0 at 180°W
    assert globe._lat[0] > globe._lat[-1], "expected north-up rows"
    block = round(CELL_DEG * 120)
    rows, cols = mask.shape[0] // block, mask.shape[1] // block
    ocean_fraction = mask.reshape(rows, block, cols, block).mean(axis=(1, 3))
    land = ocean_fraction <= 0.5  # the mask is True over ocean
    np.savez_compressed(
        TARGET,
        land=np.packbits(land, axis=1),
        shape=np.array(land.shape),
        cell_deg=np.array(CELL_DEG),
    )
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes), {land.shape}, land {land.mean():.1%}")


if __name__ == "__main__":
    main()
