"""The files the real servers hold for every source of a catalog, written at a scale factor, so a
rehearsal can run the production download and parsers offline against a loopback server.

Layout: the file production fetches from ``https://<host>/<path>`` lies at ``<root>/<host>/<path>``
(:func:`mirror_path`); sources fetched by hand (download method ``manual``) get
``<root>/manual/<dir_name>/``, what a user unzips into ``raw/<dir_name>``. Each source is written in
its real distribution format as far as this repo's parsers and downloaders read it: the archive and
member names, metadata files with their real columns (CSV, gzipped or zipped CSV, Excel 97 and 2007,
JSON, TSV, LST), IDR annotations beside the study trees on EBI's mirror, Kaggle's zips at the API
path. Where SOURCES.md leaves a layout unconfirmed, the writer follows the catalog's documented
guess and says so.

Scale 1.0 writes about the real metadata rows (:data:`REAL_ROWS`: 2.5 million for pretraining, the
original's 2.7 million counting IDR screens per image where these parsers give a row per well); each source gets
``max(MIN_ROWS, round(real * scale))``. Label columns keep the real number of distinct values with
skewed frequencies, shaped (:func:`frequencies`) so that the class table at scale s, with the
catalog's threshold and target scaled by s, lands near the original's 894 classes. Images are
small (``image_px``) but in each source's real encoding; a pool of a few pre-encoded variants per
(source, channel) is reused, so writing is fast and zips deflate them. Everything is deterministic
for a seed: fixed archive timestamps, a fixed order, seeded draws.

The writers are split by source family as sources/ is (:mod:`.broad`, :mod:`.cil`, :mod:`.idr`,
:mod:`.kaggle`, :mod:`.recursion`, :mod:`.evaluation`), over the shared row counts and label
frequencies (:mod:`.population`), image pool (:mod:`.pool`) and per-source context (:mod:`.context`);
file layouts shared with the demo come from :mod:`cytoimagenet_assets.demo.generators`, file bytes
from :mod:`cytoimagenet_assets.demo.formats`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.demo.cells import keyed_rng
from cytoimagenet_assets.rehearsal.mirror import broad, cil, evaluation, idr, kaggle, recursion
from cytoimagenet_assets.rehearsal.mirror.context import MANUAL, Ctx, Out, mirror_path
from cytoimagenet_assets.rehearsal.mirror.pool import Pool
from cytoimagenet_assets.rehearsal.mirror.population import MIN_ROWS, REAL_ROWS, THRESHOLD, frequencies, quotas

__all__ = ["MANUAL", "THRESHOLD", "MirrorReport", "frequencies", "mirror_path", "quotas", "write_mirror"]

# dir_name -> the writer of that source's files, returning the metadata rows its parser should yield.
WRITERS: dict[str, Callable[[Ctx], int]] = {
    **broad.WRITERS,
    **cil.WRITERS,
    **idr.WRITERS,
    **kaggle.WRITERS,
    **recursion.WRITERS,
    **evaluation.WRITERS,
}


@dataclass
class MirrorReport:
    """What :func:`write_mirror` wrote."""

    root: Path
    scale: float
    rows: dict[str, int]  # dir_name -> metadata rows written (what the source's parser should yield, approx)
    files: int  # files written under root
    bytes: int  # their total size
    seconds: float


def write_mirror(
    catalog: Catalog,
    root: Path,
    *,
    scale: float,
    seed: int = 0,
    image_px: int = 160,
    progress: Callable[[str], None] | None = None,
    images: bool = True,
) -> MirrorReport:
    """Write every source of ``catalog`` (pretraining and evaluation) under ``root`` at ``scale``
    (0 < scale <= 1). ``images=False`` writes image files empty, names only: enough for the
    parsers, for calibrating labels quickly."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if Path(root).is_dir() and any(Path(root).iterdir()):
        raise ValueError(f"{root} is not empty: a mirror is written into an empty folder, so no stale file is served")
    unknown = [s.dir_name for s in catalog.sources if s.dir_name not in WRITERS]
    if unknown:
        raise ValueError(f"no mirror writer for source(s) {', '.join(unknown)}")
    started = time.perf_counter()
    out = Out(Path(root))
    pool = Pool(seed, image_px, images)
    rows = {}
    for source in catalog.sources:
        rng = keyed_rng(seed, "mirror", source.dir_name)
        n = max(MIN_ROWS, round(REAL_ROWS[source.dir_name] * scale))
        ctx = Ctx(source, n, scale, seed, rng, out, pool)
        rows[source.dir_name] = WRITERS[source.dir_name](ctx)
        if progress:
            progress(f"{source.dir_name}: {rows[source.dir_name]:,} rows")
    return MirrorReport(
        Path(root), scale, rows, len(out.written), sum(p.stat().st_size for p in out.written), time.perf_counter() - started
    )
