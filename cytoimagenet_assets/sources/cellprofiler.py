"""CellProfiler-style per-image tables (BBBC021, BBBC022, BBBC006 ...).

One row per field of view, with ``Image_FileName_<key>`` / ``Image_PathName_<key>`` per channel
(the channel keys come from the catalog) and metadata columns mapped to label categories.
Annotation tables (BBBC021's MOA table, BBBC022's MOA matches) are joined on configured columns;
numeric join columns are compared as numbers, since BBBC021 writes ``0.003000`` in one table and
``0.003`` in the other, and other keys that are long Broad ids (``BRD-A04438777-001-03-6``, with
salt and batch) as their compound's short id (``BRD-A04438777``), the key of BBBC022's MOA table.
Rows whose key the annotation still lacks are kept without its labels and counted per key
(``join_misses``: the source's ``annotation_join_misses``).

Options::

    image_table: BBBC021_v1_image.csv
    columns: {compound: Image_Metadata_Compound, plate: Image_Metadata_Plate_DAPI, well: ...}
    annotations:
      - table: BBBC021_v1_moa.csv
        join: {Image_Metadata_Compound: compound, Image_Metadata_Concentration: concentration}
        numeric: [concentration]
        columns: {phenotype: moa}
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import NO_DEFAULT, channel_rows, find_file, frame, read_table
from cytoimagenet_assets.sources.table import JOIN_MISS_COLUMNS, ParsedSource, ParseError, escapes, rejects_frame, short_broad_id

SITE = re.compile(r"_s(\d+)", re.IGNORECASE)
OPTIONS = {"image_table": NO_DEFAULT, "columns": {}, "annotations": []}


def read_annotation(source: Source, raw_dir: Path, spec: dict) -> pd.DataFrame:
    """An annotation table keyed by the columns of ``spec['join']``, keys made comparable (numbers,
    Broad ids). A key that appears twice with different values is an error naming both rows.
    """
    path = find_file(source, raw_dir, spec["table"])
    keys = list(spec["join"].values())
    wanted = list(spec["columns"].values())
    table = read_table(source, path, required=[*keys, *wanted])
    for column in keys:
        table[column] = _key(source, path, table[column], column in spec.get("numeric", []))
    table = table[[*keys, *wanted]].drop_duplicates()
    clash = table[table.duplicated(keys, keep=False)]
    if len(clash):
        rows = ", ".join(str(i + 1) for i in clash.index[:4])
        raise ParseError(
            f"{source.dir_name}: {path.name} gives different values for the same key {tuple(clash.iloc[0][keys])} (data rows {rows})"
        )
    return table


def _key(source: Source, path: Path, values: pd.Series, numeric: bool) -> pd.Series:
    """A join column as compared: canonical numbers, or text with long Broad ids shortened."""
    return _numbers(source, path, values) if numeric else values.map(short_broad_id)


def _numbers(source: Source, path: Path, values: pd.Series) -> pd.Series:
    """Strings to a canonical number text (6 significant digits), so 0.003000 == 0.003."""
    parsed = pd.to_numeric(values.str.strip(), errors="coerce")
    bad = parsed.isna() & values.str.strip().ne("")
    if bad.any():
        row = int(bad.idxmax())
        raise ParseError(f"{source.dir_name}: {path.name} data row {row + 1}: {values[row]!r} is not a number")
    return parsed.map(lambda v: None if pd.isna(v) else f"{v:.6g}")


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    path = find_file(source, raw_dir, options["image_table"])
    columns: dict = options["columns"]
    channel_columns = [f"Image_{kind}_{c.key}" for c in source.channels for kind in ("FileName", "PathName")]
    table = read_table(source, path, required=[*channel_columns, *columns.values()])
    misses = []
    for spec in options["annotations"]:
        annotation = read_annotation(source, raw_dir, spec)
        left = table.copy()
        for image_column, annotation_column in spec["join"].items():
            left[annotation_column] = _key(source, path, table[image_column], annotation_column in spec.get("numeric", []))
        joined = left.merge(annotation, how="left", on=list(spec["join"].values()), validate="many_to_one", indicator=True)
        # Rows whose key the annotation lacks: kept, without its labels, and counted per key (as
        # compared: one compound's batches together), never silently.
        missed = left.loc[(joined["_merge"] == "left_only").to_numpy(), list(spec["join"].values())]
        missed = missed[missed.ne("").any(axis=1)]
        for key, count in missed.value_counts(sort=True).items():
            shown = ", ".join(f"{c}={v!r}" for c, v in zip(spec["join"], key if isinstance(key, tuple) else (key,)))
            misses.append((spec["table"], shown, int(count)))
        for category, annotation_column in spec["columns"].items():
            table[category] = joined[annotation_column].to_numpy()

    rows, rejects = [], []
    source_file = path.relative_to(raw_dir).as_posix() if path.is_relative_to(raw_dir) else path.name
    for i, record in enumerate(table.to_dict("records")):
        files = {}
        for channel in source.channels:
            name, folder = record[f"Image_FileName_{channel.key}"].strip(), record[f"Image_PathName_{channel.key}"].strip()
            if name:
                if escapes(folder) or escapes(name):
                    raise ParseError(
                        f"{source.dir_name}: {source_file} row {i + 1}: image path {folder!r} / {name!r} of channel "
                        f"{channel.key} is absolute or climbs out of the source's raw folder; paths must stay inside it"
                    )
                files[channel.key] = f"{folder.strip('/')}/{name}" if folder else name
        if not files:
            rejects.append((source_file, i + 1, "no channel file names"))
            continue
        base = {"source_file": source_file, "source_row": i + 1}
        for category, column in columns.items():
            base[category] = record[column]
        for spec in options["annotations"]:
            for category in spec["columns"]:
                base[category] = record[category]
        site = SITE.search(next(iter(files.values())))
        base.setdefault("field", site.group(1) if site else None)
        rows.extend(channel_rows(base, files, source.channels))
    return ParsedSource(frame(rows), rejects_frame(rejects), pd.DataFrame(misses, columns=list(JOIN_MISS_COLUMNS)))
