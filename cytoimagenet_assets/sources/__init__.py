"""Parsers that turn each source's raw metadata into the standardized table (no Dagster here).

``parse_source(source, raw_dir)`` is the one entry point; the catalog names the parser of each
source and gives its options. ``python -m cytoimagenet_assets.sources`` runs it from the shell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cytoimagenet_assets.sources import bbbc017, bbbc038, bbbc041, bbbc045, cellprofiler, cil, file_pattern, hpa, idr, rxrx
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, standardize

PARSERS: dict[str, Callable] = {
    "cellprofiler": cellprofiler.parse,
    "rxrx": rxrx.parse,
    "hpa": hpa.parse,
    "idr": idr.parse,
    "file_pattern": file_pattern.parse,
    # Source-specific formats: an .xls join, DSB image folders, JSON bounding boxes, montage crops, a group table.
    "bbbc017_xls": bbbc017.parse,
    "bbbc038_dsb": bbbc038.parse,
    "bbbc041_boxes": bbbc041.parse,
    "bbbc045_montages": bbbc045.parse,
    "cil_kinome": cil.parse,
}
KNOWN_PARSERS = frozenset(PARSERS)


def parse_source(source, raw_dir: Path) -> ParsedSource:
    """Parse ``raw_dir`` (the source's files, or just its metadata) into the standardized table."""
    if source.parser is None:
        raise ParseError(f"{source.dir_name}: an evaluation set read by its protocol directly; it has no metadata table")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ParseError(f"{source.dir_name}: raw folder {raw_dir} does not exist. To provide it: {source.download.instructions()}, into {raw_dir}")
    parsed = PARSERS[source.parser](source, raw_dir)
    return ParsedSource(standardize(parsed.table, source), parsed.rejects, parsed.join_misses)
