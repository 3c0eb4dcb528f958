"""Outcomes of stage 3 and the ledgers that record them (SPEC §4).

Every footprint ends with one outcome: ``ok`` or why it was rejected. Rejections are
*final* — the data or the rules decided (``no_scene``, ``scl_*``, ``slope``, ``nodata``,
``invalid_input``): running again gives the same answer — or *transient*: a read or a
search failed after its retries (``read_error``: a service down, throttling, an expired
token). A batch with a transient outcome is not complete: a run retries it once at its
end, and the next run of the same command extracts it again.

Ledgers are `;`-separated CSVs with the columns `LEDGER_COLUMNS`: one per batch
(`OUT/<split>/ledger/batch_<size>_<index>.csv`, written before the batch's HDF5 file),
one for the footprints refused before any read (`invalid.csv`), merged into
`OUT/<split>_ledger.csv` at the end of a run.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gedidata.store.atomic import atomic_output

LEDGER_COLUMNS = ("shot_number", "outcome", "scene", "detail")

OK = "ok"
READ_ERROR = "read_error"
INVALID_INPUT = "invalid_input"

TRANSIENT_OUTCOMES = frozenset({READ_ERROR})
"""Outcomes that may change when the same footprint is read again later."""


def is_transient(outcome: str) -> bool:
    return outcome in TRANSIENT_OUTCOMES


def transient_count(outcomes: Counter[str]) -> int:
    return sum(count for outcome, count in outcomes.items() if is_transient(outcome))


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One footprint's outcome: the scene it was read from (if any) and why, in words."""

    shot_number: int
    outcome: str
    scene: str = ""
    detail: str = ""


def write_ledger(path: Path, entries: Iterable[LedgerEntry]) -> None:
    """Write a ledger atomically."""
    with atomic_output(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(LEDGER_COLUMNS)
        writer.writerows(
            (entry.shot_number, entry.outcome, entry.scene, entry.detail) for entry in entries
        )


def read_entries(path: Path) -> list[LedgerEntry] | None:
    """A ledger's entries; None when it is missing or unreadable."""
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle, delimiter=";")
            if next(reader, None) != list(LEDGER_COLUMNS):
                return None
            return [LedgerEntry(int(shot), *rest) for shot, *rest in reader]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, TypeError):
        return None


def read_outcomes(path: Path) -> Counter[str] | None:
    """The outcomes a ledger holds, counted; None when it is missing or unreadable."""
    entries = read_entries(path)
    return None if entries is None else Counter(entry.outcome for entry in entries)


def merge_ledgers(parts: Sequence[Path], target: Path) -> None:
    """Concatenate the ledgers that exist among `parts` into `target`, atomically."""
    with atomic_output(target) as temporary, temporary.open("w", newline="") as sink:
        sink.write(";".join(LEDGER_COLUMNS) + "\n")
        for path in parts:
            if path.exists():
                lines = path.read_text().splitlines(keepends=True)
                sink.writelines(lines[1:])
