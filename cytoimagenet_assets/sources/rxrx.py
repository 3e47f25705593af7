"""Recursion RxRx datasets: ``metadata.csv`` (RxRx1/2/19a/19b) or the Kaggle precursor of RxRx1
(``train.csv`` + ``train_controls.csv``).

Images live at ``<image_root>/<experiment>/Plate<plate>/<well>_s<site>_w<channel>.png``. The
Kaggle tables have one row per well and no site column, so each well gives one row per site in
``sites`` (two in RxRx1). The cell type is the experiment's prefix there (``HEPG2-01`` → hepg2).

Options::

    image_roots: [images, images/train, train]   # the first holding an experiment folder
    columns: {sirna: sirna, compound: treatment, phenotype: disease_condition}
    sites: [1, 2]                                 # Kaggle tables only
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import channel_rows, find_file, frame, read_table
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, rejects_frame

KAGGLE_TABLES = ("train.csv", "train_controls.csv")
DEFAULT_ROOTS = ("images", "images/train", "train")


def _tables(source: Source, raw_dir: Path) -> list[tuple[Path, pd.DataFrame, bool]]:
    """(path, table, is_kaggle) for the metadata present: metadata.csv wins over the Kaggle files."""
    try:
        path = find_file(source, raw_dir, "metadata.csv")
        return [(path, read_table(source, path, required=["experiment", "plate", "well", "site"]), False)]
    except ParseError:
        pass
    found = []
    for name in KAGGLE_TABLES:
        try:
            path = find_file(source, raw_dir, name)
        except ParseError:
            continue
        found.append((path, read_table(source, path, required=["id_code", "experiment", "plate", "well", "sirna"]), True))
    if not found:
        raise ParseError(f"{source.dir_name}: neither metadata.csv nor the Kaggle {' / '.join(KAGGLE_TABLES)} found under {raw_dir}")
    return found


def _image_root(raw_dir: Path, roots, experiments: set[str]) -> str:
    """The first candidate root that holds an experiment folder of the tables (else the first)."""
    for root in roots:
        if any((raw_dir / root / experiment).is_dir() for experiment in experiments):
            return root
    return roots[0]


def parse(source: Source, raw_dir: Path) -> ParsedSource:
    options = source.parser_options
    columns: dict = options.get("columns", {"sirna": "sirna"})
    sites = [str(s) for s in options.get("sites", [1, 2])]
    tables = _tables(source, raw_dir)
    experiments = {e.strip() for _, table, _ in tables for e in table["experiment"].unique()}
    root = _image_root(raw_dir, options.get("image_roots", DEFAULT_ROOTS), experiments)
    rows, rejects = [], []
    for path, table, kaggle in tables:
        source_file = path.relative_to(raw_dir).as_posix()
        absent = [c for c in columns.values() if c not in table.columns]
        if absent:
            raise ParseError(f"{source.dir_name}: {source_file} lacks column(s) {', '.join(absent)}")
        for i, record in enumerate(table.to_dict("records")):
            plate, well, experiment = record["plate"].strip(), record["well"].strip(), record["experiment"].strip()
            if not (plate.isdigit() and well and experiment):
                rejects.append((source_file, i + 1, f"incomplete location experiment={experiment!r} plate={plate!r} well={well!r}"))
                continue
            base = {category: record[column] for category, column in columns.items()}
            base.update(source_file=source_file, source_row=i + 1, plate=f"{experiment}_{plate}", well=well)
            base["cell_type"] = record["cell_type"] if "cell_type" in record else experiment.split("-")[0]
            for site in ([record["site"].strip()] if not kaggle else sites):
                stem = f"{root}/{experiment}/Plate{plate}/{well}_s{site}"
                files = {c.key: f"{stem}_{c.key}.png" for c in source.channels}
                rows.extend(channel_rows({**base, "field": site}, files, source.channels))
    return ParsedSource(frame(rows), rejects_frame(rejects))
