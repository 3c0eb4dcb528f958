"""One exception class per way gedidata refuses to go on.

Every error carries a message that names the file, column or value at fault, so the
CLI can print it as is and exit non-zero.
"""

from __future__ import annotations

from typing import Any


class GedidataError(Exception):
    """Base class: a failure the user can act on (printed without a traceback)."""


class InputError(GedidataError):
    """A command-line value or input path is unusable."""


class GranuleReadError(GedidataError):
    """A GEDI granule cannot be read (truncated, not HDF5, not L4A, missing a field)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        # workers send errors through pipes; the default would call cls(message)
        return (type(self), (self.path, self.reason))


class CsvFormatError(GedidataError):
    """A footprint CSV lacks a needed column or holds a value that cannot be parsed."""


class OutputExistsError(GedidataError):
    """An output file exists that this run did not make (or made with other settings)."""


class AssetReadError(GedidataError):
    """A raster asset could not be opened or read (after retries and re-signing)."""


class DatasetReadError(AssetReadError):
    """Reading the pixels of an open dataset failed (after GDAL's own retries).

    ``dataset`` is the dataset that failed, so the caller can tell which asset it was;
    the message never holds its (possibly signed) URL.
    """

    def __init__(self, message: str, dataset: object = None) -> None:
        super().__init__(message)
        self.dataset = dataset

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self),))  # (an open dataset does not cross processes)


class OutputBusyError(GedidataError):
    """Another gedidata run holds the output folder (its lock, `gedidata.store.lock`)."""


class OutputWriteError(GedidataError):
    """An output cannot be written: disk full, quota, read-only, permissions, I/O error."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: cannot write ({reason})")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.reason))
