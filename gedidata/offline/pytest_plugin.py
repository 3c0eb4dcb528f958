"""Session-scoped pytest fixtures around :mod:`gedidata.offline.servers`.

Enable them in the top-level ``tests/conftest.py``::

    pytest_plugins = ["gedidata.offline.pytest_plugin"]

* ``file_server_factory(root) -> FileServer`` — one running file server per directory,
  stopped at the end of the session.
* ``served_world_factory(root, item_files, collection_files, **kwargs) -> Served`` — one
  :func:`~gedidata.offline.servers.serve_world` per distinct argument set, stopped at the end
  of the session.

Both servers live for the whole session, so tests that look at a file server's request log
should read only their own requests: ``mark = server.log.mark()`` before, then
``server.log.entries(since=mark)``; and call ``server.reset()`` after injecting faults.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from gedidata.offline.servers import FileServer, Served, serve_world

PathLike = str | os.PathLike[str]


@pytest.fixture(scope="session")
def file_server_factory() -> Iterator[Callable[[PathLike], FileServer]]:
    servers: dict[Path, FileServer] = {}
    with ExitStack() as stack:

        def factory(root: PathLike) -> FileServer:
            key = Path(root).resolve()
            if key not in servers:
                servers[key] = stack.enter_context(FileServer(key))
            return servers[key]

        yield factory


@pytest.fixture(scope="session")
def served_world_factory() -> Iterator[Callable[..., Served]]:
    worlds: dict[tuple, Served] = {}
    with ExitStack() as stack:

        def factory(
            root: PathLike,
            item_files: Iterable[PathLike],
            collection_files: Iterable[PathLike],
            **kwargs: Any,
        ) -> Served:
            item_files, collection_files = list(item_files), list(collection_files)
            key = (
                str(Path(root).resolve()),
                tuple(str(Path(p).resolve()) for p in item_files),
                tuple(str(Path(p).resolve()) for p in collection_files),
                tuple(sorted((k, repr(v)) for k, v in kwargs.items())),
            )
            if key not in worlds:
                worlds[key] = stack.enter_context(
                    serve_world(root, item_files, collection_files, **kwargs)
                )
            return worlds[key]

        yield factory
