"""Making asset hrefs readable: Planetary Computer SAS signing, re-signed on expiry.

Signed URLs carry a token; they are used for reading only and never logged (see
`redact`). Hrefs that are not Azure Blob Storage URLs are left as they are, so a
Planetary-Computer-layout world served on 127.0.0.1 goes through the same code.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gedidata.sources.profiles import SourceProfile

_PLACEHOLDER = "…"

# A raw query string: everything after "?" up to whitespace or a quote.
_QUERY = re.compile(r"\?[^\s'\"]*")
# The same query start percent-encoded once or more (a URL inside a URL: /vsicurl/,
# redirects, GDAL's own messages): %3F, %253F, ...
_ENCODED_QUERY = re.compile(r"(%(?:25)*3F)[^\s'\"]*", re.IGNORECASE)
# Header values (an Authorization or APIM key in a request dump), to the end of the line.
_HEADER = re.compile(
    r"(?<![\w-])(authorization|ocp-apim-subscription-key)(['\"]?[ \t]*:[ \t]*)[^\r\n]*",
    re.IGNORECASE,
)
# Token keys outside a query string we already caught (a bare "sig=..." in a message, a
# dict of params): key=value, key%3Dvalue, key%253Dvalue. The key must start the text or
# follow a non-name character or an encoded "&"/"?"; the value ends at "&" (raw or
# encoded), whitespace, a quote, ">" or the end (a value in quotes: key="value").
_TOKEN_KEYS = (
    r"sig|se|st|sp|sv|sr|spr|skoid|sktid|skt|ske|sks|skv"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|(?:[a-z0-9]+[_-])*token|subscription-key"
)
_KEY_VALUE = re.compile(
    rf"(^|[^\w.%-]|%(?:25)*(?:26|3F))({_TOKEN_KEYS})(=|%(?:25)*3D)(['\"]?)"
    r"(?:(?!%(?:25)*26)[^&\s'\">])+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with secrets replaced by `…`: URL query strings (where SAS tokens live,
    raw `?` or percent-encoded `%3F`/`%253F`), token-like `key=value` pairs (raw or
    percent-encoded `=`) and Authorization / subscription-key header values.

    Pure and cheap (precompiled patterns), and idempotent: safe on every log record.
    """
    text = _HEADER.sub(rf"\1\2{_PLACEHOLDER}", text)
    text = _QUERY.sub("?" + _PLACEHOLDER, text)
    text = _ENCODED_QUERY.sub(rf"\1{_PLACEHOLDER}", text)
    return _KEY_VALUE.sub(rf"\1\2\3\4{_PLACEHOLDER}", text)


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
