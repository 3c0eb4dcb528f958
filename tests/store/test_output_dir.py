"""The output folder: one run at a time, unusable folders and full disks named in one line,
errors that survive a pipe, and a copied folder that resumes."""

from __future__ import annotations

import errno
import functools
import json
import os
import pickle
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from gedidata.cli import EXIT_ERROR
from gedidata.errors import (
    GranuleReadError,
    InputError,
    OutputBusyError,
    OutputWriteError,
)
from gedidata.offline import write_granule
from gedidata.runtime.executor import TasksLost
from gedidata.store.atomic import HeldErrorFile, atomic_output
from gedidata.store.lock import OutputLock, lock_path, prepare_output_dir
from gedidata.store.samples_h5 import SchemaError, check_file
from gedidata.store.state import RunState, file_stamp
from tests.conftest import REPO, run_cli
from tests.stages.test_fuse import write_batches

CLI = [sys.executable, str(REPO / "create_dataset.py")]
SEGFAULT = (-signal.SIGSEGV, 128 + signal.SIGSEGV)  # (directly, or through sh)
SMALL = 1 << 20
"""Room left on the "full" disk: a fused file of `BATCH_SHOTS` needs ~8 MB."""
BATCH_SHOTS = [list(range(index * 50, index * 50 + 50)) for index in range(4)]


def one_line_error(stderr: str) -> str:
    """The error line of a run that failed cleanly (one line, no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and " ERROR " in lines[0], stderr
    return lines[0]


# --- errors pass through pipes -------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        GranuleReadError("granule.h5", "truncated"),
        OutputWriteError("out/train_dataset.h5", "disk full"),
        OutputBusyError("out is in use"),
        InputError("bad"),
        SchemaError("batch.h5", "CRS", "dtype int8, expected a string"),
        SchemaError("batch.h5", None, "not an HDF5 file"),
        TasksLost([("task", "was killed by SIGKILL")]),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_survive_pickling(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


# --- one run per folder ----------------------------------------------------------------


def test_a_second_run_names_the_run_holding_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_batches(tmp_path / "batches", [[1, 2, 3]])
    prepare_output_dir(out)
    with OutputLock(out):
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(OutputBusyError, match=f"pid {os.getpid()} on "), OutputLock(out):
            pass
        result = run_cli(out, "--fuse-hdf5-datasets", tmp_path / "batches", "-q")
    assert result.returncode == EXIT_ERROR
    line = one_line_error(result.stderr)
    assert f"{out} is in use by another gedidata run (pid {os.getpid()} on " in line
    assert "wait for it to finish or use another output folder" in line
    assert not (out / "fused_dataset.h5").exists()
    # released: the file stays, empty, and the next run takes it
    assert lock_path(out).read_text() == ""
    again = run_cli(out, "--fuse-hdf5-datasets", tmp_path / "batches", "-q")
    assert again.returncode == 0, again.stderr
    assert check_file(out / "fused_dataset.h5") == 3


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_lock_of_a_killed_run_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    pid = dead_pid()
    stale = {"pid": pid, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00",
             "command": "create_dataset.py out"}  # fmt: skip
    lock_path(out).parent.mkdir(parents=True)
    lock_path(out).write_text(json.dumps(stale))
    with caplog.at_level("INFO", logger="gedidata.store.lock"), OutputLock(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    assert f"ended without releasing it (pid {pid})" in caplog.text
    # a run of the command line takes it over too
    lock_path(out).write_text(json.dumps(stale))
    write_batches(tmp_path / "batches", [[1, 2]])
    result = run_cli(out, "--fuse-hdf5-datasets", tmp_path / "batches")
    assert result.returncode == 0, result.stderr
    assert (
        f"taking over the lock of an earlier run that ended without releasing it (pid {pid})"
        in (result.stderr)
    )


# --- unusable output folders -----------------------------------------------------------


def test_an_output_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("mine")
    write_batches(tmp_path / "batches", [[1]])
    for args in ((out,), (out, "--fuse-hdf5-datasets", tmp_path / "batches")):
        result = run_cli(*args)
        assert result.returncode == EXIT_ERROR
        assert f"{out}: exists and is not a folder" in one_line_error(result.stderr)
    assert out.read_text() == "mine"
    with pytest.raises(OutputWriteError, match="not a directory"):
        prepare_output_dir(out / "below")


def test_a_read_only_output_is_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        probe = out / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:  # root (no user namespace trick here): permissions do not stop it
            probe.unlink()
            pytest.skip("running as root: a 0o555 folder is still writable")
        result = run_cli(out, "--stop-after", "combine")
        assert result.returncode == EXIT_ERROR
        assert f"{out}: cannot write (permission denied)" in one_line_error(result.stderr)
    finally:
        out.chmod(0o755)


@functools.cache
def user_namespaces() -> bool:
    """Whether `unshare -rm` can mount here (a private tmpfs or read-only bind mount)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    """Run the shell `script` as root of its own user and mount namespace."""
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def command(*args: str | Path) -> str:
    return shlex.join([*CLI, *map(str, args)])


