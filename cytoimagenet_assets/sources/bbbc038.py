"""BBBC038, the Kaggle 2018 Data Science Bowl nuclei: ``<split>/<ImageId>/images/<ImageId>.png``.

Each split zip (``stage1_train``, ``stage1_test``, ``stage2_test_final``) holds one folder per
image, with the image under ``images/`` (and, for training, one mask per nucleus under
``masks/``, which is not an image of the set). One row per image; the file names carry no label.
The original labelled no image individually (organism human|mouse|fly and cell_visible nucleus for
the whole set, from the catalog's defaults). ``metadata.xlsx`` describes each image (modality, cell
type); to label images from it, name its id column and map its columns to categories, and it is
joined on the ImageId: images it lacks stay unlabelled, its rows naming no image are rejected.

Options::

    pattern: '(?:^|/)(?P<image_id>[^/]+)/images/(?P=image_id)\\.png$'
    metadata: metadata.xlsx          # read only when columns are given
    sheet: 0
    id_column: <column holding the ImageId>
    columns: {cell_type: <column>, ...}
"""

from __future__ import annotations

import re
from pathlib import Path

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import channel_rows, find_file, frame, source_files
from cytoimagenet_assets.sources.spreadsheets import read_spreadsheet
from cytoimagenet_assets.sources.table import LABEL_CATEGORIES, ParsedSource, ParseError, rejects_frame

PATTERN = r"(?:^|/)(?P<image_id>[^/]+)/images/(?P=image_id)\.png$"
OPTIONS = {"pattern": PATTERN, "metadata": "metadata.xlsx", "sheet": None, "id_column": None, "columns": {}}


def _metadata(source: Source, raw_dir: Path, options: dict, rejects: list) -> tuple[str | None, dict[str, tuple[int, dict]]]:
    """ImageId → (data row, labels) from the metadata table, when the catalog maps its columns."""
    columns: dict = options["columns"] or {}
    if not columns:
        return None, {}
    unknown = sorted(set(columns) - set(LABEL_CATEGORIES))
    if unknown:
        raise ParseError(
            f"{source.dir_name}: parser_options.columns keys {unknown} are not label categories ({', '.join(LABEL_CATEGORIES)})"
        )
    id_column = options["id_column"]
    if not id_column:
        raise ParseError(f"{source.dir_name}: parser_options.columns are given but not id_column (the metadata column holding the ImageId)")
    path = find_file(source, raw_dir, options["metadata"])
    source_file = path.relative_to(raw_dir).as_posix()
    table = read_spreadsheet(source, path, required=[id_column, *columns.values()], sheet=options["sheet"])
    found: dict[str, tuple[int, dict]] = {}
    for i, record in enumerate(table.to_dict("records"), start=1):
        image_id = record[id_column].strip()
        if not image_id:
            rejects.append((source_file, i, f"empty {id_column}"))
        elif image_id in found:
            rejects.append((source_file, i, f"{id_column} {image_id!r} already described in data row {found[image_id][0]}"))
        else:
            found[image_id] = (i, {category: record[column] for category, column in columns.items()})
    return source_file, found


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    try:
        pattern = re.compile(options["pattern"], re.IGNORECASE)
    except re.error as exc:
        raise ParseError(f"{source.dir_name}: parser_options.pattern is invalid: {exc}") from exc
    if "image_id" not in pattern.groupindex:
        raise ParseError(f"{source.dir_name}: parser_options.pattern needs an image_id group")
    if len(source.channels) != 1:
        raise ParseError(f"{source.dir_name}: the catalog must list exactly one channel (the image), not {len(source.channels)}")
    rejects: list[tuple[str, int, str]] = []
    metadata_file, described = _metadata(source, raw_dir, options, rejects)

    rows, seen = [], set()
    for relative in source_files(raw_dir):
        match = pattern.search(relative)
        if not match:
            continue
        image_id = match.group("image_id")
        base = {"source_file": relative, "source_row": 1, "field": image_id}
        if image_id in described:
            row, labels = described[image_id]
            base.update(labels, source_file=metadata_file, source_row=row)
            seen.add(image_id)
        rows.extend(channel_rows(base, {source.channels[0].key: relative}, source.channels))
    if not rows:
        raise ParseError(
            f"{source.dir_name}: no file under {raw_dir} matches the pattern {pattern.pattern!r} (<ImageId>/images/<ImageId>.png)"
        )
    for image_id, (row, _) in described.items():
        if image_id not in seen:
            rejects.append((metadata_file, row, f"no image file for ImageId {image_id!r}"))
    return ParsedSource(frame(rows), rejects_frame(rejects))
