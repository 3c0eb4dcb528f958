"""Finding the Sentinel-2 scenes of many footprints with few STAC requests.

Footprints are grouped by area (a `cell_deg` lon/lat cell) and date (windows of
`2 x search_days`); each group costs one POST search (plus paging), however many
footprints it holds. The candidates of a footprint are then chosen locally from its
group's items: acquired within ±`search_days`, `eo:cloud_cover` below the limit, and
an item footprint geometry that contains the footprint's whole 32 x 32 window on the
item's own 10 m grid; ordered by cloud cover.

`query` and `sortby` are pushed to the server only where its conformance advertises
them (Planetary Computer does); otherwise — and always, to be safe — the client
filters and sorts itself. Requests are retried with backoff on 5xx, timeouts and
reset connections, POST included (pystac-client's default retry skips POST).
"""

from __future__ import annotations

import functools
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import requests
import shapely
from affine import Affine
from pyproj import Transformer
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3.util.retry import Retry

from gedidata.domain.geometry import WINDOW_SIZE, PixelWindow, window_offsets
from gedidata.sources.profiles import SourceProfile
from gedidata.sources.signing import redact

logger = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class FootprintQuery:
    """A footprint to find scenes for."""

    shot_number: int
    lon: float
    lat: float
    time: datetime
    """Acquisition time (naive values are taken as UTC)."""


@dataclass(frozen=True)
class SceneCandidate:
    """A scene whose footprint holds the whole window of a footprint."""

    item: dict[str, Any]
    cloud_cover: float
    datetime: datetime
    epsg: int
    grid: Affine
    """The item's 10 m pixel grid."""
    window: PixelWindow
    """The footprint's 32 x 32 window on `grid`."""

    @property
    def item_id(self) -> str:
        return str(self.item["id"])


