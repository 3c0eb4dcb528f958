"""Source profiles: which STAC API, which collections, which asset holds which band,
and how hrefs are made readable.

Built in: `planetary-computer` (default) and `earth-search`. Any other STAC API is
described by a TOML file (see `load_profile`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

# TEMPORARY re-export of S2_BANDS (the channel order, now in gedidata.domain.schema):
# stages/extract, being split in parallel, imports it from here. Remove at merge.
from gedidata.domain.schema import S2_BANDS as S2_BANDS
from gedidata.errors import InputError

BAND_RESOLUTION: Mapping[str, int] = MappingProxyType(
    {
        "SCL": 20,
        "B01": 60,
        "B02": 10,
        "B03": 10,
        "B04": 10,
        "B05": 20,
        "B06": 20,
        "B07": 20,
        "B08": 10,
        "B8A": 20,
        "B09": 60,
        "B11": 20,
        "B12": 20,
    }
)

Signing = Literal["none", "planetary-computer"]


@dataclass(frozen=True)
class SourceProfile:
    """Where the scenes, DEM and land cover come from, and how to read them.

    Plain dicts (not mapping proxies) so a profile pickles into worker processes.
    """

    name: str
    stac_url: str
    sentinel2_collection: str = "sentinel-2-l2a"
    dem_collection: str = "cop-dem-glo-30"
    worldcover_collection: str | None = "esa-worldcover"
    band_assets: Mapping[str, str] = field(
        default_factory=lambda: {band: band for band in BAND_RESOLUTION}
    )
    """Canonical band name (B02, …, SCL) → asset key of the item."""
    dem_asset: str = "data"
    worldcover_asset: str = "map"
    signing: Signing = "none"
    gdal_env: Mapping[str, str] = field(default_factory=dict)
    """Extra GDAL configuration for reading this source (e.g. unsigned S3 access)."""

    def asset_key(self, band: str) -> str:
        try:
            return self.band_assets[band]
        except KeyError:
            raise InputError(f"source profile {self.name!r} maps no asset to band {band}") from None


PLANETARY_COMPUTER = SourceProfile(
    name="planetary-computer",
    stac_url="https://planetarycomputer.microsoft.com/api/stac/v1",
    signing="planetary-computer",
)

EARTH_SEARCH = SourceProfile(
    name="earth-search",
    stac_url="https://earth-search.aws.element84.com/v1",
    worldcover_collection=None,  # Earth Search has no WorldCover: use a profile that has it
    band_assets=dict(
        {
            "SCL": "scl",
            "B01": "coastal",
            "B02": "blue",
            "B03": "green",
            "B04": "red",
            "B05": "rededge1",
            "B06": "rededge2",
            "B07": "rededge3",
            "B08": "nir",
            "B8A": "nir08",
            "B09": "nir09",
            "B11": "swir16",
            "B12": "swir22",
        }
    ),
    gdal_env={"AWS_NO_SIGN_REQUEST": "YES"},
)

BUILT_IN: Mapping[str, SourceProfile] = MappingProxyType(
    {profile.name: profile for profile in (PLANETARY_COMPUTER, EARTH_SEARCH)}
)


def load_profile(name_or_path: str | Path, stac_url: str | None = None) -> SourceProfile:
    """A built-in profile by name, or a TOML profile file; `stac_url` overrides the URL.

    A TOML profile may start from a built-in one (`base = "earth-search"`) and change
    any field::

        base = "planetary-computer"
        name = "my-mirror"
        stac_url = "https://stac.example.org/v1"
        signing = "none"
        [collections]
        sentinel2 = "sentinel-2-l2a"
        dem = "cop-dem-glo-30"
        worldcover = "esa-worldcover"
        [assets]
        B02 = "blue"          # canonical band -> asset key; also dem = "...", worldcover = "..."
        [gdal]
        AWS_NO_SIGN_REQUEST = "YES"
    """
    text = str(name_or_path)
    if text in BUILT_IN:
        profile = BUILT_IN[text]
    else:
        path = Path(text)
        if not path.is_file():
            raise InputError(
                f"--source {text!r}: neither a built-in profile ({', '.join(BUILT_IN)}) "
                "nor a profile file"
            )
        profile = _profile_from_toml(path)
    if stac_url:
        profile = replace(profile, stac_url=stac_url)
    return profile


def _profile_from_toml(path: Path) -> SourceProfile:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"{path}: cannot read the source profile ({error})") from error
    base_name = data.pop("base", None)
    if base_name is not None and base_name not in BUILT_IN:
        raise InputError(f"{path}: base = {base_name!r} is not one of {', '.join(BUILT_IN)}")
    base = BUILT_IN[base_name] if base_name else None
    collections = data.pop("collections", {})
    assets = dict(data.pop("assets", {}))
    gdal = data.pop("gdal", {})
    known = {"name", "stac_url", "signing"}
    unknown = set(data) - known
    if unknown:
        raise InputError(f"{path}: unknown profile keys {sorted(unknown)}")
    if base is None and "stac_url" not in data:
        raise InputError(f"{path}: a profile without `base` needs `stac_url`")
    if data.get("signing", "none") not in ("none", "planetary-computer"):
        raise InputError(f"{path}: signing = {data['signing']!r}; use none or planetary-computer")
    start = base or SourceProfile(name=path.stem, stac_url=data["stac_url"])
    band_assets = dict(start.band_assets)
    band_assets.update({k: v for k, v in assets.items() if k not in ("dem", "worldcover")})
    unknown_bands = set(band_assets) - set(BAND_RESOLUTION)
    if unknown_bands:
        raise InputError(f"{path}: [assets] names unknown bands {sorted(unknown_bands)}")
    return replace(
        start,
        name=data.get("name", path.stem),
        stac_url=data.get("stac_url", start.stac_url),
        signing=data.get("signing", start.signing),
        sentinel2_collection=collections.get("sentinel2", start.sentinel2_collection),
        dem_collection=collections.get("dem", start.dem_collection),
        # worldcover = "" says the source has no WorldCover
        worldcover_collection=collections.get("worldcover", start.worldcover_collection) or None,
        band_assets=band_assets,
        dem_asset=assets.get("dem", start.dem_asset),
        worldcover_asset=assets.get("worldcover", start.worldcover_asset),
        gdal_env={**start.gdal_env, **{k: str(v) for k, v in gdal.items()}},
    )


def profile_toml(profile: SourceProfile) -> str:
    """`profile` as a TOML profile file that `load_profile` reads back to an equal profile."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        f"name = {quoted(profile.name)}",
        f"stac_url = {quoted(profile.stac_url)}",
        f"signing = {quoted(profile.signing)}",
        "[collections]",
        f"sentinel2 = {quoted(profile.sentinel2_collection)}",
        f"dem = {quoted(profile.dem_collection)}",
    ]
    lines.append(f"worldcover = {quoted(profile.worldcover_collection or '')}")
    lines.append("[assets]")
    lines += [f"{band} = {quoted(key)}" for band, key in profile.band_assets.items()]
    lines += [
        f"dem = {quoted(profile.dem_asset)}",
        f"worldcover = {quoted(profile.worldcover_asset)}",
    ]
    lines.append("[gdal]")
    lines += [f"{key} = {quoted(str(value))}" for key, value in profile.gdal_env.items()]
    return "\n".join(lines) + "\n"
