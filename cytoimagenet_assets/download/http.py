"""Fetch one file over HTTP(S) so that terabyte-scale sources survive flaky networks and killed runs.

A file is streamed into a hidden ``.<name>.part`` beside its destination and renamed into place only
after its size and MD5 check out, so readers never see a half-written file under its final name. A
later call resumes the ``.part`` with a Range request guarded by ``If-Range`` (a changed remote file
restarts from zero), and a completed file is recognised again without a download: by its known size
and MD5, or by the record ``.download/<name>.json`` written at completion matched against a HEAD.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import urllib3

from cytoimagenet_assets.download.mirrors import MirroredSession, Mirrors
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.storage import records_dir, write_text

USER_AGENT = "cytoimagenet-assets"
TIMEOUT_S = (30, 300)  # connect, read: a slow mirror may pause long between chunks
MAX_BACKOFF_S = 300.0
PROGRESS_INTERVAL_S = 1.0


class DownloadError(StepFailed, RuntimeError):
    """A download that cannot succeed as asked; the message names the source label and the URL."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class VerificationFailed(DownloadError):
    """Bytes that arrived but are not the file's (size, MD5 or CRC-32 differ): that file is bad, not the server."""


class TransientError(Exception):
    """A failure worth retrying (connection, timeout, truncated body, 5xx/408/429)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RestartError(TransientError):
    """The .part cannot be resumed (the remote changed or ignored the Range); start again at once."""


@dataclass(frozen=True)
class Progress:
    """A snapshot of one transfer, handed to the ``progress`` callback at most every second and at the end."""

    label: str
    url: str
    done: int
    total: int | None
    rate_bps: float
    eta_s: float | None

    def format(self) -> str:
        line = f"{self.label} {url_name(self.url)}: {format_bytes(self.done)}"
        if self.total:
            line += f" / {format_bytes(self.total)} ({100 * self.done // self.total}%)"
        line += f", {format_bytes(self.rate_bps)}/s"
        if self.eta_s is not None:
            line += f", ETA {format_duration(self.eta_s)}"
        return line

    __str__ = format


@dataclass(frozen=True)
class FetchResult:
    path: Path
    bytes_downloaded: int  # received over the network by this call, over all attempts
    bytes_total: int | None
    reused: bool  # already present and verified: nothing was downloaded
    resumed_from: int  # bytes of the final file that an earlier attempt or call had already fetched
    md5: str | None = None
    transport: str = "https"  # or "aspera"
    notes: tuple[str, ...] = ()  # what went wrong on the way without failing the fetch


@dataclass(frozen=True)
class RemoteInfo:
    """What the server says about a URL without sending it."""

    size: int | None
    etag: str | None
    last_modified: str | None
    accepts_ranges: bool


def format_bytes(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def url_name(url: str) -> str:
    """The last path segment of ``url``, unquoted (what a browser would save it as)."""
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) or urlsplit(url).netloc


def redact(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class ProgressMeter:
    """Turns byte counts into :class:`Progress` reports, throttled to one per ``interval_s``."""

    def __init__(
        self,
        label: str,
        url: str,
        total: int | None,
        callback: Callable[[Progress], None] | None,
        start_done: int = 0,
        interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label, self.url, self.total, self.callback = label, redact(url), total, callback
        self.start_done, self.interval_s, self.clock = start_done, interval_s, clock
        self.started = self.last = clock()

    def update(self, done: int) -> None:
        if self.callback is not None and self.clock() - self.last >= self.interval_s:
            self._emit(done)

    def finish(self, done: int) -> None:
        if self.callback is not None:
            self._emit(done)

    def _emit(self, done: int) -> None:
        now = self.last = self.clock()
        elapsed = now - self.started
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if self.total is not None and rate > 0 else None
        self.callback(Progress(self.label, self.url, done, self.total, rate, eta))


@contextmanager
def session_scope(session: requests.Session | None, mirrors: Mirrors | None = None) -> Iterator[requests.Session]:
    """The caller's session, or a fresh one (following ``mirrors``, default CYTOIMAGENET_MIRRORS) closed afterwards."""
    if session is not None:
        yield session
        return
    with MirroredSession(mirrors) as fresh:
        fresh.headers["User-Agent"] = USER_AGENT
        yield fresh


