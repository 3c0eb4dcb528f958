"""STAC searches survive transient failures (POST included) and report when they can't."""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

import pytest
import shapely

from gedidata.offline.servers import StacProxy, StacServer
from gedidata.sources.profiles import PLANETARY_COMPUTER
from gedidata.sources.stac import FootprintQuery, SceneSearch, retrying_stac_io
from tests.sources.test_sources import fixture_item


@pytest.fixture(scope="module")
def stac_with_one_scene() -> Iterator[tuple[str, dict]]:
    item = fixture_item("planetary-computer_sentinel-2-l2a.json")
    item = copy.deepcopy(item)
    item["properties"]["datetime"] = "2020-06-01T10:00:00Z"
    item["properties"]["eo:cloud_cover"] = 10.0
    item["links"] = []
    collection = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": "sentinel-2-l2a",
        "description": "test",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2015-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }
    with StacServer([collection], [item]) as server:
        yield server.url, item


def test_post_search_is_retried(stac_with_one_scene):
    url, item = stac_with_one_scene
    proxy = StacProxy(url)
    try:
        profile = replace(PLANETARY_COMPUTER, stac_url=proxy.url)
        search = SceneSearch(profile, stac_io=retrying_stac_io(retries=4, backoff=0.01))
        centre = shapely.geometry.shape(item["geometry"]).centroid
        footprint = FootprintQuery(1, centre.x, centre.y, datetime(2020, 6, 3, 12))
        proxy.failures = 2
        result = search.find([footprint])
        assert result.errors == {}
        assert [c.item_id for c in result.candidates[1]] == [item["id"]]
        assert proxy.searches == 3  # two 503s, then the answer

        proxy.failures = 100
        proxy.searches = 0
        failed = search.find([footprint])
        assert 1 in failed.errors and "after retries" in failed.errors[1]
        assert proxy.searches == 5  # the first try and four retries
    finally:
        proxy.close()


def test_rustac_does_not_advertise_query_so_it_is_not_pushed(stac_with_one_scene):
    url, _ = stac_with_one_scene
    search = SceneSearch(replace(PLANETARY_COMPUTER, stac_url=url))
    assert (search.push_query, search.push_sort) == (False, False)
    landing = json.loads(urllib.request.urlopen(url).read())
    assert landing["type"] == "Catalog"
