"""A static HTTP file server with byte ranges, S3 path-style access, a request log and faults.

Run it as its own process (``FileServer`` in :mod:`gedidata.offline.servers` does)::

    python -m gedidata.offline.fileserver ROOT --port 0 --log requests.jsonl

Once it listens it prints one line ``LISTENING <host> <port>`` on stdout. The module uses the
standard library only, so it can also be run as a plain script (``python -I fileserver.py``).

What it serves
--------------
* ``GET`` and ``HEAD`` of any regular file under ROOT: ``/a/b.tif`` is ``ROOT/a/b.tif``.
  HTTP/1.1 keep-alive, one thread per connection, ``TCP_NODELAY`` on accepted sockets
  (without it GDAL's many small ranged reads run about twice as slow), ``Accept-Ranges:
  bytes``, ``Content-Length``, ``ETag`` and ``Last-Modified`` on every file response.
* ``Range: bytes=a-b``, ``bytes=a-`` and ``bytes=-n``: a single satisfiable range answers
  206 with ``Content-Range``; a range that starts at or beyond the end of the file (and any
  range of an empty file) answers 416 with ``Content-Range: bytes */SIZE``; a Range header
  that does not parse is ignored (200, whole file), as RFC 9110 allows. Several ranges in
  one header answer 206 ``multipart/byteranges`` with one part per satisfiable range.
* S3 path-style requests, as GDAL's ``/vsis3/`` sends them with ``AWS_S3_ENDPOINT`` set to
  this server, ``AWS_VIRTUAL_HOSTING=FALSE`` and ``AWS_NO_SIGN_REQUEST=YES``:
  ``GET /bucket/key`` is plain static serving of ``ROOT/bucket/key``. A ListObjects
  request (``GET /bucket/?prefix=...&delimiter=/``, v1 or ``list-type=2``) answers a real
  ``ListBucketResult`` of the files under ``ROOT/bucket`` (keys, sizes, common prefixes,
  ``max-keys`` paging), so GDAL also works without ``GDAL_DISABLE_READDIR_ON_OPEN``. An
  empty listing would be wrong here: GDAL trusts listings and would then report an existing
  file as missing. Authorization headers are ignored.
* Directories, missing files and paths escaping ROOT answer 404 (no HTML index pages).

Request log
-----------
Each request (except the control endpoints) appends one JSON line to the ``--log`` file
after its response has been sent: ``t`` (start, epoch seconds), ``dur`` (seconds),
``method``, ``path`` (decoded, without query), ``query`` (raw string), ``range`` (the Range
header or null), ``status`` (0 for a dropped connection), ``bytes`` (body bytes actually
sent), ``conn`` (client port: equal values mean one keep-alive connection), ``n`` (index of
the request on its connection, from 1), ``ua`` (User-Agent) and ``fault`` (null,
``"status"``, ``"drop"`` or ``"delay"``).

Control endpoints (never logged)
--------------------------------
* ``POST /__control__/fail`` with a JSON body ``{"path_prefix": "/", "count": 1, "status":
  503}``: the next ``count`` requests whose path starts with ``path_prefix`` answer
  ``status`` with a short text body. With ``"drop": true`` instead, the server resets the
  connection (RST, no response). With ``"delay": SECONDS`` the requests are answered
  normally after sleeping. Rules are checked in the order they were added; a request uses at
  most one rule. ``"method"`` (e.g. ``"GET"``) restricts a rule to one method.
* ``POST /__control__/reset``: forget all fault rules (the log is kept).
* ``GET /__control__/sync?timeout=30``: answers 200 once no other request is being served,
  i.e. once every request a client has seen answered is in the log; 504 after the timeout.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import posixpath
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

CONTROL_PREFIX = "/__control__/"
CHUNK = 1 << 20
S3_LIST_PARAMS = frozenset(
    {"list-type", "prefix", "delimiter", "max-keys", "marker", "continuation-token", "start-after"}
)


class _State:
    """What the handler threads share: root, log file, fault rules and the in-flight count."""

    def __init__(self, root: Path, log_path: Path | None) -> None:
        self.root = root.resolve()
        self.log_path = log_path
        self.lock = threading.Lock()
        self.rules: list[dict] = []
        self.in_flight = 0
        self.idle = threading.Condition(self.lock)

    def take_fault(self, method: str, path: str) -> dict | None:
        with self.lock:
            for rule in self.rules:
                if rule["count"] <= 0 or not path.startswith(rule["path_prefix"]):
                    continue
                if rule.get("method") and rule["method"].upper() != method:
                    continue
                rule["count"] -= 1
                return dict(rule)
        return None

    def write_log(self, entry: dict) -> None:
        if self.log_path is None:
            return
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self.lock, open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(line)

    def begin(self) -> None:
        with self.lock:
            self.in_flight += 1

    def end(self) -> None:
        with self.lock:
            self.in_flight -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.lock:
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout=timeout)


def parse_range(header: str, size: int) -> list[tuple[int, int]] | None:
    """Byte ranges of ``header`` as inclusive ``(first, last)`` pairs clipped to ``size``.

    Returns None when the header does not parse (the caller then ignores it) and an empty
    list when it parses but no range is satisfiable (416).
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        first_s, dash, last_s = part.strip().partition("-")
        first_s, last_s = first_s.strip(), last_s.strip()
        if (
            not dash
            or not (first_s.isdigit() or first_s == "")
            or not (last_s.isdigit() or last_s == "")
        ):
            return None
        if first_s == "":
            if last_s == "":
                return None
            n = int(last_s)  # suffix range: the last n bytes
            if n > 0 and size > 0:
                ranges.append((max(0, size - n), size - 1))
            continue
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
        if last_s and last < first:
            return None
        if first < size:
            ranges.append((first, min(last, size - 1)))
    return ranges


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _iso_date(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


class Handler(BaseHTTPRequestHandler):
    """One connection; BaseHTTPRequestHandler loops over its keep-alive requests."""

    protocol_version = "HTTP/1.1"
    server_version = "gedidata-fileserver/1"
    disable_nagle_algorithm = True  # TCP_NODELAY on the accepted socket
    timeout = 300  # idle keep-alive connections give up their thread eventually
    state: _State  # set on the subclass made in make_server

    # -- plumbing --------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.n_on_conn = 0

    def log_message(self, format: str, *args: object) -> None:
        pass  # the JSON log replaces the stderr access log (a full stderr pipe would block)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path)
        if path.startswith(CONTROL_PREFIX):
            self._control(method, path[len(CONTROL_PREFIX) :])
            return
        self.n_on_conn += 1
        self.state.begin()
        entry = {
            "t": time.time(),
            "method": method,
            "path": path,
            "query": split.query,
            "range": self.headers.get("Range"),
            "status": 0,
            "bytes": 0,
            "conn": self.client_address[1],
            "n": self.n_on_conn,
            "ua": self.headers.get("User-Agent"),
            "fault": None,
        }
        try:
            self._serve(method, path, split.query, entry)
        finally:
            entry["dur"] = round(time.time() - entry["t"], 6)
            self.state.write_log(entry)
            self.state.end()

    def _drain_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_simple(
        self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8", **headers: str
    ) -> int:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            return len(body)
        return 0

    def _reset_connection(self) -> None:
        """Close with SO_LINGER 0 so the client sees a connection reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    # -- control ---------------------------------------------------------------------------

    def _control(self, method: str, what: str) -> None:
        raw = self._drain_body()
        if method == "POST" and what == "fail":
            try:
                rule = json.loads(raw or b"{}")
                rule = {
                    "path_prefix": str(rule.get("path_prefix", "/")),
                    "count": int(rule.get("count", 1)),
                    "status": int(rule.get("status", 503)),
                    "drop": bool(rule.get("drop", False)),
                    "delay": float(rule.get("delay", 0.0)),
                    "method": rule.get("method"),
                }
            except (ValueError, TypeError, AttributeError) as exc:
                self._send_simple(400, f"bad rule: {exc}\n".encode())
                return
            with self.state.lock:
                self.state.rules.append(rule)
            self._send_simple(200, b'{"ok":true}', "application/json")
        elif method == "POST" and what == "reset":
            with self.state.lock:
                self.state.rules.clear()
            self._send_simple(200, b'{"ok":true}', "application/json")
        elif method == "GET" and what.startswith("sync"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            try:
                timeout = float(query.get("timeout", ["30"])[0])
            except ValueError:
                timeout = 30.0
            ok = self.state.wait_idle(timeout=timeout)
            self._send_simple(200 if ok else 504, b'{"ok":true}' if ok else b'{"ok":false}')
        elif method == "GET" and what == "health":
            self._send_simple(200, b'{"ok":true}', "application/json")
        else:
            self._send_simple(404, b"unknown control endpoint\n")

    # -- serving ---------------------------------------------------------------------------

    def _serve(self, method: str, path: str, query: str, entry: dict) -> None:
        if method == "POST":
            self._drain_body()
            entry["status"] = 405
            entry["bytes"] = self._send_simple(405, b"method not allowed\n", Allow="GET, HEAD")
            return
        fault = self.state.take_fault(method, path)
        if fault is not None:
            if fault["drop"]:
                entry["fault"] = "drop"
                self._reset_connection()
                return
            if fault["delay"] > 0:
                entry["fault"] = "delay"
                time.sleep(fault["delay"])
            else:
                entry["fault"] = "status"
                entry["status"] = fault["status"]
                body = f"injected fault {fault['status']}\n".encode()
                entry["bytes"] = self._send_simple(fault["status"], body)
                return
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        parts = path.strip("/").split("/", 1)
        if method == "GET" and S3_LIST_PARAMS & params.keys() and len(parts) == 1 and parts[0]:
            self._s3_list(parts[0], params, entry)
            return
        target = self._resolve(path)
        if target is None:
            entry["status"] = 404
            entry["bytes"] = self._send_simple(404, b"not found\n")
            return
        self._send_file(target, entry)

    def _resolve(self, path: str) -> Path | None:
        rel = posixpath.normpath("/" + path).lstrip("/")
        if rel in ("", ".") or rel.startswith(".."):
            return None
        target = self.state.root / rel
        try:
            target.resolve().relative_to(self.state.root)
        except ValueError:
            return None
        return target if target.is_file() else None

    def _send_file(self, target: Path, entry: dict) -> None:
        st = target.stat()
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        common = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": _http_date(st.st_mtime),
        }
        header = self.headers.get("Range")
        ranges = parse_range(header, size) if header else None
        if ranges is not None and not ranges:
            entry["status"] = 416
            entry["bytes"] = self._send_simple(
                416, b"range not satisfiable\n", Content_Range=f"bytes */{size}"
            )
            return
        if ranges is None:
            status, plan, ctype, length = 200, [(None, 0, size)], "application/octet-stream", size
            extra = {}
        elif len(ranges) == 1:
            first, last = ranges[0]
            status, ctype, length = 206, "application/octet-stream", last - first + 1
            plan = [(None, first, length)]
            extra = {"Content-Range": f"bytes {first}-{last}/{size}"}
        else:
            boundary = f"gedidata{os.urandom(8).hex()}"
            plan, length = [], 0
            for first, last in ranges:
                head = (
                    f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n"
                ).encode()
                plan.append((head, first, last - first + 1))
                length += len(head) + last - first + 1
            tail = f"\r\n--{boundary}--\r\n".encode()
            plan.append((tail, 0, 0))
            length += len(tail)
            status, ctype, extra = 206, f"multipart/byteranges; boundary={boundary}", {}
        entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for key, value in {**common, **extra}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            with open(target, "rb") as fh:
                for prefix, offset, count in plan:
                    if prefix:
                        self.wfile.write(prefix)
                        entry["bytes"] += len(prefix)
                    while count > 0:
                        sent = self.connection.sendfile(fh, offset, min(count, CHUNK))
                        if sent <= 0:
                            raise ConnectionError("sendfile sent nothing")
                        entry["bytes"] += sent
                        offset += sent
                        count -= sent
        except OSError as exc:  # client went away mid-body
            entry["error"] = type(exc).__name__
            self.close_connection = True

    def _s3_list(self, bucket: str, params: dict[str, list[str]], entry: dict) -> None:
        base = self.state.root / bucket
        if not base.is_dir() or bucket.startswith("."):
            entry["status"] = 404
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchBucket</Code>'
                f"<Message>The specified bucket does not exist</Message>"
                f"<BucketName>{escape(bucket)}</BucketName></Error>"
            ).encode()
            entry["bytes"] = self._send_simple(404, body, "application/xml")
            return

        def first(name: str, default: str = "") -> str:
            return params.get(name, [default])[0]

        v2 = first("list-type") == "2"
        prefix, delimiter = first("prefix"), first("delimiter")
        try:
            max_keys = max(0, min(1000, int(first("max-keys", "1000"))))
        except ValueError:
            max_keys = 1000
        after = (first("continuation-token") or first("start-after")) if v2 else first("marker")
        records: dict[str, tuple[str, os.stat_result | None]] = {}
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = Path(dirpath) / name
                key = full.relative_to(base).as_posix()
                if not key.startswith(prefix):
                    continue
                rest = key[len(prefix) :]
                if delimiter and delimiter in rest:
                    common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                    records[common] = ("prefix", None)
                else:
                    records[key] = ("key", full.stat())
        names = sorted(n for n in records if n > after)
        page, truncated = names[:max_keys], len(names) > max_keys
        out = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
            f"<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{str(truncated).lower()}</IsTruncated>",
        ]
        if delimiter:
            out.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        if v2:
            out.append(f"<KeyCount>{len(page)}</KeyCount>")
            if truncated:
                out.append(f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>")
        else:
            out.append(f"<Marker>{escape(after)}</Marker>")
            if truncated:
                out.append(f"<NextMarker>{escape(page[-1])}</NextMarker>")
        for name in page:
            kind, st = records[name]
            if kind == "prefix":
                out.append(f"<CommonPrefixes><Prefix>{escape(name)}</Prefix></CommonPrefixes>")
            else:
                assert st is not None
                out.append(
                    f"<Contents><Key>{escape(name)}</Key>"
                    f"<LastModified>{_iso_date(st.st_mtime)}</LastModified>"
                    f'<ETag>"{st.st_mtime_ns:x}-{st.st_size:x}"</ETag>'
                    f"<Size>{st.st_size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
                )
        out.append("</ListBucketResult>")
        entry["status"] = 200
        entry["bytes"] = self._send_simple(200, "\n".join(out).encode(), "application/xml")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def make_server(root: Path, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None):
    """A bound, listening (not yet serving) server for ``root``; call ``serve_forever``."""
    state = _State(Path(root), log_path)
    handler = type("BoundHandler", (Handler,), {"state": state})
    return _Server((host, port), handler)


def _watch_parent(parent_pid: int) -> None:
    """Exit when the process that started us is gone (belt and braces beside PDEATHSIG)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("root", type=Path, help="directory to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log", type=Path, default=None, help="JSON-lines request log")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when it is gone")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"not a directory: {args.root}")
    if args.log is not None:
        args.log.touch()
    server = make_server(args.root, args.host, args.port, args.log)
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    host, port = server.server_address[:2]
    print(f"LISTENING {host} {port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
