"""A loopback HTTP server that serves a rehearsal's mirror folder the way the real servers answer.

The file production fetches from ``https://<host>/<path>`` lies at ``<root>/<host>/<path>``, and the
downloaders reach it through URL-prefix mirrors (:meth:`MirrorServer.mirrors`). It answers what the
production clients send — HEAD, single byte ranges with ``If-Range``, conditional requests, Apache
folder listings like ftp.ebi.ac.uk's, Kaggle's authenticated API redirecting to a signed storage
URL — so a rehearsal exercises the same code paths as the real build. Faults (500 bursts, cut
connections, corrupt bodies, slow links) are set per URL-path prefix, also while it runs. It binds
127.0.0.1 only, serves at most ``max_connections`` at once and stops by itself when idle, so a
forgotten rehearsal does not keep a port open.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import email.utils
import hashlib
import hmac
import html
import mimetypes
import os
import re
import socket
import sys
import threading
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator
from urllib.parse import quote, unquote, urlsplit

from cytoimagenet_assets.download.http import format_bytes
from cytoimagenet_assets.download.mirrors import MIRRORS_ENV, Mirrors

CHUNK = 1 << 16  # bytes per socket write: a cut or a throttle acts at this grain
READ_CHUNK = 1 << 18
KEEPALIVE_S = 5.0  # Apache's KeepAliveTimeout: an idle kept-alive connection gives its slot back
IO_TIMEOUT_S = 60.0  # Apache's Timeout, for a request's own reads and writes
STOP_WAIT_S = 5.0  # how long stop() waits for the threads of dropped connections to finish
KAGGLE_API = "www.kaggle.com/api/v1/"
KAGGLE_STORAGE = "storage.googleapis.com/kaggle-downloads/"  # where Kaggle's API redirects: signed URLs, no auth
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class RangeNotSatisfiable(ValueError):
    """A Range starting past the end of the body (answered 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte a single-range ``Range`` header asks of a ``size``-byte body, clipped to it;
    None to send the whole body (no header, several ranges, or a malformed one, which RFC 9110 says
    to ignore). Raises :class:`RangeNotSatisfiable` for a range past the end."""
    match = _RANGE.fullmatch((header or "").strip())
    if not match or not any(match.groups()):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - int(last)), size - 1
    start, end = int(first), int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(end, size - 1)


def write_body(
    handler: BaseHTTPRequestHandler, chunks: Iterable[bytes], *, cut: int | None = None, bytes_per_second: float | None = None
) -> int:
    """Send ``chunks`` on ``handler``'s connection; the bytes sent. With ``cut``, stop after that many
    and drop the connection (a broken link mid-body, which clients must resume); with
    ``bytes_per_second``, throttled. A client that hangs up ends it quietly."""
    piece = max(1, min(CHUNK, int(bytes_per_second / 10))) if bytes_per_second else CHUNK
    sent, started = 0, time.monotonic()
    try:
        for chunk in chunks:
            view = memoryview(chunk)[: None if cut is None else cut - sent]
            for i in range(0, len(view), piece):
                handler.wfile.write(view[i : i + piece])
                sent += len(view[i : i + piece])
                if bytes_per_second:
                    time.sleep(max(0.0, started + sent / bytes_per_second - time.monotonic()))
            if cut is not None and sent >= cut:
                break
        handler.wfile.flush()
    except OSError:  # the client hung up or the server is stopping
        handler.close_connection = True
    if cut is not None:
        handler.close_connection = True
        with suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)
    return sent


def bytes_on_server(root: Path) -> int:
    """The total size of the files under ``root`` (what a full rehearsal could transfer)."""
    return sum((Path(folder) / name).stat().st_size for folder, _, names in os.walk(root) for name in names)


def _prefix(text: str) -> str:
    return text.strip("/")


def _longest(prefixes: Iterable[str], path: str) -> str | None:
    """The longest of ``prefixes`` that names ``path`` or a folder above it ('' names everything)."""
    return max((p for p in prefixes if not p or path == p or path.startswith(p + "/")), key=len, default=None)


@dataclass
class Faults:
    """Faults by URL-path prefix: ``host``, ``host/folder`` or one file's ``host/path`` (the longest
    prefix wins). Change them while a server runs with :meth:`update` and :meth:`clear`."""

    errors: dict[str, int] = field(default_factory=dict)  # the next n requests answer 500; -1: every one
    cut: dict[str, int] = field(default_factory=dict)  # the first GET of each file sends k body bytes, then drops
    corrupt: set[str] = field(default_factory=set)  # bodies with one byte flipped: same length and ETag, wrong checksum
    slow: dict[str, float] = field(default_factory=dict)  # bodies at this many bytes per second
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    cut_done: set[str] = field(default_factory=set, repr=False, compare=False)  # files whose first GET was cut

    def __post_init__(self) -> None:
        self.errors = {_prefix(p): n for p, n in self.errors.items()}
        self.cut = {_prefix(p): k for p, k in self.cut.items()}
        self.corrupt = {_prefix(p) for p in self.corrupt}
        self.slow = {_prefix(p): r for p, r in self.slow.items()}

    def update(
        self,
        *,
        errors: dict[str, int] | None = None,
        cut: dict[str, int] | None = None,
        corrupt: Iterable[str] = (),
        slow: dict[str, float] | None = None,
    ) -> None:
        """Add or replace faults; a new ``cut`` cuts each file under its prefix once more."""
        with self.lock:
            self.errors.update({_prefix(p): n for p, n in (errors or {}).items()})
            self.slow.update({_prefix(p): r for p, r in (slow or {}).items()})
            self.corrupt.update(_prefix(p) for p in corrupt)
            for p, k in (cut or {}).items():
                self.cut[_prefix(p)] = k
                self.cut_done -= {f for f in self.cut_done if _longest([_prefix(p)], f) is not None}

    def clear(self) -> None:
        with self.lock:
            for faults in (self.errors, self.cut, self.corrupt, self.slow, self.cut_done):
                faults.clear()

    def take_error(self, path: str) -> bool:
        """Whether the request for ``path`` answers 500 (using up one of a burst)."""
        with self.lock:
            prefix = _longest([p for p, n in self.errors.items() if n], path)
            if prefix is not None and self.errors[prefix] > 0:
                self.errors[prefix] -= 1
            return prefix is not None

    def take_cut(self, path: str, file: str) -> int | None:
        """The bytes to send before dropping the connection, on the first GET of ``file`` under a cut prefix."""
        with self.lock:
            prefix = _longest(self.cut, path)
            if prefix is None or file in self.cut_done:
                return None
            self.cut_done.add(file)
            return self.cut[prefix]

    def corrupts(self, path: str) -> bool:
        with self.lock:
            return _longest(self.corrupt, path) is not None

    def rate(self, path: str) -> float | None:
        with self.lock:
            prefix = _longest(self.slow, path)
            return None if prefix is None else self.slow[prefix]


@dataclass(frozen=True)
class Stats:
    """What a server has done so far."""

    requests: int
    bytes_sent: int  # of bodies
    bytes_by_host: dict[str, int]  # by the first segment of the URL path
    by_status: dict[int, int]
    faults: dict[str, int]  # injected, by kind: error, cut, corrupt, slow
    peak_connections: int

    def format(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        hosts = ", ".join(f"{h}: {format_bytes(n)}" for h, n in sorted(self.bytes_by_host.items(), key=lambda item: -item[1]))
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items())) or "none"
        return (
            f"requests: {self.requests} ({statuses})\n"
            f"bytes sent: {format_bytes(self.bytes_sent)} ({hosts})\n"
            f"faults injected: {faults}\n"
            f"peak connections: {self.peak_connections}"
        )


class MirrorServer:
    """Serves ``root`` on ``http://127.0.0.1:<port>`` from construction until :meth:`stop`, the end of
    a ``with`` block, ``idle_timeout_s`` without a request, or ``lifetime_s``.

    Connections beyond ``max_connections`` wait in the listen queue, and get 503 with Retry-After
    when no slot frees within ``queue_wait_s``. Under ``/www.kaggle.com/api/v1/`` requests need HTTP
    basic auth equal to ``kaggle_auth`` (any credentials when None); ``kaggle_forbidden`` are
    URL-path prefixes answered 403 there, as Kaggle answers for competition rules not accepted.
    """

    def __init__(
        self,
        root: Path,
        *,
        faults: Faults | None = None,
        kaggle_auth: tuple[str, str] | None = None,
        kaggle_forbidden: Iterable[str] = (),
        max_connections: int = 16,
        idle_timeout_s: float | None = 600,
        lifetime_s: float | None = None,
        port: int = 0,
        queue_wait_s: float = 2.0,
    ):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"the mirror folder {root} is not a folder")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.faults = faults if faults is not None else Faults()
        self.kaggle_auth = kaggle_auth
        self.kaggle_forbidden = {_prefix(p) for p in kaggle_forbidden}
        self.idle_timeout_s, self.lifetime_s, self.queue_wait_s = idle_timeout_s, lifetime_s, queue_wait_s
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._requests, self._in_flight, self._peak = 0, 0, 0
        self._by_status: Counter[int] = Counter()
        self._bytes_by_host: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._started = self._last_activity = time.monotonic()
        self._stopping, self._stopped = False, threading.Event()
        self._httpd = _HTTPServer(self, port)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        for target in (self._serve, self._watch):
            threading.Thread(target=target, name=f"mirror-server-{self._httpd.server_port}", daemon=True).start()

    def __enter__(self) -> "MirrorServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def mirrors(self, hosts: Iterable[str]) -> str:
        """The ``CYTOIMAGENET_MIRRORS`` value sending each host (``host``, https, or ``scheme://host``) here."""
        mapping = {}
        for host in hosts:
            parts = urlsplit(host if "://" in host else f"https://{host}")
            mapping[f"{parts.scheme}://{parts.netloc}"] = f"{self.url}/{parts.netloc}"
        return ",".join(f"{prefix}={replacement}" for prefix, replacement in Mirrors.of(mapping).pairs)

    @property
    def stats(self) -> Stats:
        with self._lock:
            return Stats(
                self._requests,
                sum(self._bytes_by_host.values()),
                dict(self._bytes_by_host),
                dict(self._by_status),
                dict(self._faults),
                self._peak,
            )

    def stop(self) -> None:
        """Stop accepting, drop open connections (transfers in flight break, as a server going down does)."""
        with self._lock:
            stopping, self._stopping = self._stopping, True
        if stopping:
            self._stopped.wait()
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + STOP_WAIT_S
        for thread in connections.values():  # their last requests counted: stats after stop() are final
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped (by itself or by :meth:`stop`); False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    def _serve(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)

    def _watch(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                idle_since = now if self._in_flight else self._last_activity
            deadline = idle_since + self.idle_timeout_s if self.idle_timeout_s is not None else float("inf")
            if self.lifetime_s is not None:
                deadline = min(deadline, self._started + self.lifetime_s)
            if now >= deadline:
                break
            if self._stopped.wait(min(deadline - now, 0.5)):
                return
        self.stop()

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections[connection] = threading.current_thread()
            self._peak = max(self._peak, len(self._connections))
            if not self._stopping:
                return
        with suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)

    def _begin(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._last_activity = time.monotonic()

    def _end(self, host: str, status: int, sent: int) -> None:
        with self._lock:
            self._in_flight -= 1
            self._by_status[status] += 1
            self._bytes_by_host[host] += sent
            self._last_activity = time.monotonic()

    def _fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def _refuse(self, connection: socket.socket) -> None:
        """Answer 503 without a thread, after reading the request so that closing does not reset it."""
        with self._lock:
            self._requests += 1
            self._by_status[503] += 1
            self._last_activity = time.monotonic()
        body = b"Too many connections; retry shortly.\n"
        head = f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        with suppress(OSError):
            connection.settimeout(0.5)
            connection.recv(65536)
            connection.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)

    def _resolve(self, path: str) -> Path | None:
        """``root/path`` with symlinks followed; None when that lies outside root."""
        target = (self.root / path).resolve()
        return target if target.is_relative_to(self.root) else None

    def _authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        try:
            credentials = base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        if scheme.lower() != "basic" or ":" not in credentials:
            return False
        return self.kaggle_auth is None or hmac.compare_digest(credentials.encode(), ":".join(self.kaggle_auth).encode())


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, owner: MirrorServer, port: int):
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request, client_address) -> None:
        """One thread per connection while a slot is free; the accept loop waits for one, then refuses."""
        if not self.owner._slots.acquire(timeout=self.owner.queue_wait_s):
            self.owner._refuse(request)
            self.shutdown_request(request)
            return
        threading.Thread(target=self._serve_connection, args=(request, client_address), daemon=True).start()

    def _serve_connection(self, request, client_address) -> None:
        self.owner._opened(request)
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.owner._closed(request)
            self.owner._slots.release()

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up is no error of ours
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle's algorithm the body waited for the client's
    # delayed ACK of the headers, 40 ms a request on loopback (a class of 200 zip members slept 9 s)
    disable_nagle_algorithm = True
    server_version = "Apache"
    sys_version = ""
    timeout = IO_TIMEOUT_S
    server: _HTTPServer

    def log_message(self, format: str, *args) -> None:
        pass

    def handle_one_request(self) -> None:
        self.connection.settimeout(KEEPALIVE_S)
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.connection.settimeout(IO_TIMEOUT_S)
        return super().parse_request()

    def do_GET(self) -> None:
        owner = self.server.owner
        self.url_path, _, self.query = self.path.partition("?")
        path = unquote(self.url_path).lstrip("/")
        self.status, self.sent = 0, 0
        owner._begin()
        try:
            self._route(owner, path)
        except OSError:
            if self.status:  # the client hung up mid-answer
                raise
            self._error(404)  # a path the file system refuses to look up (a name too long)
        finally:
            owner._end(path.split("/", 1)[0] or "/", self.status, self.sent)

    do_HEAD = do_GET

    def _route(self, owner: MirrorServer, path: str) -> None:
        if owner.faults.take_error(path):
            owner._fault("error")
            return self._error(500)
        if "\0" in path or ".." in path.split("/"):
            return self._error(403)
        if path.startswith(KAGGLE_API):
            return self._kaggle(owner, path)
        if path.startswith(KAGGLE_STORAGE):
            if self.command == "HEAD":  # a signed URL is signed for GET, as GCS's are
                return self._reply(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", {"Content-Type": "application/xml"})
            target = owner._resolve(KAGGLE_API + path[len(KAGGLE_STORAGE) :])
            return self._file(owner, path, target) if target and target.is_file() else self._error(404)
        target = owner._resolve(path)
        if target is None:
            return self._error(403)
        if target.is_dir():
            if not self.url_path.endswith("/"):  # Apache's trailing-slash redirect
                return self._reply(301, headers={"Location": self.url_path + "/" + (f"?{self.query}" if self.query else "")})
            body = autoindex(owner.root, target, self.url_path)
            return self._reply(200, body, {"Content-Type": "text/html;charset=UTF-8"})
        if target.is_file() and not self.url_path.endswith("/"):
            return self._file(owner, path, target)
        return self._error(404)

    def _kaggle(self, owner: MirrorServer, path: str) -> None:
        """Kaggle's API: basic auth, 403 for what the account may not download, else a redirect to storage."""
        json = {"Content-Type": "application/json"}
        if not owner._authorized(self.headers.get("Authorization")):
            return self._reply(401, b'{"code":401,"message":"Unauthenticated"}', {**json, "WWW-Authenticate": 'Basic realm="Kaggle"'})
        if _longest(owner.kaggle_forbidden, path) is not None:
            return self._reply(403, b'{"code":403,"message":"Permission denied"}', json)
        target = owner._resolve(path)
        if target is None or not target.is_file():
            return self._reply(404, b'{"code":404,"message":"Not found"}', json)
        rest = path[len(KAGGLE_API) :]
        signature = hashlib.sha256(f"{rest}:{time.time_ns()}".encode()).hexdigest()
        location = (
            f"{owner.url}/{KAGGLE_STORAGE}{quote(rest)}?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Expires=900&X-Goog-Signature={signature}"
        )
        return self._reply(302, headers={"Location": location})

    def _file(self, owner: MirrorServer, path: str, target: Path) -> None:
        try:
            f = open(target, "rb")
        except OSError:
            return self._error(403)
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            etag = f'"{st.st_ino:x}-{size:x}-{st.st_mtime_ns:x}"'
            last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            headers = {
                "Last-Modified": last_modified,
                "ETag": etag,
                "Accept-Ranges": "bytes",
                "Content-Type": mimetypes.guess_type(target.name)[0] or "application/octet-stream",
            }
            if self._not_modified(etag, int(st.st_mtime)):
                return self._reply(304, headers=headers, length=size)
            start, end, status = 0, size - 1, 200
            if_range = self.headers.get("If-Range")
            if if_range is None or if_range in (etag, last_modified):
                try:
                    asked = byte_range(self.headers.get("Range"), size)
                except RangeNotSatisfiable:
                    return self._reply(416, headers={"Content-Range": f"bytes */{size}"})
                if asked is not None:
                    (start, end), status = asked, 206
                    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._head(status, headers, end - start + 1)
            if self.command != "GET":
                return
            corrupt_at = size // 2 if owner.faults.corrupts(path) and start <= size // 2 <= end else None
            cut = owner.faults.take_cut(path, str(target))
            rate = owner.faults.rate(path)
            for kind, injected in (("corrupt", corrupt_at is not None), ("cut", cut is not None), ("slow", rate is not None)):
                if injected:
                    owner._fault(kind)
            self.sent = write_body(self, _file_chunks(f, start, end, corrupt_at), cut=cut, bytes_per_second=rate)

    def _not_modified(self, etag: str, mtime: int) -> bool:
        """Whether If-None-Match (weak comparison), or else If-Modified-Since, says the client's copy is current."""
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
            return "*" in tags or etag in tags
        try:
            since = email.utils.parsedate_to_datetime(self.headers.get("If-Modified-Since", ""))
        except (TypeError, ValueError):
            return False
        return since.tzinfo is not None and mtime <= since.timestamp()

    def _error(self, status: int) -> None:
        """An error page as Apache writes it."""
        phrase = HTTPStatus(status).phrase
        body = (
            '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n'
            f"<html><head>\n<title>{status} {phrase}</title>\n</head><body>\n<h1>{phrase}</h1>\n"
            f"<p>{html.escape(unquote(self.url_path))} could not be served.</p>\n</body></html>\n"
        )
        self._reply(status, body.encode(), {"Content-Type": "text/html; charset=iso-8859-1"})

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, length: int | None = None) -> None:
        self._head(status, headers or {}, len(body) if length is None else length)
        if body and self.command != "HEAD":
            self.sent = write_body(self, [body])

    def _head(self, status: int, headers: dict[str, str], length: int) -> None:
        self.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()


