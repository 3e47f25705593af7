"""Parsers that turn each source's raw metadata into the standardized table (no Dagster here).

``parse_source(source, raw_dir)`` is the one entry point; the catalog names the parser of each
source and gives its options. ``python -m cytoimagenet_assets.sources`` runs it from the shell.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from cytoimagenet_assets.catalog import PARSER_MODULES, Source
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, standardize


def parse_source(source: Source, raw_dir: Path) -> ParsedSource:
    """Parse ``raw_dir`` (the source's files, or just its metadata) into the standardized table."""
    if source.parser is None:
        raise ParseError(f"{source.dir_name}: an evaluation set read by its protocol directly; it has no metadata table")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ParseError(
            f"{source.dir_name}: raw folder {raw_dir} does not exist. To provide it: {source.download.instructions()}, into {raw_dir}"
        )
    parser = importlib.import_module(f"{__name__}.{PARSER_MODULES[source.parser]}")
    parsed = parser.parse(source, raw_dir)
    return ParsedSource(standardize(parsed.table, source), parsed.rejects, parsed.join_misses)
