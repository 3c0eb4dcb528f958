"""The offline world's servers: byte-range file server (HTTP + S3 path style), rustac STAC API."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import psutil
import pytest
import rasterio
import requests
from affine import Affine
from pystac_client import Client
from rasterio.windows import Window

from gedidata.offline import servers
from gedidata.offline.fileserver import parse_range
from gedidata.offline.servers import (
    RUSTAC_CONFORMANCE,
    FileServer,
    ServerError,
    StacProxy,
    StacServer,
    port_accepts,
    rewrite_hrefs,
    s3_gdal_env,
    serve_world,
    sign_hrefs,
)

STAC_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "stac"
PC_S2 = STAC_FIXTURES / "planetary-computer_sentinel-2-l2a.json"
ES_DEM = STAC_FIXTURES / "earth-search_cop-dem-glo-30.json"

SIZE = 4096  # 4 x 4 internal tiles of 1024 pixels
WINDOW = Window(1000, 1000, 48, 48)  # straddles four tiles
INSIDE = [173.8, 58.0]  # a point inside the fixture S2 item's footprint
READ_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
S2_COLLECTION = "sentinel-2-l2a"


def pattern(rows: int = SIZE, cols: int = SIZE) -> np.ndarray:
    r = np.arange(rows, dtype=np.uint32)[:, None]
    c = np.arange(cols, dtype=np.uint32)[None, :]
    return ((r * 7919 + c * 104729 + (r * c) % 977) % 65521).astype(np.uint16)


def write_cog(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="COG",
        width=SIZE,
        height=SIZE,
        count=1,
        dtype="uint16",
        crs="EPSG:32660",
        transform=Affine(10, 0, 300000, 0, -10, 6500040),
        blocksize=1024,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pattern(), 1)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """root/s2/x.tif (HTTP) and root/copdem/dem/x.tif (bucket copdem, key dem/x.tif)."""
    root = tmp_path_factory.mktemp("world")
    cog = write_cog(root / "s2" / "x.tif")
    (root / "copdem" / "dem").mkdir(parents=True)
    os.link(cog, root / "copdem" / "dem" / "x.tif")
    (root / "copdem" / "dem" / "y.tif").write_bytes(b"y" * 10)
    (root / "copdem" / "other.txt").write_bytes(b"z" * 5)
    (root / "small.bin").write_bytes(bytes(range(256)) * 4)  # 1024 bytes
    (root / "empty.bin").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def file_server(world) -> FileServer:
    with FileServer(world) as server:
        yield server


@pytest.fixture
def fs(file_server) -> FileServer:
    file_server.reset()
    yield file_server
    file_server.reset()


# --- the file server ---------------------------------------------------------------------


def test_windowed_cog_read_over_http_is_ranged_and_small(fs, world):
    local = world / "s2" / "x.tif"
    with rasterio.open(local) as src:
        expected = src.read(1, window=WINDOW)
    assert (expected == pattern()[1000:1048, 1000:1048]).all()
    mark = fs.log.mark()
    with rasterio.Env(**READ_ENV), rasterio.open(f"/vsicurl/{fs.url}/s2/x.tif") as src:
        assert src.block_shapes == [(1024, 1024)]
        got = src.read(1, window=WINDOW)
    assert (got == expected).all()
    entries = fs.log.entries("/s2/x.tif", since=mark)
    gets = [e for e in entries if e["method"] == "GET"]
    assert gets and all(e["status"] == 206 and e["range"] for e in gets)
    assert {e["method"] for e in entries} <= {"GET", "HEAD"}
    size = local.stat().st_size
    sent = fs.log.total_bytes("/s2/x.tif", since=mark)
    assert sent < size / 3, (sent, size)  # four of sixteen tiles plus the header
    assert max(e["n"] for e in entries) >= 2  # keep-alive: several requests on one connection


def test_head_and_ranges(fs, world):
    url = f"{fs.url}/small.bin"
    body = (world / "small.bin").read_bytes()
    with requests.Session() as s:
        r = s.head(url)
        assert r.status_code == 200 and r.content == b""
        assert r.headers["Content-Length"] == "1024" and r.headers["Accept-Ranges"] == "bytes"
        assert r.headers["ETag"] and r.headers["Last-Modified"]

        r = s.get(url)
        assert r.status_code == 200 and r.content == body

        r = s.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == body[10:20]
        assert r.headers["Content-Range"] == "bytes 10-19/1024"
        assert r.headers["Content-Length"] == "10"

        r = s.get(url, headers={"Range": "bytes=1000-"})  # open-ended
        assert r.status_code == 206 and r.content == body[1000:]
        assert r.headers["Content-Range"] == "bytes 1000-1023/1024"

        r = s.get(url, headers={"Range": "bytes=-24"})  # suffix
        assert r.status_code == 206 and r.content == body[-24:]
        assert r.headers["Content-Range"] == "bytes 1000-1023/1024"

        r = s.get(url, headers={"Range": "bytes=1020-5000"})  # clipped at the end
        assert r.status_code == 206 and r.content == body[1020:]

        r = s.head(url, headers={"Range": "bytes=0-99"})
        assert r.status_code == 206 and r.headers["Content-Length"] == "100" and r.content == b""

        for unsatisfiable in ("bytes=1024-", "bytes=5000-6000", "bytes=-0"):
            r = s.get(url, headers={"Range": unsatisfiable})
            assert r.status_code == 416, unsatisfiable
            assert r.headers["Content-Range"] == "bytes */1024"
        r = s.get(f"{fs.url}/empty.bin", headers={"Range": "bytes=0-"})
        assert r.status_code == 416

        r = s.get(url, headers={"Range": "bytes=abc"})  # unparsable: ignored
        assert r.status_code == 200 and r.content == body

        r = s.get(url, headers={"Range": "bytes=0-1,100-102"})
        assert r.status_code == 206
        assert r.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
        assert int(r.headers["Content-Length"]) == len(r.content)
        assert b"Content-Range: bytes 0-1/1024\r\n\r\n" + body[0:2] in r.content
        assert b"Content-Range: bytes 100-102/1024\r\n\r\n" + body[100:103] in r.content

        assert s.get(f"{fs.url}/missing.bin").status_code == 404
        assert s.get(f"{fs.url}/s2/").status_code == 404  # no directory pages
    conn = http.client.HTTPConnection("127.0.0.1", fs.port, timeout=5)
    conn.request("GET", "/../../../etc/passwd")
    assert conn.getresponse().status == 404
    conn.close()


def test_parse_range():
    assert parse_range("bytes=0-9", 100) == [(0, 9)]
    assert parse_range("bytes=90-", 100) == [(90, 99)]
    assert parse_range("bytes=-5", 100) == [(95, 99)]
    assert parse_range("bytes=-500", 100) == [(0, 99)]
    assert parse_range("bytes=100-", 100) == []
    assert parse_range("bytes=5-1", 100) is None
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=0-1, 5-6", 100) == [(0, 1), (5, 6)]


def test_s3_path_style_reads(fs, world):
    with rasterio.open(world / "s2" / "x.tif") as src:
        expected = src.read(1, window=WINDOW)
    env = s3_gdal_env(fs.port)
    assert env["AWS_S3_ENDPOINT"] == f"127.0.0.1:{fs.port}"
    mark = fs.log.mark()
    with rasterio.Env(**env), rasterio.open("/vsis3/copdem/dem/x.tif") as src:
        assert (src.read(1, window=WINDOW) == expected).all()
    entries = fs.log.entries(since=mark)
    assert entries and all(e["path"] == "/copdem/dem/x.tif" for e in entries)
    assert all(e["status"] == 206 for e in entries if e["method"] == "GET")

    # without GDAL_DISABLE_READDIR_ON_OPEN GDAL lists the "directory" first: the listing is
    # real, so GDAL finds the file in it (an empty listing would make the open fail)
    (world / "copdem" / "dem" / "z.tif").write_bytes((world / "s2" / "x.tif").read_bytes())
    env.pop("GDAL_DISABLE_READDIR_ON_OPEN")
    mark = fs.log.mark()
    with rasterio.Env(**env), rasterio.open("/vsis3/copdem/dem/z.tif") as src:
        assert (src.read(1, window=WINDOW) == expected).all()
    listings = [e for e in fs.log.entries(since=mark) if "prefix=" in e["query"]]
    assert listings and listings[0]["path"] == "/copdem/" and listings[0]["status"] == 200


def test_s3_list_objects(fs):
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}

    def listing(**params):
        r = requests.get(f"{fs.url}/copdem/", params=params)
        assert r.status_code == 200
        return ElementTree.fromstring(r.content)

    top = listing(prefix="", delimiter="/")
    assert [k.text for k in top.findall("s3:Contents/s3:Key", ns)] == ["other.txt"]
    assert [p.text for p in top.findall("s3:CommonPrefixes/s3:Prefix", ns)] == ["dem/"]
    flat = listing(prefix="dem/")
    keys = [k.text for k in flat.findall("s3:Contents/s3:Key", ns)]
    assert keys[:2] == ["dem/x.tif", "dem/y.tif"]
    sizes = [int(s.text) for s in flat.findall("s3:Contents/s3:Size", ns)]
    assert dict(zip(keys, sizes, strict=True))["dem/y.tif"] == 10
    page = listing(**{"list-type": "2", "prefix": "dem/", "max-keys": "1"})
    assert page.find("s3:IsTruncated", ns).text == "true"
    token = page.find("s3:NextContinuationToken", ns).text
    assert token == "dem/x.tif"
    rest = listing(**{"list-type": "2", "prefix": "dem/", "continuation-token": token})
    assert rest.find("s3:Contents/s3:Key", ns).text == "dem/y.tif"
    assert requests.get(f"{fs.url}/nobucket/", params={"prefix": ""}).status_code == 404


def test_fault_injection(fs):
    url = f"{fs.url}/small.bin"
    mark = fs.log.mark()
    with requests.Session() as s:
        fs.fail("/small", status=503, count=2)
        assert [s.get(url).status_code for _ in range(3)] == [503, 503, 200]
        assert s.get(f"{fs.url}/empty.bin").status_code == 200  # other paths unaffected

        fs.drop("/small", count=1)
        with pytest.raises(requests.ConnectionError):
            s.get(url)
        assert s.get(url).status_code == 200

        fs.fail("/", status=500, count=10)
        fs.reset()
        assert s.get(url).status_code == 200

        fs.delay("/small", 0.3)
        t0 = time.monotonic()
        assert s.get(url).status_code == 200
        assert time.monotonic() - t0 >= 0.3
    faults = [e["fault"] for e in fs.log.entries("/small", since=mark)]
    assert faults == ["status", "status", None, "drop", None, None, "delay"]
    statuses = [e["status"] for e in fs.log.entries("/small", since=mark)]
    assert statuses == [503, 503, 200, 0, 200, 200, 200]


def test_gdal_retries_through_injected_503(fs):
    fs.fail("/s2/x.tif", status=503, count=2)
    mark = fs.log.mark()
    env = {**READ_ENV, "GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "0.05"}
    with rasterio.Env(**env), rasterio.open(f"/vsicurl/{fs.url}/s2/x.tif?retry=1") as src:
        assert src.read(1, window=Window(0, 0, 8, 8)).shape == (8, 8)
    statuses = [e["status"] for e in fs.log.entries("/s2/x.tif", since=mark)]
    assert statuses[:2] == [503, 503] and set(statuses[2:]) <= {200, 206}


# --- the STAC API (rustac serve) -----------------------------------------------------------


def s2_item(i: int, *, far: bool = False, year: int = 2020) -> dict:
    item = json.loads(PC_S2.read_text())
    item["id"] = f"S2_TEST_{i:02d}"
    item["properties"]["datetime"] = f"{year}-06-{1 + i:02d}T10:00:00Z"
    item["properties"]["eo:cloud_cover"] = 10.0 * i
    item["assets"] = {
        "B02": {**item["assets"]["B02"], "href": "s2/x.tif"},
        "SCL": {**item["assets"]["SCL"], "href": "s2/x.tif"},
    }
    if far:
        ring = [[x - 100, y - 100] for x, y in item["geometry"]["coordinates"][0]]
        item["geometry"]["coordinates"] = [ring]
        west, south, east, north = item["bbox"]
        item["bbox"] = [west - 100, south - 100, east - 100, north - 100]
    return item


def collection(cid: str) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": f"test {cid}",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [{"rel": "self", "href": f"https://example.com/collections/{cid}"}],
    }


def dem_item() -> dict:
    item = json.loads(ES_DEM.read_text())
    item["assets"]["data"]["href"] = "s3://copdem/dem/x.tif"
    return item


@pytest.fixture(scope="module")
def stac_items() -> list[dict]:
    if not (PC_S2.exists() and ES_DEM.exists()):
        pytest.skip("shared/fixtures/stac is not beside the checkout")
    # five match (inside, June 2020), one is far away, one is a year later
    return [s2_item(i) for i in range(5)] + [s2_item(5, far=True), s2_item(6, year=2021)]


@pytest.fixture(scope="module")
def stac(stac_items, file_server) -> StacServer:
    items = [rewrite_hrefs(i, file_server.url) for i in [*stac_items, dem_item()]]
    colls = [collection(S2_COLLECTION), collection("cop-dem-glo-30")]
    with StacServer(colls, items) as server:
        yield server


def post_search(stac: StacServer, body: dict) -> requests.Response:
    return requests.post(f"{stac.url}/search", json=body, timeout=10)


def test_stac_landing_and_conformance(stac):
    landing = requests.get(stac.url + "/", timeout=10).json()
    assert landing["id"] == "stac-server-rs"
    conformance = requests.get(stac.url + "/conformance", timeout=10).json()["conformsTo"]
    # if this changes, revisit the notes in gedidata.offline.servers (query/filter/sort)
    assert set(conformance) == RUSTAC_CONFORMANCE
    assert set(landing["conformsTo"]) == RUSTAC_CONFORMANCE
    search_methods = {link.get("method") for link in landing["links"] if link["rel"] == "search"}
    assert search_methods == {"GET", "POST"}
    collections = requests.get(stac.url + "/collections", timeout=10).json()["collections"]
    assert {c["id"] for c in collections} == {S2_COLLECTION, "cop-dem-glo-30"}


def test_pystac_client_pages_through_post_search(stac, file_server):
    client = Client.open(stac.url)
    search = client.search(
        collections=[S2_COLLECTION],
        intersects={"type": "Point", "coordinates": INSIDE},
        datetime="2020-05-01/2020-07-01",
        max_items=None,
        limit=2,
    )
    pages = list(search.pages_as_dicts())
    assert [len(p["features"]) for p in pages] == [2, 2, 1]
    ids = [f["id"] for p in pages for f in p["features"]]
    assert ids == [f"S2_TEST_{i:02d}" for i in range(5)]
    nxt = next(link for link in pages[0]["links"] if link["rel"] == "next")
    assert nxt["method"] == "POST" and nxt["body"]["skip"] == 2 and nxt["body"]["limit"] == 2
    item = pages[0]["features"][0]
    assert item["assets"]["B02"]["href"] == f"{file_server.url}/s2/x.tif"
    assert [link["rel"] for link in item["links"]].count("self") == 1


def test_post_search_filters_that_work(stac):
    def ids(body: dict) -> list[str]:
        r = post_search(stac, body)
        assert r.status_code == 200
        return [f["id"] for f in r.json()["features"]]

    assert ids({"ids": ["S2_TEST_03", "S2_TEST_01"]}) == ["S2_TEST_01", "S2_TEST_03"]
    assert ids({"collections": ["cop-dem-glo-30"]}) == ["Copernicus_DSM_COG_10_S90_00_W180_00_DEM"]
    assert len(ids({"collections": [S2_COLLECTION], "bbox": [173.7, 57.9, 173.9, 58.1]})) == 6
    assert ids({"collections": [S2_COLLECTION], "datetime": "2021-01-01T00:00:00Z/.."}) == [
        "S2_TEST_06"
    ]
    # several collections: each in load order, the collections in a per-process hash order
    assert set(ids({"datetime": "2021-01-01T00:00:00Z/.."})) == {
        "S2_TEST_06",
        "Copernicus_DSM_COG_10_S90_00_W180_00_DEM",
    }
    first = post_search(stac, {"collections": [S2_COLLECTION]}).json()
    assert len(first["features"]) == 7  # default page size 10
    assert len(post_search(stac, {"limit": 10000}).json()["features"]) == 8  # no maximum


def test_rustac_quirks_are_as_documented(stac):
    """Fails when rustac changes; then update the notes in gedidata.offline.servers."""
    base = {"collections": [S2_COLLECTION]}
    # query: HTTP 200 and zero features, although S2_TEST_00..02 have cloud cover < 25
    r = post_search(stac, {**base, "query": {"eo:cloud_cover": {"lt": 25}}})
    assert r.status_code == 200 and r.json()["features"] == []
    # CQL2 filter: zero features too; without filter-lang the filter is ignored
    cql2 = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 25]}
    r = post_search(stac, {**base, "filter-lang": "cql2-json", "filter": cql2})
    assert r.status_code == 200 and r.json()["features"] == []
    r = post_search(stac, {**base, "filter": cql2})
    assert len(r.json()["features"]) == 7
    # sortby ignored: load order (cloud cover ascending) although descending was asked
    r = post_search(
        stac, {**base, "sortby": [{"field": "properties.eo:cloud_cover", "direction": "desc"}]}
    )
    assert [f["id"] for f in r.json()["features"]] == [f"S2_TEST_{i:02d}" for i in range(7)]
    # GET /search: limit plus another parameter answers 500; single parameters work
    r = requests.get(f"{stac.url}/search", params={"collections": S2_COLLECTION, "limit": 2})
    assert r.status_code == 500
    r = requests.get(f"{stac.url}/search", params={"collections": S2_COLLECTION})
    assert r.status_code == 200 and len(r.json()["features"]) == 7
    r = requests.get(f"{stac.url}/search", params={"limit": 2})
    assert r.status_code == 200 and len(r.json()["features"]) == 2
    r = requests.get(f"{stac.url}/search", params={"query": '{"eo:cloud_cover": {"lt": 25}}'})
    assert r.status_code == 200 and len(r.json()["features"]) == 8  # GET query: ignored
    r = requests.get(f"{stac.url}/search", params={"filter": "eo:cloud_cover < 25"})
    assert r.status_code == 200 and r.json()["features"] == []  # GET filter: zero, as POST


def test_stac_server_retries_a_busy_port(monkeypatch):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))  # bound, not listening: rustac cannot bind it
    busy = blocker.getsockname()[1]
    ports = iter([busy])
    real = servers.free_port
    monkeypatch.setattr(servers, "free_port", lambda host: next(ports, None) or real(host))
    try:
        with StacServer([collection("c")], []) as server:
            assert server.port != busy
            assert requests.get(server.url + "/collections/c", timeout=10).status_code == 200
    finally:
        blocker.close()
    with pytest.raises(ServerError, match="in use"):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        try:
            StacServer([], [], port=blocker.getsockname()[1]).start()
        finally:
            blocker.close()


def test_stac_server_start_failure_reports_stderr(tmp_path):
    fake = tmp_path / "rustac"
    fake.write_text("#!/bin/sh\necho 'boom: cannot serve' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = StacServer([collection("c")], [], rustac=str(fake))
    with pytest.raises(ServerError, match="boom: cannot serve"):
        server.start()
    assert server.proc is None and server.workdir is None


# --- rewriting and the pair -----------------------------------------------------------------


def test_rewrite_hrefs():
    item = {
        "type": "Feature",
        "id": "a",
        "assets": {
            "rel": {"href": "s2/T60/B02.tif"},
            "dotted": {"href": "./../s2/B03.tif"},
            "s3": {"href": "s3://copdem/dem/x.tif"},
            "web": {"href": "https://example.com/x.tif"},
        },
        "links": [
            {"rel": "self", "href": "https://example.com/a.json"},
            {"rel": "collection", "href": "../c.json"},
            {"rel": "license", "href": "docs/license.txt"},
        ],
    }
    out = rewrite_hrefs(item, "http://127.0.0.1:1234/", base="items")
    assert out["assets"]["rel"]["href"] == "http://127.0.0.1:1234/items/s2/T60/B02.tif"
    assert out["assets"]["dotted"]["href"] == "http://127.0.0.1:1234/s2/B03.tif"
    assert out["assets"]["s3"]["href"] == "s3://copdem/dem/x.tif"
    assert out["assets"]["web"]["href"] == "https://example.com/x.tif"
    assert out["links"] == [
        {"rel": "license", "href": "http://127.0.0.1:1234/items/docs/license.txt"}
    ]
    assert item["assets"]["rel"]["href"] == "s2/T60/B02.tif"  # input untouched
    with pytest.raises(ValueError, match="leaves the served root"):
        rewrite_hrefs({"assets": {"a": {"href": "../x.tif"}}}, "http://h")


def _children() -> dict[int, str]:
    out = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            out[proc.pid] = " ".join(proc.cmdline())
    return out


def _exercise(served, expected: np.ndarray) -> None:
    """Search the served STAC API and read an http and an s3 asset the way the pipeline does."""
    client = Client.open(served.stac_url)
    search = client.search(
        collections=[S2_COLLECTION],
        intersects={"type": "Point", "coordinates": INSIDE},
        max_items=None,
        limit=2,
    )
    items = list(search.items())
    assert [i.id for i in items] == ["S2_TEST_00", "S2_TEST_01", "S2_TEST_02"]
    href = items[0].assets["B02"].href
    assert href == f"{served.files_url}/s2/x.tif"
    dem = next(client.search(collections=["cop-dem-glo-30"]).items())
    assert dem.assets["data"].href == "s3://copdem/dem/x.tif"
    with rasterio.Env(**served.gdal_env):
        with rasterio.open(f"/vsicurl/{href}") as src:
            assert (src.read(1, window=WINDOW) == expected).all()
        with rasterio.open("/vsis3/copdem/dem/x.tif") as src:
            assert (src.read(1, window=WINDOW) == expected).all()
    assert served.file_server.log.count("/copdem/dem/x.tif", method="GET") >= 1


def test_serve_world_twice_leaves_nothing_behind(world, stac_items):
    stac_dir = world / "stac"
    stac_dir.mkdir(exist_ok=True)
    s2 = stac_items[:3]
    (stac_dir / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": s2}))
    # the same items with hrefs relative to their own file, as STAC defines relative hrefs
    for item in s2:
        for asset in item["assets"].values():
            asset["href"] = "../" + asset["href"]
    (stac_dir / "items.ndjson").write_text("\n".join(json.dumps(i) for i in s2) + "\n")
    (stac_dir / "dem.json").write_text(json.dumps(dem_item()))
    (stac_dir / "s2.json").write_text(json.dumps(collection(S2_COLLECTION)))
    with rasterio.open(world / "s2" / "x.tif") as src:
        expected = src.read(1, window=WINDOW)

    before = _children()
    for attempt, (items_file, relative_to) in enumerate(
        [("items.json", "root"), ("items.ndjson", "file")]
    ):
        item_files = [stac_dir / items_file, stac_dir / "dem.json"]
        expect_error = pytest.raises(RuntimeError, match="inside") if attempt else nullcontext()
        with (
            expect_error,
            serve_world(
                world, item_files, [stac_dir / "s2.json"], relative_to=relative_to
            ) as served,
        ):
            started = [served.file_server, served.stac_server]
            pids = [s.proc.pid for s in started]
            ports = [s.port for s in started]
            assert all(port_accepts(p) for p in ports)
            assert set(_children()) - set(before) == set(pids)
            _exercise(served, expected)
            if attempt:
                raise RuntimeError("inside the block")  # servers stop on exceptions too
        assert all(not s.running and s.port is None for s in started)
        assert not any(psutil.pid_exists(pid) for pid in pids)
        assert not any(port_accepts(p) for p in ports)
        assert _children() == before


# --- the STAC proxy and its fault modes ------------------------------------------------------

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TOKEN = "st=2020-01-01&sig=FAKE%2Bsig"
CONNECTION_LOST = (ConnectionResetError, http.client.RemoteDisconnected, urllib.error.URLError)


def call(
    url: str, body: dict | None = None, *, timeout: float = 5.0, ctype: str = "application/json"
) -> tuple[int, Any]:
    """GET (or POST ``body``) with plain urllib; the status and the JSON (or text) answer."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": ctype} if data is not None else {}
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with _DIRECT.open(req, timeout=timeout) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode()


