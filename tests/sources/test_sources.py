"""Source profiles and harmonization against the real STAC items of shared/fixtures."""

from __future__ import annotations

import copy
import json

import pytest

from gedidata.domain.harmonize import HarmonizationError, harmonization, processing_baseline
from gedidata.domain.schema import S2_BANDS
from gedidata.errors import InputError
from gedidata.sources.profiles import (
    EARTH_SEARCH,
    PLANETARY_COMPUTER,
    load_profile,
    profile_toml,
)
from gedidata.sources.signing import HrefSigner, redact
from tests.conftest import SHARED

STAC = SHARED / "fixtures" / "stac"


def fixture_item(name: str) -> dict:
    path = STAC / name
    if not path.exists():
        pytest.skip("shared/fixtures/stac is not beside the checkout")
    return json.loads(path.read_text())


def test_planetary_computer_item_maps_every_band():
    item = fixture_item("planetary-computer_sentinel-2-l2a.json")
    keys = [PLANETARY_COMPUTER.asset_key(band) for band in S2_BANDS]
    assert keys == [
        "SCL", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
    ]  # fmt: skip
    for band, key in zip(S2_BANDS, keys, strict=True):
        assert key in item["assets"], band
        # the asset's own metadata agrees on which band it is
        names = [b["name"] for b in item["assets"][key].get("eo:bands", [])]
        assert band == "SCL" or names == [band]
    assert harmonization(item, PLANETARY_COMPUTER.asset_key("B04")).offset_dn == 0
    assert harmonization(item, "B04").processing_baseline == "02.12"


def test_earth_search_item_maps_every_band():
    item = fixture_item("earth-search_sentinel-2-l2a.json")
    for band in S2_BANDS:
        key = EARTH_SEARCH.asset_key(band)
        assert key in item["assets"], band
        names = [b["name"] for b in item["assets"][key].get("eo:bands", [])]
        assert band == "SCL" or names == [band]
    result = harmonization(item, EARTH_SEARCH.asset_key("B04"))
    # raster:bands scale 0.0001, offset -0.1: 1000 DN to remove; baseline 05.11
    assert (result.processing_baseline, result.offset_dn) == ("05.11", 1000)


def test_baseline_decides_only_without_raster_bands():
    item = fixture_item("planetary-computer_sentinel-2-l2a.json")
    for baseline, offset in (("02.12", 0), ("03.01", 0), ("04.00", 1000), ("05.09", 1000)):
        variant = copy.deepcopy(item)
        variant["properties"]["s2:processing_baseline"] = baseline
        assert harmonization(variant, "B04").offset_dn == offset, baseline
    # no property: the product URI's _N0400_ says it
    variant = copy.deepcopy(item)
    del variant["properties"]["s2:processing_baseline"]
    variant["properties"]["s2:product_uri"] = "S2A_MSIL2A_20220101T000001_N0400_R116_T60VUK_X.SAFE"
    assert processing_baseline(variant["properties"]) == "04.00"
    assert harmonization(variant, "B04").offset_dn == 1000
    # neither: refuse rather than guess from the date
    del variant["properties"]["s2:product_uri"]
    with pytest.raises(HarmonizationError, match="processing_baseline"):
        harmonization(variant, "B04")


def test_earth_search_old_scene_shifted_by_the_provider():
    """Earth Search adds the offset to old scenes and says so in raster:bands."""
    item = fixture_item("earth-search_sentinel-2-l2a.json")
    item["properties"]["s2:processing_baseline"] = "02.14"
    result = harmonization(item, "red")
    assert (result.processing_baseline, result.offset_dn) == ("02.14", 1000)


def test_profile_file(tmp_path):
    path = tmp_path / "mirror.toml"
    path.write_text(
        'base = "earth-search"\nstac_url = "http://127.0.0.1:9/v1"\n'
        '[collections]\nworldcover = "esa-worldcover"\n[assets]\nB02 = "B02"\n'
        '[gdal]\nAWS_S3_ENDPOINT = "127.0.0.1:9"\n'
    )
    profile = load_profile(path)
    assert profile.name == "mirror"
    assert profile.stac_url == "http://127.0.0.1:9/v1"
    assert profile.asset_key("B02") == "B02" and profile.asset_key("B03") == "green"
    assert profile.worldcover_collection == "esa-worldcover"
    assert profile.gdal_env == {"AWS_NO_SIGN_REQUEST": "YES", "AWS_S3_ENDPOINT": "127.0.0.1:9"}
    assert load_profile("planetary-computer", stac_url="http://x/v1").stac_url == "http://x/v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('base = "nowhere"\n', "nowhere"),
        ('stac_url = "http://x"\ncolour = 1\n', "colour"),
        ('name = "x"\n', "stac_url"),
        ('stac_url = "http://x"\n[assets]\nB99 = "x"\n', "B99"),
        ("stac_url = \n", "cannot read"),
    ],
)
def test_bad_profile_files_are_named(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as error:
        load_profile(path)
    assert str(path) in str(error.value)


def test_unknown_source_name():
    with pytest.raises(InputError, match="planetary-computer, earth-search"):
        load_profile("sentinel-hub")


def test_signing_leaves_local_hrefs_and_redacts_tokens():
    signer = HrefSigner(PLANETARY_COMPUTER)
    assert signer.sign("http://127.0.0.1:8000/s2/B04.tif") == "http://127.0.0.1:8000/s2/B04.tif"
    assert redact("GET https://a.blob.core.windows.net/x/B04.tif?st=1&sig=SECRET failed") == (
        "GET https://a.blob.core.windows.net/x/B04.tif?… failed"
    )


@pytest.mark.parametrize("profile", [PLANETARY_COMPUTER, EARTH_SEARCH])
def test_profile_toml_round_trip(tmp_path, profile):
    path = tmp_path / f"{profile.name}.toml"
    path.write_text(profile_toml(profile))
    assert load_profile(path) == profile
