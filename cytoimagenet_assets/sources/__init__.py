"""Parsers that turn each source's raw metadata into the standardized table (no Dagster here).

``parse_source(source, raw_dir)`` is the one entry point; the catalog names the parser of each
source and gives its options. ``python -m cytoimagenet_assets.sources`` runs it from the shell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cytoimagenet_assets.sources import cellprofiler, file_pattern, hpa, idr, rxrx
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, standardize

PARSERS: dict[str, Callable] = {
    "cellprofiler": cellprofiler.parse,
    "rxrx": rxrx.parse,
    "hpa": hpa.parse,
    "idr": idr.parse,
    "file_pattern": file_pattern.parse,
}

# Source-specific parsers the cytoimagenet catalog names whose formats need code of their own
# (JSON bounding boxes, XLS joins, DeltaVision, HDF5 ...). They are written with the downloaders;
# until then parsing such a source fails with a message that says so.
PENDING_PARSERS = frozenset({
    "bbbc017_xls", "bbbc038_dsb", "bbbc041_boxes", "bbbc045_montages", "cil_kinome",
})
KNOWN_PARSERS = frozenset(PARSERS) | PENDING_PARSERS


def parse_source(source, raw_dir: Path) -> ParsedSource:
    """Parse ``raw_dir`` (the source's files, or just its metadata) into the standardized table."""
    if source.parser is None:
        raise ParseError(f"{source.dir_name}: an evaluation set read by its protocol directly; it has no metadata table")
    if source.parser in PENDING_PARSERS:
        raise ParseError(f"{source.dir_name}: its parser {source.parser!r} is not written yet (real-sources issue); "
                         f"implemented parsers: {', '.join(sorted(PARSERS))}")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ParseError(f"{source.dir_name}: raw folder {raw_dir} does not exist. To provide it: {source.download.instructions()}, into {raw_dir}")
    parsed = PARSERS[source.parser](source, raw_dir)
    return ParsedSource(standardize(parsed.table, source), parsed.rejects)
