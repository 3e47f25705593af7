"""Fingerprints that tell whether a source changed: of its raw folder on disk, and of its download
URLs on the server (ETag, Last-Modified, size from HEAD requests)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cytoimagenet_assets.download.http import head


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


def remote_fingerprint(urls: list[str], label: str) -> dict[str, str]:
    """Per URL, "etag|last-modified|size" from a HEAD request; a failure is a DownloadError naming the URL."""
    found = {}
    for url in urls:
        info = head(url, label=label)
        found[url] = "|".join("" if v is None else str(v) for v in (info.etag, info.last_modified, info.size))
    return found
