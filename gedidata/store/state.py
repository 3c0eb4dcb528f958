"""What earlier runs completed, so a re-run resumes instead of redoing or clobbering.

`OUT/.gedidata/state.json` maps a step key (e.g. ``combine``, ``subset:train``) to the
signature of the inputs and settings it was made from and the size and mtime of every
file it wrote. A step whose signature and outputs still match is skipped; an output that
was made by an earlier run of the same step is rebuilt when its inputs or settings
changed; a file gedidata did not write (or that was edited since) is never overwritten
unless the user passes ``--overwrite``.

Paths under OUT are stored relative to OUT (output names, paths in signatures, a path in
a step key), so a folder that was copied or moved resumes like the original. Entries of
earlier versions, stored as given (absolute, or relative to the working folder), are
read as well: an absolute path under the current OUT equals its relative form.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gedidata.errors import OutputExistsError
from gedidata.store.atomic import write_json_atomic

WORK_DIR_NAME = ".gedidata"


def work_dir(output_dir: Path) -> Path:
    """Folder below OUT for caches and bookkeeping (safe to delete after a run)."""
    return output_dir / WORK_DIR_NAME


def file_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


PATHS_RELATIVE_TO_OUT = "relative to OUT"
"""Value of a step's ``paths``: its relative paths are relative to OUT (before: to the
working folder of the run that wrote them)."""


class RunState:
    """Completed steps of the runs made into one output folder."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self.path = work_dir(self.output_dir) / "state.json"
        # OUT as given and with symbolic links resolved: a path under either is "in OUT"
        self._bases = (Path(os.path.abspath(self.output_dir)), self.output_dir.resolve())
        self._steps: dict[str, Any] = {}
        if self.path.exists():
            for key, step in json.loads(self.path.read_text()).items():
                self._steps[self._key(key)] = self._read_step(step)

    def is_complete(self, key: str, signature: dict[str, Any]) -> bool:
        """True when `key` finished with this signature and its outputs are unchanged."""
        step = self._steps.get(self._key(key))
        if step is None or not step["complete"] or step["signature"] != self._normalise(signature):
            return False
        return all(
            self._path(name).exists() and file_stamp(self._path(name)) == stamp
            for name, stamp in step["outputs"].items()
        )

    def ensure_writable(self, key: str, outputs: list[Path], overwrite: bool) -> None:
        """Refuse to replace a file that an earlier run of step `key` did not write.

        A file this step wrote before (and nobody changed since) may be rebuilt: its
        inputs or settings changed, or the earlier run did not finish.

        Raises:
            OutputExistsError: naming the first such file and how to proceed.
        """
        if overwrite:
            return
        step = self._steps.get(self._key(key))
        recorded = step["outputs"] if step else {}
        for path in outputs:
            if path.exists() and recorded.get(self._stored(path)) != file_stamp(path):
                raise OutputExistsError(
                    f"{path} exists and was not made by an earlier gedidata run into this "
                    "folder (or was changed since); pass it as an input with the matching "
                    "--path-… option, move it away, or re-run with --overwrite to replace it"
                )

    def record(
        self, key: str, signature: dict[str, Any], outputs: list[Path], complete: bool = True
    ) -> None:
        """Remember the outputs of `key`; `complete=False` makes the next run redo it."""
        self._steps[self._key(key)] = {
            "signature": self._normalise(signature),
            "complete": complete,
            "outputs": {self._stored(path): file_stamp(path) for path in outputs},
            "paths": PATHS_RELATIVE_TO_OUT,
        }
        write_json_atomic(self.path, self._steps)

    def _read_step(self, step: dict[str, Any]) -> dict[str, Any]:
        """A stored step in today's form (an earlier version's paths made relative)."""
        relative_to_out = step.get("paths") == PATHS_RELATIVE_TO_OUT
        outputs: dict[str, Any] = {}
        for name, stamp in step.get("outputs", {}).items():
            path = Path(name)
            if not relative_to_out and not path.is_absolute():
                path = Path(os.path.abspath(path))  # (relative to the working folder)
            outputs[name if relative_to_out else self._stored(path)] = stamp
        return {
            **step,
            "signature": self._relative_strings(step.get("signature")),
            "outputs": outputs,
            "paths": PATHS_RELATIVE_TO_OUT,
        }

    def _relative(self, path: Path) -> str | None:
        """`path` relative to OUT (POSIX form), or None when it is not under OUT."""
        absolute = Path(os.path.abspath(path))
        for base, candidate in zip(self._bases, (absolute, absolute.resolve()), strict=True):
            try:
                return candidate.relative_to(base).as_posix()
            except ValueError:
                continue
        return None

    def _stored(self, path: Path) -> str:
        """How `path` is written in state.json: relative to OUT when under it."""
        relative = self._relative(path)
        return str(path) if relative is None else relative

    def _path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.output_dir / path

    def _key(self, key: str) -> str:
        """``fuse:/abs/OUT/batches`` → ``fuse:batches`` (a key naming a folder in OUT)."""
        step, separator, tail = key.partition(":")
        if separator and os.path.isabs(tail):
            relative = self._relative(Path(tail))
            if relative is not None:
                return f"{step}:{relative}"
        return key

    def _normalise(self, signature: dict[str, Any]) -> Any:
        """Round-trip through JSON (tuples and lists compare equal to what was stored);
        absolute paths under OUT made relative."""
        return self._relative_strings(
            json.loads(json.dumps(signature, sort_keys=True, default=str))
        )

    def _relative_strings(self, value: Any) -> Any:
        if isinstance(value, str):
            if os.path.isabs(value):
                relative = self._relative(Path(value))
                return value if relative is None else relative
            return value
        if isinstance(value, list):
            return [self._relative_strings(item) for item in value]
        if isinstance(value, dict):
            return {key: self._relative_strings(item) for key, item in value.items()}
        return value
