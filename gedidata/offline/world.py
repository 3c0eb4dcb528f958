"""The offline world: Sentinel-2 L2A scenes, Copernicus DEM and ESA WorldCover tiles.

`write_world` turns a `WorldSpec` into files below ``spec.root`` that have the layouts of
the real products and of their STAC items, with pixel values from
`gedidata.offline.pixels` (so a test can state exactly what any window holds):

Sentinel-2 L2A (one directory per scene and source layout)::

    sentinel2-l2/<zone>/<band>/<square>/<YYYY>/<MM>/<DD>/<product>.SAFE/GRANULE/
        L2A_T<tile>_A<orbit>_<start>/IMG_DATA/R<res>m/T<tile>_<start>_<band>_<res>m.tif
                                                  Planetary Computer layout (B01…B12, B8A, SCL)
    sentinel-cogs/sentinel-s2-l2a-cogs/<zone>/<band>/<square>/<YYYY>/<M>/<es-id>/<band>.tif
                                                  Earth Search layout (B01.tif … SCL.tif)

Every band file is a COG (GDAL COG driver, 1024 x 1024 internal tiles, DEFLATE with
horizontal predictor, overviews, nodata 0) on the tile's real UTM grid: pixel sizes 10,
20 and 60 m from the tile's upper-left corner (`gedidata.offline.mgrs`). With
``tile_size_m`` smaller than 109,800 m a scene covers a square sub-area of its tile that
starts ``anchor_m`` metres east and south of the tile's corner (multiples of 60 m, so
the sub-area is still on the tile's grid of all three resolutions).

Stored DN: ``pixels.s2_dn(band, x, y)`` at pixel centres, plus the BOA offset that the
source applies, and 0 where the pixel centre is beyond the scene's no-data edge:

- Planetary Computer files hold the values as ESA delivers them: ``+1000`` when the
  processing baseline is 04.00 or later, ``+0`` before (the item says only
  ``s2:processing_baseline``);
- Earth Search files always hold ``+1000`` — Earth Search shifts older scenes to the
  new convention and says so with ``earthsearch:boa_offset_applied: true`` and
  ``raster:bands`` ``scale 0.0001, offset -0.1``. For scenes of baseline 04.00 or later
  the Earth Search file is a hard link to the Planetary Computer file (same bytes); for
  older scenes it is a separate file written with the offset.

SCL is ``pixels.scl_class`` on the 20 m grid (the same file content for both layouts).

Copernicus DEM GLO-30: 1° x 1° COGs ``Copernicus_DSM_COG_10_<N|S>dd_00_<E|W>ddd_00_DEM.tif``
in EPSG:4326, 3600 rows and the real latitude-dependent number of columns, with the real
half-pixel origin (west = lon0 - dx/2, north = lat0 + 1 + dy/2), float32
``pixels.dem_elevation`` at pixel centres, written whole. Paths
``copernicus-dem/COP30_hh/<name>.tif`` (Planetary Computer) and
``copernicus-dem-30m/<name>/<name>.tif`` (Earth Search's ``s3://copernicus-dem-30m``
bucket; hard link to the same file).

ESA WorldCover: 3° x 3° tiles ``esa-worldcover/<v100|v200>/<year>/map/
ESA_WorldCover_10m_<year>_<v100|v200>_<N|S>dd<E|W>ddd_Map.tif``, EPSG:4326, the real
36000 x 36000 grid of 1/12000° pixels from the tile's corner, uint8
``pixels.worldcover_class`` with nodata 0, tiled 1024 x 1024 and DEFLATE like the real
files. Only the 1024 x 1024 blocks that overlap the world's scenes (plus a margin) are
written; the file is sparse (GDAL ``SPARSE_OK``), the other blocks read as nodata.
Overviews (2 … 64, nearest) are optional because GDAL builds them by scanning the whole
36000² grid (~0.7 s per tile); without them the file is a plain tiled GeoTIFF rather
than a COG.

STAC (asset hrefs are relative to the world root, for a server to rewrite, except the
Earth Search DEM hrefs, which are ``s3://copernicus-dem-30m/<name>/<name>.tif`` as in the
real catalogue: the bucket is the first path component below the root)::

    stac/<profile>/catalog.json
    stac/<profile>/<collection>/collection.json
    stac/<profile>/<collection>/items/<id>.json

with profiles ``planetary-computer`` (collections ``sentinel-2-l2a``, ``cop-dem-glo-30``,
``esa-worldcover``) and ``earth-search`` (``sentinel-2-l2a``, ``cop-dem-glo-30``; real
Earth Search has no WorldCover). Item layouts follow the real items in
``shared/fixtures/stac``. ``world.json`` at the root describes everything; `load_world`
reads it back.

Files are written to a temporary name and renamed. Every raster carries a hash of what
it was made from (GeoTIFF metadata item ``GEDIDATA_WORLD``: grid, band, offset, SCL
features, no-data edge, `pixels.VERSION`); a file that exists with the expected hash is
not written again, so `write_world` is idempotent and resumable, and a changed spec
rewrites exactly the files it changes. Rasters are written by a thread pool (GDAL
releases the GIL while it compresses).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.windows import Window
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.geometry.polygon import orient

from gedidata.offline import pixels
from gedidata.offline.mgrs import S2_TILE_SIZE_M, mgrs_tile_origin, parse_tile
from gedidata.offline.pixels import NodataEdge, SclRect
from gedidata.sources.profiles import EARTH_SEARCH

__all__ = [
    "ES_BAND_KEYS",
    "PROFILES",
    "WORLD_MANIFEST",
    "DemTile",
    "Feature",
    "GeneratedScene",
    "SceneSpec",
    "World",
    "WorldCoverTile",
    "WorldSpec",
    "anchor_around",
    "default_test_world",
    "dem_tile_grid",
    "dem_tile_name",
    "from_origin",
    "load_world",
    "worldcover_tile_name",
    "write_dem_tile",
    "write_world",
]

WORLD_MANIFEST = "world.json"
MANIFEST_VERSION = 1

PROFILES = ("planetary-computer", "earth-search")
S2_COLLECTION = "sentinel-2-l2a"
DEM_COLLECTION = "cop-dem-glo-30"
WORLDCOVER_COLLECTION = "esa-worldcover"

S2_ASSETS: tuple[str, ...] = (*pixels.S2_BANDS, "SCL")
"""Planetary Computer asset keys of the generated Sentinel-2 assets (same as band names)."""

ES_BAND_KEYS: dict[str, str] = dict(EARTH_SEARCH.band_assets)
"""Earth Search asset key of each Sentinel-2 band."""

BOA_ADD_OFFSET = 1000
"""DN added to L2A reflectance from processing baseline 04.00 on."""

COG_BLOCKSIZE = 1024
NODATA_EDGE_CUT = 1.4
"""No-data edge: pixels with u + v > 1.4 are empty (u, v = east/south fraction of the scene)."""

_GEOJSON_DIGITS = 8


# ----------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Feature:
    """An SCL rectangle of a scene, in metres from the scene's upper-left corner.

    ``left``/``right`` are distances east of the scene's west edge, ``top``/``bottom``
    distances south of its north edge (``left < right``, ``top < bottom``). Pixels
    whose centre lies inside get class ``scl``.
    """

    scl: int
    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class SceneSpec:
    """One Sentinel-2 L2A acquisition of one MGRS tile.

    - ``tile``: MGRS tile name (``32TMT``); its UTM zone/hemisphere give the CRS.
    - ``datetime``: sensing time (naive values are taken as UTC).
    - ``cloud_cover``: the published ``eo:cloud_cover``; None computes it from the SCL
      (share of classes 8, 9, 10 among valid pixels).
    - ``processing_baseline``: ``"02.14"`` … ``"05.11"``; 04.00 and later carry the
      +1000 DN offset in the Planetary Computer files.
    - ``features``: SCL rectangles (later ones win).
    - ``nodata_edge``: cut the scene's south-east corner off along a diagonal (an orbit
      swath edge): pixels with ``u + v > 1.4`` (u, v = east/south fraction of the scene)
      are 0 in every band and the footprint excludes them.
    - ``platform``: ``"sentinel-2a"`` / ``"sentinel-2b"``.
    - ``anchor_m``: (east, south) offset in metres of the generated sub-square from the
      tile's upper-left corner (multiples of 60 m; only useful with a small
      ``WorldSpec.tile_size_m``, see `anchor_around`).
    - ``relative_orbit`` / ``processing_time``: derived when None.
    """

    tile: str
    datetime: dt.datetime
    cloud_cover: float | None = None
    processing_baseline: str = "02.14"
    features: tuple[Feature, ...] = ()
    nodata_edge: bool = False
    platform: str = "sentinel-2a"
    anchor_m: tuple[float, float] = (0.0, 0.0)
    relative_orbit: int | None = None
    processing_time: dt.datetime | None = None


@dataclass(frozen=True)
class WorldSpec:
    """What to generate.

    - ``root``: output directory.
    - ``scenes``: the Sentinel-2 acquisitions.
    - ``tile_size_m``: side of the generated part of each tile (109,800 = whole tile;
      a multiple of 60 m).
    - ``dem_tiles`` / ``worldcover_tiles``: (lon0, lat0) south-west corners of the DEM
      (1°) / WorldCover (3°) tiles to write; None derives them from the scenes'
      extents plus ``margin_deg``.
    - ``worldcover_years``: maps to write (2020 → v100, 2021 → v200).
    - ``worldcover_overviews``: build overviews in the WorldCover tiles.
    - ``extra_regions``: more lon/lat boxes (west, south, east, north) that the DEM and
      WorldCover must cover, e.g. GEDI tracks beyond the scenes.
    - ``margin_deg``: margin around every scene for DEM/WorldCover coverage.
    """

    root: Path
    scenes: Sequence[SceneSpec]
    tile_size_m: float = S2_TILE_SIZE_M
    dem_tiles: Sequence[tuple[int, int]] | None = None
    worldcover_tiles: Sequence[tuple[int, int]] | None = None
    worldcover_years: tuple[int, ...] = (2020, 2021)
    worldcover_overviews: bool = True
    extra_regions: Sequence[tuple[float, float, float, float]] = ()
    margin_deg: float = 0.01


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GeneratedScene:
    """A written Sentinel-2 scene.

    - ``id`` / ``es_id``: Planetary Computer / Earth Search item ids.
    - ``epsg``: UTM CRS of the rasters; ``bounds``: (west, south, east, north) of the
      generated sub-square in that CRS; ``tile_origin``: (west, north) of the whole tile.
    - ``footprint`` / ``bbox``: the valid-data footprint in lon/lat as a GeoJSON geometry
      (a MultiPolygon split at ±180° when it crosses the antimeridian; then
      ``bbox[0] > bbox[2]`` as RFC 7946 asks) and its bbox.
    - ``footprint_utm``: the footprint's ring in the scene's CRS.
    - ``features``: the SCL rectangles in the scene's CRS; ``nodata_edge``: the
      no-data half-plane or None.
    - ``pc_offset`` / ``es_offset``: DN added to `pixels.s2_dn` in the Planetary
      Computer / Earth Search files (0 or 1000 / always 1000).
    - ``pc_assets`` / ``es_assets``: asset key → file path relative to the world root.
    - ``scl_percentages``: share of every SCL class (0–11) over the whole raster, %.
    """

    id: str
    es_id: str
    tile: str
    epsg: int
    datetime: dt.datetime
    cloud_cover: float
    processing_baseline: str
    platform: str
    relative_orbit: int
    processing_time: dt.datetime
    bounds: tuple[float, float, float, float]
    tile_origin: tuple[float, float]
    footprint: dict[str, Any]
    bbox: tuple[float, float, float, float]
    footprint_utm: tuple[tuple[float, float], ...]
    features: tuple[SclRect, ...]
    nodata_edge: NodataEdge | None
    pc_offset: int
    es_offset: int
    pc_assets: dict[str, str]
    es_assets: dict[str, str]
    scl_percentages: dict[int, float]

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    @property
    def crosses_antimeridian(self) -> bool:
        return self.footprint["type"] == "MultiPolygon"

    def transform(self, band: str) -> Affine:
        """Affine transform of the band's raster (pixel size 10, 20 or 60 m)."""
        res = pixels.S2_BAND_RESOLUTION[band]
        return from_origin(self.bounds[0], self.bounds[3], res, res)

    def shape(self, band: str) -> tuple[int, int]:
        """(rows, cols) of the band's raster."""
        res = pixels.S2_BAND_RESOLUTION[band]
        n = round((self.bounds[2] - self.bounds[0]) / res)
        return n, n

    def pixel_centres(
        self, band: str, window: Window | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """UTM x (1, cols) and y (rows, 1) of the pixel centres of ``window`` of ``band``."""
        res = pixels.S2_BAND_RESOLUTION[band]
        rows, cols = self.shape(band)
        if window is None:
            window = Window(0, 0, cols, rows)
        c = np.arange(int(window.col_off), int(window.col_off) + int(window.width))
        r = np.arange(int(window.row_off), int(window.row_off) + int(window.height))
        x = self.bounds[0] + (c + 0.5) * res
        y = self.bounds[3] - (r + 0.5) * res
        return x[None, :], y[:, None]

    def to_lonlat(self, x: Any, y: Any) -> tuple[Any, Any]:
        """UTM (x, y) of the scene's CRS → (lon, lat) in degrees."""
        return _geo(self.epsg).transform(x, y)

    def from_lonlat(self, lon: Any, lat: Any) -> tuple[Any, Any]:
        """(lon, lat) in degrees → UTM (x, y) of the scene's CRS."""
        return Transformer.from_crs("EPSG:4326", self.crs, always_xy=True).transform(lon, lat)

    def offset(self, profile: str) -> int:
        """DN offset stored in the files of ``profile``."""
        return self.pc_offset if profile == "planetary-computer" else self.es_offset

    def expected(
        self, band: str, window: Window | None = None, profile: str = "planetary-computer"
    ) -> np.ndarray:
        """The values the file of ``band`` (or ``SCL``) of ``profile`` holds in ``window``."""
        x, y = self.pixel_centres(band, window)
        if band == "SCL":
            return pixels.scl_class(x, y, self.features, self.nodata_edge)
        values = pixels.s2_dn(band, x, y) + np.uint16(self.offset(profile))
        values[pixels.scene_nodata(x, y, self.nodata_edge)] = 0
        return values

    def asset_path(self, band: str, profile: str = "planetary-computer") -> str:
        """Path (relative to the world root) of a band (``B04`` or ``SCL``) of ``profile``."""
        if profile == "planetary-computer":
            return self.pc_assets[band]
        return self.es_assets[ES_BAND_KEYS[band]]


@dataclass(frozen=True)
class DemTile:
    """A written Copernicus DEM GLO-30 tile (1° x 1°, south-west corner lon0/lat0)."""

    name: str
    lon0: int
    lat0: int
    pc_path: str
    es_path: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True)