def _via(session: requests.Session, url: str) -> str:
    """`` (mirror <url>)`` when ``session`` sends ``url`` to a mirror, for messages."""
    actual = session.mirrors.rewrite(url) if isinstance(session, MirroredSession) else url
    return "" if actual == url else f" (mirror {redact(actual)})"


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    label: str,
    headers: dict[str, str] | None = None,
    auth: Any = None,
    stream: bool = True,
) -> requests.Response:
    """One request (redirects followed, no content coding): a response with status < 400, else
    :class:`TransientError` for what a retry may cure and :class:`DownloadError` for the rest."""
    try:
        response = session.request(
            method,
            url,
            headers={"Accept-Encoding": "identity", **(headers or {})},
            auth=auth,
            stream=stream,
            timeout=TIMEOUT_S,
            allow_redirects=True,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"{type(exc).__name__}: {_without_url(exc)}") from None
    except requests.RequestException as exc:
        raise DownloadError(f"{label}: {redact(url)}{_via(session, url)}: {type(exc).__name__}: {_without_url(exc)}") from None
    status = response.status_code
    if status < 400:
        return response
    response.close()
    if status in (408, 429) or status >= 500:
        raise TransientError(f"returned {status} {response.reason}", _retry_after(response))
    raise DownloadError(f"{label}: {redact(url)}{_via(session, url)} returned {status} {response.reason}", status=status)


