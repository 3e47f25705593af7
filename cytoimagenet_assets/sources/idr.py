"""Image Data Resource studies: one parser for the IDR conventions, configured per study.

An IDR study ships an annotation CSV (``idrNNNN-screenX-annotation.csv`` keyed by ``Plate`` and
``Well``, or ``idrNNNN-experimentX-annotation.csv`` keyed by ``Dataset Name`` and ``Image Name``)
and, for screens, ``idrNNNN-screenX-plates.tsv`` mapping each plate to its folder on the IDR
file server (``/uod/idr/filesets/<fileset>/...``; the same tree sits under ``raw/<dir_name>``).

Options::

    annotation: idr0037-screenA-annotation.csv    # also .csv.gz / .csv.zip
    plates: idr0037-screenA-plates.tsv            # screens with a file layout
    columns: {cell_type: Characteristics [Cell Line], compound: [Compound Name], ...}
    keep: {Comment [Image File Type]: [original images]}   # rows outside are rejected, with reason
    layout: operetta                               # screens: r<RR>c<CC>f<FF>p<PP>-ch<C>sk1fk1fl1.tiff
    image_path: "{Dataset Name}/{Image Name}.tif"  # experiments: one file per annotation row

A screen without image files on disk gives one row per well (metadata-only); with them, one row
per field of view. Column values listed for one category are joined as a multi-label.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import channel_rows, find_file, frame, read_table, source_files
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, rejects_frame

OPERETTA = re.compile(r"^r(\d+)c(\d+)f(\d+)p(\d+)-ch(\d+)sk\d+fk\d+fl\d+\.tiff?$", re.IGNORECASE)
WELL = re.compile(r"^([A-Za-z]+)0*(\d+)$")
SERVER_PREFIX = PurePosixPath("/uod/idr/filesets")


def well_name(row: int, column: int) -> str:
    """IDR's well spelling: row letter(s) and unpadded column (A1, P24, AA3)."""
    letters = ""
    while row > 0:
        row, rest = divmod(row - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{column}"


def canonical_well(well: str) -> str:
    match = WELL.match(well.strip())
    return f"{match.group(1).upper()}{int(match.group(2))}" if match else well.strip()


def read_plates(source: Source, path: Path) -> dict[str, str]:
    """Plate name → plate folder relative to the study's file tree, from a plates.tsv."""
    plates = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, _, server_path = line.partition("\t")
        server = PurePosixPath(server_path.strip())
        if not server_path or not server.is_relative_to(SERVER_PREFIX) or len(server.parts) < 6:
            raise ParseError(f"{source.dir_name}: {path.name} line {n}: expected '<plate>\\t/uod/idr/filesets/<fileset>/<path>', got {line!r}")
        relative = PurePosixPath(*server.parts[5:])
        plates[name.strip()] = str(relative.parent if relative.suffix else relative)
    return plates


def _labels(record: dict, columns: dict) -> dict:
    out = {}
    for category, names in columns.items():
        names = [names] if isinstance(names, str) else names
        values = [record[n].strip() for n in names if record[n].strip()]
        out[category] = "|".join(values) if values else None
    return out


def _operetta_fields(files: list[str]) -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    """plate folder → well → field → {channel: relative path} for the Operetta TIFFs among ``files``
    (the source's files, on disk or only in its remote index)."""
    plates: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for relative in files:
        folder, _, name = relative.rpartition("/")
        match = OPERETTA.match(name)
        if match:
            r, c, f, _, ch = (int(g) for g in match.groups())
            plates[folder][well_name(r, c)][str(f)][str(ch)] = relative
    return plates


def parse(source: Source, raw_dir: Path) -> ParsedSource:
    options = source.parser_options
    path = find_file(source, raw_dir, options["annotation"])
    source_file = path.relative_to(raw_dir).as_posix()
    columns: dict = options.get("columns", {})
    needed = [n for names in columns.values() for n in ([names] if isinstance(names, str) else names)]
    table = read_table(source, path, required=[*needed, *options.get("keep", {})])
    screen = {"Plate", "Well"} <= set(table.columns)
    if not screen and not {"Dataset Name", "Image Name"} <= set(table.columns):
        raise ParseError(f"{source.dir_name}: {source_file} has neither Plate/Well (screen) nor Dataset Name/Image Name (experiment) columns")
    plates = read_plates(source, find_file(source, raw_dir, options["plates"])) if options.get("plates") else {}
    layout = options.get("layout")
    if layout not in (None, "operetta"):
        raise ParseError(f"{source.dir_name}: unknown IDR layout {layout!r} (known: operetta)")

    rows, rejects = [], []
    operetta = _operetta_fields(source_files(raw_dir)) if layout == "operetta" else {}
    for i, record in enumerate(table.to_dict("records")):
        outside = [f"{k}={record[k]!r}" for k, allowed in options.get("keep", {}).items() if record[k] not in allowed]
        if outside:
            rejects.append((source_file, i + 1, "excluded by the catalog's keep filter: " + ", ".join(outside)))
            continue
        base = {**_labels(record, columns), "source_file": source_file, "source_row": i + 1}
        if not screen:
            template = options.get("image_path")
            paths = [template.format(**record)] if template else []
            # One file holds every channel of an experiment image (IDR's 4D TIFFs).
            names = ["|".join(c.name for c in source.channels)] if paths else []
            rows.append({**base, "plate": record["Dataset Name"], "channel_names": names, "channel_paths": paths})
            continue
        plate, well = record["Plate"].strip(), canonical_well(record["Well"])
        base.update(plate=plate, well=well)
        if layout == "operetta" and plate in plates:
            found = operetta.get(plates[plate], {}).get(well, {})
            if found:
                for field, files in sorted(found.items(), key=lambda item: int(item[0])):
                    rows.extend(channel_rows({**base, "field": field}, files, source.channels))
                continue
        # Metadata only (no image files on disk yet): the row still shows the study's stains.
        stains = "|".join(c.name for c in source.channels if c.microscopy == "fluorescence")
        rows.append({"cell_visible": stains, **base, "channel_names": [], "channel_paths": []})
    return ParsedSource(frame(rows), rejects_frame(rejects))
