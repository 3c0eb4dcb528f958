"""Making asset hrefs readable: Planetary Computer SAS signing, re-signed on expiry.

Signed URLs carry a token; they are used for reading only and never logged (see
`redact`). Hrefs that are not Azure Blob Storage URLs are left as they are, so a
Planetary-Computer-layout world served on 127.0.0.1 goes through the same code.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gedidata.sources.profiles import SourceProfile

_QUERY = re.compile(r"\?[^\s'\"]*")


def redact(text: str) -> str:
    """`text` with URL query strings (where SAS tokens live) replaced by `?…`."""
    return _QUERY.sub("?…", text)


def signer_modules(profile: SourceProfile) -> list[str]:
    """The modules a `HrefSigner` for `profile` imports (for a worker pool to preload)."""
    return ["planetary_computer"] if profile.signing == "planetary-computer" else []


class HrefSigner:
    """Signs hrefs for reading, per the profile; `refresh()` forgets cached tokens."""

    def __init__(self, profile: SourceProfile) -> None:
        self.profile = profile
        self._sign: Callable[[str], str] = _identity
        if profile.signing == "planetary-computer":
            import planetary_computer

            self._sign = planetary_computer.sign_url

    def sign(self, href: str) -> str:
        """A readable URL for `href` (signed just before use: tokens expire)."""
        return self._sign(href)

    def refresh(self) -> None:
        """Drop cached tokens, e.g. after a 403 from an expired SAS token."""
        if self.profile.signing == "planetary-computer":
            from planetary_computer.sas import TOKEN_CACHE

            TOKEN_CACHE.clear()


def _identity(href: str) -> str:
    return href