@pytest.fixture
def proxy(stac) -> StacProxy:
    with StacProxy(stac.url) as p:
        yield p


def test_proxy_forwards_queries_content_type_and_errors(proxy, stac):
    status, landing = call(proxy.url + "/")
    assert status == 200 and landing["id"] == "stac-server-rs"
    hrefs = [link["href"] for link in landing["links"]]
    assert hrefs and all(h.startswith(proxy.url) for h in hrefs)
    # the query string reaches the target: 7 of the 8 items are sentinel-2
    status, page = call(f"{proxy.url}/search?collections={S2_COLLECTION}")
    assert status == 200 and len(page["features"]) == 7
    status, page = call(proxy.url + "/search", {"limit": 3})
    assert status == 200 and len(page["features"]) == 3
    # the request's Content-Type is forwarded (rustac rejects a JSON body sent as text)
    status, text = call(proxy.url + "/search", {"limit": 3}, ctype="text/plain")
    assert status == 400 and "json rejection" in text
    # target errors come back with their status and body (rustac quirk: GET limit + other)
    status, text = call(f"{proxy.url}/search?collections={S2_COLLECTION}&limit=2")
    assert (status, text) == call(f"{stac.url}/search?collections={S2_COLLECTION}&limit=2")
    assert status == 500
    status, text = call(proxy.url + "/collections/nope")
    assert status == 404 and "nope" in text
    assert proxy.requests == 6 and proxy.searches == 4 and proxy.dropped == 0
    assert proxy.answered_by_status == Counter({200: 3, 400: 1, 500: 1, 404: 1})


