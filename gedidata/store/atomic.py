"""Atomic file writes: write to a temporary name beside the target, then rename.

A crash (or SIGKILL) leaves either the old file or the new one under the final name,
never a half-written one; the temporary name starts with a dot so it is easy to spot.

A write that fails for want of space or rights (disk full, quota, read-only file system,
permissions, I/O error) becomes an `OutputWriteError` naming the final file, which the
command line prints as one line: re-running the same command after freeing space resumes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from gedidata.errors import OutputWriteError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""No room: the device, the user's quota, or the file size limit (RLIMIT_FSIZE)."""

WRITE_ERRNOS = DISK_FULL_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
"""Errors of a write that the user fixes outside gedidata (then re-runs)."""

# h5py and polars do not always set errno; their messages still carry the C library's text.
_DISK_FULL_TEXTS = tuple(os.strerror(code).lower() for code in DISK_FULL_ERRNOS)


def is_disk_full(error: BaseException) -> bool:
    """True for ENOSPC, EDQUOT and EFBIG, also when only the message says so."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    text = str(error).lower()
    return any(needle in text for needle in _DISK_FULL_TEXTS)


def write_failure_reason(error: BaseException) -> str:
    """``disk full`` when there is no room, else the system's words for the error."""
    if is_disk_full(error):
        return "disk full"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]  # "permission denied"
    return str(error)


def _is_write_failure(error: BaseException, paths: tuple[Path, ...]) -> bool:
    """Whether `error`, raised while `paths` were written, is a failure to write them."""
    if not isinstance(error, OSError):
        return is_disk_full(error)  # (a library's own exception that says so)
    if error.filename is not None:
        # an error naming another file is about an input read on the way: not ours
        return os.fspath(error.filename) in {os.fspath(path) for path in paths}
    return error.errno in WRITE_ERRNOS or is_disk_full(error)


_ONLY_WRITES_ERRNOS = DISK_FULL_ERRNOS | {errno.EROFS}
"""Errors no read gives: whichever file they name, it was being written."""


@contextlib.contextmanager
def write_failures_named(out: Path) -> Iterator[None]:
    """Raise a disk-full (or read-only) error escaping the block as `OutputWriteError`.

    A safety net around a whole run for writers that do not go through
    `atomic_output` (matplotlib, a worker process): the file the error names, or OUT.
    """
    try:
        yield
    except OutputWriteError:
        raise
    except Exception as error:
        only_writes = isinstance(error, OSError) and error.errno in _ONLY_WRITES_ERRNOS
        if not (only_writes or is_disk_full(error)):
            raise
        filename = getattr(error, "filename", None)
        path = os.fspath(filename) if filename is not None else str(out)
        raise OutputWriteError(str(path), write_failure_reason(error)) from error


def temporary_sibling(path: Path) -> Path:
    """A temporary name in the same directory (same file system, so rename is atomic).

    The original suffix is kept last so that tools choosing a format by extension
    (matplotlib, GDAL) still do the right thing.
    """
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` atomically.

    On an exception the temporary file is removed and `path` is left untouched. A
    failure to write the temporary file or to rename it (see `WRITE_ERRNOS`) is raised
    as `OutputWriteError` naming `path`; other exceptions pass unchanged.
    """
    final = Path(path)
    temporary = temporary_sibling(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        os.replace(temporary, final)
    except Exception as error:
        if _is_write_failure(error, (temporary, final, final.parent)):
            raise OutputWriteError(str(final), write_failure_reason(error)) from error
        raise
    finally:
        # (cleanup must never hide the error being raised)
        with contextlib.suppress(OSError):
            temporary.unlink()


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write `payload` as indented JSON, atomically."""
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


class HeldErrorFile:
    """A file for h5py's ``fileobj`` driver that holds write failures back from HDF5.

    HDF5 cannot recover from a write that fails while it flushes or closes a file: the
    file and dataset handles are left half-closed, and freeing them later (or at exit)
    crashes the process with a segmentation fault (h5py/h5py#914, #2160). Through this
    file a failed write (disk full, quota, I/O error) is kept in `error` and every later
    write is dropped, so HDF5 only ever sees successes and closes the file cleanly; the
    writer calls `raise_if_failed` after each block it writes and after closing, and
    the caller deletes the (incomplete) file.

    Args:
        path: the file to create (truncated if it exists).
        final: the name given in the error (the target of a temporary file).
    """

    def __init__(self, path: str | Path, final: str | Path | None = None) -> None:
        self.path = Path(path)
        self.final = Path(final) if final is not None else self.path
        self.error: OSError | None = None
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        self._position = 0

    def __enter__(self) -> HeldErrorFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def raise_if_failed(self) -> None:
        """Raise `OutputWriteError` (naming `final`) if a write failed so far."""
        if self.error is not None:
            raise OutputWriteError(str(self.final), write_failure_reason(self.error)) from (
                self.error
            )

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)  # (NFS reports delayed write errors here)
            except OSError as error:
                self._fail(error)

    def _fail(self, error: OSError) -> None:
        if self.error is None:
            self.error = error

    # --- the file interface h5py's fileobj driver calls ---------------------------

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._position = offset
        elif whence == os.SEEK_CUR:
            self._position += offset
        else:
            self._position = os.fstat(self._fd).st_size + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(0, os.fstat(self._fd).st_size - self._position)
        buffer = bytearray(size)
        return bytes(buffer[: self.readinto(buffer)])

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            chunk = os.pread(self._fd, len(view) - done, self._position + done)
            if not chunk:
                break
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        if done < len(view):
            # past the end (or a part dropped after a failure): zeros, as HDF5's own
            # driver reads there
            view[done:] = bytes(len(view) - done)
            done = len(view)
        self._position += done
        return done

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            done = 0
            try:
                while done < len(view):  # (a full disk may first take part of a write)
                    done += os.pwrite(self._fd, view[done:], self._position + done)
            except OSError as error:
                self._fail(error)
        self._position += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._position if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as error:
                self._fail(error)
        return size

    def flush(self) -> None:
        """Nothing is buffered here (as with HDF5's default driver, no fsync)."""
