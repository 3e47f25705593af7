"""Human Protein Atlas Kaggle competitions (2018 ``kag_hpa``, 2021 ``kag_hpa_single``).

``train.csv`` lists each image Id with its integer localization labels; images are four files
``<Id>_{red,green,blue,yellow}.png``. As in the original, each channel is its own image: the
landmark stains (nucleus, microtubules, ER) label what they show, and the protein channel
carries the image's localization labels, with the most common compartments dropped from
multi-labels so that rarer localizations get their classes.

Options::

    table: train.csv
    id_column: Id
    target_column: Target
    separator: " "            # 2021 uses "|"
    label_names: [Nucleoplasm, Nuclear membrane, ...]   # index = integer label
    protein_channel: green
    drop_from_multilabels: [nucleus, er, golgi, nucleoli, mitochondria, actin]
    image_dir: train
    extension: png
    cell_line_column: CellLine     # default: the first of CellLine, Cell line, cell_line the table has
    organism_column: Organism      # default: the first of Organism, Species the table has
    cell_line_organisms: {NIH 3T3: mouse}

Lists that name each image's cell line (the HPA v18 list behind the 2018 competition's external
data: 27 cell lines, among them the mouse NIH 3T3) give each row its own cell type, and its
organism from an organism column or else from ``cell_line_organisms``; the catalog's defaults
fill only rows whose file says nothing. HPA's cell lines are human apart from NIH 3T3, as far as
we know; extend ``cell_line_organisms`` if a list holds another non-human line.
"""

from __future__ import annotations

from pathlib import Path

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import NO_DEFAULT, find_file, frame, read_table
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, normalize_label, rejects_frame

CELL_LINE_COLUMNS = ("CellLine", "Cell line", "Cell Line", "cell_line")
ORGANISM_COLUMNS = ("Organism", "Species", "organism")
CELL_LINE_ORGANISMS = {"NIH 3T3": "mouse"}
OPTIONS = {
    "table": "train.csv",
    "id_column": "Id",
    "target_column": "Target",
    "separator": " ",
    "label_names": NO_DEFAULT,
    "protein_channel": "green",
    "drop_from_multilabels": [],
    "image_dir": "train",
    "extension": "png",
    "cell_line_column": None,  # None: the first of CELL_LINE_COLUMNS the table has
    "organism_column": None,  # None: the first of ORGANISM_COLUMNS the table has
    "cell_line_organisms": CELL_LINE_ORGANISMS,
}


def _squash(text: str) -> str:
    return " ".join(str(text).split()).lower()


def _column(source: Source, options: dict, key: str, candidates, columns, source_file: str) -> str | None:
    if options[key] is not None:
        if options[key] not in columns:
            raise ParseError(f"{source.dir_name}: {source_file} lacks the {key} {options[key]!r}; it has {', '.join(columns)}")
        return options[key]
    return next((c for c in candidates if c in columns), None)


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    id_column, target_column = options["id_column"], options["target_column"]
    names: list[str] = options["label_names"]
    protein = options["protein_channel"]
    drop = set(options["drop_from_multilabels"])
    separator = options["separator"]
    image_dir = options["image_dir"]
    extension = options["extension"]
    path = find_file(source, raw_dir, options["table"])
    source_file = path.relative_to(raw_dir).as_posix()
    table = read_table(source, path, required=[id_column, target_column])

    cell_line_column = _column(source, options, "cell_line_column", CELL_LINE_COLUMNS, table.columns, source_file)
    organism_column = _column(source, options, "organism_column", ORGANISM_COLUMNS, table.columns, source_file)
    line_organisms = {_squash(k): v for k, v in options["cell_line_organisms"].items()}
    blank = [""] * len(table)
    cell_lines = table[cell_line_column].str.strip().tolist() if cell_line_column else blank
    organisms = table[organism_column].str.strip().tolist() if organism_column else blank

    rows, rejects = [], []
    for i, (image_id, target) in enumerate(zip(table[id_column].str.strip(), table[target_column])):
        codes = [t for t in target.replace(separator, " ").split() if t]
        unknown = [c for c in codes if not (c.isdigit() and int(c) < len(names))]
        if not image_id or not codes or unknown:
            rejects.append((source_file, i + 1, f"bad Id/label: Id={image_id!r} {target_column}={target!r}"))
            continue
        labels = [normalize_label(names[int(c)], "cell_visible") for c in codes]
        labels = [label for label in dict.fromkeys(labels) if label]
        if len(labels) > 1:
            labels = [label for label in labels if label not in drop] or labels
        cell_line = cell_lines[i] or None
        organism = organisms[i] or (line_organisms.get(_squash(cell_line)) if cell_line else None)
        for channel in source.channels:
            # '' (not None) for a protein channel without a localization: no default stain fills it in.
            shows = "|".join(labels) if channel.key == protein else channel.name
            rows.append(
                {
                    "source_file": source_file,
                    "source_row": i + 1,
                    "field": channel.key,
                    "cell_visible": shows,
                    "cell_type": cell_line,
                    "organism": organism,
                    "channel_names": [channel.name],
                    "channel_paths": [f"{image_dir}/{image_id}_{channel.key}.{extension}"],
                }
            )
    return ParsedSource(frame(rows), rejects_frame(rejects))
