"""Logging setup for the command line, with every log line redacted.

Signed URLs (SAS tokens, AWS signatures) reach log messages from many places: our own
messages, rasterio/GDAL errors and retries (``rasterio._env``, ``rasterio._err``,
``rasterio._base``), urllib3, `warnings.warn` (through ``py.warnings``). Rather than
trusting every caller to call `redact`, each handler we install carries a
`RedactingFilter`, so whatever logger emits a record, what is written is redacted.
Third-party loggers have no handlers of their own (rasterio's is a NullHandler) and
propagate to the root logger, whose handlers are the ones filtered here.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from gedidata.sources.signing import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    """Replaces a record's message, traceback and stack with their redacted text.

    The message is formatted here (args folded in, then dropped) because a token may
    sit in an argument; the traceback is formatted here too, since the exception's text
    may hold a signed URL. Never rejects a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: the handler must still get something safe
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:  # (a formatter may have cached it already)
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None  # else a formatter would format it again, unredacted
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_handler(handler: logging.Handler) -> logging.Handler:
    """``handler``, with one `RedactingFilter` (added once however often it is called)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
    return handler


def configure_logging(verbose: int, quiet: bool, log_file: Path | str | None) -> None:
    """Root handlers for the command line: stderr, plus ``log_file`` if given.

    WARNING with ``quiet``, DEBUG with any ``verbose``, INFO otherwise. Every handler
    redacts, and `warnings.warn` goes through them too.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=level,
        format=FORMAT,
        handlers=[redact_handler(handler) for handler in handlers],
        force=True,
    )
    # warnings (rasterio's NotGeoreferencedWarning, GDAL's through rasterio, ours) may
    # quote a signed URL: through the logging handlers, they are redacted like the rest
    logging.captureWarnings(True)
