"""Files of IDR studies from EBI's public mirror: HTTPS by default, Aspera when it is set up.

EBI serves every IDR study under ``https://ftp.ebi.ac.uk/pub/databases/IDR/<accession>/`` (the
currently recommended route) and, for the legacy route CytoImageNet used, over Aspera at
``fasp.ebi.ac.uk:33001`` with the study's short id (``idr0016``) as a passwordless user and Aspera's
public web key. Aspera is used only when ``ascp`` is on PATH and that key is found (``ASPERA_KEY``
or the key bundled beside ``ascp``); a failed Aspera transfer falls back to HTTPS unless Aspera was
asked for explicitly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Callable, NamedTuple
from urllib.parse import quote, unquote

import requests

from cytoimagenet_assets.download.http import (
    DownloadError,
    FetchResult,
    Progress,
    complete_record,
    fetch_file,
    file_md5,
    redact,
    send,
    session_scope,
    verified_copy,
    with_retries,
)
from cytoimagenet_assets.storage import records_dir

IDR_MIRROR = "https://ftp.ebi.ac.uk/pub/databases/IDR"
ASPERA_HOST = "fasp.ebi.ac.uk"
ASPERA_PORT = 33001
ASPERA_RATE = "40m"  # the target rate of IDR's documented command (ascp -l40m)
ASPERA_KEY_ENV = "ASPERA_KEY"
ASPERA_KEY_NAME = "asperaweb_id_dsa.openssh"


class FolderEntry(NamedTuple):
    name: str
    is_dir: bool


def idr_file_url(accession: str, relative_path: str, mirror: str = IDR_MIRROR) -> str:
    """The mirror URL of ``relative_path`` inside the study ``accession``, each segment percent-quoted.

    A trailing ``/`` (a folder) is kept; ``..``, absolute paths and an empty accession are refused.
    """
    segments = relative_path.split("/") if relative_path else []
    if not accession or "/" in accession or accession in (".", "..") or relative_path.startswith("/") or ".." in segments:
        raise ValueError(f"not a path inside an IDR study: accession {accession!r}, path {relative_path!r}")
    return "/".join([mirror.rstrip("/"), quote(accession, safe=""), *(quote(s, safe="") for s in segments)])


def study_location(accession: str, filesets: tuple[str, ...], local_path: str) -> tuple[str, str]:
    """(study, path inside it) on the mirror of a file at ``local_path`` in a study's raw folder: the
    study's own files lie at their paths, the files of another study's ``filesets`` (plates filed
    there) under a folder named after that study (``idr0034-kilpinen-hipsci/20170421-original/...``)."""
    first, slash, rest = local_path.partition("/")
    if slash and first != accession and any(f.split("/", 1)[0] == first for f in filesets):
        return first, rest
    return accession, local_path


def list_idr_folder(url: str, *, label: str, session: requests.Session | None = None) -> list[FolderEntry]:
    """The files and folders of a mirror folder, read from its Apache-style HTML index (server order)."""
    url = url if url.endswith("/") else url + "/"

    def attempt() -> str:
        with session_scope(session) as s, send(s, "GET", url, label=label, stream=False) as response:
            return response.text

    parser = _IndexLinks()
    parser.feed(with_retries(attempt, label=label, url=url, retries=3, backoff_s=1.0, sleep=time.sleep, session=session))
    entries: dict[str, FolderEntry] = {}
    for href in parser.hrefs:
        if href.startswith(("?", "/", "#", "../")) or "://" in href:
            continue  # column sorting, the parent folder, absolute links
        name = unquote(href.split("?", 1)[0].rstrip("/"))
        if name and "/" not in name:
            entries.setdefault(name, FolderEntry(name, href.endswith("/")))
    return list(entries.values())


class _IndexLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def aspera_user(accession: str) -> str:
    """The Aspera user of a study: its short id (``idr0016`` for ``idr0016-wawer-bioactivecompoundprofiling``)."""
    return accession.split("-", 1)[0]


def aspera_command(
    accession: str, relative_path: str, dest_dir: Path, *, key: Path, rate: str = ASPERA_RATE, ascp: str = "ascp"
) -> list[str]:
    """The ``ascp`` argv that fetches ``relative_path`` of the study into ``dest_dir`` (resuming a partial file)."""
    if relative_path.startswith("/") or ".." in relative_path.split("/"):
        raise ValueError(f"not a path inside an IDR study: {relative_path!r}")
    return [
        ascp,
        "-T",
        "-Q",
        "-l",
        rate,
        "-P",
        str(ASPERA_PORT),
        "-k",
        "1",
        "-i",
        str(key),
        f"{aspera_user(accession)}@{ASPERA_HOST}:{relative_path}",
        f"{dest_dir}/",
    ]


def aspera_key(ascp: str) -> Path | None:
    """The Aspera public web key: ``$ASPERA_KEY``, else the one Aspera Connect / the CLI ship beside ``ascp``."""
    if os.environ.get(ASPERA_KEY_ENV):
        return Path(os.environ[ASPERA_KEY_ENV])
    bundled = Path(ascp).resolve().parent.parent / "etc" / ASPERA_KEY_NAME
    return bundled if bundled.is_file() else None


def fetch_idr_file(
    accession: str,
    relative_path: str,
    dest: Path,
    *,
    label: str,
    mirror: str = IDR_MIRROR,
    size: int | None = None,
    md5: str | None = None,
    session: requests.Session | None = None,
    progress: Callable[[Progress], None] | None = None,
    use_aspera: bool | None = None,
) -> FetchResult:
    """Fetch one file of an IDR study to ``dest``. ``use_aspera``: None uses Aspera when it is set up
    and falls back to HTTPS if it fails, True insists on it, False never tries it."""
    url = idr_file_url(accession, relative_path, mirror)
    dest = Path(dest)
    ascp = shutil.which("ascp") if use_aspera is not False else None
    key = aspera_key(ascp) if ascp else None
    if use_aspera and key is None:
        raise DownloadError(
            f"{label}: Aspera asked for {url}, but {'no ascp is on PATH' if ascp is None else 'no Aspera key was found'} "
            f"(install the Aspera CLI and set {ASPERA_KEY_ENV} to its {ASPERA_KEY_NAME})"
        )
    with session_scope(session) as s:
        notes: tuple[str, ...] = ()
        if key is not None:
            found = verified_copy(dest, url, label=label, size=size, md5=md5, session=s)
            if found is not None:
                return found
            try:
                return _fetch_with_aspera(ascp, key, accession, relative_path, dest, url, label=label, size=size, md5=md5)
            except DownloadError as exc:
                if use_aspera:
                    raise
                notes = (f"Aspera failed, used HTTPS: {exc}",)
        result = fetch_file(url, dest, label=label, size=size, md5=md5, session=s, progress=progress)
        return replace(result, notes=notes)


def _fetch_with_aspera(
    ascp: str, key: Path, accession: str, relative_path: str, dest: Path, url: str, *, label: str, size: int | None, md5: str | None
) -> FetchResult:
    staging = records_dir(dest.parent) / "aspera"  # kept between calls: ascp resumes what it finds there
    staging.mkdir(parents=True, exist_ok=True)
    command = aspera_command(accession, relative_path, staging, key=key, ascp=ascp)
    remote = f"{aspera_user(accession)}@{ASPERA_HOST}:{relative_path}"
    try:
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise DownloadError(f"{label}: ascp {remote} could not start: {exc}") from None
    if done.returncode != 0:
        raise DownloadError(f"{label}: ascp {remote} exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    staged = staging / PurePosixPath(relative_path).name
    if not staged.is_file():
        raise DownloadError(f"{label}: ascp {remote} finished but wrote no {staged.name} into {staging}")
    got_size = staged.stat().st_size
    digest = file_md5(staged) if md5 is not None else None
    problem = None
    if size is not None and got_size != size:
        problem = f"expected {size} bytes, got {got_size}"
    elif md5 is not None and digest != md5.lower():
        problem = f"expected md5 {md5.lower()}, got {digest}"
    if problem:
        staged.unlink()
        raise DownloadError(f"{label}: {redact(url)} via Aspera failed verification: {problem}")
    os.replace(staged, dest)
    complete_record(dest, url, digest)
    return FetchResult(dest, got_size, got_size, reused=False, resumed_from=0, md5=digest, transport="aspera")