def _file_chunks(f: BinaryIO, start: int, end: int, corrupt_at: int | None) -> Iterator[bytes]:
    """Bytes ``start``..``end`` of ``f`` (never all at once: files can be GBs), the byte at ``corrupt_at`` flipped."""
    f.seek(start)
    pos = start
    while pos <= end and (chunk := f.read(min(READ_CHUNK, end + 1 - pos))):
        if corrupt_at is not None and pos <= corrupt_at < pos + len(chunk):
            i = corrupt_at - pos
            chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]
        yield chunk
        pos += len(chunk)


def autoindex(root: Path, folder: Path, url_path: str) -> bytes:
    """``folder``'s listing as Apache's mod_autoindex writes it on ftp.ebi.ac.uk (FancyIndexing, HTML
    3.2, sorted by name); hidden entries and links out of ``root`` are left out."""
    host, _, rest = unquote(url_path).strip("/").partition("/")
    title = html.escape("/" + rest)
    rows = []
    parent = url_path.rstrip("/").rsplit("/", 1)[0] + "/"
    if url_path != "/":
        rows.append(f'<img src="/icons/back.gif" alt="[PARENTDIR]"> <a href="{parent}">Parent Directory</a>{" " * 29}-')
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        target = Path(entry.path).resolve()
        if entry.name.startswith(".") or not target.is_relative_to(root) or not target.exists():
            continue
        st, is_dir = target.stat(), target.is_dir()
        text = entry.name + ("/" if is_dir else "")
        href = quote(entry.name) + ("/" if is_dir else "")
        icon, alt = ("folder.gif", "[DIR]") if is_dir else ("unknown.gif", "[   ]")
        modified = datetime.fromtimestamp(st.st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M")
        size = "  -" if is_dir else f"{_apache_size(st.st_size):>4}"
        padding = " " * max(1, 24 - len(text))
        rows.append(f'<img src="/icons/{icon}" alt="{alt}"> <a href="{href}">{html.escape(text)}</a>{padding}{modified}  {size}')
    columns = (
        '<a href="?C=N;O=D">Name</a>                    <a href="?C=M;O=A">Last modified</a>      '
        '<a href="?C=S;O=A">Size</a>  <a href="?C=D;O=A">Description</a>'
    )
    page = (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<html>\n <head>\n'
        f"  <title>Index of {title}</title>\n </head>\n <body>\n<h1>Index of {title}</h1>\n"
        f'<pre><img src="/icons/blank.gif" alt="Icon "> {columns}<hr>' + "\n".join(rows) + "\n<hr></pre>\n"
        f"<address>Apache Server at {html.escape(host or '127.0.0.1')} Port 443</address>\n</body></html>\n"
    )
    return page.encode()


def _apache_size(n: int) -> str:
    """A size as mod_autoindex shows it: 512, 2.1K, 12M."""
    if n < 1000:
        return str(n)
    value, unit = n / 1024, "K"
    for bigger in "MGT":
        if value < 1000:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f}{unit}" if value < 9.95 else f"{value:.0f}{unit}"


