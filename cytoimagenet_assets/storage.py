"""Where data lives under CYTOIMAGENET_HOME, and how it is written (atomically).

Layout (every path comes from a method of :class:`DataHome`; nothing else assembles one)::

    raw/<dir_name>/...                  as the source distributes it (or as the demo writes it)
    raw/<dir_name>/.remote/files.parquet    files a source holds remotely (metadata-first downloads)
    raw/<dir_name>/.download/           download records, locks, staging and the fetched-by mark (hidden from parsers)
    raw/<dir_name>/.archives/           downloaded archives (verified, not downloaded again, on a rerun)
    tables/<group>/<name>.parquet       source_metadata/<dir_name>, merged_metadata, ...
    dataset/<class_key>/<class_key>-00000001.png, metadata.csv   one folder per class
    dataset/metadata.csv, dataset/README.md                        the published dataset
    release/webdataset/, release/model/ the dataset as WebDataset shards, the model as a bioimage.io package
    shards/<size>px/                    the dataset packed for training at one input size
    models/<run>/, models/latest        training runs; the name of the latest finished one
    embeddings/<name>/features.parquet  features of the catalog's embed targets
    reports/<asset>/                    figures behind an asset's metadata
    state/<name>                        what schedules remember between ticks
    catalog.db                          SQLite catalog (or CYTOIMAGENET_DB_URL)

Every writer stages into a hidden sibling and renames it into place, so a killed run never leaves
a half-written result where readers look; the next writer of the same target removes the killed
one's staging leftovers and replaces the old result whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from cytoimagenet_assets.errors import StepFailed

HOME_ENV = "CYTOIMAGENET_HOME"
DB_URL_ENV = "CYTOIMAGENET_DB_URL"
DEFAULT_HOME = Path("~/cytoimagenet")


def default_home() -> Path:
    """CYTOIMAGENET_HOME, or ~/cytoimagenet when unset."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


# Bookkeeping inside a raw folder, hidden so that parsers listing the folder skip it.
RAW_RECORDS = ".download"
REMOTE_INDEX = Path(".remote") / "files.parquet"
RAW_ARCHIVES = ".archives"
FETCHED_MARK = Path(RAW_RECORDS) / "fetched-by-cytoimagenet"
LATEST_MODEL = "latest"


def archives_dir(raw_dir: Path) -> Path:
    """Downloaded archives of a source, kept so that a rerun verifies them instead of downloading again."""
    return Path(raw_dir) / RAW_ARCHIVES


def fetched_mark(raw_dir: Path) -> Path:
    """Set before the first byte this package fetches into a raw folder: the folder is not filled by hand."""
    return Path(raw_dir) / FETCHED_MARK


def locks_dir(raw_dir: Path) -> Path:
    return records_dir(raw_dir) / "locks"


def remote_index_path(raw_dir: Path) -> Path:
    """Where metadata-first downloading lists the files a source holds remotely (zip members, mirror
    files): one row per file with its ``path`` relative to the raw folder, as it will lie once fetched."""
    return Path(raw_dir) / REMOTE_INDEX


def records_dir(folder: Path) -> Path:
    """Download bookkeeping of the files in ``folder`` (records, locks, staging)."""
    return Path(folder) / RAW_RECORDS


