"""Assets are signed just before opening and signed again after a 403."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from gedidata.errors import AssetReadError
from gedidata.sources.assets import open_asset
from gedidata.sources.profiles import PLANETARY_COMPUTER
from gedidata.sources.signing import HrefSigner


class CountingSigner(HrefSigner):
    """Signs like a SAS service would: a token in the query, new after refresh()."""

    def __init__(self) -> None:
        super().__init__(PLANETARY_COMPUTER)
        self.token = 1
        self.signed: list[str] = []

    def sign(self, href: str) -> str:
        url = f"{href}?sig=secret{self.token}"
        self.signed.append(url)
        return url

    def refresh(self) -> None:
        self.token += 1


@pytest.fixture
def served_raster(tmp_path, file_server_factory):
    root = tmp_path / "files"
    root.mkdir()
    profile = {
        "driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "uint16",
        "crs": "EPSG:32632", "transform": from_origin(400000, 5300000, 10, 10),
    }  # fmt: skip
    with rasterio.open(root / "b04.tif", "w", **profile) as dataset:
        dataset.write(np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64))
    server = file_server_factory(root)
    server.reset()
    return server, f"{server.url}/b04.tif"


def test_expired_signature_is_renewed_once(served_raster):
    server, href = served_raster
    signer = CountingSigner()
    server.fail("/b04.tif", status=403, count=1)
    with open_asset(href, signer) as dataset:
        assert dataset.read(1)[1, 2] == 66
    assert signer.signed == [f"{href}?sig=secret1", f"{href}?sig=secret2"]
    server.reset()


def test_lasting_403_is_reported_without_the_token(served_raster):
    server, href = served_raster
    signer = CountingSigner()
    server.fail("/b04.tif", status=403, count=100)
    with pytest.raises(AssetReadError) as error:
        open_asset(href, signer)
    server.reset()
    assert "b04.tif" in str(error.value)
    assert "secret" not in str(error.value)
    assert len(signer.signed) == 2


def test_signer_modules_are_what_the_signer_imports():
    from gedidata.sources.profiles import EARTH_SEARCH
    from gedidata.sources.signing import signer_modules

    assert signer_modules(PLANETARY_COMPUTER) == ["planetary_computer"]
    assert signer_modules(EARTH_SEARCH) == []  # public hrefs: nothing to sign with