class WorldCoverTile:
    """A written ESA WorldCover tile (3° x 3°, south-west corner lon0/lat0) of one year.

    ``written`` lists the pixel windows (col_off, row_off, width, height) that hold
    data; everything else is nodata (0).
    """

    name: str
    year: int
    version: str
    lon0: int
    lat0: int
    path: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    written: tuple[tuple[int, int, int, int], ...]


@dataclass
class World:
    """What `write_world` wrote (paths relative to ``root``).

    - ``item_paths[profile][collection]``: the item JSON files;
    - ``collection_paths[profile][collection]``: the collection JSON files;
    - ``catalog_paths[profile]``: a static root catalog per profile.
    """

    root: Path
    tile_size_m: float
    scenes: list[GeneratedScene]
    dem_tiles: list[DemTile]
    worldcover_tiles: list[WorldCoverTile]
    item_paths: dict[str, dict[str, list[str]]]
    collection_paths: dict[str, dict[str, str]]
    catalog_paths: dict[str, str] = field(default_factory=dict)

    def scene(self, scene_id: str) -> GeneratedScene:
        """The scene with this Planetary Computer or Earth Search id."""
        for s in self.scenes:
            if scene_id in (s.id, s.es_id):
                return s
        raise KeyError(scene_id)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def items(self, profile: str, collection: str) -> list[dict[str, Any]]:
        """The item dictionaries of a collection of a profile."""
        return [
            json.loads((self.root / p).read_text())
            for p in self.item_paths.get(profile, {}).get(collection, [])
        ]

    def collection(self, profile: str, collection: str) -> dict[str, Any]:
        return json.loads((self.root / self.collection_paths[profile][collection]).read_text())

    def item_files(self, profile: str) -> list[Path]:
        """Absolute paths of every item JSON of ``profile`` (all collections)."""
        return [self.root / p for paths in self.item_paths[profile].values() for p in paths]

    def collection_files(self, profile: str) -> list[Path]:
        """Absolute paths of the collection JSONs of ``profile``."""
        return [self.root / p for p in self.collection_paths[profile].values()]

    def dem_tile(self, lon: float, lat: float) -> DemTile:
        """The DEM tile holding (lon, lat)."""
        lon0, lat0 = math.floor(lon), math.floor(lat)
        for t in self.dem_tiles:
            if (t.lon0, t.lat0) == (lon0, lat0):
                return t
        raise KeyError((lon0, lat0))

    def worldcover_tile(self, lon: float, lat: float, year: int) -> WorldCoverTile:
        """The WorldCover tile of ``year`` holding (lon, lat)."""
        lon0, lat0 = 3 * math.floor(lon / 3), 3 * math.floor(lat / 3)
        for t in self.worldcover_tiles:
            if (t.lon0, t.lat0, t.year) == (lon0, lat0, year):
                return t
        raise KeyError((lon0, lat0, year))


