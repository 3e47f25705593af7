"""Where a source's files go and what its writer draws with: the mirror's folder (:class:`Out`), the
URL-to-path map (:func:`mirror_path`) and the per-source context (:class:`Ctx`) every family's writer takes."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import numpy as np

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.demo.formats import Blob, TarGz, Zip
from cytoimagenet_assets.rehearsal.mirror.pool import Pool
from cytoimagenet_assets.rehearsal.mirror.population import quotas

MANUAL = "manual"  # <root>/manual/<dir_name>: what a user puts in raw/<dir_name> by hand


def mirror_path(root: Path, url: str) -> Path:
    """Where the file of ``url`` lies in a mirror folder: ``<root>/<host>/<path>``, segments unquoted."""
    parts = urlsplit(url)
    return Path(root) / parts.netloc / unquote(parts.path).lstrip("/")


class Out:
    """Writes files under the mirror root and remembers them (the report counts them)."""

    def __init__(self, root: Path):
        self.root = root
        self.written: set[Path] = set()

    def _target(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.add(path)
        return path

    def file(self, path: Path, data: bytes) -> None:
        self._target(path).write_bytes(data)

    @contextmanager
    def zip(self, path: Path) -> Iterator[Zip]:
        archive = Zip(self._target(path))
        try:
            yield archive
        finally:
            archive.file.close()

    @contextmanager
    def targz(self, path: Path) -> Iterator[TarGz]:
        archive = TarGz(self._target(path))
        try:
            yield archive
        finally:
            archive.close()


@dataclass
class Ctx:
    """What a family's writer gets for one source: the rows to write, draws seeded for this source
    alone (so one source's writer does not shift another's), the mirror's folder and the image pool."""

    source: Source
    n: int  # rows the source's parser should yield
    scale: float
    seed: int
    rng: np.random.Generator
    out: Out
    pool: Pool

    @property
    def dir_name(self) -> str:
        return self.source.dir_name

    def at(self, url: str) -> Path:
        return mirror_path(self.out.root, url)

    def url(self, name: str) -> str:
        """The catalog's URL ending in ``name``; else ``name`` beside the catalog's first file (the
        server holds more files than the catalog lists: all 55 of BBBC021's plates, say)."""
        files = [f.url for f in self.source.download.files]
        return next((u for u in files if u.endswith("/" + name)), files[0].rsplit("/", 1)[0] + "/" + name)

    def image(self, kind: str, key: str, i: int) -> Blob:
        return self.pool.get(kind, f"{self.dir_name}/{key}", i)

    def count(self, real: int) -> int:
        """A count of things (plates, genes) at this scale, at least 1."""
        return max(1, round(real * self.scale))

    def pick(self, total: int, k: int) -> np.ndarray:
        """``k`` of ``range(total)`` (all when k >= total), sorted."""
        return np.arange(total) if k >= total else np.sort(self.rng.choice(total, k, replace=False))

    def spread(self, groups: int, per_group: int, k: int) -> list[tuple[int, int]]:
        """``k`` (group, item) pairs, as evenly over the groups as they go, the first groups first
        (the catalog lists the first plates of some sources)."""
        counts = quotas(np.ones(groups), min(k, groups * per_group))
        return [(g, int(i)) for g in range(groups) for i in self.pick(per_group, int(counts[g]))]

    def draw(self, weights: np.ndarray, k: int | None = None) -> np.ndarray:
        """``k`` value indices (default ``n``) in exact proportion to ``weights``, shuffled."""
        k = self.n if k is None else k
        return self.rng.permutation(np.repeat(np.arange(len(weights)), quotas(weights, k)))

    def uuid(self) -> str:
        return str(uuid.UUID(bytes=self.rng.bytes(16))).upper()
