"""The servers of the offline world: a byte-range file server and a STAC API, both on 127.0.0.1.

Tests, the demo and the benchmarks talk to these exactly as the pipeline talks to Planetary
Computer or Earth Search: STAC searches over HTTP (``pystac-client``) and raster reads through
GDAL (``/vsicurl/`` for ``http://`` hrefs, ``/vsis3/`` for ``s3://`` hrefs).

API
---
* :class:`FileServer` — :mod:`gedidata.offline.fileserver` run as a child process serving a
  directory (ranges, keep-alive, ``TCP_NODELAY``, S3 path-style GET and ListObjects, fault
  injection). ``.url``, ``.port``, ``.log`` (:class:`RequestLog`), ``.fail()``, ``.drop()``,
  ``.delay()``, ``.reset()``.
* :class:`StacServer` — ``rustac serve`` (in-memory backend) loaded with given collection
  and item dicts. ``.url``.
* :func:`serve_world` — context manager: starts both for a world directory, rewrites the
  relative asset hrefs of the items to the file server and yields :class:`Served` with the
  URLs and the GDAL configuration (``gdal_env``) that sends ``/vsis3/`` to the file server.
* :func:`rewrite_hrefs`, :func:`load_stac_objects`, :func:`s3_gdal_env`,
  :func:`port_accepts` — the pieces, for callers that need them alone.

Both servers are started with ``start()`` (or ``with``) and stopped with ``stop()``: SIGTERM,
then SIGKILL after a timeout; a stopped server leaves no process and no listening port
behind. Servers still running when the interpreter exits are stopped by an ``atexit`` hook,
and on Linux each child gets ``PR_SET_PDEATHSIG`` so that it dies with its parent even when
the parent is killed hard. PDEATHSIG fires when the *thread* that started the child exits:
start servers from a thread that outlives them (normally the main thread). Child output
goes to files in the server's temporary directory, never to pipes, so a chatty child cannot
block on a full pipe.

rustac 0.9.18 ``serve`` (memory backend), as measured against this module
-------------------------------------------------------------------------
* Landing page ``id`` is ``stac-server-rs``; it links ``search`` for both GET and POST.
  ``/conformance`` (= the landing page's ``conformsTo``) lists exactly
  :data:`RUSTAC_CONFORMANCE`: core, ogcapi-features, collections, item-search and the two
  OGC Features classes — no query, filter, sort, fields or context extension.
* POST ``/search`` honours ``collections``, ``ids``, ``bbox``, ``intersects``, ``datetime``
  (closed and open intervals) and ``limit``. The default page size is 10 and there is no
  maximum (``limit: 10000`` returns everything in one page). Paging: the ``next`` link is
  ``{"method": "POST", "href": ".../search", "body": {<original body>, "skip": N}}``
  (the token is an offset); pystac-client follows it (``search.pages()``). Result order:
  the items of one collection in the order they were loaded; the collections in a hash
  order that changes from one server process to the next (stable within a process, so
  paging neither repeats nor skips items).
* Silently wrong (HTTP 200): ``query`` returns **zero** features, whatever the query;
  ``filter`` (``cql2-json`` in POST, ``cql2-text`` in POST or GET) returns zero features,
  even ``id = 'x'``; a POST ``filter`` without ``filter-lang`` is ignored (all features);
  ``sortby`` and ``fields`` are ignored. Filter cloud cover on the client side.
* GET ``/search``: ``limit`` together with any other parameter (``collections``, ``bbox``…)
  answers **500** ``unsupported value``; single parameters work; GET ``query`` is ignored
  (all features). Use POST.
* Each item gets server links (``self``, ``root``, ``parent``, ``collection``) *appended*:
  an item's own ``self`` link would appear twice, so :func:`rewrite_hrefs` drops the
  navigation links. Asset hrefs are served unchanged. Items of an unknown collection get
  a generated collection (``--create-collections`` is passed anyway).
* Inputs: collection JSON files, item JSON files, FeatureCollection JSON and ``.ndjson``
  item files are all accepted as hrefs. This module writes one file per collection and all
  items into one ``items.ndjson``.
* Scale (3,000 Planetary-Computer-sized items, 47 MB of JSON, 2-core machine): rustac is
  ready 0.6-0.7 s after launch (``StacServer.start()`` ~1.2 s including writing the
  ndjson), ~600 MB resident; a spatial+temporal POST search answers in ~5-9 ms; paging
  all 3,000 items through pystac-client at ``limit=500`` takes ~2 s (about 0.6 ms of
  serialization per full item).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import http.server
import json
import os
import posixpath
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gedidata.offline import fileserver as _fileserver_module

HOST = "127.0.0.1"

RUSTAC_CONFORMANCE = frozenset(
    {
        "https://api.stacspec.org/v1.0.0/core",
        "https://api.stacspec.org/v1.0.0/ogcapi-features",
        "https://api.stacspec.org/v1.0.0/collections",
        "https://api.stacspec.org/v1.0.0/item-search",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    }
)
"""What ``rustac serve`` 0.9.18 advertises on ``/conformance`` (see the module docstring)."""

NAVIGATION_RELS = frozenset({"self", "root", "parent", "collection", "child", "item", "items"})
"""Link relations the STAC server makes itself; dropped from served items and collections."""

# Never route loopback requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """A server process failed to start or to answer a control request."""


# ---------------------------------------------------------------------------------------------
# Request log


@dataclass
class RequestLog:
    """The file server's JSON-lines request log (fields: see :mod:`.fileserver`).

    When made by :attr:`FileServer.log`, every read first waits until the server has logged
    all requests it has answered (``sync``), so a test can read the log right after its reads.
    ``mark()`` returns a position; ``since=`` restricts the helpers to later requests.
    """

    path: Path
    sync: Callable[[], object] | None = field(default=None, repr=False)

    def mark(self) -> int:
        if self.sync is not None:
            self.sync()
        return self.path.stat().st_size if self.path.exists() else 0

    def entries(
        self,
        path_prefix: str | None = None,
        *,
        since: int = 0,
        method: str | None = None,
        status: int | None = None,
    ) -> list[dict[str, Any]]:
        if self.sync is not None:
            self.sync()
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(since)
            data = fh.read()
        # a line is complete once its newline is written; ignore a line still being written
        lines = data[: data.rfind(b"\n") + 1].decode("utf-8").splitlines()
        out = []
        for line in lines:
            if not line.strip():
                continue
            entry = json.loads(line)
            if path_prefix is not None and not entry["path"].startswith(path_prefix):
                continue
            if method is not None and entry["method"] != method.upper():
                continue
            if status is not None and entry["status"] != status:
                continue
            out.append(entry)
        return out

    def count(self, path_prefix: str | None = None, **filters: Any) -> int:
        return len(self.entries(path_prefix, **filters))

    def total_bytes(self, path_prefix: str | None = None, **filters: Any) -> int:
        return sum(e["bytes"] for e in self.entries(path_prefix, **filters))


# ---------------------------------------------------------------------------------------------
# Process plumbing

_LIVE: set[_ChildServer] = set()
_LIVE_LOCK = threading.Lock()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _stop_live_servers() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in live:
        if server._owner_pid == os.getpid():
            server.stop()


atexit.register(_stop_live_servers)


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something listens on ``host:port`` (False once a connect is refused)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http(
    method: str, url: str, body: dict | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class _ChildServer:
    """Common lifecycle of a server child process (start/stop, temp dir, output files)."""

    kind = "server"

    def __init__(self, host: str, startup_timeout: float, stop_timeout: float) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self._owner_pid = os.getpid()
        self._out: Any = None
        self._err: Any = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServerError(f"{self.kind} is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        assert self.workdir is not None
        self._close_files()
        self._out = open(self.workdir / "stdout.txt", "wb")  # noqa: SIM115
        self._err = open(self.workdir / "stderr.txt", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            close_fds=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.proc = proc
        with _LIVE_LOCK:
            _LIVE.add(self)
        return proc

    def _output(self, name: str = "stderr.txt", limit: int = 4000) -> str:
        if self.workdir is None or not (self.workdir / name).exists():
            return ""
        text = (self.workdir / name).read_text(errors="replace")
        return text[-limit:]

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.stop_timeout)
        self._close_files()

    def _close_files(self) -> None:
        for fh in (self._out, self._err):
            if fh is not None:
                fh.close()
        self._out = self._err = None

    def stop(self) -> None:
        """Terminate the child (kill after ``stop_timeout``) and remove the temporary files."""
        self._kill()
        self.port = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        with _LIVE_LOCK:
            _LIVE.discard(self)


# ---------------------------------------------------------------------------------------------
# File server


class FileServer(_ChildServer):
    """:mod:`gedidata.offline.fileserver` serving ``root`` in a child process.

    ``log_path`` defaults to a file in the server's temporary directory, which ``stop()``
    removes; pass a path to keep the log after the server stops.
    """

    kind = "file server"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        host: str = HOST,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(host, startup_timeout, stop_timeout)
        self.root = Path(root).resolve()
        self._log_path = Path(log_path) if log_path is not None else None
        self.log_path: Path | None = None

    def start(self) -> FileServer:
        if self.running:
            return self
        if not self.root.is_dir():
            raise ServerError(f"not a directory: {self.root}")
        self.workdir = Path(tempfile.mkdtemp(prefix="gedidata-files-"))
        self.log_path = self._log_path or self.workdir / "requests.jsonl"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        argv = [
            sys.executable,
            "-I",  # isolated: the script needs only the standard library
            _fileserver_module.__file__,
            str(self.root),
            "--host",
            self.host,
            "--port",
            "0",
            "--log",
            str(self.log_path),
            "--parent-pid",
            str(os.getpid()),
        ]
        try:
            proc = self._spawn(argv)
            deadline = time.monotonic() + self.startup_timeout
            while True:
                line = self._output("stdout.txt").strip()
                if line.startswith("LISTENING"):
                    self.port = int(line.split()[2])
                    break
                if proc.poll() is not None:
                    raise ServerError(
                        f"file server exited with {proc.returncode}: {self._output()}"
                    )
                if time.monotonic() > deadline:
                    raise ServerError(f"file server did not start: {self._output()}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def log(self) -> RequestLog:
        if self.log_path is None:
            raise ServerError("file server was never started")
        return RequestLog(self.log_path, sync=self.sync if self.running else None)

    def _control(self, what: str, body: dict | None = None, method: str = "POST") -> None:
        status, text = _http(method, f"{self.url}/__control__/{what}", body, timeout=40.0)
        if status != 200:
            raise ServerError(f"control {what} answered {status}: {text[:200]!r}")

    def sync(self, timeout: float = 30.0) -> bool:
        """Wait until every request answered so far is in the log.

        False when requests were still being served after ``timeout`` seconds (e.g. a
        benchmark's workers are still reading); the log then holds what is complete.
        """
        status, _ = _http(
            "GET", f"{self.url}/__control__/sync?timeout={timeout}", timeout=timeout + 10
        )
        return status == 200

    def fail(
        self, path_prefix: str = "/", status: int = 503, count: int = 1, method: str | None = None
    ) -> None:
        """The next ``count`` requests under ``path_prefix`` answer ``status``."""
        self._control(
            "fail", {"path_prefix": path_prefix, "status": status, "count": count, "method": method}
        )

    def drop(self, path_prefix: str = "/", count: int = 1, method: str | None = None) -> None:
        """The next ``count`` requests under ``path_prefix`` get a connection reset."""
        self._control(
            "fail", {"path_prefix": path_prefix, "drop": True, "count": count, "method": method}
        )

    def delay(self, path_prefix: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` requests under ``path_prefix`` are answered after ``seconds``."""
        self._control("fail", {"path_prefix": path_prefix, "delay": seconds, "count": count})

    def reset(self) -> None:
        """Forget all fault rules."""
        self._control("reset")


# ---------------------------------------------------------------------------------------------
# STAC API server


def find_rustac() -> str:
    """The ``rustac`` executable beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "rustac"
    if beside.exists():
        return str(beside)
    found = shutil.which("rustac")
    if found is None:
        raise ServerError("the rustac CLI is not installed (pip install rustac)")
    return found


class StacServer(_ChildServer):
    """``rustac serve`` with the in-memory backend, loaded with ``collections`` and ``items``.

    The dicts are served as given (rewrite hrefs first: :func:`rewrite_hrefs`). The port is
    picked free; when the server cannot bind it another port is tried (``attempts`` times).
    """

    kind = "STAC server"

    def __init__(
        self,
        collections: Iterable[dict],
        items: Iterable[dict],
        *,
        host: str = HOST,
        port: int | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 5.0,
        attempts: int = 5,
        rustac: str | None = None,
    ) -> None:
        super().__init__(host, startup_timeout, stop_timeout)
        self.collections = list(collections)
        self.items = list(items)
        self.fixed_port = port
        self.attempts = 1 if port is not None else attempts
        self.rustac = rustac
        self.startup_seconds: float | None = None

    def _write_inputs(self) -> list[str]:
        assert self.workdir is not None
        hrefs = []
        for i, coll in enumerate(self.collections):
            path = self.workdir / f"collection_{i:03d}.json"
            path.write_text(json.dumps(coll))
            hrefs.append(str(path))
        if self.items:
            path = self.workdir / "items.ndjson"
            with open(path, "w", encoding="utf-8") as fh:
                for item in self.items:
                    fh.write(json.dumps(item, separators=(",", ":")))
                    fh.write("\n")
            hrefs.append(str(path))
        return hrefs

    def start(self) -> StacServer:
        if self.running:
            return self
        rustac = self.rustac or find_rustac()
        self.workdir = Path(tempfile.mkdtemp(prefix="gedidata-stac-"))
        try:
            hrefs = self._write_inputs()
            errors = []
            for _ in range(self.attempts):
                port = self.fixed_port or free_port(self.host)
                argv = [rustac, "serve", "--addr", f"{self.host}:{port}", "--create-collections"]
                t0 = time.monotonic()
                proc = self._spawn([*argv, *hrefs])
                if self._wait_ready(proc, port):
                    self.port = port
                    self.startup_seconds = time.monotonic() - t0
                    return self
                errors.append(f"port {port}: exit {proc.returncode}: {self._output()}")
                self._kill()
                if "in use" not in errors[-1].lower():
                    break
            raise ServerError("rustac serve did not start:\n" + "\n".join(errors))
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, proc: subprocess.Popen, port: int) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://{self.host}:{port}/"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                status, _ = _http("GET", url, timeout=2.0)
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
                continue
            # an answer from another process that holds the port would come with our
            # child dying on "address in use"; give it a moment to do so
            if status == 200:
                time.sleep(0.05)
                return proc.poll() is None
            time.sleep(0.05)
        self._kill()
        raise ServerError(
            f"rustac serve did not answer GET / within {self.startup_timeout} s: {self._output()}"
        )


# ---------------------------------------------------------------------------------------------
# Hrefs and world loading


def _is_relative(href: str) -> bool:
    return not urllib.parse.urlsplit(href).scheme and not href.startswith("/")


def rewrite_hrefs(
    obj: dict,
    files_url: str,
    *,
    base: str = "",
    root: str | os.PathLike[str] | None = None,
) -> dict:
    """A copy of a STAC item or collection ready to serve from ``files_url``.

    * A relative asset or link href is resolved against ``base`` (a POSIX path relative to
      the served root; ``""`` = the root itself) and becomes ``files_url/<path>``. A
      relative href that climbs out of the root raises ValueError.
    * An absolute file path under ``root`` (when given) becomes ``files_url/<path>`` too.
    * ``s3://bucket/key`` and ``http(s)://`` hrefs stay as they are (``s3://`` is answered by
      the file server through ``AWS_S3_ENDPOINT``, see :func:`s3_gdal_env`).
    * Navigation links (:data:`NAVIGATION_RELS`) are dropped: the STAC server makes its own.
    """
    out = copy.deepcopy(obj)
    files_url = files_url.rstrip("/")
    root_path = Path(root).resolve() if root is not None else None

    def fix(href: str) -> str:
        if _is_relative(href):
            rel = posixpath.normpath(posixpath.join(base, href))
            if rel == ".." or rel.startswith("../"):
                raise ValueError(f"href {href!r} (base {base!r}) leaves the served root")
            return f"{files_url}/{urllib.parse.quote(rel)}"
        if root_path is not None and href.startswith("/"):
            with contextlib.suppress(ValueError):
                rel = Path(href).resolve().relative_to(root_path).as_posix()
                return f"{files_url}/{urllib.parse.quote(rel)}"
        return href

    for asset in (out.get("assets") or {}).values():
        if isinstance(asset.get("href"), str):
            asset["href"] = fix(asset["href"])
    links = []
    for link in out.get("links") or []:
        if link.get("rel") in NAVIGATION_RELS:
            continue
        if isinstance(link.get("href"), str):
            link = {**link, "href": fix(link["href"])}
        links.append(link)
    out["links"] = links
    return out


def load_stac_objects(path: str | os.PathLike[str]) -> list[dict]:
    """The STAC objects of a file: an Item, a Collection, a FeatureCollection, a JSON list
    of objects, or newline-delimited JSON (``.ndjson``/``.jsonl``)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".ndjson", ".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, list):
        return data
    if data.get("type") == "FeatureCollection":
        return list(data.get("features", []))
    return [data]