def _assignments(values: list[str], kind: type, flag: str, parser: argparse.ArgumentParser) -> dict:
    """``PREFIX=NUMBER`` options as a mapping."""
    found = {}
    for value in values:
        prefix, sep, number = value.rpartition("=")
        try:
            amount = kind(number)
        except ValueError:
            amount = None
        if not sep or amount is None:
            parser.error(f"{flag} takes PREFIX=NUMBER, got {value!r}")
        found[prefix] = amount
    return found


def main(argv: list[str] | None = None) -> None:
    """Serve a mirror folder until idle, then print what was served."""
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.rehearsal.server", description=main.__doc__)
    parser.add_argument("--root", type=Path, required=True, help="the mirror folder: <root>/<host>/<path>")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--idle-timeout", type=float, default=600, help="stop after this many seconds without a request")
    parser.add_argument("--lifetime", type=float, help="stop after this many seconds in any case")
    parser.add_argument("--max-connections", type=int, default=16)
    parser.add_argument("--error", action="append", default=[], metavar="PREFIX=N", help="the next N requests answer 500 (-1: all)")
    parser.add_argument("--cut", action="append", default=[], metavar="PREFIX=K", help="cut each file's first GET after K bytes")
    parser.add_argument("--corrupt", action="append", default=[], metavar="PREFIX", help="flip one byte of each body")
    parser.add_argument("--slow", action="append", default=[], metavar="PREFIX=BPS", help="throttle bodies to BPS bytes per second")
    parser.add_argument("--kaggle-auth", metavar="USER:KEY", help="the credentials Kaggle's API accepts (default: any)")
    parser.add_argument("--kaggle-forbidden", action="append", default=[], metavar="PREFIX", help="Kaggle API paths answered 403")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a folder")
    user, sep, key = (args.kaggle_auth or "").partition(":")
    if args.kaggle_auth is not None and not (sep and user and key):
        parser.error("--kaggle-auth takes USER:KEY")
    faults = Faults(
        errors=_assignments(args.error, int, "--error", parser),
        cut=_assignments(args.cut, int, "--cut", parser),
        corrupt=set(args.corrupt),
        slow=_assignments(args.slow, float, "--slow", parser),
    )
    server = MirrorServer(
        args.root,
        faults=faults,
        kaggle_auth=(user, key) if args.kaggle_auth else None,
        kaggle_forbidden=args.kaggle_forbidden,
        max_connections=args.max_connections,
        idle_timeout_s=args.idle_timeout,
        lifetime_s=args.lifetime,
        port=args.port,
    )
    with server:
        hosts = sorted(p.name for p in server.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        print(server.url)
        print(f"{MIRRORS_ENV}={server.mirrors(hosts)}", flush=True)
        with suppress(KeyboardInterrupt):
            server.wait()
    print(f"{server.stats.format()}\nbytes on server: {format_bytes(bytes_on_server(server.root))}", flush=True)


if __name__ == "__main__":
    main()
