"""No signed URL or token reaches a log line: `redact`, the handlers' filter, and the
routes by which tokens arrive (our loggers, rasterio/GDAL, urllib3, warnings, workers)."""

from __future__ import annotations

import io
import logging
import pickle
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gedidata.runtime.logs import FORMAT, RedactingFilter, configure_logging, redact_handler
from gedidata.sources.signing import redact

SECRET = "FAKESIGNATURE123"
"""A fake token: no log line may hold it."""


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Root's handlers and level as they were, and warnings no longer logged, afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logging.captureWarnings(False)
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()  # (the log file)
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a raw query string (the existing behaviour)
        (
            "GET https://a.blob.core.windows.net/x/B04.tif?st=1&sig=SECRET failed",
            "GET https://a.blob.core.windows.net/x/B04.tif?… failed",
        ),
        # percent-encoded query starts, either case
        (
            "u=https%3A%2F%2Fa%2Fb.tif%3Fst%3D1%26sig%3DSECRET end",
            "u=https%3A%2F%2Fa%2Fb.tif%3F… end",
        ),
        ("u=https%3a%2F%2Fa%2Fb.tif%3fsig%3DSECRET end", "u=https%3a%2F%2Fa%2Fb.tif%3f… end"),
        (
            "u=https%253A%252F%252Fa%252Fb.tif%253Fst%253D1%2526sig%253DSECRET end",
            "u=https%253A%252F%252Fa%252Fb.tif%253F… end",
        ),
        ("u=b.tif%253fsig%253DSECRET", "u=b.tif%253f…"),
        # the /vsicurl/ path of a signed Planetary Computer asset
        (
            "/vsicurl/https://x.blob.core.windows.net/c/a.tif?st=2026&se=2026-01-02&sig=ABC%2Bdef%3D",
            "/vsicurl/https://x.blob.core.windows.net/c/a.tif?…",
        ),
        # a rasterio/GDAL retry message: the rest of the line survives
        (
            "CPLE_AppDefined in HTTP error code: 500 - http://127.0.0.1:1/a.tif?st=1&sig=SECRET. "
            "Retrying…",
            "CPLE_AppDefined in HTTP error code: 500 - http://127.0.0.1:1/a.tif?… Retrying…",
        ),
        # SAS keys outside a query string: raw, %3D and %253D separators
        (
            "params st=1&se=2&sp=r&sv=2021&sr=b&spr=https&sig=SECRET&foo=bar done",
            "params st=…&se=…&sp=…&sv=…&sr=…&spr=…&sig=…&foo=bar done",
        ),
        (
            "skoid=a&sktid=b&skt=c&ske=d&sks=e&skv=f",
            "skoid=…&sktid=…&skt=…&ske=…&sks=…&skv=…",
        ),
        ("p sig%3DSECRET%26foo%3Dbar x", "p sig%3D…%26foo%3Dbar x"),
        ("p SIG%3dSECRET%26se%3dSECRET", "p SIG%3d…%26se%3d…"),
        ("p sig%253DSECRET%2526foo%253Dbar", "p sig%253D…%2526foo%253Dbar"),
        ("p st%253D1%2526sig%253DSECRET", "p st%253D…%2526sig%253D…"),
        # AWS, generic tokens, APIM keys; values end at quotes, ">" and whitespace
        (
            "X-Amz-Signature=abc&x-amz-credential=AKIA/1 X-Amz-Security-Token=zz",
            "X-Amz-Signature=…&x-amz-credential=… X-Amz-Security-Token=…",
        ),
        (
            "token=abc access_token='q' Subscription-Key=k <sig=SECRET>",
            "token=… access_token='…' Subscription-Key=… <sig=…>",
        ),
        ("{'href': 'sig=SECRET', 'n': 1}", "{'href': 'sig=…', 'n': 1}"),
        # header forms, to the end of the line only
        ("Authorization: Bearer abc.def\nnext line", "Authorization: …\nnext line"),
        ("authorization:SharedKey acct:xyz", "authorization:…"),
        ("Ocp-Apim-Subscription-Key: deadbeef", "Ocp-Apim-Subscription-Key: …"),
        ("{'Authorization': 'Bearer x'}", "{'Authorization': …"),
    ],
)
def test_redact_replaces_each_form_of_token(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # (idempotent: several handlers see one record)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "reading B04.tif: 12 windows, 3 failed (50%), x=5 first=1 best=2 sigma=3",
        "Authorization failed for the STAC API",
        "stage extract: 10/10 batches, tokens left: 3",
        "/vsicurl/http://127.0.0.1:8000/s2/B04.tif",
        "session=4 consent=1 digest=ab stage=extract",
    ],
)
def test_redact_leaves_text_without_tokens_alone(text: str) -> None:
    assert redact(text) == text


