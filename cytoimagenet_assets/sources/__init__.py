"""Parsers that turn each source's raw metadata into the standardized table (no Dagster here).

``parse_source(source, raw_dir)`` is the one entry point; the catalog names the parser of each
source and gives its options, checked against the ``OPTIONS`` its parser module declares (name →
default). ``python -m cytoimagenet_assets.sources`` runs it from the shell.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from cytoimagenet_assets.catalog import PARSER_MODULES, Source
from cytoimagenet_assets.sources.common import NO_DEFAULT
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, standardize

# Options the evaluation step reads from any catalog entry (evaluation/benchmarks.py), not its parser.
EVALUATION_OPTIONS = frozenset({"benchmark"})


__all__ = ["parse_source", "parser_options"]


def _parser(source: Source):
    return importlib.import_module(f"{__name__}.{PARSER_MODULES[source.parser]}")


def parser_options(source: Source) -> dict:
    """The source's ``parser_options`` over its parser's defaults. An option the parser does not
    declare (a misspelling would otherwise be ignored) or a required one left out is a ParseError
    naming the source, the option and the parser's options."""
    declared: dict = _parser(source).OPTIONS
    given = {k: v for k, v in source.parser_options.items() if k not in EVALUATION_OPTIONS}
    known = ", ".join(sorted(declared))
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParseError(
            f"{source.dir_name}: parser {source.parser!r} has no option {', '.join(map(repr, unknown))} in parser_options; "
            f"its options: {known}"
        )
    missing = [k for k, v in declared.items() if v is NO_DEFAULT and k not in given]
    if missing:
        raise ParseError(
            f"{source.dir_name}: parser {source.parser!r} needs the option {', '.join(map(repr, missing))} in parser_options; "
            f"its options: {known}"
        )
    return {**declared, **given}


def parse_source(source: Source, raw_dir: Path) -> ParsedSource:
    """Parse ``raw_dir`` (the source's files, or just its metadata) into the standardized table."""
    if source.parser is None:
        raise ParseError(f"{source.dir_name}: an evaluation set read by its protocol directly; it has no metadata table")
    options = parser_options(source)
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ParseError(
            f"{source.dir_name}: raw folder {raw_dir} does not exist. To provide it: {source.download.instructions()}, into {raw_dir}"
        )
    parsed = _parser(source).parse(source, raw_dir, options)
    return ParsedSource(standardize(parsed.table, source), parsed.rejects, parsed.join_misses)
