"""The package's layers: imports only go down, the domain stays pure, modules stay small.

Every module of `gedidata` is parsed with `ast` (nothing is imported). Every violation
is collected first, so one failure lists them all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "gedidata"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

RANKS: dict[str, int] = {
    "": 0,  # gedidata/__init__.py
    "errors": 0,
    "config": 0,
    "domain": 1,
    "store": 2,
    "sources": 2,
    "raster": 2,
    "runtime": 2,
    "report": 2,
    "offline": 3,
    "stages": 4,
    "pipeline": 5,
    "demo": 5,
    "cli": 6,
    "__main__": 6,
}
"""Rank of each top-level part of the package: a module may import its own rank or lower
(the rank-2 peers may import each other)."""

DOMAIN_FORBIDDEN = (
    "rasterio",
    "h5py",
    "polars",
    "requests",
    "urllib",
    "pystac",
    "pystac_client",
    "rustac",
    "planetary_computer",
    "socket",
    "http",
)
"""Libraries (and their submodules) no `gedidata.domain` module imports: no raster or
HDF5 files, no tables, no network."""

MAX_LINES = 500

DATA_TABLE_MODULES: frozenset[str] = frozenset()
"""Modules allowed over `MAX_LINES` because they are mostly data tables (none today)."""

BEING_SPLIT: dict[str, str] = {
    # being split in parallel; empty this at merge.
    "gedidata.stages.extract.driver": "lines",
    "gedidata.raster.reader": "lines",
    "gedidata.offline.fileserver": "lines",
    "gedidata.offline.gedi_granules": "lines",
    "gedidata.offline.servers": "lines",
    "gedidata.offline.world": "lines",
}
"""Known violations, module -> the check it fails (``"lines"`` or ``"imports"``)."""


def modules() -> Iterator[tuple[str, Path]]:
    """``(dotted name, path)`` of every module of the package."""
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULE_NAMES = frozenset(name for name, _ in modules())


def rank(module: str) -> int | None:
    """The rank of a `gedidata` module, None when its part of the package has none."""
    parts = module.split(".")
    return RANKS.get(parts[1] if len(parts) > 1 else "")


def imported(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import in `tree`, at any depth (functions included).

    ``from a import b`` gives ``a.b`` when that is a module of the package, else ``a``;
    relative imports are resolved against `module`.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                keep = len(anchor) - node.level + (1 if is_package else 0)
                base = ".".join([*anchor[:keep], *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if candidate in MODULE_NAMES else base


def violations() -> dict[str, list[str]]:
    """Every violation, keyed by module name."""
    found: dict[str, list[str]] = {}
    for module, path in modules():
        text = path.read_text(encoding="utf-8")
        problems = found.setdefault(module, [])
        own = rank(module)
        if own is None:
            problems.append(f"imports: {module} is in no layer (add its part to RANKS)")
        tree = ast.parse(text, filename=str(path))
        for line, target in imported(tree, module, path.name == "__init__.py"):
            top = target.split(".")[0]
            if top == PACKAGE and own is not None:
                theirs = rank(target)
                if theirs is None or theirs > own:
                    problems.append(
                        f"imports: {path.relative_to(ROOT.parent)}:{line}: {module} "
                        f"(rank {own}) imports {target} (rank {theirs})"
                    )
            if module.startswith(f"{PACKAGE}.domain") and top in DOMAIN_FORBIDDEN:
                problems.append(
                    f"imports: {path.relative_to(ROOT.parent)}:{line}: domain module "
                    f"{module} imports {target}"
                )
        lines = len(text.splitlines())
        if lines > MAX_LINES and module not in DATA_TABLE_MODULES:
            problems.append(f"lines: {path.relative_to(ROOT.parent)} has {lines} > {MAX_LINES}")
    return {module: problems for module, problems in found.items() if problems}


def test_layers_imports_and_sizes() -> None:
    found = violations()
    report: list[str] = []
    for module, problems in sorted(found.items()):
        known = BEING_SPLIT.get(module)
        report.extend(p for p in problems if known is None or not p.startswith(f"{known}:"))
    for module, check in sorted(BEING_SPLIT.items()):
        if not any(p.startswith(f"{check}:") for p in found.get(module, [])):
            report.append(f"BEING_SPLIT: {module} ({check}) no longer fails; remove it")
    assert not report, f"{len(report)} layout violation(s):\n" + "\n".join(report)


def test_the_import_walk() -> None:
    """The import walk finds imports at any depth and resolves relative ones."""
    source = (
        "import h5py\n"
        "from . import schema\n"
        "from ..stages import fuse\n"
        "def f():\n"
        "    from gedidata.cli import main\n"
    )
    tree = ast.parse(source)
    found = [target for _, target in imported(tree, "gedidata.domain.agbd", False)]
    assert found == ["h5py", "gedidata.domain.schema", "gedidata.stages.fuse", "gedidata.cli"]
    assert rank("gedidata.stages.fuse") == 4
    assert rank("gedidata") == 0
    assert rank("gedidata.nowhere") is None
