"""The executor: results of every task, in completion order, worker logs in the main log,
progress reported from inside tasks."""

from __future__ import annotations

import logging
import os
import time

import pytest

from gedidata.runtime.executor import ProcessExecutor, SerialExecutor, report_progress


def slow_square(value: int) -> tuple[int, int]:
    logging.getLogger("gedidata.test").warning("task %d in %d", value, os.getpid())
    if value == 0:
        time.sleep(1.0)  # a slow task must not hold the others back
    return value, value * value


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_process_executor(start_method):
    handler = ListHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        results = list(ProcessExecutor(2, start_method).map_unordered(slow_square, range(6)))
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert sorted(results) == [(i, i * i) for i in range(6)]
    assert results[-1] == (0, 0)  # the slow first task finished last
    worker_pids = {int(m.split()[-1]) for m in handler.messages if m.startswith("task")}
    assert len([m for m in handler.messages if m.startswith("task")]) == 6
    assert os.getpid() not in worker_pids


def test_fork_is_refused():
    with pytest.raises(ValueError, match="forkserver or spawn"):
        ProcessExecutor(2, "fork")


def test_serial_executor():
    assert list(SerialExecutor().map_unordered(abs, [-1, 2, -3])) == [1, 2, 3]


def count_up(value: int) -> int:
    for step in range(value):
        report_progress((value, step))
    return value


@pytest.mark.parametrize("executor", [SerialExecutor(), ProcessExecutor(2)], ids=["serial", "pool"])
def test_progress_from_inside_tasks_reaches_the_caller(executor):
    updates: list[tuple[int, int]] = []
    results = list(executor.map_unordered(count_up, [3, 4, 5], on_progress=updates.append))
    assert sorted(results) == [3, 4, 5]
    # every update arrives (the pool's workers flush before they stop), each task's in order
    assert sorted(updates) == [(v, s) for v in (3, 4, 5) for s in range(v)]
    for value in (3, 4, 5):
        assert [s for v, s in updates if v == value] == list(range(value))
    # without a receiver, reporting is a no-op
    assert list(executor.map_unordered(count_up, [2])) == [2]


PRELOAD_SCRIPT = """
import sys
import psutil
from gedidata.runtime.executor import ProcessExecutor

def imported(name):
    return name in sys.modules

if __name__ == "__main__":
    executor = ProcessExecutor(2, preload=["colorsys"])
    # the server runs before any map, and it imports the preloaded module, not this one
    servers = [p for p in psutil.Process().children() if "forkserver" in " ".join(p.cmdline())]
    assert len(servers) == 1, servers
    assert "colorsys" not in sys.modules
    print(sorted(set(executor.map_unordered(imported, ["colorsys"] * 4))))
"""


def test_preload_starts_the_server_at_once_and_workers_inherit_its_imports(tmp_path):
    """`preload` starts the fork server when the executor is made (it imports while the
    caller prepares its tasks); workers fork from it with the modules already in."""
    import subprocess
    import sys

    script = tmp_path / "preload_probe.py"
    script.write_text(PRELOAD_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True]"


def test_tasks_are_taken_in_the_callers_thread_as_workers_free_up():
    """The pool's own thread never iterates the tasks (it is joined when the pool stops,
    so a task iterator that blocks would keep Ctrl-C waiting): each task is taken in the
    caller's thread, the first `processes` at once, then one per finished task."""
    import threading

    taken: list[tuple[int, str]] = []
    results: list[int] = []

    def tasks():
        for value in range(5):
            taken.append((value, threading.current_thread().name))
            yield value

    for result in ProcessExecutor(2).map_unordered(abs, tasks()):
        if not results:
            # the first two went out at once; the third only when one of them was done
            assert [value for value, _ in taken] == [0, 1, 2]
        results.append(result)
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert {name for _, name in taken} == {threading.main_thread().name}


