"""What to fetch for a source: its metadata first, then only the image files the class table needs.

The 40 sources hold tens of terabytes while the curated dataset is ~56 GB, so by default
:func:`fetch_source` downloads each source's metadata files whole and *indexes* its image zips
remotely (their central directories, read through HTTP Range requests) into
``raw/<dir_name>/.remote/files.parquet``; parsers list those files as if they were on disk. The
per-class image step then calls :func:`fetch_missing` for the files its rows name: members of the
indexed zips by Range (the whole archive when the server ignores Range), single files from the IDR
mirror. ``full=True`` downloads everything instead.

Everything lands under ``raw/<dir_name>`` in the source's own layout (archives are extracted at
its root, as a user would), so later runs find the files on disk. A raw folder that holds files
but no download record was filled by hand; it is used as is, without network.
"""

from __future__ import annotations

import fcntl
import fnmatch
import re
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pandas as pd
import requests

from cytoimagenet_assets.catalog import URL_PLACEHOLDER, RemoteFile, Source
from cytoimagenet_assets.demo import generate
from cytoimagenet_assets.download.archives import ArchiveError, safe_extract
from cytoimagenet_assets.download.http import DownloadError, FetchResult, Progress, VerificationFailed, fetch_file, session_scope, url_name
from cytoimagenet_assets.download.idr import IDR_MIRROR, fetch_idr_file, idr_file_url, list_idr_folder, study_location
from cytoimagenet_assets.download.kaggle import fetch_kaggle_competition, fetch_kaggle_dataset
from cytoimagenet_assets.download.mirrors import Mirrors, mirrors_from_env
from cytoimagenet_assets.download.remote_zip import RangesNotSupported, ZipMember, fetch_member, fetch_members, list_members
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.markdown import bullets
from cytoimagenet_assets.sources.common import read_table, source_files
from cytoimagenet_assets.sources.table import ParseError
from cytoimagenet_assets.storage import archives_dir, contained, fetched_mark, locks_dir, remote_index_path, write_parquet, write_text

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")
TABLE_MARKERS = (".csv.", ".tsv.", ".txt.")  # a compressed table (x.csv.zip) is read as is, not extracted
EXTRACT_RATIO = 100  # an archive may expand to at most this many times its size (zip bombs)
LOCK_STRIPES = 64
GONE = (404, 410)  # a file the server says it does not have: that image is dropped, the class goes on
RANGE_METHODS = (0, 8)  # stored, deflate
ENCRYPTED = 0x1
VALUE = r"[\w.-]+"  # what a {Column} of a catalog URL may be filled with: part of a URL and of a file name
INDEX_COLUMNS = ("path", "url", "member", "header_offset", "compressed_size", "file_size", "compress_type", "crc32", "flags")


@dataclass
class Fetching:
    """How to reach the network: one HTTP session, where progress and notes go, Kaggle credentials
    (never logged), and the mirrors (overridable so tests can serve them from 127.0.0.1)."""

    session: requests.Session | None = None
    progress: Callable[[Progress], None] | None = None
    log: Callable[[str], None] = print
    kaggle_username: str | None = field(default=None, repr=False)
    kaggle_key: str | None = field(default=None, repr=False)
    kaggle_api: str | None = None
    idr_mirror: str = IDR_MIRROR
    mirrors: Mirrors = field(default_factory=mirrors_from_env)  # URL prefixes redirected to other servers


@dataclass
class FetchReport:
    """What one fetch did: bytes over the network, files fetched or found, files only indexed."""

    source: str
    bytes_downloaded: int = 0
    files_fetched: int = 0
    files_reused: int = 0
    files_extracted: int = 0
    files_indexed: int = 0
    transports: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # wanted, but no remote holds them
    seconds: float = 0.0

    def add(self, result: FetchResult) -> None:
        self.bytes_downloaded += result.bytes_downloaded
        if result.reused:
            self.files_reused += 1
        else:
            self.files_fetched += 1
            self.transports[result.transport] += 1
        self.notes.extend(result.notes)

    def report(self) -> dict:
        return {
            "bytes_downloaded": self.bytes_downloaded,
            "files_fetched": self.files_fetched,
            "files_reused": self.files_reused,
            "files_extracted": self.files_extracted,
            "files_indexed_remotely": self.files_indexed,
            "transports": ", ".join(f"{k} {v}" for k, v in sorted(self.transports.items())) or "none",
            "notes": bullets(self.notes),
        }


