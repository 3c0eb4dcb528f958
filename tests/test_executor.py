"""The executor: results of every task, in completion order, worker logs in the main log,
progress reported from inside tasks."""

from __future__ import annotations

import logging
import os
import time

import pytest

from gedidata.executor import ProcessExecutor, SerialExecutor, report_progress


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
from gedidata.executor import ProcessExecutor

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
