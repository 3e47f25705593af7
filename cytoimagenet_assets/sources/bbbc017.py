"""BBBC017 (Moffat et al. 2006 HT29 shRNA screen): per-well metadata in an Excel ``.xls`` joined to
the image files by plate and well.

Each image zip (``BBBC017_v1_images_NIRHTa-001.zip`` …) holds one 384-well plate: Cellomics
files ``<prefix>_<Well>f<field>d<channel>.DIB`` with d0 Hoechst, d1 pH3, d2 phalloidin. As in
the original, the plate number is the number that ends the images' folder name (``NIRHTa-001`` →
1; the ``-`` and ``+`` screens share plate numbers) and the well comes from the file name; they
join the metadata's ``384-Plate#`` and ``384-well``. Metadata columns map to label categories
(the original used ``gene name`` → gene; ``class`` went to phenotype and was later dropped).

One row per field of view, its three channel files merged. Fields whose plate and well are not in
the metadata stay, unlabelled (the original's left join); metadata rows no image matches are
listed in the rejects. With no image files listed at all (metadata only), one row per metadata
row, without files.

Options::

    metadata: BBBC017_v1_metadata.xls
    sheet: 0                        # name or 0-based index (default: the first sheet)
    plate_column: 384-Plate#
    well_column: 384-well
    columns: {gene: gene name}
    pattern: '(?:^|/)(?P<plate>[^/]*?(?P<plate_number>\\d+))/[^/]*_(?P<well>[A-P]\\d{2})f(?P<field>\\d+)(?P<channel>d\\d)\\.(?:dib|tiff?)$'
"""

from __future__ import annotations

import re
from pathlib import Path

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import channel_rows, find_file, frame, source_files
from cytoimagenet_assets.sources.spreadsheets import read_spreadsheet
from cytoimagenet_assets.sources.table import LABEL_CATEGORIES, ParsedSource, ParseError, rejects_frame

PATTERN = r"(?:^|/)(?P<plate>[^/]*?(?P<plate_number>\d+))/[^/]*_(?P<well>[A-P]\d{2})f(?P<field>\d+)(?P<channel>d\d)\.(?:dib|tiff?)$"
WELL = re.compile(r"^([A-Pa-p])0*(\d{1,2})$")
GROUPS = {"plate", "plate_number", "well", "field", "channel"}
OPTIONS = {
    "metadata": "BBBC017_v1_metadata.xls",
    "sheet": None,  # None: the first sheet
    "plate_column": "384-Plate#",
    "well_column": "384-well",
    "columns": {},
    "pattern": PATTERN,
}


def _well(text: str) -> str | None:
    """A 384-well name as 'A01'; None if ``text`` is not one."""
    match = WELL.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 24:
        return None
    return f"{match.group(1).upper()}{int(match.group(2)):02d}"


def _plate(text: str) -> int | None:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    plate_column, well_column = options["plate_column"], options["well_column"]
    columns: dict = options["columns"]
    try:
        pattern = re.compile(options["pattern"], re.IGNORECASE)
    except re.error as exc:
        raise ParseError(f"{source.dir_name}: parser_options.pattern is invalid: {exc}") from exc
    if not GROUPS <= set(pattern.groupindex):
        raise ParseError(f"{source.dir_name}: parser_options.pattern needs the groups {', '.join(sorted(GROUPS))}")
    unknown = sorted(set(columns) - set(LABEL_CATEGORIES))
    if unknown:
        raise ParseError(
            f"{source.dir_name}: parser_options.columns keys {unknown} are not label categories ({', '.join(LABEL_CATEGORIES)})"
        )
    path = find_file(source, raw_dir, options["metadata"])
    metadata_file = path.relative_to(raw_dir).as_posix()
    table = read_spreadsheet(source, path, required=[plate_column, well_column, *columns.values()], sheet=options["sheet"])

    rejects: list[tuple[str, int, str]] = []
    wells: dict[tuple[int, str], tuple[int, dict]] = {}
    for i, record in enumerate(table.to_dict("records"), start=1):
        plate, well = _plate(record[plate_column]), _well(record[well_column])
        if plate is None or well is None:
            rejects.append(
                (metadata_file, i, f"no plate/well: {plate_column}={record[plate_column]!r} {well_column}={record[well_column]!r}")
            )
            continue
        if (plate, well) in wells:
            raise ParseError(
                f"{source.dir_name}: {path.name} data rows {wells[(plate, well)][0]} and {i} both describe plate {plate} well {well}"
            )
        wells[(plate, well)] = (i, {category: record[column] for category, column in columns.items()})

    fields: dict[tuple[str, str, str], dict] = {}
    for relative in source_files(raw_dir):
        match = pattern.search(relative)
        if match:
            key = (relative[: match.start("plate")] + match.group("plate"), match.group("well").upper(), match.group("field"))
            group = fields.setdefault(key, {"plate_number": int(match.group("plate_number")), "files": {}, "first": relative})
            group["files"][match.group("channel").lower()] = relative

    rows = []
    if not fields:  # metadata only: the wells, without files
        for (plate, well), (i, labels) in wells.items():
            rows.append(
                {
                    **labels,
                    "source_file": metadata_file,
                    "source_row": i,
                    "plate": str(plate),
                    "well": well,
                    "channel_names": [],
                    "channel_paths": [],
                }
            )
        return ParsedSource(frame(rows), rejects_frame(rejects))

    keys = {c.key.lower(): c.key for c in source.channels}
    imaged = set()
    for (folder, well, field), group in fields.items():
        joined = wells.get((group["plate_number"], well))
        base = {"plate": folder.rsplit("/", 1)[-1], "well": well, "field": field}
        if joined:
            imaged.add((group["plate_number"], well))
            base.update(joined[1], source_file=metadata_file, source_row=joined[0])
        else:
            base.update(source_file=group["first"], source_row=1)
        files = {keys[k]: p for k, p in group["files"].items() if k in keys}
        found = channel_rows(base, files, source.channels)
        if not found:
            rejects.append((group["first"], 1, f"channel(s) {sorted(group['files'])} not in the catalog's channels"))
        rows.extend(found)
    for key, (i, _) in wells.items():
        if key not in imaged:
            rejects.append((metadata_file, i, f"no image files for plate {key[0]} well {key[1]}"))
    return ParsedSource(frame(rows), rejects_frame(rejects))
