"""Opening raster assets over the network: sign just before use, re-sign once on 403.

Planetary Computer SAS tokens expire (about 45 minutes): a long extraction meets 403s
on hrefs signed earlier. Opening goes through here so a 403 leads to one fresh
signature and one more try; the URL in any message is redacted.
"""

from __future__ import annotations

import logging

import rasterio
from rasterio.errors import RasterioIOError

from gedidata.errors import AssetReadError
from gedidata.sources.signing import HrefSigner, redact

logger = logging.getLogger(__name__)


def open_asset(href: str, signer: HrefSigner) -> rasterio.DatasetReader:
    """Open `href` for reading (inside the caller's `rasterio.Env`).

    Raises:
        AssetReadError: when it cannot be opened, also after re-signing on a 403.
    """
    for attempt in (1, 2):
        url = signer.sign(href)
        try:
            return rasterio.open(url)
        except RasterioIOError as error:
            message = redact(str(error))
            if attempt == 1 and _is_forbidden(message):
                logger.info("403 opening %s: signing again", redact(url))
                signer.refresh()
                continue
            raise AssetReadError(f"cannot open {redact(href)}: {message}") from None
    raise AssertionError("unreachable")


def _is_forbidden(message: str) -> bool:
    return "403" in message or "Forbidden" in message or "AccessDenied" in message
