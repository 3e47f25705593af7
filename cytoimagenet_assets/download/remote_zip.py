"""Read single members of a remote zip through HTTP Range requests, without downloading the archive.

RxRx1's images come as one 46 GiB zip; its metadata, or one plate, is a tiny part of it. The end
records (ZIP64 included) are read from the tail, then the central directory, then each wanted
member's local header and compressed bytes with one Range request. Servers that ignore Range get
:class:`RangesNotSupported`; :func:`fetch_members` then downloads the whole archive once instead.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import requests

from cytoimagenet_assets.download.archives import ArchiveError, member_path, safe_extract
from cytoimagenet_assets.download.http import (
    DownloadError,
    Progress,
    ProgressMeter,
    TransientError,
    VerificationFailed,
    body_chunks,
    check_disk_space,
    fetch_file,
    redact,
    send,
    session_scope,
    url_name,
    with_retries,
)
from cytoimagenet_assets.storage import atomic_path

RETRIES = 5
BACKOFF_S = 1.0
STORED, DEFLATED = 0, 8
METHOD_NAMES = {STORED: "stored", DEFLATED: "deflate", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard"}
EOCD_SIGNATURE, ZIP64_LOCATOR_SIGNATURE, ZIP64_EOCD_SIGNATURE = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
CENTRAL_SIGNATURE, LOCAL_SIGNATURE = b"PK\x01\x02", b"PK\x03\x04"
EOCD = struct.Struct("<4s4H2LH")  # signature, disk, cd disk, entries here, entries, cd size, cd offset, comment length
ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk with the record, record offset, disks
ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # signature, size, versions, disk, cd disk, entries here, entries, cd size, cd offset
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
LOCAL = struct.Struct("<4s2B4HL2L2H")
TAIL_BYTES = EOCD.size + 0xFFFF + ZIP64_LOCATOR.size  # the end record, its longest comment, the ZIP64 locator
LOCAL_HEADER_SLACK = 1024  # local extra fields may exceed the central ones; a longer one costs a second request
CHUNK = 1 << 16


class RangesNotSupported(DownloadError):
    """The server answered a Range request with the whole file (200)."""


@dataclass(frozen=True)
class ZipMember:
    name: str
    header_offset: int
    compressed_size: int
    file_size: int
    compress_type: int
    crc32: int
    flags: int = 0

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass(frozen=True)
class FetchMembersResult:
    paths: list[Path]  # raw_dir/<member name>, in the order asked
    bytes_transferred: int
    method: str  # "range" or "whole_archive"
    already_present: int = 0  # members found verified (size and CRC) and not fetched again


def list_members(url: str, *, label: str, session: requests.Session | None = None) -> list[ZipMember]:
    """Every member of the zip at ``url``, read through Range requests (a few KiB plus the central directory)."""
    with session_scope(session) as s:
        return _read_directory(url, label, s)[0]


def fetch_member(url: str, member: ZipMember, dest: Path, *, label: str, session: requests.Session | None = None) -> int:
    """Write ``member`` of the zip at ``url`` to ``dest`` (atomically, CRC-checked); returns the bytes transferred."""
    if member.flags & 0x1:
        raise DownloadError(f"{label}: {redact(url)}: member {member.name!r} is encrypted")
    if member.compress_type not in (STORED, DEFLATED):
        method = METHOD_NAMES.get(member.compress_type, "unknown")
        raise DownloadError(
            f"{label}: {redact(url)}: member {member.name!r} uses compression method {member.compress_type} ({method}); "
            "only stored and deflate members can be fetched by range: download the whole archive"
        )
    dest = Path(dest)
    with session_scope(session) as s:
        return with_retries(
            lambda: _fetch_member_once(url, member, dest, label, s),
            label=label,
            url=url,
            retries=RETRIES,
            backoff_s=BACKOFF_S,
            sleep=time.sleep,
            session=s,
        )


def fetch_members(
    url: str,
    names: Iterable[str],
    raw_dir: Path,
    *,
    label: str,
    archive_cache_dir: Path,
    size: int | None = None,
    md5: str | None = None,
    session: requests.Session | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> FetchMembersResult:
    """Members ``names`` of the zip at ``url`` into ``raw_dir/<name>``: by Range requests when the
    server allows them and every member is stored or deflated, otherwise by downloading the whole
    archive once into ``archive_cache_dir`` (``size``/``md5`` verify it) and extracting just those."""
    names = list(dict.fromkeys(names))
    raw_dir = Path(raw_dir)
    paths = [raw_dir / member_path(n, label=label, archive=url_name(url)) for n in names]
    with session_scope(session) as s:

        def whole_archive(transferred: int) -> FetchMembersResult:
            archive = Path(archive_cache_dir) / url_name(url)
            fetched = fetch_file(url, archive, label=label, size=size, md5=md5, session=s, progress=progress)
            safe_extract(archive, raw_dir, label=label, members=names)
            return FetchMembersResult(paths, transferred + fetched.bytes_downloaded, "whole_archive")

        try:
            listing, transferred = _read_directory(url, label, s)
        except RangesNotSupported:
            return whole_archive(0)
        by_name = {m.name: m for m in listing}
        missing = [n for n in names if n not in by_name]
        if missing:
            shown = ", ".join(map(repr, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise DownloadError(f"{label}: {redact(url)} has no member {shown}")
        wanted = [by_name[n] for n in names]
        if any(m.compress_type not in (STORED, DEFLATED) or m.flags & 0x1 for m in wanted):
            return whole_archive(transferred)
        todo = [(m, p) for m, p in zip(wanted, paths) if not _present(m, p)]
        raw_dir.mkdir(parents=True, exist_ok=True)
        check_disk_space(raw_dir, sum(m.file_size for m, _ in todo), label=label, url=url)
        meter = ProgressMeter(label, url, sum(m.compressed_size for m, _ in todo), progress)
        done = 0
        for member, path in todo:
            if member.is_dir:
                path.mkdir(parents=True, exist_ok=True)
                continue
            try:
                transferred += fetch_member(url, member, path, label=label, session=s)
            except RangesNotSupported:
                return whole_archive(transferred)
            done += member.compressed_size
            meter.update(done)
        meter.finish(done)
        return FetchMembersResult(paths, transferred, "range", already_present=len(wanted) - len(todo))


def _present(member: ZipMember, path: Path) -> bool:
    """Whether ``path`` already holds ``member`` (same size and CRC-32)."""
    if member.is_dir:
        return path.is_dir()
    if not path.is_file() or path.stat().st_size != member.file_size:
        return False
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc == member.crc32


def _read_directory(url: str, label: str, session: requests.Session) -> tuple[list[ZipMember], int]:
    """The members of the remote zip and the bytes it took to learn them."""
    tail, tail_start, archive_size = _get_range(session, url, f"-{TAIL_BYTES}", label)
    transferred = len(tail)
    where = f"{label}: {redact(url)}"
    pos = tail.rfind(EOCD_SIGNATURE)
    while pos >= 0 and pos + EOCD.size <= len(tail):
        comment_length = EOCD.unpack_from(tail, pos)[7]
        if pos + EOCD.size + comment_length == len(tail):
            break
        pos = tail.rfind(EOCD_SIGNATURE, 0, pos)
    if pos < 0 or pos + EOCD.size > len(tail):
        raise ArchiveError(f"{where} is not a zip: no end of central directory record in its last {len(tail)} bytes")
    _, disk, cd_disk, entries_here, entries, cd_size, cd_offset, _ = EOCD.unpack_from(tail, pos)
    locator = pos - ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == ZIP64_LOCATOR_SIGNATURE:
        record_offset = ZIP64_LOCATOR.unpack_from(tail, locator)[2]
        if record_offset >= tail_start:
            record = tail[record_offset - tail_start : record_offset - tail_start + ZIP64_EOCD.size]
        else:
            record = _get_range(session, url, f"{record_offset}-{record_offset + ZIP64_EOCD.size - 1}", label)[0]
            transferred += len(record)
        if len(record) < ZIP64_EOCD.size or record[:4] != ZIP64_EOCD_SIGNATURE:
            raise ArchiveError(f"{where}: the ZIP64 end of central directory record is not at byte {record_offset}")
        _, _, _, _, disk, cd_disk, entries_here, entries, cd_size, cd_offset = ZIP64_EOCD.unpack_from(record)
    if disk != 0 or cd_disk != 0 or entries_here != entries:
        raise ArchiveError(f"{where} is a multi-disk (split) zip, which cannot be read by range")
    if cd_offset + cd_size > archive_size:
        raise ArchiveError(f"{where}: central directory at byte {cd_offset} (+{cd_size}) lies beyond the archive's {archive_size} bytes")
    if cd_offset >= tail_start:
        directory = tail[cd_offset - tail_start : cd_offset - tail_start + cd_size]
    elif cd_size:
        directory = _get_range(session, url, f"{cd_offset}-{cd_offset + cd_size - 1}", label)[0]
        transferred += len(directory)
    else:
        directory = b""
    return _parse_central_directory(directory, entries, where), transferred


def _parse_central_directory(directory: bytes, entries: int, where: str) -> list[ZipMember]:
    members = []
    pos = 0
    for _ in range(entries):
        if directory[pos : pos + 4] != CENTRAL_SIGNATURE or pos + CENTRAL.size > len(directory):
            raise ArchiveError(f"{where}: central directory entry {len(members)} is malformed (self-extracting or corrupt zip?)")
        fields = CENTRAL.unpack_from(directory, pos)
        flags, method, crc, compressed, size, name_length, extra_length, comment_length, offset = (
            fields[5],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
            fields[12],
            fields[13],
            fields[14],
            fields[18],
        )
        start = pos + CENTRAL.size
        name = directory[start : start + name_length].decode("utf-8" if flags & 0x800 else "cp437")
        extra = directory[start + name_length : start + name_length + extra_length]
        if 0xFFFFFFFF in (size, compressed, offset):
            size, compressed, offset = _zip64_extra(extra, size, compressed, offset, f"{where}: member {name!r}")
        members.append(ZipMember(name, offset, compressed, size, method, crc, flags))
        pos = start + name_length + extra_length + comment_length
    return members


def _zip64_extra(extra: bytes, size: int, compressed: int, offset: int, where: str) -> tuple[int, int, int]:
    """The 64-bit sizes and offset a ZIP64 extra field holds for the 32-bit fields saturated at 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        header_id, length = struct.unpack_from("<HH", extra, pos)
        if header_id == 0x0001:
            values = iter(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            try:
                size = next(values) if size == 0xFFFFFFFF else size
                compressed = next(values) if compressed == 0xFFFFFFFF else compressed
                offset = next(values) if offset == 0xFFFFFFFF else offset
            except StopIteration:
                raise ArchiveError(f"{where}: ZIP64 extra field too short") from None
            return size, compressed, offset
        pos += 4 + length
    raise ArchiveError(f"{where}: 32-bit sizes saturated but no ZIP64 extra field")


def _get_range(session: requests.Session, url: str, spec: str, label: str) -> tuple[bytes, int, int]:
    """(body, its first byte's offset, archive size) of ``Range: bytes=<spec>``."""

    def attempt() -> tuple[bytes, int, int]:
        with _RangedResponse(session, url, spec, label) as (response, first, total):
            body = b"".join(body_chunks(response, CHUNK))
        expected = int(response.headers.get("Content-Length", len(body)))
        if len(body) != expected:
            raise TransientError(f"body ended at {len(body)} of {expected} bytes")
        return body, first, total

    return with_retries(attempt, label=label, url=url, retries=RETRIES, backoff_s=BACKOFF_S, sleep=time.sleep, session=session)


class _RangedResponse:
    """A 206 response to ``Range: bytes=<spec>`` as (response, first byte, total size); a 200 raises RangesNotSupported."""

    def __init__(self, session: requests.Session, url: str, spec: str, label: str):
        self.response = send(session, "GET", url, label=label, headers={"Range": f"bytes={spec}"})
        self.url, self.label = url, label

    def __enter__(self) -> tuple[requests.Response, int, int]:
        response = self.response
        if response.status_code != 206:
            response.close()
            raise RangesNotSupported(
                f"{self.label}: {redact(self.url)} ignores Range requests (answered {response.status_code})", status=response.status_code
            )
        header = response.headers.get("Content-Range", "")
        try:
            first_last, total = header.removeprefix("bytes ").split("/")
            return response, int(first_last.split("-")[0]), int(total)
        except ValueError:
            response.close()
            raise DownloadError(f"{self.label}: {redact(self.url)} answered 206 with an unusable Content-Range {header!r}") from None

    def __exit__(self, *exc_info) -> None:
        self.response.close()


class _Body:
    """Exact-length reads over a streamed response body."""

    def __init__(self, response: requests.Response):
        self.chunks = body_chunks(response, CHUNK)
        self.buffer = b""
        self.received = 0

    def _more(self) -> None:
        chunk = next(self.chunks, b"")
        if not chunk:
            raise TransientError(f"body ended after {self.received} bytes")
        self.received += len(chunk)
        self.buffer += chunk

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._more()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def stream(self, n: int) -> Iterator[bytes]:
        while n:
            if not self.buffer:
                self._more()
            piece, self.buffer = self.buffer[:n], self.buffer[n:]
            n -= len(piece)
            yield piece

    def drain(self) -> None:
        for chunk in self.chunks:
            self.received += len(chunk)


def _fetch_member_once(url: str, member: ZipMember, dest: Path, label: str, session: requests.Session) -> int:
    where = f"{label}: {redact(url)}: member {member.name!r}"
    start = member.header_offset
    end = start + LOCAL.size + len(member.name.encode("utf-8")) + LOCAL_HEADER_SLACK + member.compressed_size - 1
    with _RangedResponse(session, url, f"{start}-{end}", label) as (response, first, _):
        if first != start:
            raise DownloadError(f"{where}: server answered from byte {first}, asked for {start}")
        body = _Body(response)
        header = LOCAL.unpack(body.read(LOCAL.size))
        if header[0] != LOCAL_SIGNATURE:
            raise ArchiveError(f"{where}: no local file header at byte {start} (the archive changed since it was listed?)")
        name_length, extra_length = header[10], header[11]
        data_start = start + LOCAL.size + name_length + extra_length
        if data_start + member.compressed_size - 1 > end:  # local extras longer than the slack: ask for the data alone
            body.drain()
            received = body.received
            with _RangedResponse(session, url, f"{data_start}-{data_start + member.compressed_size - 1}", label) as (again, _, _):
                body = _Body(again)
                _write_member(body, member, dest, where)
                body.drain()
                return received + body.received
        body.read(name_length + extra_length)
        _write_member(body, member, dest, where)
        body.drain()  # the slack, so the connection can be reused
        return body.received


def _write_member(body: _Body, member: ZipMember, dest: Path, where: str) -> None:
    inflater = zlib.decompressobj(-15) if member.compress_type == DEFLATED else None
    crc = written = 0
    with atomic_path(dest) as stage, open(stage, "wb") as out:
        try:
            for piece in body.stream(member.compressed_size):
                data = inflater.decompress(piece) if inflater else piece
                crc, written = zlib.crc32(data, crc), written + len(data)
                if written > member.file_size:
                    raise DownloadError(f"{where} inflates past its declared {member.file_size} bytes; refusing a possible zip bomb")
                out.write(data)
            data = inflater.flush() if inflater else b""
        except zlib.error as exc:
            raise DownloadError(f"{where} is not valid deflate data: {exc}") from None
        crc, written = zlib.crc32(data, crc), written + len(data)
        out.write(data)
        if written != member.file_size or crc != member.crc32:
            raise VerificationFailed(
                f"{where} failed verification: expected {member.file_size} bytes with CRC-32 {member.crc32:08x}, "
                f"got {written} bytes with CRC-32 {crc:08x}"
            )
