"""Cell Image Library Kinome Atlas (``cil_kinome``): HeLa cells, each expressing one GFP-tagged
kinase, two confocal images per kinase, labelled by kinase group.

CIL serves each image as ``<CIL_ID>.zip`` holding ``<CIL_ID>.tif`` (nucleus and protein
channels in one file). Which group each image's kinase belongs to comes from the original's
hand-made table ``file_name, kinase`` (``53464.zip, AGC``); the label is "<group> kinase" in
``cell_visible`` (e.g. "agc kinase"). One row per table row; its TIFF is looked for anywhere under
the raw folder by name (``<id>.tif``), else expected at the top. Rows without an id or group, and
repeated ids, are rejected.

Options::

    groups: cil_kinome_metadata.csv
    id_column: file_name      # 53464.zip (or 53464.tif, or 53464)
    group_column: kinase
    label: '{group} kinase'
    image: '{id}.tif'
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import find_file, frame, read_table, source_files
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, rejects_frame

ARCHIVE_SUFFIXES = (".zip", ".tif", ".tiff")
OPTIONS = {
    "groups": "cil_kinome_metadata.csv",
    "id_column": "file_name",
    "group_column": "kinase",
    "label": "{group} kinase",
    "image": "{id}.tif",
}


def _image_id(text: str) -> str:
    name = PurePosixPath(text.strip()).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    id_column, group_column = options["id_column"], options["group_column"]
    label, image = options["label"], options["image"]
    if "{group}" not in label or "{id}" not in image:
        raise ParseError(f"{source.dir_name}: parser_options.label needs {{group}} and parser_options.image needs {{id}}")
    path = find_file(source, raw_dir, options["groups"])
    source_file = path.relative_to(raw_dir).as_posix()
    table = read_table(source, path, required=[id_column, group_column])

    on_disk: dict[str, str] = {}
    for relative in sorted(source_files(raw_dir), key=lambda p: (p.count("/"), p)):  # shallowest first
        on_disk.setdefault(PurePosixPath(relative).name.lower(), relative)
    names = "|".join(c.name for c in source.channels)
    rows, rejects, seen = [], [], {}
    for i, record in enumerate(table.to_dict("records"), start=1):
        image_id, group = _image_id(record[id_column]), record[group_column].strip()
        if not image_id or not group:
            rejects.append(
                (source_file, i, f"no image id or kinase group: {id_column}={record[id_column]!r} {group_column}={record[group_column]!r}")
            )
            continue
        if image_id in seen:
            rejects.append((source_file, i, f"image {image_id} already listed in data row {seen[image_id]}"))
            continue
        seen[image_id] = i
        expected = image.format(id=image_id)
        found = on_disk.get(PurePosixPath(expected).name.lower(), expected)
        rows.append(
            {
                "source_file": source_file,
                "source_row": i,
                "field": image_id,
                "cell_visible": label.format(group=group),
                "channel_names": [names],
                "channel_paths": [found],
            }
        )
    return ParsedSource(frame(rows), rejects_frame(rejects))