@pytest.mark.skipif(not user_namespaces(), reason="unshare -rm cannot mount here")
def test_a_read_only_file_system_is_named(tmp_path: Path) -> None:
    (tmp_path / "ro" / "out").mkdir(parents=True)
    ro = tmp_path / "ro"
    for out in (ro / "out", ro / "new"):  # existing, and one to create
        result = in_namespace(
            f"mount --bind {shlex.quote(str(ro))} {shlex.quote(str(ro))} && "
            f"mount -o remount,bind,ro {shlex.quote(str(ro))} && "
            f"exec {command(out, '--stop-after', 'combine')}"
        )
        assert result.returncode == EXIT_ERROR, result.stderr
        assert f"{out}: cannot write (read-only file system)" in one_line_error(result.stderr)


def test_fusing_an_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli(tmp_path / "out", "--fuse-hdf5-datasets", tmp_path / "empty")
    assert result.returncode == EXIT_ERROR
    line = one_line_error(result.stderr)
    assert f"no batch files (*.h5) in {tmp_path / 'empty'}: nothing to fuse" in line
    assert not (tmp_path / "out" / "fused_dataset.h5").exists()


# --- a full disk -------------------------------------------------------------------------


def small_file_limit() -> None:
    """In the child before exec: files may not grow past `SMALL` (EFBIG, as a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (else the kernel kills the writer)
    resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


class FullDisk:
    """Runs commands whose output folder `out` has about `SMALL` bytes of room.

    ``tmpfs``: `out` lies on a 1 MiB tmpfs of a private mount namespace, copied to and
    from `saved` around each run (the tmpfs lives as long as the command).
    ``fsize``: `out` is an ordinary folder; the command's RLIMIT_FSIZE is `SMALL`.
    """

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        if kind == "tmpfs":
            self.mount = tmp_path / "small"
            self.mount.mkdir()
            self.saved = tmp_path / "saved"
            self.saved.mkdir()
            self.out = self.mount / "out"
        else:
            self.out = tmp_path / "out"

    @property
    def result_dir(self) -> Path:
        """Where `out`'s content can be looked at after a run."""
        return self.saved / "out" if self.kind == "tmpfs" else self.out

    def run(self, argv: list[str | Path], room: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `argv`; with ``room`` the disk is large enough (the "freed space" re-run)."""
        if self.kind == "fsize":
            return subprocess.run(
                list(map(str, argv)),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                preexec_fn=None if room else small_file_limit,
            )
        size = "256m" if room else f"{SMALL // 1024}k"
        saved, out = shlex.quote(str(self.saved / "out")), shlex.quote(str(self.out))
        restore = f"if [ -d {saved} ]; then cp -a {saved} {out}; fi"
        keep = f"rm -rf {saved}; if [ -d {out} ]; then cp -a {out} {saved}; fi"
        quoted = shlex.join(map(str, argv))
        return in_namespace(
            f"mount -t tmpfs -o size={size} none {shlex.quote(str(self.mount))} && {restore} && "
            f"{quoted}; "
            f"status=$?; {keep}; exit $status"
        )


FULL_DISKS = [
    pytest.param(
        "tmpfs",
        marks=pytest.mark.skipif(not user_namespaces(), reason="unshare -rm cannot mount here"),
    ),
    "fsize",
]


@pytest.fixture(params=FULL_DISKS)
def full_disk(request: pytest.FixtureRequest, tmp_path: Path) -> FullDisk:
    return FullDisk(request.param, tmp_path)


def python_script(code: str) -> list[str | Path]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_a_full_disk_during_fuse_is_one_line_and_the_same_command_resumes(
    full_disk: FullDisk, tmp_path: Path
) -> None:
    write_batches(tmp_path / "batches", BATCH_SHOTS)
    argv: list[str | Path] = [*CLI, full_disk.out, "--fuse-hdf5-datasets", tmp_path / "batches"]
    full = full_disk.run([*argv, "-q"])
    assert full.returncode not in SEGFAULT, full.stderr
    assert full.returncode == EXIT_ERROR, full.stderr
    line = one_line_error(full.stderr)
    assert f"{full_disk.out / 'fused_dataset.h5'}: cannot write (disk full)" in line
    left = sorted(path.name for path in full_disk.result_dir.iterdir())
    assert left == [".gedidata"]  # no fused file, no temporary file

    again = full_disk.run(argv, room=True)
    assert again.returncode == 0, again.stderr
    assert "unreadable" not in again.stdout  # (no batch file was blamed)
    assert check_file(full_disk.result_dir / "fused_dataset.h5") == 200


def test_fuse_files_on_a_full_disk_blames_no_batch_file(
    full_disk: FullDisk, tmp_path: Path
) -> None:
    files = write_batches(tmp_path / "batches", BATCH_SHOTS)
    target = full_disk.out / "fused.h5"
    result = full_disk.run(
        python_script(f"""
            import gc, logging, os
            from gedidata.errors import OutputWriteError
            from gedidata.stages.fuse import fuse_files
            logging.basicConfig(level=logging.WARNING)
            os.makedirs({str(full_disk.out)!r}, exist_ok=True)
            try:
                fuse_files({[str(path) for path in files]!r}, {str(target)!r})
            except OutputWriteError as error:
                print("error", error.path, error.reason, sep="|")
            gc.collect()  # (freeing half-closed HDF5 handles is what used to crash)
            print("left", *sorted(os.listdir({str(full_disk.out)!r})), sep="|")
        """)
    )
    assert result.returncode not in SEGFAULT, result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"error|{target}|disk full", "left"]
    assert "skipping" not in result.stderr  # the batch files are fine


def test_atomic_output_on_a_full_disk(full_disk: FullDisk) -> None:
    target = full_disk.out / "big.bin"
    result = full_disk.run(
        python_script(f"""
            import os
            from gedidata.store.atomic import atomic_output
            from gedidata.errors import OutputWriteError
            try:
                with atomic_output({str(target)!r}) as temporary:
                    temporary.write_bytes(bytes({2 * SMALL}))
            except OutputWriteError as error:
                print("error", error.path, error.reason, sep="|")
                print("cause", type(error.__cause__).__name__, sep="|")
            print("left", *sorted(os.listdir({str(full_disk.out)!r})), sep="|")
        """)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"error|{target}|disk full", "cause|OSError", "left"]


# --- atomic_output and HeldErrorFile in this process ---------------------------------------


def raising(error: BaseException) -> Callable[[Path], None]:
    def write(temporary: Path) -> None:
        temporary.write_text("partial")
        raise error

    return write


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "disk full"),
        (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), "disk full"),
        (OSError(errno.EIO, os.strerror(errno.EIO)), "input/output error"),
        (OSError(None, "Can't write data (No space left on device)"), "disk full"),  # h5py's
        (RuntimeError("write failed: No space left on device (os error 28)"), "disk full"),
    ],
)
def test_atomic_output_names_the_file_it_could_not_write(
    tmp_path: Path, error: BaseException, reason: str
) -> None:
    target = tmp_path / "out" / "file.csv"
    with pytest.raises(OutputWriteError) as raised, atomic_output(target) as temporary:
        raising(error)(temporary)
    assert str(raised.value) == f"{target}: cannot write ({reason})"
    assert raised.value.__cause__ is error
    assert list(target.parent.iterdir()) == []  # the temporary file is gone


@pytest.mark.parametrize(
    "error",
    [
        ValueError("not a write failure"),
        FileNotFoundError(errno.ENOENT, "No such file or directory", "/elsewhere/input.csv"),
        PermissionError(errno.EACCES, "Permission denied", "/elsewhere/input.csv"),
    ],
    ids=["other", "input-missing", "input-unreadable"],
)
def test_atomic_output_passes_other_errors_unchanged(tmp_path: Path, error: Exception) -> None:
    target = tmp_path / "file.csv"
    with pytest.raises(type(error)) as raised, atomic_output(target) as temporary:
        raising(error)(temporary)
    assert raised.value is error
    assert list(tmp_path.iterdir()) == []


def test_held_error_file_keeps_a_failed_write_from_hdf5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first failed write HDF5 sees only successes, closes cleanly, and the
    writer raises; without a failure the file is a normal HDF5 file."""
    data = np.arange(400 * 1024, dtype=np.float64).reshape(400, 1024)
    good = tmp_path / "good.h5"
    with HeldErrorFile(good) as sink:
        with h5py.File(sink, "w") as file:
            file["x"] = data
        sink.raise_if_failed()
    with h5py.File(good, "r") as file:
        np.testing.assert_array_equal(file["x"][:], data)

    real_pwrite = os.pwrite
    written = 0

    def pwrite(fd: int, chunk: bytes, offset: int) -> int:
        nonlocal written
        if written > 100_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        count = real_pwrite(fd, chunk[: 100_000 - written + 1], offset)  # short writes too
        written += count
        return count

    monkeypatch.setattr(os, "pwrite", pwrite)
    target = tmp_path / "full.h5"
    with HeldErrorFile(tmp_path / ".full.tmp.h5", target) as sink:
        with h5py.File(sink, "w") as file:
            file["x"] = data
        assert sink.error is not None and sink.error.errno == errno.ENOSPC
        with pytest.raises(OutputWriteError, match=f"{target}: cannot write \\(disk full\\)"):
            sink.raise_if_failed()


# --- resuming in a copied folder -----------------------------------------------------------


def test_a_copied_output_folder_resumes(tmp_path: Path) -> None:
    gedi = tmp_path / "gedi"
    write_granule(gedi, datetime(2020, 4, 1), shots_per_beam=30)
    write_granule(gedi, datetime(2021, 4, 1), shots_per_beam=30)
    out = tmp_path / "out"
    first = run_cli("--input", gedi, out, "--stop-after", "subset", "-q")
    assert first.returncode == 0, first.stderr
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(out)  # (as if moved: nothing of the original is left to compare with)
    stamps = {path: file_stamp(path) for path in copy.glob("*.*")}
    again = run_cli("--input", gedi, copy, "--stop-after", "subset", "-q")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("reused earlier output") == 3  # combine, subset ×2
    assert {path: file_stamp(path) for path in copy.glob("*.*")} == stamps
    assert str(tmp_path) not in (copy / ".gedidata" / "state.json").read_text()


def test_a_copied_fuse_only_folder_resumes(tmp_path: Path) -> None:
    # the batches lie inside OUT: the fuse's step key names a folder in OUT
    out = tmp_path / "out"
    write_batches(out / "batches", [[1, 2, 3], [4, 5]])
    first = run_cli(out, "--fuse-hdf5-datasets", out / "batches", "-q")
    assert first.returncode == 0, first.stderr
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(out)
    stamp = file_stamp(copy / "fused_dataset.h5")
    again = run_cli(copy, "--fuse-hdf5-datasets", copy / "batches", "-q")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("reused earlier output") == 1
    assert file_stamp(copy / "fused_dataset.h5") == stamp
    state = json.loads((copy / ".gedidata" / "state.json").read_text())
    assert list(state) == ["fuse:batches"]
    assert list(state["fuse:batches"]["outputs"]) == ["fused_dataset.h5"]


def test_state_of_earlier_versions_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Absolute entries under OUT (and ones relative to the working folder) still match."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    for name in ("a.csv", "b.csv", "c.csv"):
        (out / name).write_text(name)
    signature = {"input": str(out / "a.csv"), "seed": 0}
    old = {
        f"subset:{out / 'batches'}": {
            "signature": signature,
            "complete": True,
            "outputs": {
                str(out / "b.csv"): file_stamp(out / "b.csv"),
                "out/c.csv": file_stamp(out / "c.csv"),  # (relative to the working folder)
            },
        }
    }
    (out / ".gedidata").mkdir()
    (out / ".gedidata" / "state.json").write_text(json.dumps(old))
    for given in (out, Path("out")):  # OUT given absolute, then relative
        state = RunState(given)
        key = f"subset:{(given / 'batches').resolve()}"
        assert state.is_complete(key, {"input": str((given / "a.csv").resolve()), "seed": 0})
        state.ensure_writable(key, [given / "b.csv", given / "c.csv"], overwrite=False)
    state.record("other", {"input": str(out / "a.csv")}, [out / "b.csv"])
    stored = json.loads((out / ".gedidata" / "state.json").read_text())
    assert stored["other"]["signature"] == {"input": "a.csv"}
    assert stored["subset:batches"]["outputs"].keys() == {"b.csv", "c.csv"}
