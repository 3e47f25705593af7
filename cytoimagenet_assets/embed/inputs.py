"""What ``embed`` reads: a folder of images (one sample per file, or those matching a glob) or a CSV
whose columns are channels and whose cells are image paths (one sample per row)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.images.readers import PILLOW, TIFF

IMAGE_SUFFIXES = TIFF | PILLOW | {".npy"}


class EmbedError(StepFailed, ValueError):
    """Inputs or a model that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Sample:
    """One row of the output: the image files of one sample (one per channel column, or one file)."""

    image: str
    channel_paths: tuple[str, ...]  # as listed: relative to ``root`` unless absolute
    columns: tuple[str, ...] = ()  # the CSV columns the paths came from (empty for a folder)
    extra: tuple[tuple[str, str], ...] = ()  # other CSV columns of the row


@dataclass
class Inputs:
    root: Path
    samples: list[Sample]


def folder_inputs(folder: Path, glob: str = "**/*") -> Inputs:
    """Every image file under ``folder`` matching ``glob`` (hidden files and folders skipped), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EmbedError(f"{folder}: not a folder")
    files = sorted(
        p
        for p in folder.glob(glob)
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise EmbedError(f"{folder}: no image files matching {glob!r} (suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
    return Inputs(folder, [Sample(p.relative_to(folder).as_posix(), (p.relative_to(folder).as_posix(),)) for p in files])


def csv_inputs(path: Path, channels: Sequence[str] | None = None) -> Inputs:
    """A CSV of channel paths: ``channels`` names its channel columns (default: every column); paths
    are relative to the CSV's folder unless absolute; other columns are carried into the output."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise EmbedError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise EmbedError(f"{path}: not a readable CSV ({exc})") from exc
    columns = list(channels) if channels else list(table.columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise EmbedError(f"{path}: no column {', '.join(map(repr, missing))}; it has {', '.join(table.columns)}")
    if not columns or table.empty:
        raise EmbedError(f"{path}: no channel columns or no rows")
    others = [c for c in table.columns if c not in columns]
    samples, seen = [], {}
    for row_number, row in enumerate(table.itertuples(index=False), start=2):
        values = dict(zip(table.columns, row))
        paths = tuple(values[c] for c in columns)
        blank = [c for c, p in zip(columns, paths) if not p.strip()]
        if blank:
            raise EmbedError(f"{path} line {row_number}: no path in column {', '.join(blank)}")
        image = "|".join(paths)
        if image in seen:
            raise EmbedError(f"{path} line {row_number}: the same channel paths as line {seen[image]}")
        seen[image] = row_number
        samples.append(Sample(image, paths, tuple(columns), tuple((c, values[c]) for c in others)))
    return Inputs(path.parent, samples)


def inputs_from(source: Path, channels: Sequence[str] | None = None, glob: str = "**/*") -> Inputs:
    """A folder or a ``.csv`` file of channel paths."""
    source = Path(source)
    if source.is_dir():
        return folder_inputs(source, glob)
    if source.suffix.lower() == ".csv":
        return csv_inputs(source, channels)
    raise EmbedError(f"{source}: expected a folder of images or a .csv of channel paths")
