"""An in-process HTTP server on 127.0.0.1 serving bytes the tests put there, with switches for the
ways real servers misbehave (ignored Range, cut connections, errors, auth) and a request log."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from cytoimagenet_assets.rehearsal.server import RangeNotSatisfiable, byte_range, write_body


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int
    sent: int
    authorization: bool = False  # the request carried an Authorization header


@dataclass
class Remote:
    """What the loopback server serves, and how it misbehaves; tests flip the switches."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    honour_range: bool = True
    cut_first_get: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the connection is cut
    cut_every_get: dict[str, int] = field(default_factory=dict)  # the same, on every GET
    fail: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses answered before the file is
    forbidden: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None  # required on /api/ paths
    entries: list[Logged | None] = field(default_factory=list)
    busy: int = 0
    settled: threading.Condition = field(default_factory=threading.Condition)

    @property
    def log(self) -> list[Logged]:
        """Every request so far, once the server has finished answering them (a client may return first)."""
        with self.settled:
            assert self.settled.wait_for(lambda: self.busy == 0, timeout=5)
            self.entries[:] = [e for e in self.entries if e is not None]  # nothing in flight: no slot moves
            return self.entries

    def put(self, path: str, body: bytes, etag: str | None = None) -> str:
        self.files[path] = body
        self.etags[path] = etag or f'"{hashlib.md5(body).hexdigest()[:12]}"'
        return self.base + path

    def gets(self, path: str | None = None) -> list[Logged]:
        return [e for e in self.log if e.method == "GET" and (path is None or e.path == path)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms wait for a delayed ACK between headers and body
    remote: Remote

    def log_message(self, *args) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionResetError:
            pass  # the client hung up, as clients that stop reading a body do

    def do_HEAD(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        with self.remote.settled:  # a request's place in the log is its arrival, not when its answer ends
            self.remote.busy += 1
            self._slot = len(self.remote.entries)
            self.remote.entries.append(None)
        try:
            self._answer()
        finally:
            with self.remote.settled:
                self.remote.busy -= 1
                self.remote.settled.notify_all()

    def _answer(self) -> None:
        r = self.remote
        path = urlsplit(self.path).path
        if r.auth and path.startswith("/api/"):
            expected = "Basic " + base64.b64encode(":".join(r.auth).encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._reply(path, 401)
        if path in r.forbidden:
            return self._reply(path, 403)
        if path in r.redirects:
            return self._reply(path, 302, headers={"Location": r.redirects[path]})
        if r.fail.get(path):
            status = r.fail[path].pop(0)
            return self._reply(path, status, headers={"Retry-After": "7"} if status == 429 else {})
        if path not in r.files:
            return self._reply(path, 404)
        body, etag = r.files[path], r.etags[path]
        headers = {"ETag": etag, **({"Accept-Ranges": "bytes"} if r.honour_range else {})}
        asked, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if asked and r.honour_range and if_range in (None, etag):
            try:
                span = byte_range(asked, len(body))
            except RangeNotSatisfiable:
                return self._reply(path, 416, headers={"Content-Range": f"bytes */{len(body)}"})
            if span is not None:
                start, end = span
                headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                return self._reply(path, 206, body[start : end + 1], headers)
        return self._reply(path, 200, body, headers)

    def _reply(self, path: str, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        cut = None
        if self.command == "GET" and status in (200, 206):
            cut = self.remote.cut_first_get.pop(path, None) or self.remote.cut_every_get.get(path)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = write_body(self, [body], cut=cut) if self.command == "GET" else 0
        self.remote.entries[self._slot] = Logged(
            self.command, path, self.headers.get("Range"), self.headers.get("If-Range"), status, sent, "Authorization" in self.headers
        )


def serve(state: "Remote"):
    """Run ``state``'s server in a thread; yields it with ``base`` set, shuts it down afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"remote": state}))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