def test_proxy_unreachable_target_is_502():
    with StacProxy(f"http://127.0.0.1:{servers.free_port()}") as p:
        status, doc = call(p.url + "/")
    assert status == 502 and doc["code"] == "BadGateway"


def test_proxy_fail_count_then_success(proxy):
    proxy.fail(503, count=2, search_only=True)
    statuses = [call(proxy.url + "/search", {"limit": 1})[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    proxy.fail(429, count=1, search_only=True)
    assert call(proxy.url + "/")[0] == 200  # search_only: the landing page is not affected
    status, doc = call(proxy.url + "/search", {"limit": 1})
    assert status == 429 and doc["code"] == "InjectedFault"
    assert call(proxy.url + "/search", {"limit": 1})[0] == 200
    assert proxy.answered_by_status == Counter({503: 2, 200: 3, 429: 1})
    # the legacy attribute: POST /search only
    proxy.failures = 2
    assert call(f"{proxy.url}/search?limit=1")[0] == 200  # GET is not failed
    assert [call(proxy.url + "/search", {"limit": 1})[0] for _ in range(3)] == [503, 503, 200]
    assert proxy.failures == 0 and proxy.searches == 9 and proxy.requests == 10


def test_proxy_fail_until_reset(proxy):
    proxy.fail(500, count=None)
    assert [call(proxy.url + "/")[0] for _ in range(3)] == [500, 500, 500]
    assert call(proxy.url + "/search", {"limit": 1})[0] == 500
    proxy.reset()
    assert call(proxy.url + "/")[0] == 200
    assert call(proxy.url + "/search", {"limit": 1})[0] == 200
    assert proxy.answered_by_status == Counter({500: 4, 200: 2})
    with pytest.raises(ValueError):
        proxy.fail(503, count=0)


def test_proxy_hang_release(proxy):
    proxy.hang(search_only=True)
    assert call(proxy.url + "/")[0] == 200  # search_only
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)) as info:
        call(proxy.url + "/search", {"limit": 1}, timeout=1.0)
    if isinstance(info.value, urllib.error.URLError):
        assert isinstance(info.value.reason, TimeoutError)
    assert 0.9 < time.monotonic() - t0 < 3
    proxy.release()
    assert call(proxy.url + "/search", {"limit": 1})[0] == 200
    assert proxy.searches == 2


