"""Fingerprints that tell whether a source changed: of its raw folder on disk, and of its download
URLs on the server (ETag, Last-Modified, Content-Length from HEAD requests)."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path


def local_fingerprint(folder: Path) -> str | None:
    """A hash of every file's relative path, size and modification time; None if the folder is absent."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    h = hashlib.sha1()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            try:
                stat = path.stat()
            except FileNotFoundError:  # vanished while we walked (an extraction in progress)
                continue
            h.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def remote_fingerprint(urls: list[str], timeout: float = 30.0) -> dict[str, str]:
    """Per URL, "etag|last-modified|size" from a HEAD request; a failure is an error naming the URL."""
    found = {}
    for url in urls:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "cytoimagenet-assets"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                headers = response.headers
                found[url] = "|".join(headers.get(k, "") for k in ("ETag", "Last-Modified", "Content-Length"))
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ConnectionError(f"HEAD {url} failed: {exc}") from exc
    return found