@dataclass
class SceneSearchResult:
    """Candidates per shot number (best first) and the shots whose search failed."""

    candidates: dict[int, list[SceneCandidate]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    groups: int = 0


def retrying_stac_io(
    retries: int = 5, backoff: float = 0.5, timeout: float | tuple[float, float] = (10.0, 60.0)
) -> StacApiIO:
    """A `StacApiIO` that retries transient failures of every method, POST included.

    ``timeout`` is requests' (connect, read) seconds per attempt; a read timeout is
    retried like a 5xx.
    """
    retry = Retry(
        total=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # None = retry any verb
        raise_on_status=False,
    )
    return StacApiIO(max_retries=retry, timeout=timeout)


class SceneSearch:
    """Finds candidate Sentinel-2 scenes for batches of footprints."""

    def __init__(
        self,
        profile: SourceProfile,
        *,
        max_cloud_cover: float = 25.0,
        search_days: int = 10,
        cell_deg: float = 1.0,
        page_limit: int = 250,
        stac_io: StacApiIO | None = None,
    ) -> None:
        self.profile = profile
        self.max_cloud_cover = max_cloud_cover
        self.search_days = search_days
        self.cell_deg = cell_deg
        self.page_limit = page_limit
        self.stac_io = stac_io or retrying_stac_io()
        self.http_requests = 0
        self.stac_io.session.hooks["response"].append(self._count_response)
        # (Client.open sets the StacApiIO's timeout to its own argument, None by default)
        self.client = Client.open(
            profile.stac_url, stac_io=self.stac_io, timeout=self.stac_io.timeout
        )
        self.push_query = self.client.conforms_to(ConformanceClasses.QUERY)
        self.push_sort = self.client.conforms_to(ConformanceClasses.SORT)

    def _count_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.http_requests += 1

    def find(self, footprints: Sequence[FootprintQuery]) -> SceneSearchResult:
        """Candidates of every footprint, grouped into few searches."""
        result = SceneSearchResult()
        groups = group_footprints(footprints, self.cell_deg, 2 * self.search_days)
        result.groups = len(groups)
        for members in groups.values():
            try:
                items = self._search_group(members)
            except (APIError, requests.RequestException) as error:
                message = f"STAC search failed after retries: {redact(str(error))[:300]}"
                logger.warning("%s (%d footprints)", message, len(members))
                for footprint in members:
                    result.errors[footprint.shot_number] = message
                continue
            for footprint in members:
                result.candidates[footprint.shot_number] = []
            for item in items:
                self._match(item, members, result)
            for footprint in members:
                result.candidates[footprint.shot_number].sort(
                    key=lambda c, f=footprint: (
                        c.cloud_cover,
                        abs(c.datetime - _utc(f.time)),
                        c.item_id,
                    )
                )
        return result

    def _search_group(self, members: list[FootprintQuery]) -> list[dict[str, Any]]:
        margin = 0.01  # degrees; more than half a window (160 m) everywhere GEDI flies
        lons = [f.lon for f in members]
        lats = [f.lat for f in members]
        box = shapely.box(
            max(-180.0, min(lons) - margin),
            max(-90.0, min(lats) - margin),
            min(180.0, max(lons) + margin),
            min(90.0, max(lats) + margin),
        )
        times = [_utc(f.time) for f in members]
        days = timedelta(days=self.search_days)
        parameters: dict[str, Any] = {
            "collections": [self.profile.sentinel2_collection],
            "intersects": shapely.geometry.mapping(box),
            "datetime": (min(times) - days, max(times) + days),
            "limit": self.page_limit,
        }
        if self.push_query:
            parameters["query"] = {"eo:cloud_cover": {"lt": self.max_cloud_cover}}
        if self.push_sort:
            parameters["sortby"] = [{"field": "properties.eo:cloud_cover", "direction": "asc"}]
        search = self.client.search(method="POST", **parameters)
        return list(search.items_as_dicts())

    def _match(
        self, item: dict[str, Any], members: list[FootprintQuery], result: SceneSearchResult
    ) -> None:
        properties = item.get("properties", {})
        cloud = properties.get("eo:cloud_cover")
        if cloud is None or not cloud < self.max_cloud_cover:
            return
        acquired = _parse_datetime(properties.get("datetime"))
        if acquired is None:
            return
        days = timedelta(days=self.search_days)
        nearby = [f for f in members if abs(acquired - _utc(f.time)) <= days]
        if not nearby:
            return
        grid_info = item_grid(item, self.profile.asset_key("B02"))
        if grid_info is None:
            logger.debug(
                "item %s has no 10 m grid (proj:epsg/proj:transform); skipped", item.get("id")
            )
            return
        epsg, grid = grid_info
        geometry = shapely.geometry.shape(item["geometry"])
        lons = np.array([f.lon for f in nearby])
        lats = np.array([f.lat for f in nearby])
        windows, outlines = window_outlines(lons, lats, epsg, grid)
        if _crosses_antimeridian(geometry):
            # Compare in 0..360° longitudes, where neither shape is cut at ±180°.
            geometry = _to_east_longitudes(geometry)
            outlines = np.array([_to_east_longitudes(outline) for outline in outlines])
        inside = shapely.contains(geometry, outlines)
        for footprint, window, ok in zip(nearby, windows, inside, strict=True):
            if ok:
                result.candidates[footprint.shot_number].append(
                    SceneCandidate(item, float(cloud), acquired, epsg, grid, window)
                )


def group_footprints(
    footprints: Sequence[FootprintQuery], cell_deg: float, window_days: int
) -> dict[tuple[int, int, int], list[FootprintQuery]]:
    """Footprints by (lon cell, lat cell, date window)."""
    groups: dict[tuple[int, int, int], list[FootprintQuery]] = defaultdict(list)
    epoch = datetime(2018, 1, 1, tzinfo=UTC)
    for footprint in footprints:
        day = (_utc(footprint.time) - epoch).total_seconds() / 86400.0
        key = (
            math.floor(footprint.lon / cell_deg),
            math.floor(footprint.lat / cell_deg),
            math.floor(day / max(1, window_days)),
        )
        groups[key].append(footprint)
    return dict(groups)


def item_grid(item: dict[str, Any], asset_key: str) -> tuple[int, Affine] | None:
    """EPSG code and 10 m grid of `item`, from its `proj:*` fields."""
    properties = item.get("properties", {})
    asset = item.get("assets", {}).get(asset_key, {})
    epsg = asset.get("proj:epsg") or properties.get("proj:epsg")
    code = asset.get("proj:code") or properties.get("proj:code")
    if epsg is None and isinstance(code, str) and code.upper().startswith("EPSG:"):
        epsg = int(code.split(":")[1])
    transform = asset.get("proj:transform") or properties.get("proj:transform")
    if epsg is None or transform is None or len(transform) < 6:
        return None
    return int(epsg), Affine(*transform[:6])


def window_outlines(
    lons: np.ndarray, lats: np.ndarray, epsg: int, grid: Affine
) -> tuple[list[PixelWindow], np.ndarray]:
    """The window of each footprint on `grid`, and its outline in lon/lat (polygons)."""
    to_grid, to_lonlat = _transformers(epsg)
    col_offs, row_offs = window_offsets(*to_grid.transform(lons, lats), grid)
    windows = [PixelWindow(int(c), int(r)) for c, r in zip(col_offs, row_offs, strict=True)]
    # Corners and edge midpoints: the outline stays close to the true (curved) shape.
    steps = np.array([0, 0.5, 1, 1, 1, 0.5, 0, 0]) * WINDOW_SIZE
    ring_c = col_offs[:, None] + steps[None, :]
    ring_r = row_offs[:, None] + np.roll(steps, -2)[None, :]
    ring_x, ring_y = grid @ (ring_c, ring_r)
    ring_lon, ring_lat = to_lonlat.transform(ring_x, ring_y)
    outlines = shapely.polygons(np.stack([ring_lon, ring_lat], axis=-1))
    return windows, outlines


def _crosses_antimeridian(geometry: shapely.Geometry) -> bool:
    west, _, east, _ = geometry.bounds
    return west < -90.0 and east > 90.0


def _to_east_longitudes(geometry: shapely.Geometry) -> shapely.Geometry:
    """`geometry` with longitudes in [0, 360): parts cut at ±180° join up again."""
    shifted = shapely.transform(
        geometry, lambda xy: np.column_stack([np.mod(xy[:, 0], 360.0), xy[:, 1]])
    )
    return (
        shapely.union_all(shapely.get_parts(shifted))
        if shifted.geom_type.startswith("Multi")
        else shifted
    )


@functools.lru_cache(maxsize=64)
def _transformers(epsg: int) -> tuple[Transformer, Transformer]:
    return (
        Transformer.from_crs(4326, epsg, always_xy=True),
        Transformer.from_crs(epsg, 4326, always_xy=True),
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