def is_archive(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(ARCHIVE_SUFFIXES) and not any(marker in lower for marker in TABLE_MARKERS)


def filled_by_hand(raw_dir: Path) -> bool:
    """Files in the raw folder, yet no mark that this package ever fetched into it."""
    if not raw_dir.is_dir():
        return False
    return any(not p.name.startswith(".") for p in raw_dir.iterdir()) and not fetched_mark(raw_dir).exists()


def mirror_unlisted(source: Source, raw_dir: Path) -> bool:
    """An IDR study whose mirror folders have not been listed yet: every file of it lies at its path there."""
    return source.download.method == "idr" and not filled_by_hand(raw_dir) and not remote_index_path(raw_dir).is_file()


def obtainable_files(source: Source, raw_dir: Path) -> set[str] | None:
    """The files (relative to ``raw_dir``) the image step can read or fetch for ``source``: those on
    disk and those in its remote index; None when any path can be fetched (:func:`mirror_unlisted`)."""
    return None if mirror_unlisted(source, raw_dir) else set(source_files(raw_dir))


class SourceUnavailable(StepFailed, RuntimeError):
    """A source that could not be brought into its raw folder; the message says how to provide it by hand."""


def obtain_source(source: Source, raw_dir: Path, seed: int, full: bool, fetching: Fetching) -> dict:
    """Fill ``raw_dir`` with ``source``: the demo generator's files, or a download (metadata first unless
    ``full`` or an evaluation set). Returns the folder's files and bytes, and what the download did."""
    if source.download.method == "demo":
        generate(source, raw_dir, seed)
        fetching.log(f"wrote demo source {source.dir_name} to {raw_dir}")
        return folder_report(raw_dir)
    full = full or source.evaluation_only  # read whole by its protocol: no class step would fetch its images later
    try:
        report = fetch_source(source, raw_dir, full=full, fetching=fetching)
    except (DownloadError, ArchiveError, ValueError) as exc:
        how = f"To provide {source.dir_name} by hand instead: {source.download.instructions()}, into {raw_dir}."
        raise SourceUnavailable(f"{exc}\n\n{how}") from exc
    for note in report.notes:
        fetching.log(f"{source.dir_name}: {note}")
    return {**folder_report(raw_dir), **report.report(), "download_mode": "full" if full else "metadata first"}


def folder_report(folder: Path) -> dict:
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    return {"path": Path(folder), "files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def fetch_source(source: Source, raw_dir: Path, *, full: bool = False, fetching: Fetching | None = None) -> FetchReport:
    """Bring ``source`` into ``raw_dir``: its metadata and an index of its images, or (``full``) everything."""
    fetching = fetching or Fetching()
    report = FetchReport(source.dir_name)
    raw_dir = Path(raw_dir)
    if filled_by_hand(raw_dir):
        report.notes.append(f"{raw_dir} was filled by hand; used as is, nothing downloaded")
        return report
    spec = source.download
    if spec.method == "manual":
        raise DownloadError(f"{source.dir_name}: cannot be downloaded automatically; {spec.instructions()}, into {raw_dir}")
    mark = fetched_mark(raw_dir)
    first_fetch = not mark.exists()
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.touch()
    try:
        _fetch_source(source, raw_dir, full, fetching, report)
    except BaseException:
        if first_fetch and not report.files_fetched and not report.files_indexed and not remote_index_path(raw_dir).exists():
            mark.unlink()  # nothing of ours landed: files put here by hand after this failure must count as such
        raise
    return report


def _fetch_source(source: Source, raw_dir: Path, full: bool, fetching: Fetching, report: FetchReport) -> None:
    spec = source.download
    with session_scope(fetching.session, fetching.mirrors) as session:
        fetching = replace(fetching, session=session)
        if spec.method in ("https", "idr"):
            index = []
            listed = sorted(spec.files, key=lambda f: f.role != "metadata")  # metadata first: the cheap part, and it names the rest
            for listed_file in listed:
                for remote in expanded(source, listed_file, raw_dir):
                    try:
                        index.extend(_obtain_file(source, remote, raw_dir, full, fetching, report))
                    except DownloadError as exc:
                        if not listed_file.values_from or exc.status not in GONE:
                            raise
                        report.notes.append(f"{url_name(remote.url)}, named by {listed_file.values_from}, is not on the server: {exc}")
            if spec.method == "idr":
                if full:
                    _mirror_study(source, raw_dir, fetching, report)
                else:
                    index.extend(_index_study(source, raw_dir, fetching))
            _write_index(raw_dir, index)
            report.files_indexed = len(index)
        elif spec.method in ("kaggle_dataset", "kaggle_competition"):
            _download_kaggle(source, raw_dir, fetching, report)
        else:
            raise DownloadError(f"{source.dir_name}: download method {spec.method!r} is not fetched over the network")


def expanded(source: Source, remote: RemoteFile, raw_dir: Path) -> list[RemoteFile]:
    """The files a listed file stands for: itself, or one per distinct value of its ``{Column}``
    placeholders in its ``values_from`` table, which the metadata-first download brought already."""
    if not remote.values_from:
        return [remote]
    table = contained(raw_dir, remote.values_from)
    if not table.is_file():
        raise DownloadError(
            f"{source.dir_name}: {remote.url} is filled from {remote.values_from}, which is not in {raw_dir} (list it as metadata)"
        )
    columns = list(dict.fromkeys(remote.placeholders))
    try:
        values = read_table(source, table, required=columns)[columns].fillna("")
    except ParseError as exc:
        raise DownloadError(f"{source.dir_name}: {remote.values_from} cannot fill {remote.url}: {exc}") from None
    for column in columns:  # a value becomes part of a URL and of a file name
        bad = ~values[column].str.fullmatch(VALUE) | values[column].isin([".", ".."])
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise DownloadError(
                f"{source.dir_name}: {remote.values_from} data row {row + 1}: {column} {values[column].iloc[row]!r} "
                f"cannot be part of {remote.url}"
            )

    def filled(record: dict) -> str:
        return URL_PLACEHOLDER.sub(lambda m: record[m.group(1)], remote.url)

    urls = sorted({filled(record) for record in values.drop_duplicates().to_dict("records")})
    return [remote.model_copy(update={"url": url, "values_from": ""}) for url in urls]


def _listed_file(source: Source, url: str) -> RemoteFile | None:
    """The catalog's entry for ``url``: the file itself, or the ``{Column}`` URL it was filled from."""
    for f in source.download.files:
        if f.url == url or (f.values_from and re.fullmatch(VALUE.join(map(re.escape, URL_PLACEHOLDER.split(f.url)[::2])), url)):
            return f
    return None


def _obtain_file(source: Source, remote: RemoteFile, raw_dir: Path, full: bool, fetching: Fetching, report: FetchReport) -> list[dict]:
    """One listed file: downloaded whole (tables, archives that are not zips, everything when
    ``full``), or an image zip indexed by range; its index rows."""
    if full or not remote.indexed_remotely:
        if remote.role == "images" and not full:
            report.notes.append(f"{url_name(remote.url)} is not a zip, so it cannot be read by range: downloaded whole")
        _download(source, remote, raw_dir, fetching, report)
        return []
    return _index_zip(source, remote, raw_dir, fetching, report)


def fetch_missing(source: Source, raw_dir: Path, paths: Iterable[str], *, fetching: Fetching | None = None) -> FetchReport:
    """Fetch the files among ``paths`` (relative to ``raw_dir``) that are not on disk yet.

    Files that no remote holds (not in the index of a source whose images come as archives, or any
    file of a folder filled by hand) are listed in ``unavailable``: the image step then drops those
    images with their reason instead of failing the whole class.
    """
    fetching = fetching or Fetching()
    report = FetchReport(source.dir_name)
    raw_dir = Path(raw_dir)
    missing = sorted({p for p in paths if not (raw_dir / p).is_file()})
    if not missing:
        return report
    if filled_by_hand(raw_dir):
        report.unavailable = missing
        report.notes.append(f"{len(missing)} file(s) missing from {raw_dir}, which was filled by hand; nothing downloaded")
        return report
    indexed = _read_index(raw_dir, missing)
    rest = sorted(set(missing) - set(indexed["path"]))
    on_mirror = list(indexed.loc[indexed["member"].isna(), "path"])
    if mirror_unlisted(source, raw_dir):
        on_mirror += rest
        rest = []
    if rest:
        report.unavailable += rest
        shown = ", ".join(rest[:5]) + (f" and {len(rest) - 5} more" if len(rest) > 5 else "")
        report.notes.append(
            f"{len(rest)} file(s) are neither under {raw_dir} nor in its remote index ({shown}); materialize "
            f"raw/{source.dir_name} again, or provide them by hand: {source.download.instructions()}"
        )
    with session_scope(fetching.session, fetching.mirrors) as session:
        fetching = replace(fetching, session=session)
        in_zips = indexed[indexed["member"].notna()]
        for url, members in in_zips.groupby("url", sort=True):
            _fetch_indexed(source, url, members, raw_dir, fetching, report)
        for path in on_mirror:
            try:
                _fetch_study_file(source, raw_dir, path, fetching, report)
            except DownloadError as exc:
                if exc.status not in GONE and not isinstance(exc, VerificationFailed):
                    raise
                report.unavailable.append(path)
                report.notes.append(str(exc))
    return report


def _fetch_verified(url: str, member: ZipMember, dest: Path, label: str, session: requests.Session) -> int:
    """A zip member by Range, read again once if it fails its CRC (bytes damaged on the way); bytes transferred."""
    try:
        return fetch_member(url, member, dest, label=label, session=session)
    except VerificationFailed:
        return fetch_member(url, member, dest, label=label, session=session)


def _download(source: Source, remote: RemoteFile, raw_dir: Path, fetching: Fetching, report: FetchReport) -> None:
    """One listed file, whole: a table lands at the top of the raw folder, an archive is kept under
    .archives/ and extracted into the raw folder."""
    name = url_name(remote.url)
    archive = is_archive(name)
    dest = archives_dir(raw_dir) / name if archive else contained(raw_dir, name)
    result = fetch_file(
        remote.url, dest, label=source.dir_name, size=remote.size, md5=remote.md5, session=fetching.session, progress=fetching.progress
    )
    report.add(result)
    if archive:
        _extract(source, dest, contained(raw_dir, remote.extract_to) if remote.extract_to else raw_dir, report)


def _extract(source: Source, archive: Path, into: Path, report: FetchReport) -> None:
    done = archive.parent / f".{archive.name}.extracted"
    stamp = f"{archive.stat().st_size}:{archive.stat().st_mtime_ns}"
    if done.is_file() and done.read_text() == stamp:
        return  # this exact archive was extracted before
    extracted = safe_extract(archive, into, label=source.dir_name, max_bytes=EXTRACT_RATIO * max(archive.stat().st_size, 1 << 20))
    report.files_extracted += len(extracted)
    write_text(done, stamp)


def _index_zip(source: Source, remote: RemoteFile, raw_dir: Path, fetching: Fetching, report: FetchReport) -> list[dict]:
    """The members of a remote image zip, read through Range requests; the whole archive is
    downloaded and extracted instead when the server ignores Range."""
    try:
        members = list_members(remote.url, label=source.dir_name, session=fetching.session)
    except RangesNotSupported:
        report.notes.append(f"{url_name(remote.url)}: the server ignores Range requests, so the whole archive was downloaded")
        _download(source, remote, raw_dir, fetching, report)
        return []
    fetching.log(f"{source.dir_name}: indexed {len(members)} members of {url_name(remote.url)} without downloading it")
    rows = []
    for m in members:
        if m.is_dir:
            continue
        path = f"{remote.extract_to}/{m.name}" if remote.extract_to else m.name
        dest = contained(raw_dir, path)  # refuse an index entry that would later write outside the raw folder
        wanted_now = any(fnmatch.fnmatchcase(m.name, pattern) for pattern in remote.metadata_members)
        if wanted_now and not (dest.is_file() and dest.stat().st_size == m.file_size):
            with _locked(raw_dir, dest):
                report.bytes_downloaded += fetch_member(remote.url, m, dest, label=source.dir_name, session=fetching.session)
            report.files_fetched += 1
            report.transports["range"] += 1
        rows.append(
            {
                "path": path,
                "url": remote.url,
                "member": m.name,
                "header_offset": m.header_offset,
                "compressed_size": m.compressed_size,
                "file_size": m.file_size,
                "compress_type": m.compress_type,
                "crc32": m.crc32,
                "flags": m.flags,
            }
        )
    return rows


def _write_index(raw_dir: Path, rows: list[dict]) -> None:
    path = remote_index_path(raw_dir)
    if rows:
        write_parquet(pd.DataFrame(rows, columns=list(INDEX_COLUMNS)), path)
    elif path.exists():
        path.unlink()  # everything is on disk now


def _read_index(raw_dir: Path, paths: list[str]) -> pd.DataFrame:
    """The index rows of ``paths`` only: a class needs a few of a source's hundreds of thousands."""
    index = remote_index_path(raw_dir)
    if not index.is_file():
        return pd.DataFrame(columns=list(INDEX_COLUMNS))
    return pd.read_parquet(index, filters=[("path", "in", paths)])


def _fetch_indexed(source: Source, url: str, members: pd.DataFrame, raw_dir: Path, fetching: Fetching, report: FetchReport) -> None:
    """Indexed members of one zip: each by one Range request, or through the whole archive when the
    server stopped honouring Range or a member is compressed in a way a range read cannot undo."""
    readable = members["compress_type"].isin(RANGE_METHODS).all() and not (members["flags"] & ENCRYPTED).any()
    if readable:
        try:
            for row in members.itertuples(index=False):
                member = ZipMember(
                    row.member,
                    int(row.header_offset),
                    int(row.compressed_size),
                    int(row.file_size),
                    int(row.compress_type),
                    int(row.crc32),
                    int(row.flags),
                )
                dest = contained(raw_dir, row.path)
                with _locked(raw_dir, dest):
                    if dest.is_file():
                        continue  # another class's run fetched it meanwhile
                    try:
                        report.bytes_downloaded += _fetch_verified(url, member, dest, source.dir_name, fetching.session)
                    except VerificationFailed as exc:  # that file is bad: it is dropped with its reason, the others go on
                        report.unavailable.append(row.path)
                        report.notes.append(str(exc))
                        continue
                report.files_fetched += 1
                report.transports["range"] += 1
            return
        except RangesNotSupported:
            report.notes.append(f"{url_name(url)}: the server no longer honours Range requests; fetched through the whole archive")
    else:
        report.notes.append(f"{url_name(url)}: members compressed in a way a range read cannot undo; fetched through the whole archive")
    remote = _listed_file(source, url)
    with _locked(raw_dir, archives_dir(raw_dir) / url_name(url)):  # one download and extraction of an archive at a time
        still_missing = [m for m, p in zip(members["member"], members["path"]) if not (raw_dir / p).is_file()]
        if not still_missing:
            return  # another class's run brought them meanwhile
        result = fetch_members(
            url,
            still_missing,
            contained(raw_dir, remote.extract_to) if remote and remote.extract_to else raw_dir,
            label=source.dir_name,
            archive_cache_dir=archives_dir(raw_dir),
            size=remote.size if remote else None,
            md5=remote.md5 if remote else None,
            session=fetching.session,
            progress=fetching.progress,
        )
    report.bytes_downloaded += result.bytes_transferred
    report.files_fetched += len(result.paths) - result.already_present
    report.transports[result.method] += 1


def _download_kaggle(source: Source, raw_dir: Path, fetching: Fetching, report: FetchReport) -> None:
    spec = source.download
    if not (fetching.kaggle_username and fetching.kaggle_key):
        raise DownloadError(
            f"{source.dir_name}: Kaggle credentials are not set: export KAGGLE_USERNAME and KAGGLE_KEY "
            f"(an API token from https://www.kaggle.com/settings), or {spec.instructions()} into {raw_dir}"
        )
    fetch = fetch_kaggle_dataset if spec.method == "kaggle_dataset" else fetch_kaggle_competition
    dest = archives_dir(raw_dir) / f"{spec.slug.replace('/', '-')}.zip"
    options = {"api": fetching.kaggle_api} if fetching.kaggle_api else {}
    report.add(
        fetch(
            spec.slug,
            dest,
            label=source.dir_name,
            username=fetching.kaggle_username,
            key=fetching.kaggle_key,
            session=fetching.session,
            progress=fetching.progress,
            **options,
        )
    )
    _extract(source, dest, raw_dir, report)


def _study_files(source: Source, fetching: Fetching) -> Iterator[str]:
    """Every file of an IDR study and of its other studies' ``filesets``, as paths in its raw folder
    (:func:`study_location`), by walking the mirror's folder listings."""
    spec = source.download
    pending = ["", *spec.filesets]
    while pending:
        folder = pending.pop()
        url = idr_file_url(*study_location(spec.accession, spec.filesets, folder + "/" if folder else ""), fetching.idr_mirror)
        for entry in list_idr_folder(url, label=source.dir_name, session=fetching.session):
            path = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_dir:
                pending.append(path)
            else:
                yield path


def _index_study(source: Source, raw_dir: Path, fetching: Fetching) -> list[dict]:
    """The files of an IDR study as index rows (no member: each is one file on the mirror)."""
    spec = source.download
    rows = []
    for path in _study_files(source, fetching):
        contained(raw_dir, path)
        rows.append({"path": path, "url": idr_file_url(*study_location(spec.accession, spec.filesets, path), fetching.idr_mirror)})
    studies = spec.accession + (f" and {len(spec.filesets)} folder(s) of other studies" if spec.filesets else "")
    fetching.log(f"{source.dir_name}: indexed {len(rows)} files of {studies} on the IDR mirror")
    return rows


def _mirror_study(source: Source, raw_dir: Path, fetching: Fetching, report: FetchReport) -> None:
    """Every file of an IDR study from its mirror (``full`` mode)."""
    for path in _study_files(source, fetching):
        _fetch_study_file(source, raw_dir, path, fetching, report)


def _fetch_study_file(source: Source, raw_dir: Path, path: str, fetching: Fetching, report: FetchReport) -> None:
    """One file of an IDR study from its mirror into the raw folder, locked against other classes fetching it."""
    dest = contained(raw_dir, path)
    with _locked(raw_dir, dest):
        report.add(
            fetch_idr_file(
                *study_location(source.download.accession, source.download.filesets, path),
                dest,
                label=source.dir_name,
                mirror=fetching.idr_mirror,
                session=fetching.session,
                progress=fetching.progress,
            )
        )


@contextmanager
def _locked(raw_dir: Path, dest: Path) -> Iterator[None]:
    """One fetch of a file at a time across processes: classes built in parallel may share a file.
    Files share LOCK_STRIPES lock files by hash, so locking never litters the image folders."""
    stripe = zlib.crc32(str(dest).encode()) % LOCK_STRIPES
    lock = locks_dir(raw_dir) / f"{stripe:02d}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