def body_chunks(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """The response body in chunks of at most ``chunk_size``, each yielded as soon as bytes arrive
    (``read1``), so a connection cut before a chunk fills still leaves what arrived on disk: every
    attempt advances the ``.part``, however short the link stays up. A broken connection becomes
    :class:`TransientError`."""
    raw = response.raw
    try:
        if hasattr(raw, "read1") and not getattr(raw, "chunked", False):
            while chunk := raw.read1(chunk_size, decode_content=True):
                yield chunk
        else:  # chunked transfer encoding: requests' reader already yields chunk by chunk
            yield from response.iter_content(chunk_size)
    except (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise TransientError(f"connection broke mid-body: {type(exc).__name__}") from None


def with_retries(
    attempt: Callable[[], Any],
    *,
    label: str,
    url: str,
    retries: int,
    backoff_s: float,
    sleep: Callable[[float], None],
    made_progress: Callable[[], bool] = lambda: False,
    session: requests.Session | None = None,
) -> Any:
    """Call ``attempt`` until it succeeds; transient failures sleep with exponential backoff, at most
    ``retries`` in a row (an attempt that moved data forward starts the count afresh). The final
    error names the mirror ``session`` sent ``url`` to, if any."""
    failures = 0
    while True:
        try:
            return attempt()
        except TransientError as exc:
            failures = 1 if made_progress() else failures + 1
            if failures > retries:
                attempts = "1 attempt" if failures == 1 else f"{failures} attempts in a row"
                raise DownloadError(
                    f"{label}: {redact(url)}{_via(session, url) if session else ''} failed after {attempts}: {exc}"
                ) from None
            if not isinstance(exc, RestartError):
                delay = exc.retry_after if exc.retry_after is not None else backoff_s * 2 ** (failures - 1)
                sleep(min(delay, MAX_BACKOFF_S))


def head(
    url: str,
    *,
    label: str,
    session: requests.Session | None = None,
    auth: Any = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> RemoteInfo:
    """Size, ETag, Last-Modified and Range support of ``url``. Servers that refuse HEAD (signed
    storage URLs behind a redirect do) are asked with a one-byte ranged GET instead."""

    def attempt() -> RemoteInfo:
        with session_scope(session) as s:
            try:
                response = send(s, "HEAD", url, label=label, auth=auth, stream=False)
            except DownloadError as exc:
                if exc.status not in (403, 405, 501):
                    raise
                response = send(s, "GET", url, label=label, headers={"Range": "bytes=0-0"}, auth=auth)
            with response:
                return _remote_info(response)

    return with_retries(attempt, label=label, url=url, retries=retries, backoff_s=backoff_s, sleep=sleep, session=session)


def fetch_file(
    url: str,
    dest: Path,
    *,
    label: str,
    size: int | None = None,
    md5: str | None = None,
    session: requests.Session | None = None,
    retries: int = 5,
    backoff_s: float = 1.0,
    progress: Callable[[Progress], None] | None = None,
    chunk_size: int = 1 << 20,
    auth: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Download ``url`` to ``dest`` unless a verified copy is already there (see the module docstring).

    ``auth`` goes to requests as is (a ``(user, password)`` tuple for HTTP basic auth) and never into
    a message. Raises :class:`DownloadError` naming ``label`` and the URL.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with session_scope(session) as s:
        found = verified_copy(dest, url, label=label, size=size, md5=md5, session=s, auth=auth, sleep=sleep)
        if found is not None:
            return found
        transfer = _Transfer(url, dest, label, size, md5.lower() if md5 else None, s, auth, chunk_size, progress)
        with_retries(
            transfer.attempt,
            label=label,
            url=url,
            retries=retries,
            backoff_s=backoff_s,
            sleep=sleep,
            made_progress=transfer.made_progress,
            session=s,
        )
        return transfer.finish()


def part_path(dest: Path) -> Path:
    """Where ``dest`` is downloaded before it is complete and verified."""
    return dest.parent / f".{dest.name}.part"


def record_path(dest: Path) -> Path:
    """The JSON record of where ``dest`` came from (URL, size, MD5, validators)."""
    return records_dir(dest.parent) / f"{dest.name}.json"


def read_record(dest: Path) -> dict:
    try:
        return json.loads(record_path(dest).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_record(dest: Path, **fields: Any) -> None:
    write_text(record_path(dest), json.dumps(fields, indent=1, sort_keys=True))


def complete_record(dest: Path, url: str, md5: str | None, etag: str | None = None, last_modified: str | None = None) -> None:
    """Record that ``dest`` is a complete, verified copy of ``url`` as it is now."""
    stat = dest.stat()
    write_record(
        dest, url=redact(url), complete=True, size=stat.st_size, mtime_ns=stat.st_mtime_ns, md5=md5, etag=etag, last_modified=last_modified
    )


def verified_copy(
    dest: Path,
    url: str,
    *,
    label: str,
    size: int | None,
    md5: str | None,
    session: requests.Session,
    auth: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult | None:
    """A result for ``dest`` if it is already a verified copy of ``url``, else None.

    With a known MD5 the file is hashed once; the record then remembers the hash for this exact
    file (size and mtime), so later checks of a 46 GiB archive do not read it again.
    """
    if not dest.is_file():
        return None
    stat = dest.stat()
    record = read_record(dest)
    if size is not None and stat.st_size != size:
        return None
    recorded = record.get("complete") and (record.get("size"), record.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
    reused = FetchResult(dest, 0, stat.st_size, reused=True, resumed_from=0, md5=record.get("md5") if recorded else None)
    if md5 is not None:
        md5 = md5.lower()
        if recorded and record.get("md5") == md5:
            return reused
        if file_md5(dest) != md5:
            return None
        complete_record(dest, url, md5, record.get("etag"), record.get("last_modified"))
        return FetchResult(dest, 0, stat.st_size, reused=True, resumed_from=0, md5=md5)
    if size is not None:
        return reused
    if not record.get("complete") or record.get("url") != redact(url) or record.get("size") != stat.st_size:
        return None
    try:
        info = head(url, label=label, session=session, auth=auth, sleep=sleep)
    except DownloadError as exc:
        if exc.status is None:  # server unreachable (an offline node): trust the record of a completed download
            return FetchResult(
                dest,
                0,
                stat.st_size,
                reused=True,
                resumed_from=0,
                md5=record.get("md5"),
                notes=(f"{label}: kept {dest.name} as downloaded before; could not re-check it on the server: {exc}",),
            )
        return None  # the GET that follows reports the refusal with its own message
    if info.size is not None and info.size != stat.st_size:
        return None
    for field, now in (("etag", info.etag), ("last_modified", info.last_modified)):
        if record.get(field) and now:
            return reused if record[field] == now else None
    return reused


def file_md5(path: Path) -> str:
    return _hash_prefix(path, None).hexdigest()


def check_disk_space(folder: Path, needed: int, *, label: str, url: str) -> None:
    """Refuse to start a transfer that cannot fit: ``needed`` bytes plus a margin (1%, at least 64 MiB)."""
    margin = max(needed // 100, 64 << 20)
    free = shutil.disk_usage(folder).free
    if free < needed + margin:
        raise DownloadError(
            f"{label}: {redact(url)} needs {format_bytes(needed)} (+ {format_bytes(margin)} margin) in {folder}, "
            f"but only {format_bytes(free)} is free"
        )


class _Transfer:
    """The state of one download across its attempts: the .part, the running MD5, the validator."""

    def __init__(
        self,
        url: str,
        dest: Path,
        label: str,
        size: int | None,
        md5: str | None,
        session: requests.Session,
        auth: Any,
        chunk_size: int,
        progress: Callable[[Progress], None] | None,
    ):
        self.url, self.dest, self.label, self.size, self.md5 = url, dest, label, size, md5
        self.session, self.auth, self.chunk_size, self.progress = session, auth, chunk_size, progress
        self.part = part_path(dest)
        self.hasher, self.hashed = hashlib.md5(), 0
        self.total: int | None = size
        self.received = 0  # bytes over the network, discarded restarts included
        self.furthest = 0  # the longest the .part has been: what counts as progress
        self.furthest_at_attempt_start = 0
        self.resumed_from = 0
        self.meter: ProgressMeter | None = None
        record = read_record(dest)
        self.validators = record if not record.get("complete") and record.get("url") == redact(url) else {}

    def made_progress(self) -> bool:
        """Whether the last attempt grew the file further than any before it (a server that ignores
        Range and keeps cutting the connection restarts from zero each time: no progress)."""
        return self.furthest > self.furthest_at_attempt_start

    def attempt(self) -> None:
        self.furthest_at_attempt_start = self.furthest
        offset = self.part.stat().st_size if self.part.exists() else 0
        if offset and not (self.validators.get("etag") or self.validators.get("last_modified")):
            offset = self._restart()  # nothing to tell whether the remote changed since the .part began
        if self.size is not None and offset > self.size:
            offset = self._restart()
        if self.size is not None and offset == self.size and offset:
            self.resumed_from = offset
            return
        headers = {}
        if offset:
            headers = {"Range": f"bytes={offset}-", "If-Range": self.validators.get("etag") or self.validators["last_modified"]}
        response = send(self.session, "GET", self.url, label=self.label, headers=headers, auth=self.auth)
        with response:
            if response.status_code == 416 and offset:
                if _content_range(response)[2] == offset:  # the .part already holds the whole file
                    self.total, self.resumed_from = offset, offset
                    return
                self._restart()
                raise RestartError("server refused the resume")
            if response.status_code == 206:
                start, _, total = _content_range(response)
                if start != offset:
                    self._restart()
                    raise RestartError(f"server resumed at byte {start}, not {offset}")
                self.resumed_from = offset
            elif response.status_code == 200:
                total = _int_header(response, "Content-Length")
                if offset:
                    offset = self._restart()  # the remote changed (If-Range failed) or ignores Range
                self.resumed_from = 0
            else:
                raise DownloadError(
                    f"{self.label}: {redact(self.url)} answered {response.status_code} {response.reason}, expected the file",
                    status=response.status_code,
                )
            if total is not None and self.size is not None and total != self.size:
                self._discard()
                raise DownloadError(
                    f"{self.label}: {redact(self.url)} is {total} bytes on the server, expected {self.size}: "
                    "the remote file changed (update the catalog's size and md5)"
                )
            self.total = total if total is not None else self.size
            if self.total is not None:
                check_disk_space(self.dest.parent, self.total - offset, label=self.label, url=self.url)
            if offset == 0:
                info = _remote_info(response)
                self.validators = {"etag": _strong(info.etag), "last_modified": info.last_modified}
                write_record(self.dest, url=redact(self.url), complete=False, **self.validators)
            self._stream(response, offset)

    def _stream(self, response: requests.Response, offset: int) -> None:
        if self.hashed != offset:
            self.hasher, self.hashed = _hash_prefix(self.part, offset), offset
        self.meter = ProgressMeter(self.label, self.url, self.total, self.progress, start_done=offset)
        done = offset
        with open(self.part, "r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            try:
                for chunk in body_chunks(response, self.chunk_size):
                    out.write(chunk)
                    self.hasher.update(chunk)
                    done += len(chunk)
                    self.hashed = done
                    self.received += len(chunk)
                    self.furthest = max(self.furthest, done)
                    self.meter.update(done)
            finally:
                out.flush()
                os.fsync(out.fileno())
        if self.total is not None and done != self.total:
            raise TransientError(f"body ended at byte {done} of {self.total}")
        self.total = done

    def finish(self) -> FetchResult:
        got_size = self.part.stat().st_size
        if self.hashed != got_size:
            self.hasher, self.hashed = _hash_prefix(self.part, got_size), got_size
        digest = self.hasher.hexdigest()
        if self.size is not None and got_size != self.size:
            self._discard()
            raise VerificationFailed(f"{self.label}: {redact(self.url)} failed verification: expected {self.size} bytes, got {got_size}")
        if self.md5 is not None and digest != self.md5:
            self._discard()
            raise VerificationFailed(f"{self.label}: {redact(self.url)} failed verification: expected md5 {self.md5}, got {digest}")
        os.replace(self.part, self.dest)
        _fsync_dir(self.dest.parent)
        complete_record(self.dest, self.url, digest, self.validators.get("etag"), self.validators.get("last_modified"))
        (self.meter or ProgressMeter(self.label, self.url, got_size, self.progress, start_done=got_size)).finish(got_size)
        return FetchResult(self.dest, self.received, got_size, reused=False, resumed_from=self.resumed_from, md5=digest)

    def _restart(self) -> int:
        self.part.unlink(missing_ok=True)
        self.hasher, self.hashed = hashlib.md5(), 0
        self.validators = {}
        return 0

    def _discard(self) -> None:
        self.part.unlink(missing_ok=True)
        record_path(self.dest).unlink(missing_ok=True)


def _hash_prefix(path: Path, length: int | None, chunk_size: int = 1 << 22) -> "hashlib._Hash":
    """MD5 of the first ``length`` bytes of ``path`` (all of it when None)."""
    hasher = hashlib.md5()
    left = length
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(chunk_size if left is None else min(chunk_size, left))
            if not chunk:
                break
            hasher.update(chunk)
            if left is not None:
                left -= len(chunk)
    return hasher


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remote_info(response: requests.Response) -> RemoteInfo:
    if response.status_code == 206:
        size = _content_range(response)[2]
    else:
        size = _int_header(response, "Content-Length")
    accepts = response.status_code == 206 or response.headers.get("Accept-Ranges", "").lower() == "bytes"
    return RemoteInfo(size, response.headers.get("ETag"), response.headers.get("Last-Modified"), accepts)


def _strong(etag: str | None) -> str | None:
    """``etag`` if it may guard a Range request; weak ETags (W/"...") may not (RFC 9110 13.1.5)."""
    return etag if etag and not etag.startswith("W/") else None


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


def _content_range(response: requests.Response) -> tuple[int | None, int | None, int | None]:
    """(first byte, last byte, total) of a Content-Range header; None for what it leaves out."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if not match:
        return None, None, None
    first, last, total = (int(v) if v and v != "*" else None for v in match.groups())
    return first, last, total


def _int_header(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name)
    return int(value) if value and value.isdigit() else None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _without_url(exc: Exception) -> str:
    """A requests exception's text, which can hold a signed redirect URL, cut to its cause."""
    text = str(exc)
    return text.split("(Caused by ", 1)[-1].rstrip(")") if "(Caused by " in text else text


PROGRESS_LOG_INTERVAL_S = 15.0


def throttled_progress(log: Callable[[str], None], interval_s: float = PROGRESS_LOG_INTERVAL_S) -> Callable[[Progress], None]:
    """A progress callback that logs a transfer's bytes, rate and ETA every ``interval_s`` and when it ends."""
    last = {"at": 0.0}

    def report(progress: Progress) -> None:
        now = time.monotonic()
        if now - last["at"] >= interval_s or (progress.total is not None and progress.done >= progress.total):
            last["at"] = now
            log(progress.format())

    return report
