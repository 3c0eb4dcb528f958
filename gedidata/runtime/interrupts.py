"""Ctrl-C that stops a run at once, also while the main process waits.

Importing polars installs its own SIGINT handler, with ``SA_RESTART`` (through the
signal-hook crate; pola-rs/polars#21739). Python's handler still runs, but the blocking
call the main thread is in (a lock, a queue, a socket: waiting for workers or a STAC
search) is restarted instead of interrupted, so ``KeyboardInterrupt`` comes only once
that call returns by itself; with a STAC API that hangs, that took minutes. Putting
Python's own handler back (installed without ``SA_RESTART``) makes those waits
interruptible again; what is lost is polars' own check for Ctrl-C inside long polars
operations, which gedidata's few short ones do not need.
"""

from __future__ import annotations

import signal
import threading


def restore_python_sigint() -> None:
    """Put back Python's SIGINT handling over the one polars installed at import.

    Only the main thread can set signal handlers; elsewhere this does nothing. A
    SIGINT that is ignored (a background job) stays ignored.
    """
    import polars  # noqa: F401  (imported first: its import installs the handler)

    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGINT)
    if handler is not None:  # (None: not installed from Python, e.g. an embedding host)
        # Python's table still holds its own handler; setting it again reinstalls
        # Python's C-level handler in place of polars'
        signal.signal(signal.SIGINT, handler)