def test_proxy_close_returns_while_a_request_hangs(stac):
    p = StacProxy(stac.url)
    p.hang()
    conn = socket.create_connection(("127.0.0.1", int(p.url.rsplit(":", 1)[1])), timeout=5)
    try:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 5
        while p.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.requests == 1
        t0 = time.monotonic()
        p.close()
        assert time.monotonic() - t0 < 2
        # the held request was never answered: reset (or EOF), no HTTP answer
        with contextlib.suppress(ConnectionResetError):
            assert conn.recv(100) == b""
    finally:
        conn.close()
    assert not port_accepts(int(p.url.rsplit(":", 1)[1]))
    assert p.answered_by_status == Counter()
    p.close()  # idempotent


def test_proxy_drop(proxy):
    proxy.drop(count=1)
    with pytest.raises(CONNECTION_LOST):
        call(proxy.url + "/")
    assert call(proxy.url + "/")[0] == 200
    proxy.drop(count=None, search_only=True)
    for _ in range(2):
        with pytest.raises(CONNECTION_LOST):
            call(proxy.url + "/search", {"limit": 1})
    assert call(proxy.url + "/")[0] == 200
    proxy.reset()
    assert call(proxy.url + "/search", {"limit": 1})[0] == 200
    assert proxy.dropped == 3 and proxy.answered_by_status == Counter({200: 3})
    # a raw client sees the abortive close as a reset, not an orderly EOF
    proxy.drop()
    with socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1])), 5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            conn.recv(100)