@dataclass(frozen=True)
class DataHome:
    """The paths of one CYTOIMAGENET_HOME: the only map of it."""

    root: Path

    def raw_dir(self, dir_name: str) -> Path:
        return self.root / "raw" / _safe_name(dir_name)

    def table_path(self, *parts: str) -> Path:
        *folders, name = (_safe_name(p) for p in parts)
        return self.root.joinpath("tables", *folders, f"{name}.parquet")

    def source_table(self, dir_name: str) -> Path:
        return self.table_path("source_metadata", dir_name)

    def merged_table(self) -> Path:
        return self.table_path("merged_metadata")

    def candidates_table(self) -> Path:
        return self.table_path("label_candidates")

    def labels_table(self) -> Path:
        return self.table_path("cytoimagenet_labels")

    def classes_table(self) -> Path:
        return self.table_path("cytoimagenet_classes")

    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    def dataset_metadata(self) -> Path:
        """The published dataset's table (one row per image, the release's columns)."""
        return self.dataset_dir() / "metadata.csv"

    def dataset_card(self) -> Path:
        return self.dataset_dir() / "README.md"

    def class_dir(self, class_key: str) -> Path:
        """A class's folder in the dataset; the key comes from a partition, so it is checked."""
        return self.dataset_dir() / _safe_name(class_key)

    def class_metadata(self, class_key: str) -> Path:
        return self.class_dir(class_key) / "metadata.csv"

    def webdataset_dir(self) -> Path:
        """The dataset as WebDataset shards with their index and card (``dataset_shards``)."""
        return self.root / "release" / "webdataset"

    def webdataset_channels_dir(self) -> Path:
        """The dataset with each image's channels kept apart (``dataset_shards`` under ``channels: preserved``)."""
        return self.root / "release" / "webdataset-channels"

    def model_package_dir(self) -> Path:
        """The latest model as a bioimage.io package (``model_package``)."""
        return self.root / "release" / "model"

    def shards_dir(self, input_size: int) -> Path:
        """The dataset packed for training at ``input_size`` px (``training_shards``)."""
        return self.root / "shards" / f"{int(input_size)}px"

    def model_dir(self, run: str) -> Path:
        return self.root / "models" / _safe_name(run)

    def latest_model_pointer(self) -> Path:
        """A text file naming the run of the latest finished model, written atomically after it."""
        return self.root / "models" / LATEST_MODEL

    def latest_model_dir(self) -> Path | None:
        """The folder of the latest finished model, or None before the first one."""
        pointer = self.latest_model_pointer()
        return self.model_dir(pointer.read_text(encoding="utf-8").strip()) if pointer.is_file() else None

    def embeddings_path(self, name: str) -> Path:
        return self.root / "embeddings" / _safe_name(name) / "features.parquet"

    def report_dir(self, name: str) -> Path:
        return self.root / "reports" / _safe_name(name)

    def state_path(self, name: str) -> Path:
        return self.root / "state" / _safe_name(name)

    def resolve(self, path: str | Path) -> Path:
        """A path from the catalog: absolute as it is, relative ones inside the data home."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def db_url(self) -> str:
        return os.environ.get(DB_URL_ENV) or f"sqlite:///{self.root / 'catalog.db'}"

    @property
    def db_url_shown(self) -> str:
        """The SQL catalog's URL safe to show in logs and metadata (password hidden)."""
        return sa.engine.make_url(self.db_url).render_as_string(hide_password=True)


def _safe_name(part: str) -> str:
    """Refuse names that could escape the data home (``..``, separators, empty)."""
    if not part or part in {".", ".."} or "/" in part or "\\" in part or "\x00" in part:
        raise ValueError(f"unsafe path component {part!r}")
    return part


def contained(root: Path, relative: str) -> Path:
    """``root / relative``, refusing any path that would resolve outside ``root`` (absolute paths,
    ``..``, links pointing elsewhere): metadata rows and archive members name files, and a name
    must never make the pipeline read or write outside its data home."""
    root = Path(root).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ValueError(f"{relative!r} points outside {root}")
    return path


