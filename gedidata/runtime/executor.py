"""Running tasks in worker processes behind a small interface.

Stages hand an `Executor` a function and its tasks and get results back as they finish
(a slow task never holds the others back). `ProcessExecutor` runs them in worker
processes started with the forkserver or spawn method: GDAL and HDF5 handles must not be
inherited through fork, so every worker opens its own datasets.

Each worker talks to the main process over a pipe of its own: tasks go one way; results,
errors, log records and progress updates come back. A worker that dies (the OOM killer's
SIGKILL, a crash in a C library) closes its pipe and its process sentinel fires, so the
main process notices at once: the task it had runs again on a new worker (up to
``task_attempts`` times in all), the other workers go on undisturbed, and a task that
kills every worker it runs on is given up and reported (`TasksLost`) once the others are
done. A pipe per worker also means a worker killed in the middle of a message breaks only
its own pipe, never a queue the others share. Worker log records reach the main
process's handlers (console, log file), so nothing a worker logs is lost and every record
passes the same handlers' filters. A task reports progress while it runs with
`report_progress`; the caller's ``on_progress`` receives it in the caller's thread.

Tasks are taken from the caller's iterable in the caller's thread, one as each worker
frees up, so an iterable that prepares tasks lazily (extract's STAC searches) runs ahead
of the workers by no more than that, and a Ctrl-C while it waits ends the map at once
(the workers ignore SIGINT and are stopped by the main process).
`DaemonThreads` runs such preparation in threads that never hold the process at exit.
Another engine (Dask, a cluster) only needs to implement `map_unordered`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import queue
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Any, Protocol, TypeVar

from gedidata.errors import GedidataError
from gedidata.runtime.logs import RedactingFilter

Task = TypeVar("Task")
Result = TypeVar("Result")
ProgressCallback = Callable[[Any], None]
RetryCallback = Callable[[Any], Any]
"""Takes a task whose worker died; returns the task to run again (or None: nothing left)."""

logger = logging.getLogger(__name__)

_progress_sink: ProgressCallback | None = None
"""Where `report_progress` sends updates in this process (set per worker / per map)."""


def report_progress(update: Any) -> None:
    """From inside a task: hand ``update`` (picklable) to the caller's ``on_progress``.

    Does nothing when the caller asked for no progress.
    """
    if _progress_sink is not None:
        _progress_sink(update)


class TasksLost(GedidataError):
    """Tasks given up because the worker process running them died every time."""

    def __init__(self, lost: Sequence[tuple[Any, str]]) -> None:
        reasons = sorted({reason for _, reason in lost})
        super().__init__(
            f"{len(lost)} task(s) given up: their worker process died each time they ran "
            f"({'; '.join(reasons)})"
        )
        self.lost = list(lost)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.lost,))


class Executor(Protocol):
    """Runs `function` on every task; yields results in completion order.

    ``on_progress`` receives every `report_progress` update of the tasks, in the
    caller's process. ``on_retry`` is asked what to run again when a task's worker died
    (an engine that never loses a worker never calls it).
    """

    def map_unordered(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        on_progress: ProgressCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> Iterator[Result]: ...


class SerialExecutor:
    """In-process, one task after another (debugging, tiny inputs, tests)."""

    def map_unordered(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        on_progress: ProgressCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> Iterator[Result]:
        global _progress_sink
        for task in tasks:
            previous, _progress_sink = _progress_sink, on_progress
            try:
                result = function(task)
            finally:
                _progress_sink = previous
            yield result


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process of the executor's context
    connection: Connection
    task: tuple[int, Any] | None = None
    """(task number, task) while it runs one."""


_NO_TASK = object()


class ProcessExecutor:
    """Up to `processes` worker processes, each taking one task after another.

    With the forkserver start method, workers fork from a server process that has
    imported the task function's module once, instead of each importing rasterio, h5py
    and the rest itself (~0.5 s). ``preload`` names those modules up front and starts the
    server at once, so that it imports them while the caller is still preparing the
    tasks; otherwise the server starts at the first map. A task whose worker dies runs
    again on a new worker, ``task_attempts`` times in all.
    """

    def __init__(
        self,
        processes: int,
        start_method: str = "forkserver",
        preload: Sequence[str] = (),
        task_attempts: int = 2,
    ) -> None:
        if start_method == "fork":
            raise ValueError("fork is not safe with GDAL/HDF5 handles; use forkserver or spawn")
        self.processes = max(1, processes)
        self.task_attempts = max(1, task_attempts)
        context = multiprocessing.get_context(start_method)
        if not isinstance(context, ForkServerContext | SpawnContext):  # fork is refused above
            raise ValueError(f"unsupported start method {start_method!r}")
        self.context = context
        if preload:
            self._start_server(list(preload))

    def _start_server(self, modules: list[str]) -> None:
        if self.context.get_start_method() != "forkserver":
            return
        # only takes effect before the server's first start; no dataset is open in it
        self.context.set_forkserver_preload(modules)
        forkserver.ensure_running()

    def _start_worker(self, function: Callable[[Any], Any], progress: bool) -> _Worker:
        ours, theirs = self.context.Pipe(duplex=True)
        level = logging.getLogger().level
        process = self.context.Process(
            target=_worker_main,
            args=(theirs, function, level, progress),
            name="gedidata-worker",
            daemon=True,
        )
        process.start()
        theirs.close()  # (the worker's end: once it dies, our end reads EOF)
        return _Worker(process, ours)

    def map_unordered(
        self,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        on_progress: ProgressCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> Iterator[Result]:
        self._start_server([function.__module__])
        upcoming = iter(tasks)
        numbers = iter(range(1 << 62))
        again: deque[tuple[int, Any]] = deque()  # tasks of workers that died
        attempts: dict[int, int] = {}
        lost: list[tuple[Any, str]] = []
        workers: list[_Worker] = []
        exhausted = False

        def next_task() -> tuple[int, Any] | None:
            nonlocal exhausted
            if again:
                return again.popleft()
            if exhausted:
                return None
            task = next(upcoming, _NO_TASK)  # (in the caller's thread: see the docstring)
            if task is _NO_TASK:
                exhausted = True
                return None
            return next(numbers), task

        def give(worker: _Worker, numbered: tuple[int, Any]) -> None:
            worker.task = numbered
            attempts[numbered[0]] = attempts.get(numbered[0], 0) + 1
            with contextlib.suppress(OSError):  # (it died meanwhile: its sentinel says so)
                worker.connection.send(numbered)

        def died(worker: _Worker) -> None:
            workers.remove(worker)
            worker.process.join(5)
            reason = _exit_reason(worker.process.exitcode)
            worker.connection.close()
            if worker.task is None:
                return
            number, task = worker.task
            if attempts[number] < self.task_attempts:
                retried = on_retry(task) if on_retry is not None else task
                logger.warning("a worker process %s; running its task again", reason)
                if retried is not None:
                    again.append((number, retried))
            else:
                logger.error("a worker process %s; giving up its task", reason)
                lost.append((task, reason))

        finished = False
        try:
            while True:
                for worker in [w for w in workers if w.task is None]:
                    numbered = next_task()
                    if numbered is None:
                        break
                    give(worker, numbered)
                while len(workers) < self.processes:
                    numbered = next_task()
                    if numbered is None:
                        break
                    worker = self._start_worker(function, on_progress is not None)
                    workers.append(worker)
                    give(worker, numbered)
                busy = [w for w in workers if w.task is not None]
                if not busy:
                    break
                ready = set(wait([w.connection for w in busy] + [w.process.sentinel for w in busy]))
                for worker in busy:
                    if worker.connection not in ready and worker.process.sentinel not in ready:
                        continue
                    messages, alive = _drain(worker.connection)
                    for kind, _, payload in messages:
                        if kind == "log":
                            _handle_record(payload)
                        elif kind == "progress":
                            _call_progress(on_progress, payload)
                        elif kind == "done":
                            worker.task = None
                            numbered = next_task()  # (keeps it busy while the caller works)
                            if numbered is not None:
                                give(worker, numbered)
                            yield payload
                        else:  # "error": the task raised; the map ends with it
                            error, formatted = payload
                            logger.debug("task failed in a worker:\n%s", formatted)
                            raise error
                    if not alive or not worker.process.is_alive():
                        died(worker)
            finished = True
            if lost:
                raise TasksLost(lost)
        finally:
            _stop_workers(workers, gently=finished)


def _exit_reason(exitcode: int | None) -> str:
    """How a worker process ended, in words (for the log)."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {exitcode}"