def s3_gdal_env(port: int, host: str = HOST) -> dict[str, str]:
    """GDAL configuration that sends ``/vsis3/bucket/key`` to ``http://host:port/bucket/key``.

    Worker processes need it too: pass it through ``rasterio.Env(**env)`` or ``os.environ``.
    """
    return {
        "AWS_S3_ENDPOINT": f"{host}:{port}",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_NO_SIGN_REQUEST": "YES",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    }


@dataclass(frozen=True)
class Served:
    """What :func:`serve_world` yields."""

    stac_url: str
    files_url: str
    file_server: FileServer
    stac_server: StacServer
    gdal_env: dict[str, str]
    root: Path


@contextmanager
def serve_world(
    root: str | os.PathLike[str],
    item_files: Iterable[str | os.PathLike[str]],
    collection_files: Iterable[str | os.PathLike[str]],
    *,
    relative_to: Literal["root", "file"] = "root",
    log_path: str | os.PathLike[str] | None = None,
    stac_startup_timeout: float = 120.0,
) -> Iterator[Served]:
    """Serve the world under ``root``: files over HTTP/S3 and its STAC items over a STAC API.

    ``item_files`` may hold single items, FeatureCollections or ndjson; ``collection_files``
    collections (see :func:`load_stac_objects`). Relative hrefs are relative to ``root``
    (``relative_to="root"``) or, as STAC itself defines them, to the directory of the file
    they are in (``relative_to="file"``; the file must then lie under ``root``). Both servers
    are stopped when the block exits, also on exceptions.
    """
    root = Path(root).resolve()
    with ExitStack() as stack:
        files = stack.enter_context(FileServer(root, log_path=log_path))

        def load(paths: Iterable[str | os.PathLike[str]]) -> list[dict]:
            out = []
            for p in paths:
                p = Path(p).resolve()
                base = ""
                if relative_to == "file":
                    if not p.is_relative_to(root):
                        raise ValueError(f"{p} is not under the served root {root}")
                    base = p.parent.relative_to(root).as_posix()
                    base = "" if base == "." else base
                out.extend(
                    rewrite_hrefs(obj, files.url, base=base, root=root)
                    for obj in load_stac_objects(p)
                )
            return out

        stac = StacServer(
            load(collection_files), load(item_files), startup_timeout=stac_startup_timeout
        )
        stack.enter_context(stac)
        yield Served(
            stac_url=stac.url,
            files_url=files.url,
            file_server=files,
            stac_server=stac,
            gdal_env=s3_gdal_env(files.port, files.host),
            root=root,
        )


def sign_hrefs(token: str) -> Callable[[dict], dict]:
    """A function that returns a copy of an item with ``token`` appended to each asset href.

    ``?token`` is appended, or ``&token`` when the href already has a query string — the way
    Planetary Computer's SAS signing looks. Meant for :meth:`StacProxy.rewrite_items`; the
    file server ignores query strings when it serves a file, so signed hrefs still read.
    """
    token = token.lstrip("?&")

    def sign(item: dict) -> dict:
        out = copy.deepcopy(item)
        for asset in (out.get("assets") or {}).values():
            href = asset.get("href") if isinstance(asset, dict) else None
            if isinstance(href, str):
                asset["href"] = f"{href}{'&' if '?' in href else '?'}{token}"
        return out

    return sign


def _rewrite_items_in(payload: bytes, fn: Callable[[dict], dict]) -> bytes:
    """``payload`` with ``fn`` applied to its items when it is a FeatureCollection or Item."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(doc, dict):
        return payload
    if doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        doc["features"] = [fn(feature) for feature in doc["features"]]
    elif doc.get("type") == "Feature":
        doc = fn(doc)
    else:
        return payload
    return json.dumps(doc).encode()


@dataclass
class _ProxyRule:
    kind: Literal["fail", "drop"]
    prefix: str
    status: int
    remaining: int | None  # None: until reset


class _ProxyHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # hung or idle keep-alive handlers must not block close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client went away (timed out, reset): nothing to report
        super().handle_error(request, client_address)


class StacProxy:
    """A thread that forwards HTTP to a STAC API, counts requests and injects faults.

    Links in the answers are rewritten to point at the proxy, so a client opened on
    ``proxy.url`` keeps talking through it. Requests are forwarded with their method, path,
    query string, body and ``Content-Type`` (``application/json`` when a body comes without
    one), with a ``timeout``; an error answer of the target (4xx/5xx) is passed on with its
    status and body, an unreachable target is answered 502.

    Fault modes (thread-safe; each applies to all paths, or with ``search_only=True`` only to
    paths starting with ``/search``):

    * :meth:`fail` — answer ``status`` with a small JSON body, ``count`` times (None: until
      :meth:`reset`);
    * :meth:`drop` — close the connection without an answer (SO_LINGER 0: a reset);
    * :meth:`hang` — hold requests without answering until :meth:`release` (or :meth:`close`);
    * :meth:`down` / :meth:`up` — while down every request is dropped;
    * :meth:`rewrite_items` — apply a function to every item of FeatureCollection and Item
      answers (e.g. :func:`sign_hrefs`);
    * :meth:`reset` — clear all of them (and release held requests).

    Order: down, then ``failures``, then fail/drop rules in the order they were added (the
    first that matches takes the request), then hang. ``failures`` (legacy) answers that many
    of the next ``POST /search`` requests with 503.

    Counters: ``requests`` (all), ``searches`` (paths starting with ``/search``, GET or
    POST), ``dropped`` and ``answered_by_status`` (a Counter of the statuses sent).
    """

    def __init__(self, target: str, host: str = HOST, timeout: float = 30.0) -> None:
        self.target = target.rstrip("/")
        self.timeout = timeout
        self.requests = 0
        self.searches = 0
        self.failures = 0
        self.dropped = 0
        self.answered_by_status: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._rules: list[_ProxyRule] = []
        self._down = False
        self._hang_prefix: str | None = None
        self._hang_event = threading.Event()
        self._rewrite: Callable[[dict], dict] | None = None
        self._closed = False
        self._connections: set[socket.socket] = set()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                super().finish()

            def _abort(self) -> None:
                """Close without an answer; SO_LINGER 0 makes the close a reset."""
                self.close_connection = True
                with proxy._lock:
                    proxy.dropped += 1
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()

            def _send(self, status: int, payload: bytes, ctype: str) -> None:
                with proxy._lock:
                    proxy.answered_by_status[status] += 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (e.g. timed out while held)
                    self.close_connection = True

            def _send_json(self, status: int, doc: dict) -> None:
                self._send(status, json.dumps(doc).encode(), "application/json")

            def _handle(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                action, status, event = proxy._admit(method, self.path)
                if action == "drop":
                    self._abort()
                    return
                if action == "fail":
                    self._send_json(
                        status, {"code": "InjectedFault", "description": f"injected {status}"}
                    )
                    return
                if event is not None:
                    event.wait()
                    if proxy._closed:
                        self._abort()
                        return
                try:
                    self._forward(method, body)
                except Exception as exc:  # e.g. the rewrite function raised
                    self.close_connection = True
                    self._send_json(
                        502, {"code": "ProxyError", "description": f"{type(exc).__name__}: {exc}"}
                    )

            def _forward(self, method: str, body: bytes) -> None:
                headers = {}
                ctype = self.headers.get("Content-Type")
                if ctype or body:
                    headers["Content-Type"] = ctype or "application/json"
                if self.headers.get("Accept"):
                    headers["Accept"] = self.headers["Accept"]
                request = urllib.request.Request(
                    proxy.target + self.path,  # the path with its query string
                    data=body if body or method == "POST" else None,
                    method=method,
                    headers=headers,
                )
                try:
                    with _OPENER.open(request, timeout=proxy.timeout) as response:
                        status = response.status
                        rtype = response.headers.get("Content-Type")
                        payload = response.read()
                except urllib.error.HTTPError as exc:
                    status, rtype = exc.code, exc.headers.get("Content-Type")
                    try:
                        payload = exc.read()
                    except OSError:
                        payload = b""
                except OSError as exc:  # URLError, timeout, reset: the target is unreachable
                    self._send_json(
                        502, {"code": "BadGateway", "description": f"{proxy.target}: {exc}"}
                    )
                    return
                payload = payload.replace(proxy.target.encode(), proxy.url.encode())
                rewrite = proxy._rewrite
                if rewrite is not None:
                    payload = _rewrite_items_in(payload, rewrite)
                self._send(status, payload, rtype or "application/json")

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = _ProxyHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- fault modes ------------------------------------------------------------------------

    @staticmethod
    def _prefix(search_only: bool) -> str:
        return "/search" if search_only else "/"

    @staticmethod
    def _check_count(count: int | None) -> None:
        if count is not None and count < 1:
            raise ValueError(f"count must be None or at least 1, not {count}")

    def fail(self, status: int = 503, count: int | None = 1, search_only: bool = False) -> None:
        """Answer the next ``count`` requests (None: all until :meth:`reset`) with ``status``."""
        self._check_count(count)
        with self._lock:
            self._rules.append(_ProxyRule("fail", self._prefix(search_only), status, count))

    def drop(self, count: int | None = 1, search_only: bool = False) -> None:
        """Reset the connection of the next ``count`` requests (None: until :meth:`reset`)."""
        self._check_count(count)
        with self._lock:
            self._rules.append(_ProxyRule("drop", self._prefix(search_only), 0, count))

    def hang(self, search_only: bool = False) -> None:
        """Hold matching requests, unanswered, until :meth:`release` (or :meth:`close`)."""
        with self._lock:
            if self._hang_prefix is None:
                self._hang_event = threading.Event()
            self._hang_prefix = self._prefix(search_only)

    def release(self) -> None:
        """End :meth:`hang`: held requests go on to the target, new ones are not held."""
        with self._lock:
            self._hang_prefix = None
            event = self._hang_event
        event.set()

    def down(self) -> None:
        """Drop every request (connection reset) until :meth:`up`."""
        with self._lock:
            self._down = True

    def up(self) -> None:
        with self._lock:
            self._down = False

    def rewrite_items(self, fn: Callable[[dict], dict] | None) -> None:
        """Apply ``fn`` to each item of FeatureCollection and Item answers (None: stop)."""
        with self._lock:
            self._rewrite = fn

    def reset(self) -> None:
        """Clear every fault mode and the item rewrite, and release held requests.

        The counters are kept.
        """
        with self._lock:
            self._rules.clear()
            self._down = False
            self.failures = 0
            self._rewrite = None
        self.release()

    def _admit(
        self, method: str, raw_path: str
    ) -> tuple[Literal["drop", "fail", "forward"], int, threading.Event | None]:
        """Count a request and decide what to do with it (under the lock)."""
        path = urllib.parse.urlsplit(raw_path).path
        with self._lock:
            self.requests += 1
            if path.startswith("/search"):
                self.searches += 1
            if self._down:
                return "drop", 0, None
            if method == "POST" and path.startswith("/search") and self.failures > 0:
                self.failures -= 1
                return "fail", 503, None
            for rule in self._rules:
                if path.startswith(rule.prefix):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule.kind, rule.status, None
            if self._hang_prefix is not None and path.startswith(self._hang_prefix):
                return "forward", 0, self._hang_event
            return "forward", 0, None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> StacProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving: held requests are reset, open connections shut down. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.release()
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
