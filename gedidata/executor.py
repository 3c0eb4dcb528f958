"""Running tasks in worker processes behind a small interface.

Stages hand an `Executor` a function and its tasks and get results back as they finish
(a slow task never holds the others back). `ProcessExecutor` uses the forkserver or
spawn start method: GDAL and HDF5 handles must not be inherited through fork, so every
worker opens its own datasets. Worker log records travel over a queue to the main
process's handlers, so they reach the console and the log file (the stdlib's
QueueHandler/QueueListener rather than the multiprocessing-logging package, which relies
on handlers inherited through fork). A task reports progress while it runs with
`report_progress`; the caller's ``on_progress`` receives it in the main process (over a
queue, from a listener thread). Another engine (Dask, a cluster) only needs to
implement `map_unordered`.

Tasks are taken from the caller's iterable in the caller's thread, one as each worker
frees up, so an iterable that prepares tasks lazily (extract's STAC searches) runs ahead
of the workers by no more than that, and a Ctrl-C while it waits ends the map at once.
`DaemonThreads` runs such preparation in threads that never hold the process at exit.
"""

from __future__ import annotations

import gc
import itertools
import logging
import logging.handlers
import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from multiprocessing import forkserver
from typing import Any, Protocol, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")
ProgressCallback = Callable[[Any], None]

_progress_sink: ProgressCallback | None = None
"""Where `report_progress` sends updates in this process (set per worker / per map)."""


def report_progress(update: Any) -> None:
    """From inside a task: hand ``update`` (picklable) to the caller's ``on_progress``.

    Does nothing when the caller asked for no progress.
    """
    if _progress_sink is not None:
        _progress_sink(update)


class Executor(Protocol):
    """Runs `function` on every task; yields results in completion order.

    ``on_progress`` receives every `report_progress` update of the tasks, in the
    caller's process, possibly from another thread.
    """

    def map_unordered(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        on_progress: ProgressCallback | None = None,
    ) -> Iterator[Result]: ...


class SerialExecutor:
    """In-process, one task after another (debugging, tiny inputs, tests)."""

    def map_unordered(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        on_progress: ProgressCallback | None = None,
    ) -> Iterator[Result]:
        global _progress_sink
        for task in tasks:
            previous, _progress_sink = _progress_sink, on_progress
            try:
                result = function(task)
            finally:
                _progress_sink = previous
            yield result


class ProcessExecutor:
    """A pool of `processes` fresh worker processes.

    With the forkserver start method, workers fork from a server process that has
    imported the task function's module once, instead of each
    importing rasterio, h5py and the rest itself (~0.5 s). ``preload`` names those
    modules up front and starts the server at once, so that it imports them while the
    caller is still preparing the tasks; otherwise the server starts at the first map.
    """

    def __init__(
        self, processes: int, start_method: str = "forkserver", preload: Sequence[str] = ()
    ) -> None:
        if start_method == "fork":
            raise ValueError("fork is not safe with GDAL/HDF5 handles; use forkserver or spawn")
        self.processes = max(1, processes)
        self.context = multiprocessing.get_context(start_method)
        if preload:
            self._start_server(list(preload))

    def _start_server(self, modules: list[str]) -> None:
        if self.context.get_start_method() != "forkserver":
            return
        # only takes effect before the server's first start; no dataset is open in it
        self.context.set_forkserver_preload(modules)
        forkserver.ensure_running()

    def map_unordered(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        on_progress: ProgressCallback | None = None,
    ) -> Iterator[Result]:
        self._start_server([function.__module__])
        log_queue = self.context.Queue()
        root = logging.getLogger()
        listener = logging.handlers.QueueListener(
            log_queue, *root.handlers, respect_handler_level=True
        )
        listener.start()
        progress_queue: multiprocessing.Queue | None = None
        relay: threading.Thread | None = None
        if on_progress is not None:
            progress_queue = self.context.Queue()
            relay = threading.Thread(
                target=_relay_progress, args=(progress_queue, on_progress), daemon=True
            )
            relay.start()
        initargs = (log_queue, root.level, progress_queue)
        pool = self.context.Pool(self.processes, initializer=_init_worker, initargs=initargs)
        finished: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

        def submit(task: Task) -> None:
            pool.apply_async(
                function,
                (task,),
                callback=lambda result: finished.put((True, result)),
                error_callback=lambda error: finished.put((False, error)),
            )

        try:
            # Tasks are taken from `tasks` here, in the caller's thread, one as each
            # worker frees up, not by the pool's own task thread: the pool joins that
            # thread when it stops, so a task iterator that blocks (waiting for a STAC
            # search) kept a Ctrl-C waiting as long as it did.
            upcoming = iter(tasks)
            running = 0
            for task in itertools.islice(upcoming, self.processes):
                submit(task)
                running += 1
            while running:
                ok, value = finished.get()
                running -= 1
                if not ok:
                    raise value
                for task in itertools.islice(upcoming, 1):  # keep the worker busy
                    submit(task)
                    running += 1
                yield value
            # workers that exit normally flush what they queued (logs, progress)
            pool.close()
            pool.join()
        finally:
            pool.terminate()  # stopped early (an error, Ctrl-C); a no-op after join
            listener.stop()
            log_queue.close()
            if progress_queue is not None and relay is not None:
                progress_queue.put(_END)  # after every worker's updates (the pool is closed)
                relay.join()
                progress_queue.close()


class DaemonThreads:
    """A few daemon threads that run submitted calls, results as `Future`s.

    Unlike `ThreadPoolExecutor`'s threads, which the interpreter joins at exit, these
    let a process that is told to stop (Ctrl-C) exit while a call still waits on the
    network: a STAC search that hangs can take minutes to give up (timeouts, retries).
    """

    def __init__(self, count: int, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple] | None]
        self._calls = queue.SimpleQueue()
        self._count = count
        for index in range(count):
            threading.Thread(target=self._work, name=f"{name}_{index}", daemon=True).start()

    def submit(self, function: Callable[..., Result], *args: Any) -> Future[Result]:
        future: Future[Result] = Future()
        self._calls.put((future, function, args))
        return future

    def shutdown(self) -> None:
        """Each thread ends once the calls submitted so far are done or cancelled."""
        for _ in range(self._count):
            self._calls.put(None)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            future, function, args = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args))
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)


_END = "__gedidata_progress_end__"


def _relay_progress(queue: multiprocessing.Queue, on_progress: ProgressCallback) -> None:
    """Main process: hand the workers' updates to ``on_progress`` until the end mark."""
    while not (isinstance(update := queue.get(), str) and update == _END):
        try:
            on_progress(update)
        except Exception:  # a broken progress display must not stop the work
            logging.getLogger(__name__).exception("progress callback failed")


def _init_worker(
    log_queue: multiprocessing.Queue, level: int, progress_queue: multiprocessing.Queue | None
) -> None:
    """Send this worker's log records and progress updates to the main process."""
    global _progress_sink
    # the modules imported so far live as long as the worker: the collector need not
    # walk them again and again (it took ~2 % of an extract worker's profile)
    gc.freeze()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(log_queue)]
    root.setLevel(level)
    _progress_sink = progress_queue.put if progress_queue is not None else None