@contextmanager
def atomic_path(target: Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a staging path beside ``target``; move it onto ``target`` only if the block succeeds.

    The staging path is in the same folder, so the final rename is atomic on POSIX file systems.
    An existing ``target`` is replaced whole.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_stages(target)
    stage = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial"
    if is_dir:
        stage.mkdir()
    try:
        yield stage
        if is_dir:
            old = None
            if target.exists():
                old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
                target.rename(old)
            try:
                stage.rename(target)
            except BaseException:
                if old is not None:
                    old.rename(target)  # put the previous result back
                raise
            if old is not None:
                shutil.rmtree(old)
        else:
            os.replace(stage, target)
    except BaseException:
        if stage.is_dir():
            shutil.rmtree(stage, ignore_errors=True)
        elif stage.exists():
            stage.unlink()
        raise


def _remove_stale_stages(target: Path) -> None:
    """Staging leftovers of an earlier writer of ``target`` that was killed (one writer per target)."""
    for leftover in target.parent.glob(f".{target.name}.*"):
        if leftover.suffix in (".partial", ".old"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (shards and weights are too large to read whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# A release's SHA256SUMS: written by release.webdataset, checked by whoever reads the shards (training streams them).


class DamagedRelease(StepFailed, ValueError):
    """A release that does not hold what its SHA256SUMS and index say (a shard changed, missing or
    unlisted, a sample that does not decode); the message names the shard (and the sample)."""


def read_checksums(folder: Path) -> dict[str, str]:
    """Shard name → SHA256 from the release's SHA256SUMS; a malformed line names itself."""
    path = Path(folder) / "SHA256SUMS"
    checksums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)  # sha256sum's text and binary forms
        if not match:
            raise DamagedRelease(f"{path} line {number}: {line!r} is not '<sha256>  <shard>'")
        checksums[match[2]] = match[1]
    return checksums


_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime) of the shards this process has hashed


def verify_shard(path: Path, expected: str) -> None:
    """Check a shard against its SHA256SUMS line the first time this process opens it (and again
    if its size or time changed since), so a damaged or replaced shard is never trained on."""
    stat = Path(path).stat()
    seen = (str(path), stat.st_size, stat.st_mtime_ns)
    if seen in _verified:
        return
    digest = sha256_file(path)
    if digest != expected:
        raise DamagedRelease(
            f"{path}: SHA256 {digest} does not match SHA256SUMS ({expected}): the shard is damaged or was replaced; "
            "restore it or write the release again (dataset_shards)"
        )
    _verified.add(seen)


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as stage:
        stage.write_text(text, encoding="utf-8")
    return path


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as stage:
        df.to_csv(stage, index=False)
    return path


def write_torch(obj, path: Path) -> Path:
    """``torch.save`` of ``obj`` (a state dict, a checkpoint) written atomically."""
    import torch  # only the model steps need it

    with atomic_path(path) as stage:
        torch.save(obj, stage)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as stage:
        stage.write_bytes(data)
    return path


def write_parquet(df: pd.DataFrame, path: Path, metadata: dict | None = None) -> Path:
    """Write ``df`` atomically, with optional JSON key/value metadata in the file footer."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        extra = {k.encode(): json.dumps(v).encode() for k, v in metadata.items()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    with atomic_path(path) as stage:
        pq.write_table(table, stage)
    return path


def read_parquet_metadata(path: Path) -> dict:
    """The JSON key/value metadata :func:`write_parquet` stored in a file's footer."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): json.loads(v) for k, v in raw.items() if k != b"pandas"}


def read_parquet(path: Path) -> pd.DataFrame:
    if not Path(path).exists():
        raise FileNotFoundError(f"table {path} does not exist: materialize the asset that writes it first")
    return pd.read_parquet(path)


def write_sql_table(df: pd.DataFrame, table_name: str, db_url: str) -> int:
    """Replace ``table_name`` in the SQL catalog with ``df`` in one transaction.

    List-valued columns are stored as JSON text so any SQL engine can hold them.
    """
    out = df.copy()
    for column in out.columns:
        if any(isinstance(v, (list, tuple, np.ndarray)) for v in out[column]):  # (map().any() fails on an empty string column)
            out[column] = out[column].map(lambda v: json.dumps([str(x) for x in v]) if isinstance(v, (list, tuple, np.ndarray)) else None)
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url)
    try:
        staging = f"{table_name}__staging"
        with engine.begin() as conn:
            out.to_sql(staging, conn, if_exists="replace", index=False, chunksize=10_000)
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table_name}"'))
            conn.execute(sa.text(f'ALTER TABLE "{staging}" RENAME TO "{table_name}"'))
    finally:
        engine.dispose()
    return len(out)
