"""Sources whose only metadata is their folder and file names (Leukemia, Cell Cycle, many BBBC sets).

A regular expression over each file's path relative to ``raw/<dir_name>`` (case-insensitive,
since real sets mix ``.TIF``/``.Bmp``/``.JPG``) picks the images; its named groups become
columns. Groups named after a label category (``phenotype``, ``cell_type``...) or ``plate``,
``well``, ``field`` fill those columns, translated through ``values`` when given; a ``channel``
group gathers the files of one field of view (same text before the match, same other groups)
into one multi-channel row.

Options::

    pattern: 'training_data/fold_\\d/(?P<phenotype>all|hem)/[^/]+\\.bmp$'
    values: {phenotype: {all: b-lineage acute lymphoblastic leukemia, hem: normal}}
"""

from __future__ import annotations

import re
from pathlib import Path

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import NO_DEFAULT, channel_rows, frame, source_files
from cytoimagenet_assets.sources.table import LABEL_CATEGORIES, ParsedSource, ParseError, rejects_frame

FIELD_GROUPS = (*LABEL_CATEGORIES, "plate", "well", "field")
OPTIONS = {"pattern": NO_DEFAULT, "values": {}}


def compile_pattern(source: Source, text: str) -> re.Pattern:
    """The ``pattern`` option, checked: its named groups must be columns or ``channel``."""
    try:
        pattern = re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise ParseError(f"{source.dir_name}: parser_options.pattern is invalid: {exc}") from exc
    unknown = set(pattern.groupindex) - {*FIELD_GROUPS, "channel"}
    if unknown:
        raise ParseError(f"{source.dir_name}: pattern groups {sorted(unknown)} are not columns; use {', '.join(FIELD_GROUPS)} or channel")
    return pattern


def field_values(found: dict[str, str | None], values: dict) -> dict[str, str | None]:
    """The matched groups as column values, through ``parser_options.values`` (e.g. well → phenotype)."""
    return {name: values.get(name, {}).get(value.lower(), value) if value is not None else None for name, value in found.items()}


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    pattern = compile_pattern(source, options["pattern"])
    values: dict = options["values"]
    if not raw_dir.is_dir():
        raise ParseError(f"{source.dir_name}: {raw_dir} does not exist; this source's metadata is its file names")

    groups: dict[tuple, dict] = {}
    for relative in source_files(raw_dir):
        match = pattern.search(relative)
        if not match:
            continue
        found = match.groupdict()
        channel = found.pop("channel", None)
        # Files that differ only by channel (and by what follows the channel, such as BBBC's
        # per-file UUIDs) share the text before the match and every other group's value.
        key = relative if channel is None else (relative[: match.start()], tuple(sorted(found.items())))
        group = groups.setdefault(key, {"fields": found, "files": {}, "first": relative})
        group["files"][channel if channel is not None else "_"] = relative

    if not groups:
        raise ParseError(f"{source.dir_name}: no file under {raw_dir} matches the pattern {pattern.pattern!r}")
    rows, rejects = [], []
    single = source.channels[:1]
    for group in groups.values():
        base = {"source_file": group["first"], "source_row": 1, **field_values(group["fields"], values)}
        files = group["files"]
        if "_" in files:  # no channel group: one file is the whole image
            if not single:
                raise ParseError(f"{source.dir_name}: the catalog lists no channel for its single-channel files")
            files = {single[0].key: files["_"]}
        row_list = channel_rows(base, files, source.channels)
        if not row_list:
            rejects.append((group["first"], 1, f"channel(s) {sorted(files)} not in the catalog's channels"))
        rows.extend(row_list)
    return ParsedSource(frame(rows), rejects_frame(rejects))