def _logger_with_stream(name: str) -> tuple[logging.Logger, io.StringIO]:
    """A logger of its own writing to a string, through a redacting handler."""
    stream = io.StringIO()
    handler = redact_handler(logging.StreamHandler(stream))
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_filter_redacts_percent_args() -> None:
    logger, stream = _logger_with_stream("gedidata.test_logs.args")
    url = f"https://a.blob.core.windows.net/c/B04.tif?st=1&sig={SECRET}"
    logger.warning("opening %s failed (%d tries)", url, 3)
    assert stream.getvalue() == (
        "WARNING gedidata.test_logs.args: "
        "opening https://a.blob.core.windows.net/c/B04.tif?… failed (3 tries)\n"
    )


def test_filter_redacts_a_traceback_whose_exception_holds_a_token() -> None:
    logger, stream = _logger_with_stream("gedidata.test_logs.exc")
    try:
        raise OSError(f"HTTP 403 for /vsicurl/https://x/a.tif?se=2026&sig={SECRET}")
    except OSError:
        logger.exception("read failed")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.startswith("ERROR gedidata.test_logs.exc: read failed\nTraceback")
    assert "OSError: HTTP 403 for /vsicurl/https://x/a.tif?…" in text


def test_filter_redacts_exc_text_and_stack_info_and_survives_bad_args() -> None:
    record = logging.LogRecord(
        "rasterio._env", logging.WARNING, __file__, 1, "%d tries: sig=" + SECRET, ("x",), None
    )
    record.exc_text = f"Traceback ...\nOSError: a.tif?sig={SECRET}"
    record.stack_info = f"Stack (most recent call last):\n  open('b.tif?sig={SECRET}')"
    assert RedactingFilter().filter(record) is True
    assert record.args is None
    assert record.getMessage() == "%d tries: sig=…"  # (getMessage raised: the raw msg)
    assert record.exc_text == "Traceback ...\nOSError: a.tif?…"
    assert record.stack_info == "Stack (most recent call last):\n  open('b.tif?…')"
    assert SECRET not in logging.Formatter().format(record)


def test_redact_handler_adds_one_filter() -> None:
    handler = logging.StreamHandler(io.StringIO())
    assert redact_handler(redact_handler(handler)) is handler
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, False, logging.INFO),
        (1, False, logging.DEBUG),
        (2, False, logging.DEBUG),
        (0, True, logging.WARNING),
        (1, True, logging.WARNING),
    ],
)
def test_configure_logging_levels_and_handlers(
    restore_logging: None, tmp_path: Path, verbose: int, quiet: bool, level: int
) -> None:
    log_file = tmp_path / "logs" / "run.log"  # (its folder is made)
    configure_logging(verbose, quiet, log_file)
    root = logging.getLogger()
    assert root.level == level
    assert [type(h) for h in root.handlers] == [logging.StreamHandler, logging.FileHandler]
    assert root.handlers[0].stream is sys.stderr
    assert Path(root.handlers[1].baseFilename) == log_file
    for handler in root.handlers:
        assert handler.formatter is not None and handler.formatter._fmt == FORMAT
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    configure_logging(verbose, quiet, None)
    assert [type(h) for h in root.handlers] == [logging.StreamHandler]


def test_cli_uses_the_redacting_setup() -> None:
    import gedidata.cli

    assert gedidata.cli.configure_logging is configure_logging


def test_third_party_loggers_propagate_to_root_s_handlers() -> None:
    """Filtering root's handlers suffices: none of these loggers writes on its own."""
    import rasterio  # noqa: F401  (adds its NullHandler)

    for name in ["rasterio", "rasterio._env", "rasterio._err", "rasterio._base", "urllib3"]:
        logger = logging.getLogger(name)
        assert logger.propagate, name
        assert all(isinstance(h, logging.NullHandler) for h in logger.handlers), name


