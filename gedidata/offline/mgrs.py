"""Sentinel-2 tiles of the MGRS grid: UTM zone, EPSG code and the upper-left corner.

A Sentinel-2 tile is named after a 100 km MGRS square (``32TMT``: UTM zone 32, latitude
band ``T``, column letter ``M``, row letter ``T``) and covers 109,800 m x 109,800 m from
that square's upper-left corner, so neighbouring tiles overlap by 9,800 m towards the
east and the south.

The square's corners come from the standard MGRS lettering (WGS 84, "AA" scheme):

- column letters run A–H, J–R, S–Z (no I, no O) for zones with ``zone % 3`` equal to
  1, 2 and 0, one letter per 100 km of easting starting at 100,000 m;
- row letters run A–V (no I, no O), one letter per 100 km of northing, repeating every
  2,000 km; in even zones the cycle starts at F instead of A. The latitude band picks
  the right repetition: the square must overlap the band. Northings in the southern
  hemisphere carry the 10,000,000 m false northing.

The Sentinel-2 tiling grid snaps the square's corner outwards onto a 60 m lattice that
is anchored at the equator and at the zone's false easting: the west edge is rounded
down and the north edge up (``31UGU`` → 699960, 5900040; ``31UFT`` → 600000, 5800020;
``20EPT`` in the south → 600000, 3300040 because 10,000,000 is not a multiple of 60).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from pyproj import Transformer

__all__ = [
    "S2_TILE_SIZE_M",
    "latitude_band",
    "mgrs_tile_origin",
    "mgrs_tiles_covering",
    "parse_tile",
    "utm_epsg",
    "utm_zone",
]

S2_TILE_SIZE_M = 109_800
"""Width and height of a Sentinel-2 tile in metres (10980 pixels of 10 m)."""

_COLUMN_SETS = ("STUVWXYZ", "ABCDEFGH", "JKLMNPQR")  # indexed by zone % 3
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
_BAND_LETTERS = "CDEFGHJKLMNPQRSTUVWX"  # C starts at 80°S, 8° each, X is 72–84°N
_SQUARE = 100_000
_CYCLE = 2_000_000
_FALSE_NORTHING_SOUTH = 10_000_000
_S2_LATTICE = 60

_TILE_RE = re.compile(r"^(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")


def parse_tile(tile: str) -> tuple[int, str, str, str]:
    """Split a tile name into (zone, band letter, column letter, row letter).

    Accepts an optional leading ``T`` (``T32TMT``) and one-digit zones (``1CDE``).
    """
    name = tile.strip().upper()
    if len(name) in (5, 6) and name.startswith("T") and name[1].isdigit():
        name = name[1:]
    match = _TILE_RE.match(name)
    if match is None:
        raise ValueError(f"not an MGRS tile name: {tile!r}")
    zone = int(match.group(1))
    if not 1 <= zone <= 60:
        raise ValueError(f"UTM zone out of range in {tile!r}")
    return zone, match.group(2), match.group(3), match.group(4)


def utm_epsg(zone: int, south: bool) -> int:
    """EPSG code of WGS 84 / UTM ``zone`` (326xx north, 327xx south)."""
    return (32700 if south else 32600) + zone


def latitude_band(lat: float) -> str:
    """MGRS latitude band letter (C … X) of a latitude in [-80, 84]."""
    if not -80.0 <= lat <= 84.0:
        raise ValueError(f"latitude {lat} is outside the UTM/MGRS range [-80, 84]")
    index = min(math.floor((lat + 80.0) / 8.0), len(_BAND_LETTERS) - 1)
    return _BAND_LETTERS[index]


def utm_zone(lon: float, lat: float) -> int:
    """UTM zone of a point, with the Norway (32V) and Svalbard (31X–37X) exceptions."""
    lon = ((lon + 180.0) % 360.0) - 180.0
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        return 32
    if 72.0 <= lat <= 84.0 and 0.0 <= lon < 42.0:
        if lon < 9.0:
            return 31
        if lon < 21.0:
            return 33
        if lon < 33.0:
            return 35
        return 37
    return zone


@lru_cache(maxsize=256)
def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)


@lru_cache(maxsize=256)
def _to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)


def _band_min_northing(zone: int, band: str) -> float:
    """Smallest (false) northing of any point of the band inside the zone."""
    south_lat = -80.0 + 8.0 * _BAND_LETTERS.index(band)
    south = south_lat < 0.0
    epsg = utm_epsg(zone, south)
    central = -183.0 + 6.0 * zone
    transformer = _to_utm(epsg)
    # At a fixed latitude the northing is smallest on the central meridian in the
    # north and at the zone edge in the south; take both.
    _, n_centre = transformer.transform(central, south_lat)
    _, n_edge = transformer.transform(central + 3.0, south_lat)
    return min(n_centre, n_edge)


def _square_corner(zone: int, band: str, column: str, row: str) -> tuple[int, int]:
    """(west, south) of the 100 km MGRS square in UTM metres (south with false northing)."""
    columns = _COLUMN_SETS[zone % 3]
    if column not in columns:
        raise ValueError(f"column letter {column!r} is not used in UTM zone {zone}")
    west = (columns.index(column) + 1) * _SQUARE
    offset = 5 if zone % 2 == 0 else 0
    base = ((_ROW_LETTERS.index(row) - offset) % 20) * _SQUARE
    lowest = math.floor(_band_min_northing(zone, band) / _SQUARE) * _SQUARE
    south = base + max(0, math.ceil((lowest - base) / _CYCLE)) * _CYCLE
    return west, south


def mgrs_tile_origin(tile: str) -> tuple[int, float, float]:
    """EPSG code and upper-left corner (west, north) of a Sentinel-2 tile in UTM metres.

    >>> mgrs_tile_origin("20EPT")
    (32720, 600000.0, 3300040.0)
    >>> mgrs_tile_origin("60VUK")
    (32660, 300000.0, 6500040.0)
    """
    zone, band, column, row = parse_tile(tile)
    south_hemisphere = band < "N"
    west, square_south = _square_corner(zone, band, column, row)
    north = square_south + _SQUARE
    west_snapped = (west // _S2_LATTICE) * _S2_LATTICE
    if south_hemisphere:
        signed = north - _FALSE_NORTHING_SOUTH
        north_snapped = -((-signed) // _S2_LATTICE) * _S2_LATTICE + _FALSE_NORTHING_SOUTH
    else:
        north_snapped = -((-north) // _S2_LATTICE) * _S2_LATTICE
    return utm_epsg(zone, south_hemisphere), float(west_snapped), float(north_snapped)


def _tile_name(zone: int, band: str, east_index: int, north_abs: int) -> str | None:
    """Tile name of the square with easting index 1…8 and south edge ``north_abs``."""
    columns = _COLUMN_SETS[zone % 3]
    if not 1 <= east_index <= len(columns):
        return None
    offset = 5 if zone % 2 == 0 else 0
    row = _ROW_LETTERS[((north_abs // _SQUARE) + offset) % 20]
    return f"{zone:02d}{band}{columns[east_index - 1]}{row}"


def mgrs_tiles_covering(lon: float, lat: float) -> list[str]:
    """Sentinel-2 tiles of the point's own UTM zone whose 109.8 km extent holds the point.

    The first entry is the tile of the MGRS square that contains the point; the others
    (up to three) are the squares to the west, north and north-west whose tiles reach
    over the point through the 9.8 km overlap. Tiles of the neighbouring UTM zones that
    also reach over the point are not listed.
    """
    zone = utm_zone(lon, lat)
    south = lat < 0.0
    epsg = utm_epsg(zone, south)
    x, y = _to_utm(epsg).transform(lon, lat)
    east_index = int(x // _SQUARE)
    north_abs = int(y // _SQUARE) * _SQUARE
    names: list[str] = []
    for d_east, d_north in ((0, 0), (-1, 0), (0, 1), (-1, 1)):
        e_idx = east_index + d_east
        s_abs = north_abs + d_north * _SQUARE
        # Band letter of the part of that square closest to the point.
        cx = min(max(x, e_idx * _SQUARE), (e_idx + 1) * _SQUARE - 1.0)
        cy = min(max(y, s_abs), s_abs + _SQUARE - 1.0)
        _, clat = _to_lonlat(epsg).transform(cx, cy)
        try:
            band = latitude_band(clat)
        except ValueError:
            continue
        if (band < "N") != south:
            continue
        name = _tile_name(zone, band, e_idx, s_abs)
        if name is None:
            continue
        try:
            _, west, north = mgrs_tile_origin(name)
        except ValueError:
            continue
        inside = west <= x < west + S2_TILE_SIZE_M and north - S2_TILE_SIZE_M < y <= north
        if inside and name not in names:
            names.append(name)
    return names
