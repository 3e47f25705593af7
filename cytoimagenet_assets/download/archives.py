"""Extract downloaded .zip and .tar* archives without trusting them.

Archives come from third-party servers: a member named ``../x`` or ``/etc/x``, a link pointing out
of the target, a device node or a zip bomb is refused (:class:`ArchiveError`) before anything is
written. Members are extracted into a hidden staging folder inside the target and moved into place
one by one, so a crash never leaves a half-written file under its final name; re-extracting the same
archive replaces the files with identical ones (modification times come from the archive).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterable

from cytoimagenet_assets.errors import StepFailed

COPY_CHUNK = 1 << 20
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(StepFailed, ValueError):
    """An archive that cannot be extracted safely; the message names the archive and the member."""


@dataclass(frozen=True)
class _Entry:
    name: str  # as stored in the archive
    path: PurePosixPath  # checked, relative to the target
    kind: str  # file, dir, symlink
    size: int  # declared uncompressed size (0 for links and folders)
    mtime: float
    link: str | None = None  # symlink target, relative to the link's folder


def member_path(name: str, *, label: str, archive: str) -> PurePosixPath:
    """``name`` as a path relative to the extraction target; ArchiveError if it could leave it."""
    reason = None
    parts = name.replace("\\", "/").split("/")
    if not name or "\x00" in name:
        reason = "an empty or NUL-containing name"
    elif name.startswith(("/", "\\")) or _DRIVE.match(name):
        reason = "an absolute path"
    elif ".." in parts:
        reason = "a '..' component"
    if reason is None:
        path = PurePosixPath(*[p for p in parts if p not in ("", ".")])
        if path.parts:
            return path
        reason = "no name left after normalising"
    raise ArchiveError(f"{label}: archive {archive}: member {name!r} has {reason}; refusing to extract it")


def safe_extract(
    archive: Path, target: Path, *, label: str, max_bytes: int | None = None, members: Iterable[str] | None = None
) -> list[str]:
    """Extract ``archive`` (.zip or .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) under ``target``.

    ``members`` restricts extraction to those names (a missing one is an error); ``max_bytes``
    bounds the total uncompressed size, both as declared and as actually written. Returns the
    extracted files and links, relative to ``target``, in archive order.
    """
    archive, target = Path(archive), Path(target)
    opener = _ZipArchive if _is_zip(archive) else _TarArchive
    with opener(archive, label) as (entries, open_member):
        chosen = _choose(entries, members, label=label, archive=archive.name)
        _check_links(chosen, label=label, archive=archive.name)
        declared = sum(e.size for e in chosen)
        if max_bytes is not None and declared > max_bytes:
            raise ArchiveError(
                f"{label}: archive {archive.name} declares {declared} bytes uncompressed, "
                f"more than the bound of {max_bytes}; refusing to extract it"
            )
        target.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(target, archive.name)
        staging = target / f".extract-{archive.name}.{uuid.uuid4().hex[:8]}.partial"
        staging.mkdir()
        try:
            _extract_into(staging, chosen, open_member, max_bytes, label=label, archive=archive.name)
            return _move_into_place(staging, target, chosen, label=label, archive=archive.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _is_zip(archive: Path) -> bool:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return True
    if name.endswith(TAR_SUFFIXES):
        return False
    return zipfile.is_zipfile(archive)


class _ZipArchive:
    """Opened as a context manager: (entries, open_member) of a zip file."""

    def __init__(self, archive: Path, label: str):
        self.archive, self.label = archive, label

    def __enter__(self) -> tuple[list[_Entry], Callable[[_Entry], IO[bytes]]]:
        try:
            self.zf = zipfile.ZipFile(self.archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArchiveError(f"{self.label}: archive {self.archive.name} is not a readable zip: {exc}") from exc
        try:
            return self._entries(), lambda entry: self.zf.open(entry.name)
        except BaseException:
            self.zf.close()
            raise

    def _entries(self) -> list[_Entry]:
        entries = []
        for info in self.zf.infolist():
            path = member_path(info.filename, label=self.label, archive=self.archive.name)
            mtime = time.mktime(info.date_time + (0, 0, -1))
            if info.flag_bits & 0x1:
                raise ArchiveError(f"{self.label}: archive {self.archive.name}: member {info.filename!r} is encrypted")
            if info.is_dir():
                entries.append(_Entry(info.filename, path, "dir", 0, mtime))
            elif stat.S_ISLNK(info.external_attr >> 16):
                link = self.zf.read(info).decode("utf-8", "surrogateescape")
                entries.append(_Entry(info.filename, path, "symlink", 0, mtime, link))
            else:
                entries.append(_Entry(info.filename, path, "file", info.file_size, mtime))
        return entries

    def __exit__(self, *exc_info) -> None:
        self.zf.close()


class _TarArchive:
    """Opened as a context manager: (entries, open_member) of a (compressed) tar file."""

    def __init__(self, archive: Path, label: str):
        self.archive, self.label = archive, label

    def __enter__(self) -> tuple[list[_Entry], Callable[[_Entry], IO[bytes]]]:
        try:
            self.tf = tarfile.open(self.archive, "r:*")
        except (tarfile.TarError, OSError) as exc:
            raise ArchiveError(f"{self.label}: archive {self.archive.name} is not a readable tar: {exc}") from exc
        try:
            return self._entries(), self._open
        except BaseException:
            self.tf.close()
            raise

    def _entries(self) -> list[_Entry]:
        try:
            infos = self.tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"{self.label}: archive {self.archive.name} is not a readable tar: {exc}") from exc
        by_name = {}
        entries = []
        for info in infos:
            where = f"{self.label}: archive {self.archive.name}: member {info.name!r}"
            path = member_path(info.name, label=self.label, archive=self.archive.name)
            by_name[info.name] = info
            if info.isdir():
                entries.append(_Entry(info.name, path, "dir", 0, info.mtime))
            elif info.issym():
                entries.append(_Entry(info.name, path, "symlink", 0, info.mtime, info.linkname))
            elif info.islnk():  # a hard link: extracted as a copy of the member it names
                member_path(info.linkname, label=self.label, archive=self.archive.name)
                if info.linkname not in by_name:
                    raise ArchiveError(f"{where} is a hard link to {info.linkname!r}, which is not an earlier member")
                entries.append(_Entry(info.name, path, "file", by_name[info.linkname].size, info.mtime))
            elif info.isfile():
                entries.append(_Entry(info.name, path, "file", info.size, info.mtime))
            else:
                raise ArchiveError(f"{where} is a device, fifo or other special file; refusing to extract it")
        return entries

    def _open(self, entry: _Entry) -> IO[bytes]:
        return self.tf.extractfile(entry.name)

    def __exit__(self, *exc_info) -> None:
        self.tf.close()


def _choose(entries: list[_Entry], members: Iterable[str] | None, *, label: str, archive: str) -> list[_Entry]:
    if members is None:
        return entries
    wanted = {m.rstrip("/") for m in members}
    chosen = [e for e in entries if e.name.rstrip("/") in wanted]
    missing = sorted(wanted - {e.name.rstrip("/") for e in chosen})
    if missing:
        shown = ", ".join(map(repr, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise ArchiveError(f"{label}: archive {archive} has no member {shown}")
    return chosen


def _check_links(entries: list[_Entry], *, label: str, archive: str) -> None:
    """Symlinks must point inside the target, and no member may be written through one."""
    links = {e.path for e in entries if e.kind == "symlink"}
    for entry in entries:
        where = f"{label}: archive {archive}: member {entry.name!r}"
        if any(parent in links for parent in entry.path.parents):
            raise ArchiveError(f"{where} lies below a symlink of the same archive; refusing to extract it")
        if entry.kind != "symlink":
            continue
        if entry.link.startswith("/") or _DRIVE.match(entry.link):
            raise ArchiveError(f"{where} is a symlink to the absolute path {entry.link!r}; refusing to extract it")
        resolved = os.path.normpath(os.path.join(entry.path.parent.as_posix(), entry.link))
        if resolved == ".." or resolved.startswith("../"):
            raise ArchiveError(f"{where} is a symlink to {entry.link!r}, outside the target; refusing to extract it")


def _extract_into(
    staging: Path, entries: list[_Entry], open_member: Callable[[_Entry], IO[bytes]], max_bytes: int | None, *, label: str, archive: str
) -> None:
    written = 0
    for entry in entries:
        out = staging / entry.path
        if entry.kind == "dir":
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_symlink() or out.is_file():
            out.unlink()  # a repeated name: the later member wins, as with unzip and tar
        if entry.kind == "symlink":
            os.symlink(entry.link, out)
            continue
        try:
            with open_member(entry) as src, open(out, "wb") as dst:
                while chunk := src.read(COPY_CHUNK):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        raise ArchiveError(
                            f"{label}: archive {archive}: member {entry.name!r} pushes the bytes written past the bound of "
                            f"{max_bytes} (more than declared); refusing a possible zip bomb"
                        )
                    dst.write(chunk)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, NotImplementedError) as exc:
            raise ArchiveError(f"{label}: archive {archive}: member {entry.name!r} cannot be read: {exc}") from exc
        os.utime(out, (entry.mtime, entry.mtime))
    root = os.path.realpath(staging)
    for entry in entries:  # links through links resolve only now that all exist
        if entry.kind == "symlink" and os.path.commonpath([root, os.path.realpath(staging / entry.path)]) != root:
            raise ArchiveError(
                f"{label}: archive {archive}: member {entry.name!r} is a symlink that resolves outside the target "
                "through other links; refusing to extract it"
            )


def _move_into_place(staging: Path, target: Path, entries: list[_Entry], *, label: str, archive: str) -> list[str]:
    root = os.path.realpath(target)
    placed: dict[str, None] = {}
    for entry in entries:
        final = target / entry.path
        if entry.kind == "dir":
            final.mkdir(parents=True, exist_ok=True)
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        if os.path.commonpath([root, os.path.realpath(final.parent)]) != root:
            raise ArchiveError(f"{label}: archive {archive}: member {entry.name!r} would land outside {target} through an existing link")
        staged = staging / entry.path
        if not staged.is_symlink() and not staged.exists():
            continue  # a repeated name already moved
        try:
            os.replace(staged, final)
        except OSError as exc:
            raise ArchiveError(f"{label}: archive {archive}: member {entry.name!r} cannot replace {final}: {exc}") from exc
        placed[entry.path.as_posix()] = None
    return list(placed)


def _remove_stale_staging(target: Path, archive_name: str) -> None:
    """Staging folders of an earlier extraction of the same archive that was killed."""
    for leftover in target.glob(f".extract-{archive_name}.*.partial"):
        shutil.rmtree(leftover, ignore_errors=True)