def test_warnings_are_logged_redacted(
    restore_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "run.log"
    configure_logging(0, False, log_file)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"cannot read /vsicurl/https://x/a.tif?sig={SECRET} now", stacklevel=1)
    (line,) = [line for line in _lines(log_file) if "py.warnings" in line]
    assert SECRET not in line
    assert "WARNING py.warnings: " in line
    assert "UserWarning: cannot read /vsicurl/https://x/a.tif?… now" in line
    stderr = capsys.readouterr().err
    assert "UserWarning: cannot read /vsicurl/https://x/a.tif?… now" in stderr
    assert SECRET not in stderr


def test_rasterio_and_urllib3_lines_are_redacted_in_the_log_file(
    restore_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "run.log"
    configure_logging(1, False, log_file)  # -v: DEBUG
    logging.getLogger("rasterio._env").warning(
        "CPLE_AppDefined in HTTP error code: 500 - http://127.0.0.1:1/a.tif?st=1&sig=%s. "
        "Retrying again in 0.5 secs",
        SECRET,
    )
    logging.getLogger("rasterio._base").debug(
        "Nodata success: 0, Nodata value: 0.000000 for sig%%3D%s%%26x of b.tif", SECRET
    )
    logging.getLogger("urllib3.connectionpool").debug(
        'https://x.blob.core.windows.net:443 "GET /c/a.tif?sig=%s HTTP/1.1" 200 10', SECRET
    )
    lines = _lines(log_file)
    assert len(lines) == 3
    assert not [line for line in lines if SECRET in line]
    assert lines[0].endswith(
        " WARNING rasterio._env: CPLE_AppDefined in HTTP error code: 500 - "
        "http://127.0.0.1:1/a.tif?… Retrying again in 0.5 secs"
    )
    assert lines[1].endswith(
        " DEBUG rasterio._base: Nodata success: 0, Nodata value: 0.000000 for sig%3D…%26x of b.tif"
    )
    assert lines[2].endswith(
        ' DEBUG urllib3.connectionpool: https://x.blob.core.windows.net:443 "GET /c/a.tif?… '
        'HTTP/1.1" 200 10'
    )
    assert SECRET not in capsys.readouterr().err


def test_gdal_s_own_messages_are_redacted(
    restore_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real GDAL read of a signed URL (nothing listens on port 1): its CPL_DEBUG and
    error messages quote the URL, token and all, through rasterio's loggers."""
    import rasterio
    from rasterio.errors import RasterioIOError

    log_file = tmp_path / "run.log"
    configure_logging(1, False, log_file)
    url = f"/vsicurl/http://127.0.0.1:1/{tmp_path.name}.tif?st=1&sig={SECRET}"
    with rasterio.Env(GDAL_HTTP_MAX_RETRY=0, CPL_DEBUG=True), pytest.raises(RasterioIOError):
        rasterio.open(url)
    text = log_file.read_text()
    assert f"{tmp_path.name}.tif?…" in text  # (GDAL did quote the URL)
    assert SECRET not in text
    assert SECRET not in capsys.readouterr().err


def test_pipe_handler_redacts_before_the_record_leaves_the_worker() -> None:
    from gedidata.runtime.executor import _PipeHandler

    sent: list[tuple[str, int, Any]] = []
    logger = logging.getLogger("gedidata.test_logs.pipe")
    logger.handlers[:] = [_PipeHandler(sent.append)]
    logger.propagate = False
    try:
        raise OSError(f"403 for a.tif?sig={SECRET}")
    except OSError:
        logger.exception("reading %s", f"b.tif%3Fsig%3D{SECRET}")
    ((kind, _, record),) = sent
    assert kind == "log"
    assert SECRET.encode() not in pickle.dumps(record)
    assert record.getMessage() == "reading b.tif%3F…"
    assert "OSError: 403 for a.tif?…" in record.exc_text


def log_a_token(value: int) -> int:
    """A task: logs a signed URL in the worker."""
    logging.getLogger("rasterio._env").warning("GET a.tif?sig=%s failed", SECRET)
    return value


class _ListHandler(logging.Handler):
    """Keeps records as they arrive, with no filter of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_worker_records_arrive_redacted(restore_logging: None) -> None:
    from gedidata.runtime.executor import ProcessExecutor

    handler = _ListHandler()  # (no RedactingFilter here: the worker's did the work)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    assert list(ProcessExecutor(1).map_unordered(log_a_token, [7])) == [7]
    (record,) = [r for r in handler.records if r.name == "rasterio._env"]
    assert record.getMessage() == "GET a.tif?… failed"
