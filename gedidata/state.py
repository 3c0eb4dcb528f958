"""What earlier runs completed, so a re-run resumes instead of redoing or clobbering.

`OUT/.gedidata/state.json` maps a step key (e.g. ``combine``, ``subset:train``) to the
signature of the inputs and settings it was made from and the size and mtime of every
file it wrote. A step whose signature and outputs still match is skipped; an output that
was made by an earlier run of the same step is rebuilt when its inputs or settings
changed; a file gedidata did not write (or that was edited since) is never overwritten
unless the user passes ``--overwrite``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gedidata.atomic import write_json_atomic
from gedidata.errors import OutputExistsError

WORK_DIR_NAME = ".gedidata"


def work_dir(output_dir: Path) -> Path:
    """Folder below OUT for caches and bookkeeping (safe to delete after a run)."""
    return output_dir / WORK_DIR_NAME


def file_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class RunState:
    """Completed steps of the runs made into one output folder."""

    def __init__(self, output_dir: Path) -> None:
        self.path = work_dir(output_dir) / "state.json"
        self._steps: dict[str, Any] = {}
        if self.path.exists():
            self._steps = json.loads(self.path.read_text())

    def is_complete(self, key: str, signature: dict[str, Any]) -> bool:
        """True when `key` finished with this signature and its outputs are unchanged."""
        step = self._steps.get(key)
        if step is None or not step["complete"] or step["signature"] != _normalise(signature):
            return False
        return all(
            Path(name).exists() and file_stamp(Path(name)) == stamp
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
        step = self._steps.get(key)
        recorded = step["outputs"] if step else {}
        for path in outputs:
            if path.exists() and recorded.get(str(path)) != file_stamp(path):
                raise OutputExistsError(
                    f"{path} exists and was not made by an earlier gedidata run into this "
                    "folder (or was changed since); pass it as an input with the matching "
                    "--path-… option, move it away, or re-run with --overwrite to replace it"
                )

    def record(
        self, key: str, signature: dict[str, Any], outputs: list[Path], complete: bool = True
    ) -> None:
        """Remember the outputs of `key`; `complete=False` makes the next run redo it."""
        self._steps[key] = {
            "signature": _normalise(signature),
            "complete": complete,
            "outputs": {str(path): file_stamp(path) for path in outputs},
        }
        write_json_atomic(self.path, self._steps)


def _normalise(signature: dict[str, Any]) -> Any:
    """Round-trip through JSON so tuples and lists compare equal to what was stored."""
    return json.loads(json.dumps(signature, sort_keys=True, default=str))