def _stop_workers(workers: list[_Worker], gently: bool) -> None:
    """Gently: idle workers are told to finish. Otherwise (an error, Ctrl-C) they are
    terminated at once: their work is redone by the next run."""
    for worker in workers:
        if gently:
            with contextlib.suppress(OSError):
                worker.connection.send(None)
        else:
            worker.process.terminate()
    for worker in workers:
        worker.process.join(5 if gently else 2)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(2)
        worker.connection.close()


def _drain(connection: Connection) -> tuple[list[tuple[str, int, Any]], bool]:
    """Every message waiting on a worker's pipe; False once the pipe is closed (the
    worker is gone: what it sent before dying still counts)."""
    messages = []
    try:
        while connection.poll():
            messages.append(connection.recv())
    except (EOFError, OSError):
        return messages, False
    return messages, True


def _handle_record(record: logging.LogRecord) -> None:
    """A worker's log record, through the main process's root handlers."""
    for handler in logging.getLogger().handlers:
        if record.levelno >= handler.level:
            handler.handle(record)


def _call_progress(on_progress: ProgressCallback | None, update: Any) -> None:
    if on_progress is None:
        return
    try:
        on_progress(update)
    except Exception:  # a broken progress display must not stop the work
        logger.exception("progress callback failed")


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


class _PipeHandler(logging.Handler):
    """A worker's log handler: every record goes to the main process over the pipe."""

    def __init__(self, send: Callable[[tuple[str, int, Any]], None]) -> None:
        super().__init__()
        self._send = send
        # redacted in the worker: a signed URL is not even pickled onto the pipe
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # formatted here, as logging.handlers.QueueHandler does: args and the
            # traceback may not pickle
            message = record.getMessage()
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args, record.exc_info = message, None, None
            self._send(("log", 0, record))
        except Exception:
            self.handleError(record)


def _worker_main(
    connection: Connection, function: Callable[[Any], Any], level: int, progress: bool
) -> None:
    """A worker process: run the tasks that come over ``connection`` until told to stop."""
    global _progress_sink
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process stops us
    # the modules imported so far live as long as the worker: the collector need not
    # walk them again and again (it took ~2 % of an extract worker's profile)
    gc.freeze()
    lock = threading.Lock()  # tasks may log from several threads

    def send(message: tuple[str, int, Any]) -> None:
        with lock:
            connection.send(message)

    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(send)]
    root.setLevel(level)
    if progress:
        _progress_sink = lambda update: send(("progress", 0, update))  # noqa: E731
    while True:
        try:
            numbered = connection.recv()
        except (EOFError, OSError):
            return  # the main process is gone
        if numbered is None:
            return
        number, task = numbered
        try:
            result = function(task)
        except BaseException as error:
            send(("error", number, (_picklable(error), traceback.format_exc())))
            continue
        send(("done", number, result))


def _picklable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling, else a RuntimeError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
