"""BBBC045, human white blood cells (imaging flow cytometry): TIFF montages of single cells, one
file per cell type, sample and channel, sorted into folders (dated folders for 2014/2015).

Each montage is an image of its own (brightfield and darkfield are never merged with
fluorescence); as in the original, only its top-left ``crop`` pixels (rows, columns) are used,
recorded as the row's ``region`` (``y0:715,x0:825``, see :mod:`regions`). The cell type comes
from the folder (b-cell, t-cell, eosinophil, monocyte, neutrophil; the vocabulary merges them
into "white blood cell", as the original did); the channel from the file name's last token
(``..._Ch1.tif``), translated to the catalog's channel keys by ``channel_keys`` (case-insensitive,
leading zeros ignored: ``Ch01`` = ``ch1``). Every TIFF that does not match, or whose channel is not
listed, is a reject with its reason.

Options::

    pattern: a regular expression with the named groups cell_type and channel (the catalog's bbbc045 entry)
    values: {cell_type: {bcell: b-cell, ...}}
    channel_keys: {ch1: brightfield, ch6: darkfield, ch2: fluorescence, ...}
    crop: [715, 825]
"""

from __future__ import annotations

import re
from pathlib import Path

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import NO_DEFAULT, channel_rows, frame, source_files
from cytoimagenet_assets.sources.file_pattern import compile_pattern, field_values
from cytoimagenet_assets.sources.regions import format_region
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, rejects_frame

TIFF = re.compile(r"\.tiff?$", re.IGNORECASE)
OPTIONS = {"pattern": NO_DEFAULT, "values": {}, "channel_keys": {}, "crop": None}


def _token(text: str) -> str:
    return re.sub(r"(?<!\d)0+(?=\d)", "", text.strip().lower())


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    pattern = compile_pattern(source, options["pattern"])
    crop = options["crop"]
    if crop is not None and not (isinstance(crop, list) and len(crop) == 2 and all(isinstance(v, int) and v > 0 for v in crop)):
        raise ParseError(f"{source.dir_name}: parser_options.crop must be [rows, columns] (positive integers), got {crop!r}")
    values: dict = options["values"]
    channel_keys = {_token(str(k)): str(v) for k, v in (options["channel_keys"] or {}).items()}
    catalog_keys = {c.key for c in source.channels}
    bad = sorted(set(channel_keys.values()) - catalog_keys)
    if bad:
        raise ParseError(
            f"{source.dir_name}: parser_options.channel_keys name channel(s) {bad} the catalog does not list "
            f"({', '.join(sorted(catalog_keys))})"
        )

    rows, rejects = [], []
    for relative in source_files(raw_dir):
        if not TIFF.search(relative):
            continue
        match = pattern.search(relative)
        if not match:
            rejects.append((relative, 1, "does not match the montage pattern (cell-type folder, <name>_<channel>.tif)"))
            continue
        found = match.groupdict()
        token = found.pop("channel", None)
        if token is None:
            key = source.channels[0].key if source.channels else None
        else:
            key = channel_keys.get(_token(token), token if token in catalog_keys else None)
        if key is None:
            rejects.append((relative, 1, f"channel {token!r} is not in parser_options.channel_keys"))
            continue
        base = {"source_file": relative, "source_row": 1, **field_values(found, values)}
        if crop:
            base["region"] = format_region(0, crop[0], 0, crop[1])
        rows.extend(channel_rows(base, {key: relative}, source.channels))
    if not rows:
        raise ParseError(
            f"{source.dir_name}: no montage under {raw_dir} matches the pattern {pattern.pattern!r}"
            + (f" with a listed channel (first reject: {rejects[0][2]})" if rejects else "")
        )
    return ParsedSource(frame(rows), rejects_frame(rejects))
