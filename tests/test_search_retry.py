"""STAC searches survive transient failures (POST included) and report when they can't."""

from __future__ import annotations

import copy
import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

import pytest
import shapely

from gedidata.sources.profiles import PLANETARY_COMPUTER
from gedidata.sources.search import FootprintQuery, SceneSearch, retrying_stac_io
from gedidata.testing.servers import StacServer
from tests.test_sources import fixture_item


class FlakyProxy:
    """Forwards to a STAC API; the first `failures` POST /search answer 503."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.failures = 0
        self.searches = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                if method == "POST" and self.path.startswith("/search"):
                    proxy.searches += 1
                    if proxy.failures > 0:
                        proxy.failures -= 1
                        self.send_response(503)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                request = urllib.request.Request(
                    proxy.target + self.path,
                    data=body or None,
                    method=method,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request) as response:
                    payload = response.read().replace(proxy.target.encode(), proxy.url.encode())
                    self.send_response(response.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    proxy = FlakyProxy(url)
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
