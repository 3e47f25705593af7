"""Fingerprints that tell whether a source changed: of its raw folder on disk, and of its download
URLs on the server (ETag, Last-Modified, size from HEAD requests)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cytoimagenet_assets.download.http import DownloadError, head, session_scope
from cytoimagenet_assets.download.mirrors import Mirrors
from cytoimagenet_assets.download.plan import filled_by_hand
from cytoimagenet_assets.storage import DataHome, write_text

REMOTE_STATE = "remote_fingerprints.json"


def local_fingerprint(folder: Path) -> str | None:
    """A hash of every file's relative path, size and modification time; None if the folder is absent.
    Hidden entries (download records, the remote index, staging) are bookkeeping, not the source."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    h = hashlib.sha1()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(root) / name
            try:
                stat = path.stat()
            except FileNotFoundError:  # vanished while we walked (an extraction in progress)
                continue
            h.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def remote_fingerprint(urls: list[str], label: str, mirrors: Mirrors | None = None) -> dict[str, str]:
    """Per URL, "etag|last-modified|size" from a HEAD request (to its mirror, if any); a failure is a
    DownloadError naming the URL."""
    found = {}
    with session_scope(None, mirrors) as session:
        for url in urls:
            info = head(url, label=label, session=session)
            found[url] = "|".join("" if v is None else str(v) for v in (info.etag, info.last_modified, info.size))
    return found


def hand_filled_fingerprints(home: DataHome, sources) -> dict[str, str | None]:
    """The fingerprints of the raw folders filled by hand among ``sources``. Folders this package
    downloads into change whenever a class fetches its images; their sources change on the server,
    which :func:`check_remote_sources` watches."""
    return {s.dir_name: local_fingerprint(home.raw_dir(s.dir_name)) for s in sources if filled_by_hand(home.raw_dir(s.dir_name))}


def changed_folders(seen: dict, current: dict) -> list[str]:
    return sorted(d for d, fp in current.items() if fp is not None and seen.get(d) != fp)


def check_remote_sources(home: DataHome, sources, mirrors: Mirrors | None = None) -> tuple[list[str], list[str]]:
    """(sources whose files changed on their server since the last check, errors of unreachable ones);
    the fingerprints are kept in ``state/remote_fingerprints.json`` between checks (first seen: not changed).
    Files a table names (``values_from``) are checked through that table."""
    state = home.state_path(REMOTE_STATE)
    seen = json.loads(state.read_text()) if state.exists() else {}
    current, errors = dict(seen), []
    for source in sources:
        try:
            urls = [f.url for f in source.download.files if not f.values_from]
            current[source.dir_name] = remote_fingerprint(urls, source.dir_name, mirrors)
        except DownloadError as exc:
            errors.append(f"{source.dir_name}: {exc}")
    write_text(state, json.dumps(current, indent=1, sort_keys=True))
    return sorted(d for d in current if d in seen and current[d] != seen[d]), errors