def test_daemon_threads_hand_back_results_and_errors_and_skip_cancelled_calls():
    import threading
    from concurrent.futures import wait

    from gedidata.runtime.executor import DaemonThreads

    release = threading.Event()
    ran: list[str] = []

    def call(name: str) -> str:
        ran.append(name)
        if name == "slow":
            release.wait(10)
        if name == "bad":
            raise ValueError("bad call")
        return name.upper()

    threads = DaemonThreads(1, "test-daemon")
    slow = threads.submit(call, "slow")
    queued = threads.submit(call, "queued")  # waits behind "slow" on the one thread
    assert queued.cancel()
    bad = threads.submit(call, "bad")
    release.set()
    wait([slow, bad], timeout=10)
    assert slow.result() == "SLOW"
    with pytest.raises(ValueError, match="bad call"):
        bad.result()
    assert ran == ["slow", "bad"]  # the cancelled call never ran
    workers = [t for t in threading.enumerate() if t.name.startswith("test-daemon")]
    assert workers and all(t.daemon for t in workers)  # (they do not hold the exit)
    threads.shutdown()


INTERRUPT_SCRIPT = """
import sys
import threading

import polars  # noqa: F401  (installs polars' own SIGINT handler)

from gedidata.runtime.interrupts import restore_python_sigint

if sys.argv[1] == "restore":
    restore_python_sigint()
print("waiting", flush=True)
try:
    threading.Event().wait()  # a main thread blocked on a lock, as while workers run
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_interrupts_a_blocked_main_thread_after_polars_is_imported(tmp_path):
    """polars installs a SIGINT handler with SA_RESTART (pola-rs/polars#21739): a main
    thread blocked on a lock then never sees KeyboardInterrupt. With Python's handler
    put back, it does at once."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "interrupt_probe.py"
    script.write_text(INTERRUPT_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), "restore"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "waiting\n"
        time.sleep(0.3)  # (into the wait)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert output == "interrupted\n"


def die_once(task: tuple[str, str]) -> str:
    """SIGKILL this worker the first time `task` runs (a marker file remembers)."""
    import pathlib
    import signal

    name, marker_dir = task
    marker = pathlib.Path(marker_dir) / name
    if name.startswith("die") and (name == "die-always" or not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return name


def test_a_killed_worker_s_task_runs_again_and_the_others_go_on(tmp_path):
    """The OOM killer's SIGKILL of one worker: its task runs again on a new worker, the
    other tasks are not disturbed, and nothing waits forever."""
    names = ["a", "die-once", "b", "c", "d"]
    retried: list[tuple[str, str]] = []

    def again(task: tuple[str, str]) -> tuple[str, str]:
        retried.append(task)
        return task

    started = time.monotonic()
    executor = ProcessExecutor(2)
    results = list(
        executor.map_unordered(die_once, [(n, str(tmp_path)) for n in names], None, again)
    )
    assert sorted(results) == sorted(names)
    assert retried == [("die-once", str(tmp_path))]
    assert time.monotonic() - started < 30


def test_a_task_that_kills_every_worker_is_given_up_after_the_others(tmp_path):
    from gedidata.runtime.executor import TasksLost

    tasks = [(n, str(tmp_path)) for n in ["a", "die-always", "b", "c"]]
    results: list[str] = []
    with pytest.raises(TasksLost, match="SIGKILL") as raised:
        for result in ProcessExecutor(2, task_attempts=2).map_unordered(die_once, tasks):
            results.append(result)
    assert sorted(results) == ["a", "b", "c"]  # the others finished first
    assert [task for task, _ in raised.value.lost] == [("die-always", str(tmp_path))]


def raise_os_error(value: int) -> int:
    if value == 2:
        raise FileNotFoundError(f"no file {value}")
    return value


def test_a_task_s_exception_ends_the_map_with_that_exception():
    with pytest.raises(FileNotFoundError, match="no file 2"):
        list(ProcessExecutor(2).map_unordered(raise_os_error, [1, 2, 3]))
