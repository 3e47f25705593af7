"""Image Data Resource studies: one parser for the IDR conventions, configured per study.

An IDR study ships an annotation CSV (``idrNNNN-screenX-annotation.csv`` keyed by ``Plate`` and
``Well``, or ``idrNNNN-experimentX-annotation.csv`` keyed by ``Dataset Name`` and ``Image Name``)
and, for screens, ``idrNNNN-screenX-plates.tsv`` mapping each plate to its folder on the IDR
file server (``/uod/idr/filesets/<fileset>/...``; the same tree sits under ``raw/<dir_name>``, and a
plate filed under another study, one of the catalog's ``download.filesets``, under
``raw/<dir_name>/<that study>/``: idr0037's plates in ``idr0034-kilpinen-hipsci``).

Options::

    annotation: idr0037-screenA-annotation.csv    # also .csv.gz / .csv.zip
    plates: idr0037-screenA-plates.tsv            # screens: plate → plate folder
    columns: {cell_type: Characteristics [Cell Line], compound: [Compound Name], ...}
    keep: {Comment [Image File Type]: [original images]}   # rows outside are rejected, with reason
    file_pattern: '^(?P<row>[A-P]) - (?P<column>\\d+)\\(fld (?P<field>\\d+) wv (?P<channel>\\w+) - \\w+\\)\\.tif$'
    layout: operetta                               # a named file_pattern (LAYOUTS): r<RR>c<CC>f<FF>p<PP>-ch<C>sk1fk1fl1.tiff
    image_path: "{Dataset Name}/{Image Name}.tif"  # experiments: the one file of each annotation row

``file_pattern`` (or the preset ``layout``) is a regular expression searched in the relative path
of each of the study's files (:func:`source_files`: on disk or only in the remote index), whose
named groups say what a file holds:

* screens: ``channel`` (a catalog channel key; digits also match unpadded, ``ch01`` → ``1``),
  ``field``, and the well as ``well`` (``A01``/``A1``) or ``row`` + ``column`` (letters or numbers).
  With ``plates`` the path is taken relative to the plate's folder from plates.tsv; without it the
  path is relative to the study root and a ``plate`` group must name the annotation's ``Plate``.
* experiments: ``dataset`` and ``image`` (matched with ``Dataset Name`` and ``Image Name``), for
  files whose folder the annotation does not fully name (use ``image_path`` when it does); an
  optional ``channel`` group splits channels over files, otherwise one file holds every channel.

Older experiment annotations (idr0041's of March 2018, idr0043's) name each row's file themselves:
``Comment [Image File Path]``, the folder as uploaded (``mitotic_cell_atlas/<assay>/<cell>/rawtif``)
or the file's whole path (``72942/156348_A_1_1.tif``), and ``Image File``, its name. That file is
looked for among the study's files, at that path or below a folder (the upload's batch folder,
``20180710-ftp/``), and wins where found; else ``image_path`` or ``file_pattern`` as configured,
and without them the path as written (then counted missing, never dropped).

A screen gives one row per field of view of each annotated well with files, and one metadata-only
row (no image files) per annotated well without; files of wells not in the annotation are ignored.
An experiment gives one row per annotation row, with its file when found. Column values listed for
one category are joined as a multi-label.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import NO_DEFAULT, channel_rows, find_file, frame, read_table, source_files
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, rejects_frame

# Named file patterns (``layout``): PerkinElmer Operetta/Phenix TIFFs directly in the plate folder.
LAYOUTS = {
    "operetta": r"(?i)^r(?P<row>\d+)c(?P<column>\d+)f(?P<field>\d+)p\d+-ch(?P<channel>\d+)sk\d+fk\d+fl\d+\.tiff?$",
}
WELL = re.compile(r"^([A-Za-z]+)0*(\d+)$")
SERVER_PREFIX = PurePosixPath("/uod/idr/filesets")
FILE_PATH, FILE_NAME = "Comment [Image File Path]", "Image File"  # older experiment annotations' file columns
OPTIONS = {"annotation": NO_DEFAULT, "plates": None, "columns": {}, "keep": {}, "file_pattern": None, "layout": None, "image_path": None}


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
    """Plate name → plate folder relative to the study's file tree, from a plates.tsv: lines of
    ``<plate>\t<server path>``, path first (``<server path>\t<plate>``), or a path alone (idr0081's)."""
    plates = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, _, server_path = line.partition("\t")
        if name.strip().startswith(str(SERVER_PREFIX)) and not server_path.strip().startswith(str(SERVER_PREFIX)):
            name, server_path = server_path, name  # path first
        if not name.strip() or (not server_path.strip() and name.strip().startswith(str(SERVER_PREFIX))):
            # A path alone (idr0081's plates.tsv, IDR/idr0081-georgi-adenovirus screenA): the plate is
            # named after its screen file (``.../HAdV-pre.HTD`` → ``HAdV-pre``). That IDR names such plates
            # by the file's stem is our reading, not documented; the annotation's Plate column decides.
            server_path = server_path.strip() or name.strip()
            name = PurePosixPath(server_path).stem
        server = PurePosixPath(server_path.strip())
        if not server_path or not server.is_relative_to(SERVER_PREFIX) or len(server.parts) < 6:
            raise ParseError(
                f"{source.dir_name}: {path.name} line {n}: expected '<plate>\\t/uod/idr/filesets/<fileset>/<path>' "
                f"(or path first, or a path alone), got {line!r}"
            )
        relative = PurePosixPath(*server.parts[5:])
        folder = relative.parent if relative.suffix else relative
        fileset, listed = server.parts[4], _listed_filesets(source)
        if listed is not None and fileset != source.download.accession:
            folder = PurePosixPath(fileset) / folder
            if not any(folder.is_relative_to(f) for f in listed):
                raise ParseError(
                    f"{source.dir_name}: {path.name} line {n}: plate {name.strip()!r} lies in {fileset}/, outside the study "
                    f"{source.download.accession}, in a folder the catalog's download.filesets does not list: {folder}"
                )
        plates[name.strip()] = str(folder)
    return plates


def _listed_filesets(source: Source) -> list[PurePosixPath] | None:
    """The other studies' folders an IDR source's raw folder holds plates of (``download.filesets``);
    None for a source not downloaded from the IDR mirror (a demo), whose plates may lie anywhere."""
    spec = source.download
    return [PurePosixPath(f) for f in spec.filesets] if spec.method == "idr" else None


def _labels(record: dict, columns: dict) -> dict:
    out = {}
    for category, names in columns.items():
        names = [names] if isinstance(names, str) else names
        values = [record[n].strip() for n in names if record[n].strip()]
        out[category] = "|".join(values) if values else None
    return out


def _file_pattern(source: Source, options: dict, screen: bool, has_plates: bool) -> re.Pattern | None:
    """The compiled ``file_pattern`` (or ``layout`` preset), its named groups checked."""
    layout, text = options["layout"], options["file_pattern"]
    if layout is not None and text is not None:
        raise ParseError(f"{source.dir_name}: give either layout or file_pattern, not both")
    if layout is not None:
        if layout not in LAYOUTS:
            raise ParseError(f"{source.dir_name}: unknown IDR layout {layout!r} (known: {', '.join(LAYOUTS)})")
        option, text = "layout", LAYOUTS[layout]
    elif text is None:
        return None
    else:
        option = "file_pattern"
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ParseError(f"{source.dir_name}: {option} {text!r} is not a valid regular expression: {exc}") from exc
    groups = set(pattern.groupindex)
    if screen:
        missing = [g for g in ("channel", "field") if g not in groups]
        if "well" not in groups and not {"row", "column"} <= groups:
            missing.append("well (or row and column)")
        if not has_plates and "plate" not in groups:
            missing.append("plate (or a plates.tsv in the plates option)")
    else:
        missing = [g for g in ("dataset", "image") if g not in groups]
        if options["image_path"]:
            raise ParseError(f"{source.dir_name}: give either image_path or {option}, not both")
    if missing:
        raise ParseError(f"{source.dir_name}: {option} {text!r} lacks the named group(s) {', '.join(missing)}")
    return pattern


def _channel_key(value: str, keys: set[str]) -> str:
    """The catalog channel key a file's channel group names (``01`` matches the key ``1``)."""
    return str(int(value)) if value not in keys and value.isdigit() else value


def _well(groups: dict) -> str:
    if groups.get("well") is not None:
        return canonical_well(groups["well"])
    row, column = groups["row"].strip(), groups["column"].strip()
    return well_name(int(row), int(column)) if row.isdigit() else canonical_well(f"{row}{column}")


def _screen_files(pattern: re.Pattern, files: list[str], plates: dict[str, str] | None, keys: set[str]) -> dict:
    """(plate, well) → field → {channel key: relative path} for the files matching ``pattern``.

    With ``plates`` (plate → folder), a file is matched by its path inside each plate folder that
    holds it; otherwise by its path from the study root, its ``plate`` group naming the plate.
    """
    folders: dict[str, list[str]] = defaultdict(list)
    for plate, folder in (plates or {}).items():
        folders[folder.strip("/")].append(plate)
    found: dict = defaultdict(lambda: defaultdict(dict))
    for relative in files:
        if plates is None:
            candidates = [(None, relative)]
        else:
            parts = relative.split("/")
            candidates = [
                (plate, "/".join(parts[i:])) for i in range(len(parts) - 1, -1, -1) for plate in folders.get("/".join(parts[:i]), [])
            ]
        for plate, inside in candidates:
            match = pattern.search(inside)
            if not match:
                continue
            groups = match.groupdict()
            key = (plate if plate is not None else groups["plate"].strip(), _well(groups))
            field = str(int(groups["field"])) if groups["field"].isdigit() else groups["field"]
            found[key][field].setdefault(_channel_key(groups["channel"], keys), relative)
    return found


def _experiment_files(pattern: re.Pattern, files: list[str], keys: set[str]) -> dict:
    """(dataset, image) → {channel key or None: relative path} for the files matching ``pattern``."""
    found: dict = defaultdict(dict)
    for relative in files:
        match = pattern.search(relative)
        if match:
            groups = match.groupdict()
            channel = groups.get("channel")
            found[groups["dataset"], groups["image"]].setdefault(None if channel is None else _channel_key(channel, keys), relative)
    return found


def _annotated_file(record: dict) -> str | None:
    """The file an older annotation's row names (FILE_PATH, and FILE_NAME unless the path ends in it)."""
    folder, name = record.get(FILE_PATH, "").strip().strip("/"), record.get(FILE_NAME, "").strip()
    if not name or PurePosixPath(folder).name == name:
        return folder or None
    return f"{folder}/{name}" if folder else name


def _locate(named: str, by_name: dict[str, list[str]]) -> str | None:
    """The study's file at ``named`` or below a folder (shallowest first): the annotation's paths
    are relative to the folder the files were uploaded in."""
    return next((p for p in by_name.get(PurePosixPath(named).name, []) if p == named or p.endswith("/" + named)), None)


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    path = find_file(source, raw_dir, options["annotation"])
    source_file = path.relative_to(raw_dir).as_posix()
    columns: dict = options["columns"]
    needed = [n for names in columns.values() for n in ([names] if isinstance(names, str) else names)]
    table = read_table(source, path, required=[*needed, *options["keep"]])
    screen = {"Plate", "Well"} <= set(table.columns)
    if not screen and not {"Dataset Name", "Image Name"} <= set(table.columns):
        raise ParseError(
            f"{source.dir_name}: {source_file} has neither Plate/Well (screen) nor Dataset Name/Image Name (experiment) columns"
        )
    plates = read_plates(source, find_file(source, raw_dir, options["plates"])) if options["plates"] else None
    pattern = _file_pattern(source, options, screen, plates is not None)
    annotated = not screen and FILE_PATH in table.columns
    keys = {c.key for c in source.channels}
    files = source_files(raw_dir) if pattern is not None or annotated else []
    found = {}
    if pattern is not None:
        found = _screen_files(pattern, files, plates, keys) if screen else _experiment_files(pattern, files, keys)
    by_name: dict[str, list[str]] = defaultdict(list)  # file name → the study's files of that name, shallowest first
    for relative in sorted(files, key=lambda p: (p.count("/"), p)) if annotated else ():
        by_name[PurePosixPath(relative).name].append(relative)
    all_channels = "|".join(c.name for c in source.channels)

    rows, rejects = [], []
    for i, record in enumerate(table.to_dict("records")):
        outside = [f"{k}={record[k]!r}" for k, allowed in options["keep"].items() if record[k] not in allowed]
        if outside:
            rejects.append((source_file, i + 1, "excluded by the catalog's keep filter: " + ", ".join(outside)))
            continue
        base = {**_labels(record, columns), "source_file": source_file, "source_row": i + 1}
        if not screen:
            base["plate"] = record["Dataset Name"]
            files = found.get((record["Dataset Name"].strip(), record["Image Name"].strip()), {})
            if options["image_path"]:
                files = {None: options["image_path"].format(**record)}
            named = _annotated_file(record)
            if named is not None and ((located := _locate(named, by_name)) or not files):
                files = {None: located or named}
            if None in files:
                # One file holds every channel of an experiment image (IDR's 4D TIFFs, DeltaVision .dv).
                rows.append({**base, "channel_names": [all_channels], "channel_paths": [files[None]]})
            elif files and (split := channel_rows(base, files, source.channels)):
                rows.extend(split)
            else:
                rows.append({**base, "channel_names": [], "channel_paths": []})
            continue
        plate, well = record["Plate"].strip(), canonical_well(record["Well"])
        base.update(plate=plate, well=well)
        fields = found.get((plate, well), {})
        order = sorted(fields, key=lambda f: (0, int(f), "") if f.isdigit() else (1, 0, f))
        split = [r for field in order for r in channel_rows({**base, "field": field}, fields[field], source.channels)]
        if split:
            rows.extend(split)
            continue
        # Metadata only (no image files on disk yet): the row still shows the study's stains.
        stains = "|".join(c.name for c in source.channels if c.microscopy == "fluorescence")
        rows.append({"cell_visible": stains, **base, "channel_names": [], "channel_paths": []})
    return ParsedSource(frame(rows), rejects_frame(rejects))
