"""Helpers shared by the parsers: finding and reading metadata files, grouping channel files."""

from __future__ import annotations

import bz2
import gzip
import lzma
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Iterable

import pandas as pd

from cytoimagenet_assets.catalog import Channel, Source
from cytoimagenet_assets.sources.table import ParseError
from cytoimagenet_assets.storage import remote_index_path

# An option a parser has no default for (its module's ``OPTIONS``): the catalog entry must give it.
NO_DEFAULT = object()


def source_files(raw_dir: Path) -> list[str]:
    """Every file of a source as a path relative to ``raw_dir``, sorted: the files on disk (hidden
    folders such as ``.remote`` and staging leftovers skipped) plus those only in its remote index,
    so parsers that read metadata from file names work before any image is downloaded."""
    local = (
        {
            path.relative_to(raw_dir).as_posix()
            for path in raw_dir.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(raw_dir).parts)
        }
        if raw_dir.is_dir()
        else set()
    )
    index = remote_index_path(raw_dir)
    if index.is_file():
        local.update(pd.read_parquet(index, columns=["path"])["path"])
    return sorted(local)


def find_file(source: Source, raw_dir: Path, name: str) -> Path:
    """The metadata file ``name`` at the top of ``raw_dir`` or anywhere below it (shallowest first)."""
    direct = raw_dir / name
    if direct.is_file():
        return direct
    found = sorted(raw_dir.rglob(Path(name).name), key=lambda p: (len(p.parts), str(p))) if raw_dir.is_dir() else []
    if not found:
        raise ParseError(f"{source.dir_name}: metadata file {name!r} not found under {raw_dir}")
    return found[0]


class EmptyTableWarning(UserWarning):
    """A metadata table with a header and no rows: the source is parsed, but loudly."""


# What reading a damaged file raises: pandas' parser, a truncated or corrupt compressed stream
# (EOFError, gzip.BadGzipFile and zipfile.BadZipFile, zlib/lzma errors), bytes that are not text.
UNREADABLE = (
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    UnicodeDecodeError,
    ValueError,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
)


def _opener(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix in (".xz", ".lzma"):
        return lzma.open(path, "rb")
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            name = archive.namelist()[0]
        return zipfile.ZipFile(path).open(name)
    return open(path, "rb")


def where_it_breaks(path: Path, exc: BaseException) -> str:
    """Where in ``path`` reading stops: the decompressed byte and line a truncated or corrupt
    stream ends at, the byte of an undecodable character, or the row pandas names."""
    if isinstance(exc, UnicodeDecodeError):
        return f"at byte {exc.start} of the text"
    if isinstance(exc, pd.errors.ParserError):
        return ""  # pandas names the line itself
    text_bytes = lines = 0
    try:
        with _opener(path) as stream:
            while chunk := stream.read(1 << 20):
                text_bytes += len(chunk)
                lines += chunk.count(b"\n")
    except Exception:  # noqa: BLE001 - the failure being located
        return f"after byte {text_bytes:,} of the text (line {lines + 1})"
    return ""


def read_table(source: Source, path: Path, required: Iterable[str] = (), sep: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV (optionally .gz/.zip) as text, every value a string, blanks kept as ''.

    Universal newlines, so old-Mac CR-only files (BBBC021's moa.csv) read like any other. A damaged
    file (truncated download, corrupt archive, bytes that are not UTF-8) is a :class:`ParseError`
    naming the source, the file and where it breaks; a header without rows is an
    :class:`EmptyTableWarning` naming the file.
    """
    try:
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, sep=sep or ("\t" if ".tsv" in path.suffixes else ","), encoding="utf-8-sig"
        )
    except FileNotFoundError as exc:
        raise ParseError(f"{source.dir_name}: cannot read {path}: no such file") from exc
    except UNREADABLE as exc:
        where = where_it_breaks(path, exc)
        raise ParseError(
            f"{source.dir_name}: cannot read {path}{' ' + where if where else ''}: "
            f"{type(exc).__name__}: {exc or 'the file ends early (truncated?)'}"
        ) from exc
    absent = [c for c in required if c not in df.columns]
    if absent:
        raise ParseError(f"{source.dir_name}: {path.name} lacks column(s) {', '.join(map(repr, absent))}; it has {', '.join(df.columns)}")
    if df.empty:
        warnings.warn(EmptyTableWarning(f"{source.dir_name}: {path} has a header ({len(df.columns)} columns) and no rows"), stacklevel=2)
    return df


def channel_rows(base: dict, files: dict[str, str], channels: Iterable[Channel]) -> list[dict]:
    """Rows for one field of view: fluorescence channels merged into one row, each brightfield or
    darkfield channel a row of its own (the original never merged them with fluorescence).

    ``files`` maps a channel key to its relative path; keys the catalog does not list are ignored,
    channels without a file are left out of the row.
    """
    fluorescence = [(c.name, files[c.key]) for c in channels if c.microscopy == "fluorescence" and c.key in files]
    rows = []
    if fluorescence:
        rows.append({**base, "channel_names": [n for n, _ in fluorescence], "channel_paths": [p for _, p in fluorescence]})
    for c in channels:
        if c.microscopy != "fluorescence" and c.key in files:
            # '' (not None): a brightfield image shows no stain, so no default fills it in.
            rows.append(
                {**base, "microscopy": c.microscopy, "cell_visible": "", "channel_names": [c.name], "channel_paths": [files[c.key]]}
            )
    return rows


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for column in ("source_file", "source_row", "channel_names", "channel_paths"):
        if column not in df:
            df[column] = pd.Series(dtype=object)
    return df
