"""One run per output folder: `OUT/.gedidata/lock`, and a usable OUT before any work.

Two runs into one folder would rebuild each other's outputs and overwrite each other's
bookkeeping. A run holds an exclusive ``flock`` on the lock file for as long as it
runs; the kernel drops it when the process ends, however it ends (Ctrl-C, SIGKILL, a
crash), so a lock file left behind never blocks the next run. While held, the file
says who holds it (pid, host, start time, command line), for the message a second run
prints; a clean exit empties it, so a non-empty file found free belonged to a run that
was killed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from gedidata.errors import InputError, OutputBusyError, OutputWriteError
from gedidata.store.atomic import write_failure_reason
from gedidata.store.state import work_dir

logger = logging.getLogger(__name__)

LOCK_NAME = "lock"

_BUSY_ERRNOS = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})


def lock_path(out: Path) -> Path:
    """`OUT/.gedidata/lock`."""
    return work_dir(out) / LOCK_NAME


def prepare_output_dir(out: Path) -> None:
    """Create OUT (and its parents) and check that a run can write into it.

    Raises:
        InputError: OUT exists and is not a folder.
        OutputWriteError: OUT cannot be created or written (naming it and why).
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputWriteError(str(out), write_failure_reason(error)) from error
    for folder in (out, work_dir(out)):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise OutputWriteError(str(folder), _not_writable_reason(folder))
        try:  # (os.access is not the whole story: ACLs, root squashing, quotas)
            folder.mkdir(exist_ok=True)
        except OSError as error:
            raise OutputWriteError(str(folder), write_failure_reason(error)) from error


def _not_writable_reason(folder: Path) -> str:
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS).lower()
    return os.strerror(errno.EACCES).lower()


class OutputLock:
    """Hold `OUT/.gedidata/lock` for the length of a ``with`` block.

    Raises (on entering):
        OutputBusyError: another run holds it; the message names that run.
        OutputWriteError: the lock file cannot be created or written.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = lock_path(self.out)
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise OutputWriteError(str(self.path), write_failure_reason(error)) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in _BUSY_ERRNOS:
                raise OutputBusyError(
                    f"{self.out} is in use by another gedidata run ({_describe(holder)}); "
                    "wait for it to finish or use another output folder"
                ) from None
            # a file system without locks (some network mounts): go on unprotected
            logger.warning(
                "cannot lock %s (%s): nothing stops a second run into this folder",
                self.path,
                error.strerror or error,
            )
            return
        earlier = _read_holder(fd)
        if earlier:
            _note_takeover(earlier)
        try:
            _write_holder(fd, _this_run())
        except OSError as error:
            os.close(fd)  # (also drops the lock)
            raise OutputWriteError(str(self.path), write_failure_reason(error)) from error
        self._fd = fd

    def release(self) -> None:
        """Empty the file (a clean end), unlock, close; the file itself stays."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # (a full disk must not hide the run's error)
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _this_run() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def _write_holder(fd: int, holder: dict[str, Any]) -> None:
    data = (json.dumps(holder, sort_keys=True) + "\n").encode()
    os.ftruncate(fd, 0)
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)


def _read_holder(fd: int) -> dict[str, Any]:
    """What the lock file says about its holder; {} when empty or unreadable."""
    try:
        size = os.fstat(fd).st_size
        holder = json.loads(os.pread(fd, min(size, 1 << 16), 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "it has not said who it is yet"
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
        f"{holder.get('started', '?')}: {holder.get('command', '?')}"
    )


def _note_takeover(earlier: dict[str, Any]) -> None:
    """A non-empty lock file that was free: its run ended without releasing it."""
    pid = earlier.get("pid")
    if earlier.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        logger.info(
            "taking over the lock of an earlier run that ended without releasing it (pid %d)",
            pid,
        )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # (another user's process)
    return True