# ----------------------------------------------------------------------------- helpers


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """North-up affine transform (as ``rasterio.transform.from_origin``)."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _iso(value: dt.datetime, micro: bool = True) -> str:
    value = _utc(value)
    if micro:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_ms(value: dt.datetime) -> str:
    value = _utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _compact(value: dt.datetime) -> str:
    return _utc(value).strftime("%Y%m%dT%H%M%S")


def _baseline_tuple(baseline: str) -> tuple[int, int]:
    major, _, minor = baseline.partition(".")
    return int(major), int(minor or 0)


def _baseline_offset(baseline: str) -> int:
    return BOA_ADD_OFFSET if _baseline_tuple(baseline) >= (4, 0) else 0


def _platform_letter(platform: str) -> str:
    letter = platform.strip().lower().removeprefix("sentinel-2")
    if letter not in ("a", "b", "c"):
        raise ValueError(f"unknown Sentinel-2 platform {platform!r}")
    return letter.upper()


_LAUNCH = {
    "A": dt.datetime(2015, 6, 23, tzinfo=dt.UTC),
    "B": dt.datetime(2017, 3, 7, tzinfo=dt.UTC),
    "C": dt.datetime(2024, 9, 5, tzinfo=dt.UTC),
}


def _absolute_orbit(letter: str, when: dt.datetime) -> int:
    days = (_utc(when) - _LAUNCH[letter]).total_seconds() / 86400.0
    return max(1, int(days * 143 / 10))


def _geo(epsg: int) -> Transformer:
    return Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)


def _densify(ring: Sequence[tuple[float, float]], step: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        n = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / step))
        for k in range(n):
            out.append((x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n))
    out.append(ring[-1])
    return out


def _round_coords(geom: dict[str, Any]) -> dict[str, Any]:
    def rnd(obj: Any) -> Any:
        if isinstance(obj, (list, tuple)):
            if obj and isinstance(obj[0], (int, float)):
                return [round(float(v), _GEOJSON_DIGITS) for v in obj]
            return [rnd(o) for o in obj]
        return obj

    return {"type": geom["type"], "coordinates": rnd(geom["coordinates"])}


Box = tuple[float, float, float, float]


def _lonlat_geometry(
    ring_utm: Sequence[tuple[float, float]], epsg: int
) -> tuple[dict[str, Any], Box, list[Box]]:
    """GeoJSON geometry, bbox and lon/lat boxes (split at ±180°) of a UTM ring."""
    dense = _densify(list(ring_utm), 1000.0)
    xs, ys = zip(*dense, strict=True)
    lons, lats = _geo(epsg).transform(np.asarray(xs), np.asarray(ys))
    lons = np.asarray(lons, dtype=np.float64)
    lats = np.asarray(lats, dtype=np.float64)
    crosses = float(lons.max() - lons.min()) > 180.0
    if not crosses:
        poly = orient(Polygon(zip(lons, lats, strict=True)), 1.0)
        geom = _round_coords(mapping(poly))
        w, s, e, n = poly.bounds
        return geom, (w, s, e, n), [(w, s, e, n)]
    shifted = np.where(lons < 0.0, lons + 360.0, lons)
    poly = Polygon(zip(shifted, lats, strict=True))
    west_part = poly.intersection(box(0.0, -90.0, 180.0, 90.0))
    east_part = affinity.translate(poly.intersection(box(180.0, -90.0, 360.0, 90.0)), xoff=-360.0)
    parts = [orient(p, 1.0) for p in (west_part, east_part) if not p.is_empty]
    multi = MultiPolygon(parts)
    geom = _round_coords(mapping(multi))
    boxes = [p.bounds for p in parts]
    south = min(b[1] for b in boxes)
    north = max(b[3] for b in boxes)
    bbox = (west_part.bounds[0], south, east_part.bounds[2], north)
    return geom, bbox, boxes


def _tile_relative_orbit(tile: str) -> int:
    return zlib.crc32(tile.encode()) % 143 + 1


# ----------------------------------------------------------------------------- naming


def dem_tile_grid(lon0: int, lat0: int) -> tuple[Affine, int, int]:
    """(transform, width, height) of the Copernicus DEM GLO-30 tile with SW corner (lon0, lat0).

    3600 rows of 1"; the column spacing grows with latitude as in the real product
    (1" up to 50°, 1.5" to 60°, 2" to 70°, 3" to 80°, 5" to 85°, 10" beyond; the band is
    chosen by the tile's edge nearest to the equator). The grid starts half a pixel
    west and north of the tile's corner.
    """
    edge = abs(lat0) if lat0 >= 0 else abs(lat0 + 1)
    if edge < 50:
        width = 3600
    elif edge < 60:
        width = 2400
    elif edge < 70:
        width = 1800
    elif edge < 80:
        width = 1200
    elif edge < 85:
        width = 720
    else:
        width = 360
    height = 3600
    dx = 1.0 / width
    dy = 1.0 / height
    transform = Affine(dx, 0.0, lon0 - dx / 2, 0.0, -dy, lat0 + 1 + dy / 2)
    return transform, width, height


def _lat_code(lat0: int) -> str:
    return f"{'N' if lat0 >= 0 else 'S'}{abs(lat0):02d}"


def _lon_code(lon0: int) -> str:
    return f"{'E' if lon0 >= 0 else 'W'}{abs(lon0):03d}"


def dem_tile_name(lon0: int, lat0: int) -> str:
    """``Copernicus_DSM_COG_10_N47_00_E008_00_DEM`` for the tile with SW corner (lon0, lat0)."""
    return f"Copernicus_DSM_COG_10_{_lat_code(lat0)}_00_{_lon_code(lon0)}_00_DEM"


_WC_VERSIONS = {2020: ("v100", "1.0.0"), 2021: ("v200", "2.0.0")}


def worldcover_tile_name(lon0: int, lat0: int, year: int) -> str:
    """``ESA_WorldCover_10m_2020_v100_N45E006`` for the 3° tile with SW corner (lon0, lat0)."""
    version = _WC_VERSIONS[year][0]
    return f"ESA_WorldCover_10m_{year}_{version}_{_lat_code(lat0)}{_lon_code(lon0)}"


def anchor_around(tile: str, lon: float, lat: float, size_m: float) -> tuple[float, float]:
    """``anchor_m`` that centres a ``size_m`` sub-square of ``tile`` on (lon, lat) (60 m steps)."""
    epsg, west, north = mgrs_tile_origin(tile)
    x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(lon, lat)
    limit = S2_TILE_SIZE_M - size_m
    east = min(max(math.floor((x - size_m / 2 - west) / 60.0) * 60.0, 0.0), limit)
    south = min(max(math.floor((north - y - size_m / 2) / 60.0) * 60.0, 0.0), limit)
    return float(east), float(south)


# ----------------------------------------------------------------------------- raster IO


SIGNATURE_TAG = "GEDIDATA_WORLD"
"""GeoTIFF metadata item holding a hash of what a generated raster was made from."""


def _signature(**what: Any) -> str:
    """Short hash of the inputs of a raster (pixel-function version included)."""
    text = json.dumps({"pixels": pixels.VERSION, **what}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _raster_matches(path: Path, width: int, height: int, transform: Affine, signature: str) -> bool:
    """True when ``path`` is a complete raster made from the same inputs."""
    if not path.is_file():
        return False
    try:
        with rasterio.open(path) as ds:
            return (
                ds.width == width
                and ds.height == height
                and ds.transform.almost_equals(transform, precision=1e-9)
                and ds.tags().get(SIGNATURE_TAG) == signature
            )
    except rasterio.errors.RasterioIOError:
        return False


def _overview_count(size: int) -> int | None:
    """None (GDAL's automatic levels) for large rasters; at least one level for small ones."""
    if size > COG_BLOCKSIZE:
        return None
    if size < 128:
        return 1
    return max(1, math.floor(math.log2(size / 64.0)))


def _write_cog(
    path: Path,
    *,
    width: int,
    height: int,
    dtype: str,
    crs: str,
    transform: Affine,
    nodata: float | None,
    rows: Callable[[int, int], np.ndarray],
    predictor: int,
    resampling: str,
    tags: dict[str, str] | None = None,
) -> None:
    """Write a COG by blocks of rows: ``rows(r0, r1)`` returns rows r0…r1-1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    itemsize = np.dtype(dtype).itemsize
    big = width * height * itemsize > 64 * 2**20
    token = uuid.uuid4().hex
    src = str(path.with_name(f".{path.name}.{token}.src.tif")) if big else f"/vsimem/{token}.tif"
    tmp = path.with_name(f".{path.name}.{token}.part")
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
    }
    step = max(512, (8 * 2**20 // max(1, width * itemsize)) // 512 * 512)
    try:
        with rasterio.open(src, "w", **profile) as ds:
            for r0 in range(0, height, step):
                r1 = min(height, r0 + step)
                ds.write(rows(r0, r1), 1, window=Window(0, r0, width, r1 - r0))
            if tags:
                ds.update_tags(**tags)
        options: dict[str, Any] = {
            "driver": "COG",
            "compress": "DEFLATE",
            "predictor": predictor,
            "blocksize": COG_BLOCKSIZE,
            "resampling": resampling,
            "overview_resampling": resampling,
            "num_threads": "ALL_CPUS",
        }
        count = _overview_count(max(width, height))
        if count is not None:
            options["overview_count"] = count
        rasterio.shutil.copy(src, str(tmp), **options)
        os.replace(tmp, path)
    finally:
        if big:
            Path(src).unlink(missing_ok=True)
        else:
            with contextlib.suppress(Exception):
                rasterio.shutil.delete(src)
        tmp.unlink(missing_ok=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` (hard link; copy where links fail)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        try:
            if os.path.samefile(src, dst):
                return
        except OSError:
            pass
        dst.unlink()
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.part")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- Sentinel-2


@dataclass(frozen=True)
class _ScenePlan:
    spec: SceneSpec
    tile: str
    epsg: int
    tile_origin: tuple[float, float]
    bounds: tuple[float, float, float, float]
    features: tuple[SclRect, ...]
    nodata_edge: NodataEdge | None
    ring_utm: tuple[tuple[float, float], ...]
    sequence: int


def _plan_scene(spec: SceneSpec, size: float, sequence: int) -> _ScenePlan:
    zone, band, column, row = parse_tile(spec.tile)
    tile = f"{zone:02d}{band}{column}{row}"
    epsg, tile_west, tile_north = mgrs_tile_origin(tile)
    east, south = spec.anchor_m
    if east % 60 or south % 60 or east < 0 or south < 0:
        raise ValueError(f"anchor_m must be non-negative multiples of 60 m, got {spec.anchor_m}")
    if east + size > S2_TILE_SIZE_M or south + size > S2_TILE_SIZE_M:
        raise ValueError(f"anchor_m {spec.anchor_m} puts the scene outside tile {tile}")
    west = tile_west + east
    north = tile_north - south
    bounds = (west, north - size, west + size, north)
    rects = tuple(
        SclRect(f.scl, west + f.left, north - f.bottom, west + f.right, north - f.top)
        for f in spec.features
    )
    if spec.nodata_edge:
        cut = NODATA_EDGE_CUT - 1.0  # v at the east edge where the cut line starts
        edge = NodataEdge(west + size, north - cut * size, 1.0, -1.0)
        ring = (
            (west, north),
            (west + size, north),
            (west + size, north - cut * size),
            (west + cut * size, north - size),
            (west, north - size),
            (west, north),
        )
    else:
        edge = None
        ring = (
            (west, north),
            (west + size, north),
            (west + size, north - size),
            (west, north - size),
            (west, north),
        )
    origin = (tile_west, tile_north)
    return _ScenePlan(spec, tile, epsg, origin, bounds, rects, edge, ring, sequence)


def _scl_counts(plan: _ScenePlan, size: float) -> np.ndarray:
    res = pixels.S2_BAND_RESOLUTION["SCL"]
    n = round(size / res)
    west, _, _, north = plan.bounds
    counts = np.zeros(256, dtype=np.int64)
    x = west + (np.arange(n) + 0.5) * res
    step = max(1, 4_000_000 // n)
    for r0 in range(0, n, step):
        r = np.arange(r0, min(n, r0 + step))
        y = north - (r + 0.5) * res
        scl = pixels.scl_class(x[None, :], y[:, None], plan.features, plan.nodata_edge)
        counts += np.bincount(scl.ravel(), minlength=256)
    return counts


def _scene_names(plan: _ScenePlan) -> dict[str, Any]:
    spec = plan.spec
    when = _utc(spec.datetime)
    letter = _platform_letter(spec.platform)
    rel_orbit = spec.relative_orbit or _tile_relative_orbit(plan.tile)
    if spec.processing_time is not None:
        processed = _utc(spec.processing_time)
    elif _baseline_tuple(spec.processing_baseline) >= (5, 0) and when.year < 2022:
        # reprocessed archive (collection 1), processed in 2023
        age = (when - dt.datetime(2015, 1, 1, tzinfo=dt.UTC)).days
        processed = dt.datetime(2023, 2, 1, 9, 0, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=age)
    else:
        processed = (when + dt.timedelta(hours=2, minutes=17, seconds=9)).replace(microsecond=0)
    baseline_code = "N" + spec.processing_baseline.replace(".", "").rjust(4, "0")
    start = _compact(when)
    proc = _compact(processed)
    pc_id = f"S2{letter}_MSIL2A_{start}_R{rel_orbit:03d}_T{plan.tile}_{proc}"
    product_uri = (
        f"S2{letter}_MSIL2A_{start}_{baseline_code}_R{rel_orbit:03d}_T{plan.tile}_{proc}.SAFE"
    )
    abs_orbit = _absolute_orbit(letter, when)
    es_id = f"S2{letter}_{plan.tile}_{when.strftime('%Y%m%d')}_{plan.sequence}_L2A"
    return {
        "letter": letter,
        "relative_orbit": rel_orbit,
        "processed": processed,
        "pc_id": pc_id,
        "es_id": es_id,
        "product_uri": product_uri,
        "abs_orbit": abs_orbit,
        "baseline_code": baseline_code,
        "start": start,
        "proc": proc,
    }


def _scene_paths(plan: _ScenePlan, names: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    zone, band, sq = plan.tile[:2], plan.tile[2], plan.tile[3:]
    when = _utc(plan.spec.datetime)
    granule = f"L2A_T{plan.tile}_A{names['abs_orbit']:06d}_{names['start']}"
    pc_dir = (
        f"sentinel2-l2/{zone}/{band}/{sq}/{when:%Y}/{when:%m}/{when:%d}/"
        f"{names['product_uri']}/GRANULE/{granule}/IMG_DATA"
    )
    pc = {}
    for b in S2_ASSETS:
        res = pixels.S2_BAND_RESOLUTION[b]
        pc[b] = f"{pc_dir}/R{res}m/T{plan.tile}_{names['start']}_{b}_{res}m.tif"
    es_dir = (
        f"sentinel-cogs/sentinel-s2-l2a-cogs/{int(zone)}/{band}/{sq}/{when.year}/{when.month}/"
        f"{names['es_id']}"
    )
    es = {ES_BAND_KEYS[b]: f"{es_dir}/{b}.tif" for b in S2_ASSETS}
    return pc, es


def _write_band(
    root: Path, rel: str, plan: _ScenePlan, band: str, size: float, offset: int
) -> None:
    res = pixels.S2_BAND_RESOLUTION[band]
    n = round(size / res)
    west, _, _, north = plan.bounds
    transform = from_origin(west, north, res, res)
    path = root / rel
    signature = _signature(
        band=band,
        offset=offset,
        features=plan.features if band == "SCL" else (),
        edge=plan.nodata_edge,
        grid=[n, *transform[:6]],
    )
    if _raster_matches(path, n, n, transform, signature):
        return
    x = (west + (np.arange(n) + 0.5) * res)[None, :]

    def rows(r0: int, r1: int) -> np.ndarray:
        y = (north - (np.arange(r0, r1) + 0.5) * res)[:, None]
        if band == "SCL":
            return pixels.scl_class(x, y, plan.features, plan.nodata_edge)
        values = pixels.s2_dn(band, x, y)
        if offset:
            values += np.uint16(offset)
        values[pixels.scene_nodata(x, y, plan.nodata_edge)] = 0
        return values

    _write_cog(
        path,
        width=n,
        height=n,
        dtype="uint8" if band == "SCL" else "uint16",
        crs=f"EPSG:{plan.epsg}",
        transform=transform,
        nodata=0,
        rows=rows,
        predictor=2,
        resampling="NEAREST" if band == "SCL" else "AVERAGE",
        tags={SIGNATURE_TAG: signature},
    )


# ----------------------------------------------------------------------------- metadata tables

_PC_EO = {
    "B01": ("coastal", "Band 1 - Coastal aerosol", 0.443, 0.027),
    "B02": ("blue", "Band 2 - Blue", 0.49, 0.098),
    "B03": ("green", "Band 3 - Green", 0.56, 0.045),
    "B04": ("red", "Band 4 - Red", 0.665, 0.038),
    "B05": ("rededge", "Band 5 - Vegetation red edge 1", 0.704, 0.019),
    "B06": ("rededge", "Band 6 - Vegetation red edge 2", 0.74, 0.018),
    "B07": ("rededge", "Band 7 - Vegetation red edge 3", 0.783, 0.028),
    "B08": ("nir", "Band 8 - NIR", 0.842, 0.145),
    "B8A": ("rededge", "Band 8A - Vegetation red edge 4", 0.865, 0.033),
    "B09": (None, "Band 9 - Water vapor", 0.945, 0.026),
    "B11": ("swir16", "Band 11 - SWIR (1.6)", 1.61, 0.143),
    "B12": ("swir22", "Band 12 - SWIR (2.2)", 2.19, 0.242),
}

_ES_EO = {
    "B01": ("coastal", "Coastal"),
    "B02": ("blue", "Blue"),
    "B03": ("green", "Green"),
    "B04": ("red", "Red"),
    "B05": ("rededge", "Red Edge 1"),
    "B06": ("rededge", "Red Edge 2"),
    "B07": ("rededge", "Red Edge 3"),
    "B08": ("nir", "NIR 1"),
    "B8A": ("nir08", "NIR 2"),
    "B09": ("nir09", "NIR 3"),
    "B11": ("swir16", "SWIR 1.6μm"),
    "B12": ("swir22", "SWIR 2.2μm"),
}

_COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

_SCL_PERCENT_KEYS = {
    "s2:nodata_pixel_percentage": (0,),
    "s2:saturated_defective_pixel_percentage": (1,),
    "s2:dark_features_percentage": (2,),
    "s2:cloud_shadow_percentage": (3,),
    "s2:vegetation_percentage": (4,),
    "s2:not_vegetated_percentage": (5,),
    "s2:water_percentage": (6,),
    "s2:unclassified_percentage": (7,),
    "s2:medium_proba_clouds_percentage": (8,),
    "s2:high_proba_clouds_percentage": (9,),
    "s2:thin_cirrus_percentage": (10,),
    "s2:snow_ice_percentage": (11,),
}


def _scl_properties(counts: np.ndarray) -> tuple[dict[str, float], dict[int, float], float]:
    total = float(counts.sum())
    valid = float(total - counts[0])
    shares = {k: 100.0 * counts[k] / total for k in range(12)}
    props: dict[str, float] = {"s2:degraded_msi_data_percentage": 0.0}
    for key, classes in _SCL_PERCENT_KEYS.items():
        if classes == (0,):
            props[key] = round(shares[0], 6)
        else:
            value = 100.0 * sum(counts[c] for c in classes) / valid if valid else 0.0
            props[key] = round(float(value), 6)
    cloud = 100.0 * sum(counts[c] for c in (8, 9, 10)) / valid if valid else 0.0
    return props, {k: round(float(v), 6) for k, v in shares.items()}, round(float(cloud), 6)


def _sun_angles(lat: float, when: dt.datetime) -> tuple[float, float]:
    """Rough (zenith, azimuth) in degrees for metadata (not used by anyone)."""
    doy = _utc(when).timetuple().tm_yday
    declination = 23.44 * math.sin(math.radians(360.0 / 365.0 * (doy - 81)))
    zenith = min(89.0, abs(lat - declination) + 5.0)
    azimuth = 160.0 if lat >= declination else 20.0
    return zenith, azimuth


# ----------------------------------------------------------------------------- STAC items


def _pc_s2_item(scene: GeneratedScene, names: dict[str, Any], scl_props: dict[str, float]) -> dict:
    props: dict[str, Any] = {
        "datetime": _iso(scene.datetime),
        "platform": f"Sentinel-2{names['letter']}",
        "proj:epsg": scene.epsg,
        "instruments": ["msi"],
        "s2:mgrs_tile": scene.tile,
        "constellation": "Sentinel 2",
        "s2:granule_id": (
            f"S2{names['letter']}_OPER_MSI_L2A_TL_ESRI_{names['proc']}_A{names['abs_orbit']:06d}"
            f"_T{scene.tile}_N{scene.processing_baseline}"
        ),
        "eo:cloud_cover": scene.cloud_cover,
        "s2:datatake_id": (
            f"GS2{names['letter']}_{names['start']}_{names['abs_orbit']:06d}_N{scene.processing_baseline}"
        ),
        "s2:product_uri": names["product_uri"],
        "s2:datastrip_id": (
            f"S2{names['letter']}_OPER_MSI_L2A_DS_ESRI_{names['proc']}_S{names['start']}"
            f"_N{scene.processing_baseline}"
        ),
        "s2:product_type": "S2MSI2A",
        "sat:orbit_state": "descending",
        "s2:datatake_type": "INS-NOBS",
        "s2:generation_time": _iso_ms(scene.processing_time),
        "sat:relative_orbit": scene.relative_orbit,
        "s2:processing_baseline": scene.processing_baseline,
    }
    lat = (scene.bbox[1] + scene.bbox[3]) / 2
    zenith, azimuth = _sun_angles(lat, scene.datetime)
    props["s2:mean_solar_zenith"] = zenith
    props["s2:mean_solar_azimuth"] = azimuth
    props["s2:reflectance_conversion_factor"] = 1.0
    props.update(scl_props)
    assets: dict[str, Any] = {}
    for b in S2_ASSETS:
        res = pixels.S2_BAND_RESOLUTION[b]
        t = scene.transform(b)
        asset: dict[str, Any] = {
            "href": scene.pc_assets[b],
            "proj:bbox": list(scene.bounds),
            "proj:shape": list(scene.shape(b)),
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "gsd": float(res),
            "type": _COG_TYPE,
            "roles": ["data"],
        }
        if b == "SCL":
            asset["title"] = "Scene classfication map (SCL)"
        else:
            common, desc, cw, fwhm = _PC_EO[b]
            asset["title"] = f"{desc} - {res}m"
            eo: dict[str, Any] = {"name": b}
            if common:
                eo["common_name"] = common
            eo.update({"description": desc, "center_wavelength": cw, "full_width_half_max": fwhm})
            asset["eo:bands"] = [eo]
        assets[b] = asset
    return {
        "id": scene.id,
        "bbox": list(scene.bbox),
        "type": "Feature",
        "links": [
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {
                "rel": "license",
                "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
            },
        ],
        "assets": assets,
        "geometry": scene.footprint,
        "collection": S2_COLLECTION,
        "properties": props,
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
        ],
        "stac_version": "1.0.0",
    }


def _es_s2_item(scene: GeneratedScene, names: dict[str, Any], scl_props: dict[str, float]) -> dict:
    zone, band, sq = scene.tile[:2], scene.tile[2], scene.tile[3:]
    when = _utc(scene.datetime)
    lon_c = (scene.bbox[0] + scene.bbox[2]) / 2
    if scene.bbox[0] > scene.bbox[2]:
        lon_c = ((scene.bbox[0] + scene.bbox[2] + 360.0) / 2 + 180.0) % 360.0 - 180.0
    lat_c = (scene.bbox[1] + scene.bbox[3]) / 2
    zenith, azimuth = _sun_angles(lat_c, scene.datetime)
    created = _iso_ms(scene.processing_time + dt.timedelta(minutes=23))
    props: dict[str, Any] = {
        "created": created,
        "platform": f"sentinel-2{names['letter'].lower()}",
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": scene.cloud_cover,
        "proj:epsg": scene.epsg,
        "proj:centroid": {"lat": round(lat_c, 5), "lon": round(lon_c, 5)},
        "mgrs:utm_zone": int(zone),
        "mgrs:latitude_band": band,
        "mgrs:grid_square": sq,
        "grid:code": f"MGRS-{scene.tile}",
        "view:azimuth": 105.0,
        "view:incidence_angle": 6.0,
        "view:sun_azimuth": azimuth,
        "view:sun_elevation": 90.0 - zenith,
        "s2:tile_id": (
            f"S2{names['letter']}_OPER_MSI_L2A_TL_2APS_{names['proc']}_A{names['abs_orbit']:06d}"
            f"_T{scene.tile}_N{scene.processing_baseline}"
        ),
    }
    props.update(scl_props)
    props.update(
        {
            "s2:product_type": "S2MSI2A",
            "s2:processing_baseline": scene.processing_baseline,
            "s2:product_uri": names["product_uri"],
            "s2:generation_time": _iso(scene.processing_time),
            "s2:datatake_id": (
                f"GS2{names['letter']}_{names['start']}_{names['abs_orbit']:06d}"
                f"_N{scene.processing_baseline}"
            ),
            "s2:datatake_type": "INS-NOBS",
            "s2:datastrip_id": (
                f"S2{names['letter']}_OPER_MSI_L2A_DS_2APS_{names['proc']}_S{names['start']}"
                f"_N{scene.processing_baseline}"
            ),
            "s2:reflectance_conversion_factor": 1.0,
            "datetime": _iso(scene.datetime),
            "s2:sequence": scene.es_id.split("_")[3],
            "earthsearch:s3_path": (
                f"s3://sentinel-cogs/sentinel-s2-l2a-cogs/{int(zone)}/{band}/{sq}/"
                f"{when.year}/{when.month}/{scene.es_id}"
            ),
            "earthsearch:payload_id": f"roda-sentinel2/workflow-sentinel2-to-stac/{scene.es_id}",
            "earthsearch:boa_offset_applied": True,
            "processing:software": {"sentinel2-to-stac": "2023.10.31"},
            "updated": created,
        }
    )
    assets: dict[str, Any] = {}
    for b in S2_ASSETS:
        key = ES_BAND_KEYS[b]
        res = pixels.S2_BAND_RESOLUTION[b]
        t = scene.transform(b)
        if b == "SCL":
            assets[key] = {
                "href": scene.es_assets[key],
                "type": _COG_TYPE,
                "title": "Scene classification map (SCL)",
                "gsd": res,
                "proj:shape": list(scene.shape(b)),
                "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
                "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": res}],
                "roles": ["data"],
            }
            continue
        common, title = _ES_EO[b]
        _, _, cw, fwhm = _PC_EO[b]
        assets[key] = {
            "href": scene.es_assets[key],
            "type": _COG_TYPE,
            "title": f"{title} - {res}m",
            "eo:bands": [
                {
                    "name": b,
                    "common_name": common,
                    "center_wavelength": cw,
                    "full_width_half_max": fwhm,
                }
            ],
            "gsd": res,
            "proj:shape": list(scene.shape(b)),
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "raster:bands": [
                {
                    "nodata": 0,
                    "data_type": "uint16",
                    "spatial_resolution": res,
                    "scale": 0.0001,
                    "offset": -0.1,
                }
            ],
            "roles": ["data", "reflectance"],
        }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
            "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
            "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        ],
        "id": scene.es_id,
        "geometry": scene.footprint,
        "bbox": [round(v, 6) for v in scene.bbox],
        "properties": props,
        "links": [
            {
                "rel": "license",
                "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice",
            },
            {"rel": "parent", "type": "application/json", "href": "../collection.json"},
            {"rel": "collection", "type": "application/json", "href": "../collection.json"},
            {"rel": "root", "type": "application/json", "href": "../../catalog.json"},
        ],
        "assets": assets,
        "collection": S2_COLLECTION,
    }


def _dem_geometry(tile: DemTile) -> tuple[dict[str, Any], list[float]]:
    w, s, e, n = tile.bbox
    ring = [[e, s], [e, n], [w, n], [w, s], [e, s]]
    return {"type": "Polygon", "coordinates": [ring]}, [w, s, e, n]


def _dem_item_pc(tile: DemTile) -> dict:
    geom, bbox = _dem_geometry(tile)
    lat_code = _lat_code(tile.lat0)
    lon_code = _lon_code(tile.lon0)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": tile.name,
        "properties": {
            "platform": "tandem-x",
            "gsd": 30,
            "providers": [
                {
                    "name": "European Space Agency",
                    "roles": ["licensor"],
                    "url": "https://spacedata.copernicus.eu/documents/20126/0/CSCDA_ESA_Mission-specific+Annex.pdf",
                },
                {
                    "name": "Sinergise",
                    "roles": ["producer", "processor"],
                    "url": "https://registry.opendata.aws/copernicus-dem/",
                },
            ],
            "license": "proprietary",
            "proj:epsg": 4326,
            "proj:transform": list(tile.transform),
            "proj:shape": list(tile.shape),
            "proj:centroid": {"lat": tile.lat0 + 0.5, "lon": tile.lon0 + 0.5},
            "grid:code": f"CDEM-{lat_code}{lon_code}",
            "datetime": "2021-04-22T00:00:00Z",
        },
        "geometry": geom,
        "links": [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        ],
        "assets": {
            "data": {
                "href": tile.pc_path,
                "type": _COG_TYPE,
                "title": "Data",
                "raster:bands": [
                    {
                        "sampling": "point",
                        "data_type": "float32",
                        "spatial_resolution": 30,
                        "unit": "meter",
                    }
                ],
                "roles": ["data"],
            }
        },
        "bbox": bbox,
        "stac_extensions": [
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
            "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
        ],
        "collection": DEM_COLLECTION,
    }


def _dem_item_es(tile: DemTile) -> dict:
    geom, bbox = _dem_geometry(tile)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": tile.name,
        "properties": {
            "platform": "tandem-x",
            "gsd": 30,
            "proj:epsg": 4326,
            "proj:transform": list(tile.transform),
            "proj:shape": list(tile.shape),
            "proj:centroid": {"lat": tile.lat0 + 0.5, "lon": tile.lon0 + 0.5},
            "grid:code": f"CDEM-{_lat_code(tile.lat0)}{_lon_code(tile.lon0)}",
            "storage:platform": "AWS",
            "storage:region": "eu-central-1",
            "storage:requester_pays": False,
            "earthsearch:payload_id": f"cop-dem-glo/workflow-cop-dem-glo-to-stac/{tile.name}",
            "datetime": "2021-04-22T00:00:00Z",
            "processing:software": {"cop-dem-glo-to-stac": "2023.03.28"},
            "created": "2023-03-28T15:22:58.882Z",
            "updated": "2023-04-20T18:14:07.025Z",
        },
        "geometry": geom,
        "links": [
            {"rel": "parent", "type": "application/json", "href": "../collection.json"},
            {"rel": "collection", "type": "application/json", "href": "../collection.json"},
            {"rel": "root", "type": "application/json", "href": "../../catalog.json"},
        ],
        "assets": {
            "data": {
                "href": f"s3://{tile.es_path}",
                "type": _COG_TYPE,
                "title": "Data",
                "raster:bands": [
                    {
                        "sampling": "point",
                        "data_type": "float32",
                        "spatial_resolution": 30,
                        "unit": "meter",
                    }
                ],
                "roles": ["data"],
            }
        },
        "bbox": bbox,
        "stac_extensions": [
            "https://stac-extensions.github.io/storage/v1.0.0/schema.json",
            "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        ],
        "collection": DEM_COLLECTION,
    }


_WC_CLASSES = [
    (10, "Tree cover", "006400"),
    (20, "Shrubland", "FFBB22"),
    (30, "Grassland", "FFFF4C"),
    (40, "Cropland", "F096FF"),
    (50, "Built-up", "FA0000"),
    (60, "Bare / sparse vegetation", "B4B4B4"),
    (70, "Snow and ice", "F0F0F0"),
    (80, "Permanent water bodies", "0064C8"),
    (90, "Herbaceous wetland", "0096A0"),
    (95, "Mangroves", "00CF75"),
    (100, "Moss and lichen", "FAE6A0"),
]


def _worldcover_item(tile: WorldCoverTile) -> dict:
    w, s, e, n = tile.lon0, tile.lat0, tile.lon0 + 3, tile.lat0 + 3
    code = f"{_lat_code(tile.lat0)}{_lon_code(tile.lon0)}"
    version = _WC_VERSIONS[tile.year][1]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": tile.name,
        "properties": {
            "esa_worldcover:product_version": version,
            "esa_worldcover:product_tile": code,
            "start_datetime": f"{tile.year}-01-01T00:00:00Z",
            "end_datetime": f"{tile.year}-12-31T23:59:59Z",
            "description": "ESA WorldCover product at 10m resolution",
            "mission": "sentinel-1, sentinel-2",
            "platform": "sentinel-1a, sentinel-1b, sentinel-2a, sentinel-2b",
            "instruments": ["c-sar", "msi"],
            "proj:epsg": 4326,
            "grid:code": f"ESAWORLDCOVER-{code}",
            "datetime": None,
        },
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
        },
        "links": [
            {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
            {"rel": "collection", "href": "../collection.json", "type": "application/json"},
            {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        ],
        "assets": {
            "map": {
                "href": tile.path,
                "type": _COG_TYPE,
                "title": "Land Cover Classes",
                "description": (
                    "Discrete classification according to the Land Cover Classification "
                    "System scheme developed by the United Nations Food and Agriculture "
                    "Organization"
                ),
                "raster:bands": [
                    {
                        "name": "Band1",
                        "description": "Classification values",
                        "nodata": 0,
                        "sampling": "area",
                        "data_type": "uint8",
                        "spatial_resolution": 10,
                    }
                ],
                "classification:classes": [
                    {"value": v, "description": d, "color-hint": c} for v, d, c in _WC_CLASSES
                ],
                "proj:transform": list(tile.transform),
                "proj:shape": list(tile.shape),
                "roles": ["data"],
            }
        },
        "bbox": [w, s, e, n],
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/classification/v1.0.0/schema.json",
        ],
        "collection": WORLDCOVER_COLLECTION,
    }


_COLLECTION_TEXT = {
    S2_COLLECTION: (
        "Sentinel-2 Level-2A",
        "Generated Sentinel-2 L2A surface reflectance scenes on the real MGRS grid "
        "(gedidata offline world).",
        "proprietary",
    ),
    DEM_COLLECTION: (
        "Copernicus DEM GLO-30",
        "Generated Copernicus DEM GLO-30 tiles on the real 1-degree grid (gedidata offline world).",
        "proprietary",
    ),
    WORLDCOVER_COLLECTION: (
        "ESA WorldCover",
        "Generated ESA WorldCover 10 m land cover tiles on the real 3-degree grid "
        "(gedidata offline world).",
        "CC-BY-4.0",
    ),
}


def _collection(
    collection_id: str,
    bboxes: list[list[float]],
    interval: tuple[str | None, str | None],
    summaries: dict[str, Any] | None = None,
) -> dict:
    title, description, license_ = _COLLECTION_TEXT[collection_id]
    if bboxes:
        union = [
            min(b[0] for b in bboxes),
            min(b[1] for b in bboxes),
            max(b[2] for b in bboxes),
            max(b[3] for b in bboxes),
        ]
        if any(b[0] > b[2] for b in bboxes):
            union[0], union[2] = -180.0, 180.0
    else:
        union = [-180.0, -90.0, 180.0, 90.0]
    data: dict[str, Any] = {
        "type": "Collection",
        "id": collection_id,
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "title": title,
        "description": description,
        "license": license_,
        "extent": {
            "spatial": {"bbox": [union, *bboxes]},
            "temporal": {"interval": [list(interval)]},
        },
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        ],
    }
    if summaries:
        data["summaries"] = summaries
    return data


def _catalog(profile: str, collections: Iterable[str]) -> dict:
    return {
        "type": "Catalog",
        "id": f"gedidata-world-{profile}",
        "stac_version": "1.0.0",
        "description": f"gedidata offline world, {profile} layout",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
        + [
            {"rel": "child", "href": f"./{c}/collection.json", "type": "application/json"}
            for c in collections
        ],
    }


# ----------------------------------------------------------------------------- DEM / WorldCover


def write_dem_tile(root: Path, lon0: int, lat0: int) -> DemTile:
    """Write (if needed) the DEM tile with SW corner (lon0, lat0) in both layouts."""
    root = Path(root)
    name = dem_tile_name(lon0, lat0)
    transform, width, height = dem_tile_grid(lon0, lat0)
    pc_rel = f"copernicus-dem/COP30_hh/{name}.tif"
    es_rel = f"copernicus-dem-30m/{name}/{name}.tif"  # s3://copernicus-dem-30m/... in items
    pc_path = root / pc_rel
    signature = _signature(dem=name, grid=[width, height, *transform[:6]])
    if not _raster_matches(pc_path, width, height, transform, signature):
        lon = transform.c + (np.arange(width) + 0.5) * transform.a

        def rows(r0: int, r1: int) -> np.ndarray:
            lat = transform.f + (np.arange(r0, r1) + 0.5) * transform.e
            return pixels.dem_elevation(lon[None, :], lat[:, None])

        _write_cog(
            pc_path,
            width=width,
            height=height,
            dtype="float32",
            crs="EPSG:4326",
            transform=transform,
            nodata=None,
            rows=rows,
            predictor=3,
            resampling="AVERAGE",
            tags={SIGNATURE_TAG: signature},
        )
    _link_or_copy(pc_path, root / es_rel)
    west, north = transform.c, transform.f
    return DemTile(
        name=name,
        lon0=lon0,
        lat0=lat0,
        pc_path=pc_rel,
        es_path=es_rel,
        transform=(transform.a, transform.b, transform.c, transform.d, transform.e, transform.f),
        shape=(height, width),
        bbox=(west, north + height * transform.e, west + width * transform.a, north),
    )


_WC_PIXELS = 36_000
_WC_RES = 3.0 / _WC_PIXELS


def _worldcover_windows(
    lon0: int, lat0: int, boxes: Sequence[tuple[float, float, float, float]]
) -> list[tuple[int, int, int, int]]:
    """1024-aligned pixel windows of a WorldCover tile that overlap the lon/lat boxes."""
    blocks: set[tuple[int, int]] = set()
    for w, s, e, n in boxes:
        w, e = max(w, lon0), min(e, lon0 + 3)
        s, n = max(s, lat0), min(n, lat0 + 3)
        if w >= e or s >= n:
            continue
        c0 = math.floor((w - lon0) / _WC_RES) // COG_BLOCKSIZE
        c1 = (math.ceil((e - lon0) / _WC_RES) - 1) // COG_BLOCKSIZE
        r0 = math.floor((lat0 + 3 - n) / _WC_RES) // COG_BLOCKSIZE
        r1 = (math.ceil((lat0 + 3 - s) / _WC_RES) - 1) // COG_BLOCKSIZE
        for br in range(r0, min(r1, (_WC_PIXELS - 1) // COG_BLOCKSIZE) + 1):
            for bc in range(c0, min(c1, (_WC_PIXELS - 1) // COG_BLOCKSIZE) + 1):
                blocks.add((br, bc))
    windows = []
    for br, bc in sorted(blocks):
        col, row = bc * COG_BLOCKSIZE, br * COG_BLOCKSIZE
        windows.append(
            (col, row, min(COG_BLOCKSIZE, _WC_PIXELS - col), min(COG_BLOCKSIZE, _WC_PIXELS - row))
        )
    return windows


def _wc_colormap() -> dict[int, tuple[int, int, int, int]]:
    cmap = {i: (0, 0, 0, 255) for i in range(256)}
    cmap[0] = (0, 0, 0, 0)
    for value, _, hint in _WC_CLASSES:
        cmap[value] = (int(hint[0:2], 16), int(hint[2:4], 16), int(hint[4:6], 16), 255)
    return cmap


def _write_worldcover_tile(
    root: Path,
    lon0: int,
    lat0: int,
    year: int,
    boxes: Sequence[tuple[float, float, float, float]],
    overviews: bool,
) -> WorldCoverTile:
    name = worldcover_tile_name(lon0, lat0, year)
    version = _WC_VERSIONS[year][0]
    rel = f"esa-worldcover/{version}/{year}/map/{name}_Map.tif"
    path = root / rel
    transform = Affine(_WC_RES, 0.0, float(lon0), 0.0, -_WC_RES, float(lat0 + 3))
    windows = _worldcover_windows(lon0, lat0, boxes)
    tile = WorldCoverTile(
        name=name,
        year=year,
        version=version,
        lon0=lon0,
        lat0=lat0,
        path=rel,
        transform=(transform.a, transform.b, transform.c, transform.d, transform.e, transform.f),
        shape=(_WC_PIXELS, _WC_PIXELS),
        written=tuple(windows),
    )
    signature = _signature(worldcover=name, written=windows, overviews=overviews)
    if _raster_matches(path, _WC_PIXELS, _WC_PIXELS, transform, signature):
        return tile
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    profile = {
        "driver": "GTiff",
        "width": _WC_PIXELS,
        "height": _WC_PIXELS,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": transform,
        "nodata": 0,
        "tiled": True,
        "blockxsize": COG_BLOCKSIZE,
        "blockysize": COG_BLOCKSIZE,
        "compress": "DEFLATE",
        "sparse_ok": True,
    }
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            for col, row, width, height in windows:
                lon = lon0 + (np.arange(col, col + width) + 0.5) * _WC_RES
                lat = lat0 + 3 - (np.arange(row, row + height) + 0.5) * _WC_RES
                data = pixels.worldcover_class(lon[None, :], lat[:, None], year)
                ds.write(data, 1, window=Window(col, row, width, height))
            ds.write_colormap(1, _wc_colormap())
            ds.update_tags(
                product_tile=f"{_lat_code(lat0)}{_lon_code(lon0)}",
                product_version=f"V{_WC_VERSIONS[year][1]}",
                product_crs="EPSG:4326",
                product_grid="3x3 degree tiling grid",
                time_start=f"{year}-01-01T00:00:00Z",
                time_end=f"{year}-12-31T23:59:59Z",
                title=f"ESA WorldCover product at 10m resolution for year {year} (generated)",
                OVR_RESAMPLING_ALG="NEAREST",
                **{SIGNATURE_TAG: signature},
            )
            if overviews:
                ds.build_overviews([2, 4, 8, 16, 32, 64], Resampling.nearest)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return tile


# ----------------------------------------------------------------------------- world


def _covering_dem_tiles(boxes: Iterable[Box]) -> list[tuple[int, int]]:
    tiles: set[tuple[int, int]] = set()
    for w, s, e, n in boxes:
        for lon0 in range(math.floor(w), math.ceil(e)):
            for lat0 in range(math.floor(s), math.ceil(n)):
                if -180 <= lon0 < 180 and -90 <= lat0 < 90:
                    tiles.add((lon0, lat0))
    return sorted(tiles, key=lambda t: (t[1], t[0]))


def _covering_wc_tiles(boxes: Iterable[Box]) -> list[tuple[int, int]]:
    tiles: set[tuple[int, int]] = set()
    for w, s, e, n in boxes:
        for lon0 in range(3 * math.floor(w / 3), math.ceil(e), 3):
            for lat0 in range(3 * math.floor(s / 3), math.ceil(n), 3):
                if -180 <= lon0 < 180 and -90 <= lat0 < 90:
                    tiles.add((lon0, lat0))
    return sorted(tiles, key=lambda t: (t[1], t[0]))


def _expand(box_: Box, margin: float) -> Box:
    w, s, e, n = box_
    return (
        max(-180.0, w - margin),
        max(-90.0, s - margin),
        min(180.0, e + margin),
        min(90.0, n + margin),
    )


def _write_scene_band(
    root: Path,
    plan: _ScenePlan,
    band: str,
    size: float,
    pc_offset: int,
    pc_rel: str,
    es_assets: dict[str, str],
) -> None:
    """Write one band of a scene in both layouts (a hard link where the bytes are equal)."""
    _write_band(root, pc_rel, plan, band, size, 0 if band == "SCL" else pc_offset)
    es_rel = es_assets[ES_BAND_KEYS[band]]
    if band == "SCL" or pc_offset == BOA_ADD_OFFSET:
        _link_or_copy(root / pc_rel, root / es_rel)
    else:
        _write_band(root, es_rel, plan, band, size, BOA_ADD_OFFSET)


def write_world(spec: WorldSpec, *, workers: int | None = None) -> World:
    """Write every file of ``spec`` below ``spec.root``, skipping complete ones (module doc).

    ``workers`` threads write rasters concurrently (default: the number of CPUs).
    """
    root = Path(spec.root)
    root.mkdir(parents=True, exist_ok=True)
    size = float(spec.tile_size_m)
    if size <= 0 or size % 60 or size > S2_TILE_SIZE_M:
        raise ValueError(f"tile_size_m must be a multiple of 60 m up to 109800, got {size}")

    # plan scenes (Earth Search sequence numbers count same-tile same-day acquisitions)
    seen: dict[tuple[str, str], int] = {}
    plans: list[_ScenePlan] = []
    for s in spec.scenes:
        zone, band, col, row = parse_tile(s.tile)
        key = (f"{zone:02d}{band}{col}{row}", _utc(s.datetime).strftime("%Y%m%d"))
        plans.append(_plan_scene(s, size, seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1

    scenes: list[GeneratedScene] = []
    jobs: list[Callable[[], Any]] = []
    names_of: dict[str, dict[str, Any]] = {}
    props_of: dict[str, dict[str, float]] = {}
    regions: list[tuple[float, float, float, float]] = []
    for plan in plans:
        names = _scene_names(plan)
        pc_assets, es_assets = _scene_paths(plan, names)
        footprint, bbox, _ = _lonlat_geometry(plan.ring_utm, plan.epsg)
        _, _, square_boxes = _lonlat_geometry(
            (
                (plan.bounds[0], plan.bounds[3]),
                (plan.bounds[2], plan.bounds[3]),
                (plan.bounds[2], plan.bounds[1]),
                (plan.bounds[0], plan.bounds[1]),
                (plan.bounds[0], plan.bounds[3]),
            ),
            plan.epsg,
        )
        regions.extend(_expand(b, spec.margin_deg) for b in square_boxes)
        counts = _scl_counts(plan, size)
        cloud_spec = plan.spec.cloud_cover
        scl_props, shares, cloud = _scl_properties(counts)
        pc_offset = _baseline_offset(plan.spec.processing_baseline)
        scene = GeneratedScene(
            id=names["pc_id"],
            es_id=names["es_id"],
            tile=plan.tile,
            epsg=plan.epsg,
            datetime=_utc(plan.spec.datetime),
            cloud_cover=float(cloud_spec) if cloud_spec is not None else cloud,
            processing_baseline=plan.spec.processing_baseline,
            platform=f"sentinel-2{names['letter'].lower()}",
            relative_orbit=names["relative_orbit"],
            processing_time=names["processed"],
            bounds=plan.bounds,
            tile_origin=plan.tile_origin,
            footprint=footprint,
            bbox=bbox,
            footprint_utm=plan.ring_utm,
            features=plan.features,
            nodata_edge=plan.nodata_edge,
            pc_offset=pc_offset,
            es_offset=BOA_ADD_OFFSET,
            pc_assets=pc_assets,
            es_assets=es_assets,
            scl_percentages=shares,
        )
        for b in S2_ASSETS:
            jobs.append(
                functools.partial(
                    _write_scene_band, root, plan, b, size, pc_offset, pc_assets[b], es_assets
                )
            )
        scenes.append(scene)
        names_of[scene.id] = names
        props_of[scene.id] = scl_props

    regions.extend(spec.extra_regions)
    dem_keys = list(spec.dem_tiles) if spec.dem_tiles is not None else _covering_dem_tiles(regions)
    wc_keys = (
        list(spec.worldcover_tiles)
        if spec.worldcover_tiles is not None
        else _covering_wc_tiles(regions)
    )
    dem_jobs = [functools.partial(write_dem_tile, root, lon0, lat0) for lon0, lat0 in dem_keys]
    wc_jobs = [
        functools.partial(
            _write_worldcover_tile, root, lon0, lat0, year, regions, spec.worldcover_overviews
        )
        for year in spec.worldcover_years
        for lon0, lat0 in wc_keys
    ]
    # Big jobs first; GDAL releases the GIL while it compresses, so threads overlap.
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    all_jobs = [*dem_jobs, *wc_jobs, *jobs]
    if n_workers <= 1:
        results = [job() for job in all_jobs]
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            futures = [pool.submit(job) for job in all_jobs]
            results = [f.result() for f in futures]
    dem_tiles: list[DemTile] = results[: len(dem_jobs)]
    wc_tiles: list[WorldCoverTile] = results[len(dem_jobs) : len(dem_jobs) + len(wc_jobs)]

    # STAC
    item_paths: dict[str, dict[str, list[str]]] = {p: {} for p in PROFILES}
    collection_paths: dict[str, dict[str, str]] = {p: {} for p in PROFILES}
    catalog_paths: dict[str, str] = {}

    def put_item(profile: str, collection: str, item: dict) -> None:
        rel = f"stac/{profile}/{collection}/items/{item['id']}.json"
        _write_json(root / rel, item)
        item_paths[profile].setdefault(collection, []).append(rel)

    for scene in scenes:
        put_item(
            "planetary-computer",
            S2_COLLECTION,
            _pc_s2_item(scene, names_of[scene.id], props_of[scene.id]),
        )
        put_item(
            "earth-search",
            S2_COLLECTION,
            _es_s2_item(scene, names_of[scene.id], props_of[scene.id]),
        )
    for tile in dem_tiles:
        put_item("planetary-computer", DEM_COLLECTION, _dem_item_pc(tile))
        put_item("earth-search", DEM_COLLECTION, _dem_item_es(tile))
    for tile in wc_tiles:
        put_item("planetary-computer", WORLDCOVER_COLLECTION, _worldcover_item(tile))

    s2_bboxes = [list(s.bbox) for s in scenes]
    s2_times = sorted(s.datetime for s in scenes)
    s2_interval: tuple[str | None, str | None] = (None, None)
    if s2_times:
        s2_interval = (_iso(s2_times[0], micro=False), _iso(s2_times[-1], micro=False))
    dem_bboxes = [list(t.bbox) for t in dem_tiles]
    wc_bboxes = [[t.lon0, t.lat0, t.lon0 + 3, t.lat0 + 3] for t in wc_tiles]
    wc_years = sorted({t.year for t in wc_tiles})
    wc_interval = (
        (f"{wc_years[0]}-01-01T00:00:00Z", f"{wc_years[-1]}-12-31T23:59:59Z")
        if wc_years
        else (None, None)
    )
    for profile in PROFILES:
        collections = {
            S2_COLLECTION: _collection(
                S2_COLLECTION,
                s2_bboxes,
                s2_interval,
                {
                    "platform": sorted({s.platform for s in scenes}),
                    "constellation": ["sentinel-2"],
                    "gsd": [10, 20, 60],
                },
            ),
            DEM_COLLECTION: _collection(
                DEM_COLLECTION, dem_bboxes, ("2021-04-22T00:00:00Z", "2021-04-22T00:00:00Z")
            ),
        }
        if profile == "planetary-computer":
            collections[WORLDCOVER_COLLECTION] = _collection(
                WORLDCOVER_COLLECTION,
                wc_bboxes,
                wc_interval,
                {"esa_worldcover:product_version": [_WC_VERSIONS[y][1] for y in wc_years]},
            )
        for cid, data in collections.items():
            rel = f"stac/{profile}/{cid}/collection.json"
            data["links"].extend(
                {"rel": "item", "href": f"./items/{Path(p).name}", "type": "application/geo+json"}
                for p in item_paths[profile].get(cid, [])
            )
            _write_json(root / rel, data)
            collection_paths[profile][cid] = rel
            item_paths[profile].setdefault(cid, [])
        cat_rel = f"stac/{profile}/catalog.json"
        _write_json(root / cat_rel, _catalog(profile, collections))
        catalog_paths[profile] = cat_rel

    world = World(
        root=root,
        tile_size_m=size,
        scenes=scenes,
        dem_tiles=dem_tiles,
        worldcover_tiles=wc_tiles,
        item_paths=item_paths,
        collection_paths=collection_paths,
        catalog_paths=catalog_paths,
    )
    _write_json(root / WORLD_MANIFEST, _world_to_json(world))
    return world


# ----------------------------------------------------------------------------- manifest


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def _world_to_json(world: World) -> dict[str, Any]:
    scenes = []
    for s in world.scenes:
        d = asdict(s)
        d["features"] = [list(f) for f in s.features]
        d["nodata_edge"] = list(s.nodata_edge) if s.nodata_edge else None
        scenes.append(_jsonable(d))
    return {
        "version": MANIFEST_VERSION,
        "tile_size_m": world.tile_size_m,
        "scenes": scenes,
        "dem_tiles": [_jsonable(asdict(t)) for t in world.dem_tiles],
        "worldcover_tiles": [_jsonable(asdict(t)) for t in world.worldcover_tiles],
        "item_paths": world.item_paths,
        "collection_paths": world.collection_paths,
        "catalog_paths": world.catalog_paths,
    }


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def load_world(root: Path) -> World:
    """Read the `World` that `write_world` described in ``root/world.json``."""
    root = Path(root)
    data = json.loads((root / WORLD_MANIFEST).read_text())
    if data.get("version") != MANIFEST_VERSION:
        raise ValueError(
            f"{root / WORLD_MANIFEST}: unsupported manifest version {data.get('version')}"
        )
    scenes = []
    for d in data["scenes"]:
        scenes.append(
            GeneratedScene(
                id=d["id"],
                es_id=d["es_id"],
                tile=d["tile"],
                epsg=int(d["epsg"]),
                datetime=_parse_time(d["datetime"]),
                cloud_cover=float(d["cloud_cover"]),
                processing_baseline=d["processing_baseline"],
                platform=d["platform"],
                relative_orbit=int(d["relative_orbit"]),
                processing_time=_parse_time(d["processing_time"]),
                bounds=tuple(d["bounds"]),
                tile_origin=tuple(d["tile_origin"]),
                footprint=d["footprint"],
                bbox=tuple(d["bbox"]),
                footprint_utm=tuple(tuple(p) for p in d["footprint_utm"]),
                features=tuple(SclRect(*f) for f in d["features"]),
                nodata_edge=NodataEdge(*d["nodata_edge"]) if d["nodata_edge"] else None,
                pc_offset=int(d["pc_offset"]),
                es_offset=int(d["es_offset"]),
                pc_assets=dict(d["pc_assets"]),
                es_assets=dict(d["es_assets"]),
                scl_percentages={int(k): float(v) for k, v in d["scl_percentages"].items()},
            )
        )
    dem_tiles = [
        DemTile(
            name=t["name"],
            lon0=t["lon0"],
            lat0=t["lat0"],
            pc_path=t["pc_path"],
            es_path=t["es_path"],
            transform=tuple(t["transform"]),
            shape=tuple(t["shape"]),
            bbox=tuple(t["bbox"]),
        )
        for t in data["dem_tiles"]
    ]
    wc_tiles = [
        WorldCoverTile(
            name=t["name"],
            year=t["year"],
            version=t["version"],
            lon0=t["lon0"],
            lat0=t["lat0"],
            path=t["path"],
            transform=tuple(t["transform"]),
            shape=tuple(t["shape"]),
            written=tuple(tuple(w) for w in t["written"]),
        )
        for t in data["worldcover_tiles"]
    ]
    return World(
        root=root,
        tile_size_m=float(data["tile_size_m"]),
        scenes=scenes,
        dem_tiles=dem_tiles,
        worldcover_tiles=wc_tiles,
        item_paths=data["item_paths"],
        collection_paths=data["collection_paths"],
        catalog_paths=data.get("catalog_paths", {}),
    )


# ----------------------------------------------------------------------------- default world

TEST_TILE_SIZE_M = 6_000
"""Side of the generated sub-square of every tile in `default_test_world` (600 px at 10 m)."""


def default_test_world(root: Path) -> WorldSpec:
    """A small world for tests and the demo (writes in a few seconds).

    Four tiles, 6 km x 6 km of each (`TEST_TILE_SIZE_M`), acquisitions in 2020 and 2021:

    - ``32TMT`` (EPSG:32632, Switzerland/Alsace, the tile's upper-left corner): five
      scenes — 2020-07-08 (02.14, eo:cloud_cover 8, high-probability cloud, shadow and
      water rectangles), 2020-07-13 (02.14, cloud 2.5 but a medium-probability cloud
      over rows/cols 600–2400 m from the corner: the best candidate that fails the SCL
      check there), 2020-07-18 (02.14, cloud 63: above the limit), 2021-07-03
      (reprocessed 05.00, +1000 offset, snow / not-vegetated / saturated rectangles and
      a no-data edge), 2021-07-08 (03.00, cloud 1.2, clean).
    - ``21MUQ`` (EPSG:32721, southern hemisphere, Amazon; centred on the 2021 GEDI
      fixture granule's first cluster at 58.05°W 5.08°S): 2020-08-20 (02.14, no-data
      edge), 2021-05-25 (03.00, cloud 12, cloud + shadow), 2021-06-04 (05.00, cloud 4).
    - ``60KZG`` (EPSG:32760, Fiji): the sub-square straddles the antimeridian
      (footprints are MultiPolygons; DEM and WorldCover tiles on both sides):
      2020-03-10 (02.14), 2021-03-15 (05.00).
    - ``39SWV`` (EPSG:32639, northern Iran; centred on the 2020 GEDI fixture granule's
      cluster at 51.45°E 36.08°N): 2020-02-03 (02.14, cloud 3), 2020-02-08 (02.14,
      cloud 14, water rectangle).

    WorldCover tiles are written without overviews to keep it fast.
    """
    size = TEST_TILE_SIZE_M
    amazon = anchor_around("21MUQ", -58.05, -5.08, size)
    fiji = anchor_around("60KZG", 180.0, -16.8, size)
    iran = anchor_around("39SWV", 51.45, 36.08, size)

    def t(*args: int) -> dt.datetime:
        return dt.datetime(*args, tzinfo=dt.UTC)

    scenes = [
        SceneSpec(
            "32TMT",
            t(2020, 7, 8, 10, 30, 31),
            cloud_cover=8.0,
            processing_baseline="02.14",
            platform="sentinel-2a",
            features=(
                Feature(9, 3600, 600, 5400, 2400),
                Feature(3, 3000, 2400, 4800, 3000),
                Feature(6, 600, 4200, 1800, 5400),
            ),
        ),
        SceneSpec(
            "32TMT",
            t(2020, 7, 13, 10, 30, 29),
            cloud_cover=2.5,
            processing_baseline="02.14",
            platform="sentinel-2b",
            features=(Feature(8, 600, 600, 2400, 2400),),
        ),
        SceneSpec(
            "32TMT",
            t(2020, 7, 18, 10, 30, 31),
            cloud_cover=63.0,
            processing_baseline="02.14",
            platform="sentinel-2a",
            features=(Feature(9, 0, 0, 6000, 3600),),
        ),
        SceneSpec(
            "32TMT",
            t(2021, 7, 3, 10, 30, 31),
            processing_baseline="05.00",
            platform="sentinel-2a",
            features=(
                Feature(11, 600, 600, 1800, 1800),
                Feature(5, 3000, 600, 4200, 1800),
                Feature(1, 2400, 3000, 2600, 3200),
            ),
            nodata_edge=True,
        ),
        SceneSpec(
            "32TMT",
            t(2021, 7, 8, 10, 30, 29),
            cloud_cover=1.2,
            processing_baseline="03.00",
            platform="sentinel-2b",
        ),
        SceneSpec(
            "21MUQ",
            t(2020, 8, 20, 14, 7, 21),
            processing_baseline="02.14",
            platform="sentinel-2a",
            anchor_m=amazon,
            nodata_edge=True,
        ),
        SceneSpec(
            "21MUQ",
            t(2021, 5, 25, 14, 7, 19),
            cloud_cover=12.0,
            processing_baseline="03.00",
            platform="sentinel-2b",
            anchor_m=amazon,
            features=(Feature(9, 4200, 600, 5400, 1800), Feature(3, 3600, 1800, 4800, 2400)),
        ),
        SceneSpec(
            "21MUQ",
            t(2021, 6, 4, 14, 7, 19),
            cloud_cover=4.0,
            processing_baseline="05.00",
            platform="sentinel-2b",
            anchor_m=amazon,
        ),
        SceneSpec(
            "60KZG",
            t(2020, 3, 10, 22, 25, 1),
            cloud_cover=6.0,
            processing_baseline="02.14",
            platform="sentinel-2a",
            anchor_m=fiji,
        ),
        SceneSpec(
            "60KZG",
            t(2021, 3, 15, 22, 25, 9),
            cloud_cover=9.0,
            processing_baseline="05.00",
            platform="sentinel-2b",
            anchor_m=fiji,
        ),
        SceneSpec(
            "39SWV",
            t(2020, 2, 3, 7, 26, 51),
            cloud_cover=3.0,
            processing_baseline="02.14",
            platform="sentinel-2a",
            anchor_m=iran,
        ),
        SceneSpec(
            "39SWV",
            t(2020, 2, 8, 7, 26, 49),
            cloud_cover=14.0,
            processing_baseline="02.14",
            platform="sentinel-2b",
            anchor_m=iran,
            features=(Feature(6, 1200, 3600, 3000, 4800),),
        ),
    ]
    return WorldSpec(
        root=Path(root),
        scenes=scenes,
        tile_size_m=size,
        worldcover_overviews=False,
    )