def test_proxy_down_up(proxy):
    proxy.down()
    for _ in range(2):
        with pytest.raises(CONNECTION_LOST):
            call(proxy.url + "/")
        with pytest.raises(CONNECTION_LOST):
            call(proxy.url + "/search", {"limit": 1})
    proxy.up()
    assert call(proxy.url + "/")[0] == 200
    assert call(proxy.url + "/search", {"limit": 1})[0] == 200
    assert proxy.dropped == 4 and proxy.requests == 6


def test_sign_hrefs():
    item = {"id": "a", "assets": {"x": {"href": "http://h/x.tif"}, "y": {"href": "http://h/y?a=1"}}}
    signed = sign_hrefs(TOKEN)(item)
    assert signed["assets"]["x"]["href"] == f"http://h/x.tif?{TOKEN}"
    assert signed["assets"]["y"]["href"] == f"http://h/y?a=1&{TOKEN}"
    assert item["assets"]["x"]["href"] == "http://h/x.tif"  # a copy
    assert sign_hrefs("?" + TOKEN)(item) == signed


def test_proxy_rewrite_items_signs_hrefs(proxy, fs, world):
    proxy.rewrite_items(sign_hrefs(TOKEN))
    status, page = call(proxy.url + "/search", {"limit": 100})
    assert status == 200 and len(page["features"]) == 8
    hrefs = [a["href"] for f in page["features"] for a in f["assets"].values()]
    assert hrefs and all(h.endswith("?" + TOKEN) for h in hrefs)
    status, item = call(f"{proxy.url}/collections/{S2_COLLECTION}/items/S2_TEST_00")
    assert status == 200 and item["type"] == "Feature"
    href = item["assets"]["B02"]["href"]
    assert href == f"{fs.url}/s2/x.tif?{TOKEN}"
    # the file server ignores the query string: the signed href reads the file
    ranged = urllib.request.Request(href, headers={"Range": "bytes=0-99"})
    with _DIRECT.open(ranged, timeout=5) as r:
        assert r.status == 206 and r.read() == (world / "s2" / "x.tif").read_bytes()[:100]
    status, landing = call(proxy.url + "/")  # not an item: unchanged
    assert status == 200 and landing["id"] == "stac-server-rs"
    proxy.rewrite_items(None)
    _, page = call(proxy.url + "/search", {"collections": [S2_COLLECTION], "limit": 1})
    assert page["features"][0]["assets"]["B02"]["href"] == f"{fs.url}/s2/x.tif"


def test_pystac_client_through_proxy(proxy, fs):
    proxy.rewrite_items(sign_hrefs(TOKEN))
    client = Client.open(proxy.url)
    assert client.get_self_href().startswith(proxy.url)
    search = client.search(
        collections=[S2_COLLECTION],
        intersects={"type": "Point", "coordinates": INSIDE},
        datetime="2020-05-01/2020-07-01",
        max_items=None,
        limit=2,
    )
    items = list(search.items())
    assert [i.id for i in items] == [f"S2_TEST_{i:02d}" for i in range(5)]
    assert all(a.href == f"{fs.url}/s2/x.tif?{TOKEN}" for i in items for a in i.assets.values())
    assert proxy.searches == 3  # three pages, all through the proxy (next links rewritten)
    assert proxy.answered_by_status[200] == proxy.requests
