"""Running tasks in worker processes behind a small interface.

Stages hand an `Executor` a function and its tasks and get results back as they finish
(a slow task never holds the others back). `ProcessExecutor` uses the forkserver or
spawn start method: GDAL and HDF5 handles must not be inherited through fork, so every
worker opens its own datasets. Worker log records travel over a queue to the main
process's handlers, so they reach the console and the log file (the stdlib's
QueueHandler/QueueListener rather than the multiprocessing-logging package, which relies
on handlers inherited through fork). Another engine (Dask, a cluster) only needs to
implement `map_unordered`.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")


class Executor(Protocol):
    """Runs `function` on every task; yields results in completion order."""

    def map_unordered(
        self, function: Callable[[Task], Result], tasks: Iterable[Task]
    ) -> Iterator[Result]: ...


class SerialExecutor:
    """In-process, one task after another (debugging, tiny inputs, tests)."""

    def map_unordered(
        self, function: Callable[[Task], Result], tasks: Iterable[Task]
    ) -> Iterator[Result]:
        return map(function, tasks)


class ProcessExecutor:
    """A pool of `processes` fresh worker processes."""

    def __init__(self, processes: int, start_method: str = "forkserver") -> None:
        if start_method == "fork":
            raise ValueError("fork is not safe with GDAL/HDF5 handles; use forkserver or spawn")
        self.processes = max(1, processes)
        self.context = multiprocessing.get_context(start_method)

    def map_unordered(
        self, function: Callable[[Task], Result], tasks: Iterable[Task]
    ) -> Iterator[Result]:
        if self.context.get_start_method() == "forkserver":
            # workers fork from a server that has imported the task's module once, instead
            # of each importing rasterio, h5py and polars itself (~0.5 s); no dataset is
            # open in the server. Only takes effect before the server's first start.
            self.context.set_forkserver_preload([function.__module__])
        log_queue = self.context.Queue()
        root = logging.getLogger()
        listener = logging.handlers.QueueListener(
            log_queue, *root.handlers, respect_handler_level=True
        )
        listener.start()
        try:
            with self.context.Pool(
                self.processes, initializer=_init_worker, initargs=(log_queue, root.level)
            ) as pool:
                yield from pool.imap_unordered(function, tasks, chunksize=1)
        finally:
            listener.stop()
            log_queue.close()


def _init_worker(log_queue: multiprocessing.Queue, level: int) -> None:
    """Send this worker's log records to the main process."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(log_queue)]
    root.setLevel(level)
