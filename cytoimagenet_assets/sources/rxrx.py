"""Recursion RxRx datasets: ``metadata.csv`` (RxRx1/2/19a/19b) or the Kaggle precursor of RxRx1
(``train.csv`` + ``train_controls.csv``).

Images live at ``<image_root>/<experiment>/Plate<plate>/<well>_s<site>_w<channel>.png``. The
Kaggle tables have one row per well and no site column, so each well gives one row per site in
``sites`` (two in RxRx1). The cell type is the experiment's prefix there (``HEPG2-01`` → hepg2).

Each row's image root is found by its split: ``train`` or ``test`` from the Kaggle table's name
(``test.csv``, ``test_controls.csv``), or from ``metadata.csv``'s ``dataset`` column. Kaggle unpacks
the splits into ``train/<experiment>/`` and ``test/<experiment>/``, rxrx.ai into one ``images/``; the
first of ``image_roots`` (``{split}`` standing for the row's split) that holds an experiment folder
of the split, on disk or in the remote index, is its root.

RxRx1 comes in three label releases, recognised from their columns and values:

* ``metadata.csv`` (rxrx.ai, 2020): ``sirna`` holds ThermoFisher siRNA names, ``sirna_id`` integers,
  ``well_type`` treatment / negative_control / positive_control.
* the original Kaggle release (June 2019): ``train.csv`` / ``test.csv`` / ``train_controls.csv`` /
  ``test_controls.csv`` with *integer* ``sirna`` ids (0–1107 treatments; in the controls files,
  with ``well_type``, 1108–1137 positive controls and 1138 the untreated negative control).
* a later copy of the Kaggle tables with *named* ids (``sirna_250``, ``UNTREATED`` for the negative
  control; its positive controls are numbered differently, e.g. ``sirna_852``).

No table maps the integer ids to either named vocabulary (the later copy renumbered the controls,
so ``250`` and ``sirna_250`` need not be the same siRNA), so integer ids keep a distinct form,
``kaggle sirna <id>`` (option ``integer_sirna_label``), and one source never mixes integer and
named ids (an error naming both files). Negative controls — ``well_type`` negative_control, or
id 1138 in the integer release — are never siRNA labels; positive controls are real siRNAs and
keep theirs. ``test.csv`` has no siRNA column: its wells still give rows (cell type, site).

Options::

    metadata: metadata.csv                          # wins over the Kaggle tables when present
    image_roots: [images, images/{split}, {split}]  # per split, the first holding an experiment folder
    columns: {sirna: sirna, compound: treatment, phenotype: disease_condition}
    sites: [1, 2]                                   # Kaggle tables only
    integer_sirna_label: "kaggle sirna {id}"        # the original Kaggle release's integer ids
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from cytoimagenet_assets.catalog import Source
from cytoimagenet_assets.sources.common import channel_rows, find_file, frame, read_table, source_files
from cytoimagenet_assets.sources.table import ParsedSource, ParseError, rejects_frame

# The Kaggle tables, each with the split its wells are imaged in.
KAGGLE_TABLES = {"train.csv": "train", "train_controls.csv": "train", "test.csv": "test", "test_controls.csv": "test"}
KAGGLE_TEST = ("test.csv",)  # no siRNA column: the competition's hidden answers
SPLIT = "{split}"
NEGATIVE_CONTROL = "negative_control"
INTEGER_NEGATIVE_CONTROL = "1138"  # the untreated wells of the integer release (its controls files' well_type agrees)
INTEGER_LABEL = "kaggle sirna {id}"
OPTIONS = {
    "metadata": "metadata.csv",
    "image_roots": ["images", f"images/{SPLIT}", SPLIT],
    "columns": {"sirna": "sirna"},
    "sites": [1, 2],
    "integer_sirna_label": INTEGER_LABEL,
}


def _tables(source: Source, raw_dir: Path, metadata: str) -> list[tuple[Path, pd.DataFrame, bool]]:
    """(path, table, is_kaggle) for the metadata present: the metadata table (``metadata``, default
    metadata.csv) wins over the Kaggle files. Each table gets a ``_split`` column (train, test, or
    '' where the table says nothing)."""
    try:
        path = find_file(source, raw_dir, metadata)
        table = read_table(source, path, required=["experiment", "plate", "well", "site"])
        table["_split"] = table["dataset"].str.strip() if "dataset" in table else ""
        return [(path, table, False)]
    except ParseError:
        pass
    found = []
    for name in KAGGLE_TABLES:
        try:
            path = find_file(source, raw_dir, name)
        except ParseError:
            continue
        required = ["id_code", "experiment", "plate", "well"] + ([] if name in KAGGLE_TEST else ["sirna"])
        table = read_table(source, path, required=required)
        table["_split"] = KAGGLE_TABLES[name]
        found.append((path, table, True))
    if not found:
        raise ParseError(f"{source.dir_name}: neither {metadata} nor the Kaggle {' / '.join(KAGGLE_TABLES)} found under {raw_dir}")
    return found


def _image_roots(source: Source, raw_dir: Path, table_dir: str, roots, experiments: dict[str, set[str]]) -> dict[str, str]:
    """Split → the first candidate root holding an experiment folder of the split's rows, on disk or
    in the remote index (else the first): beside the metadata table first (the rxrx.ai zips unpack
    to ``rxrx1/metadata.csv`` beside ``rxrx1/images/``), then at the top of the raw folder. Roots
    naming ``{split}`` are no candidates for rows without a split."""
    folders = {"/".join(p.split("/")[:k]) for p in source_files(raw_dir) for k in range(1, min(p.count("/"), 4) + 1)}
    found = {}
    for split, names in experiments.items():
        own = [r.replace(SPLIT, split) for r in roots if split or SPLIT not in r]
        if not own:
            raise ParseError(f"{source.dir_name}: every parser_options.image_roots entry names {SPLIT}, but the metadata gives no split")
        candidates = [f"{table_dir}/{r}" for r in own] + own if table_dir else own
        found[split] = next((root for root in candidates if any(f"{root}/{e}" in folders for e in names)), candidates[0])
    return found


def _integer_release(source: Source, tables, raw_dir: Path, column: str) -> bool:
    """Whether the Kaggle tables carry integer siRNA ids (the original release) rather than names.
    Integer and named ids in one source are an error naming the files and rows, never a mix."""
    kinds: dict[bool, tuple[str, int, str]] = {}
    for path, table, kaggle in tables:
        if not kaggle or column not in table.columns:
            continue
        for i, value in enumerate(table[column].str.strip(), start=1):
            if value:
                kinds.setdefault(value.isdigit(), (path.relative_to(raw_dir).as_posix(), i, value))
    if len(kinds) == 2:
        (f1, r1, v1), (f2, r2, v2) = kinds[True], kinds[False]
        raise ParseError(
            f"{source.dir_name}: integer siRNA ids ({f1} row {r1}: {v1!r}, the original Kaggle release) and named ones "
            f"({f2} row {r2}: {v2!r}, a later release) in one source; keep the tables of one release"
        )
    return kinds.keys() == {True}


def parse(source: Source, raw_dir: Path, options: dict) -> ParsedSource:
    columns: dict = options["columns"]
    sites = [str(s) for s in options["sites"]]
    tables = _tables(source, raw_dir, options["metadata"])
    sirna_column = columns.get("sirna")
    integers = sirna_column is not None and _integer_release(source, tables, raw_dir, sirna_column)
    integer_label = str(options["integer_sirna_label"])
    experiments: dict[str, set[str]] = defaultdict(set)
    for _, table, _ in tables:
        for split, experiment in zip(table["_split"], table["experiment"].str.strip()):
            experiments[split].add(experiment)
    table_dir = "" if tables[0][0].parent == raw_dir else tables[0][0].parent.relative_to(raw_dir).as_posix()
    roots = _image_roots(source, raw_dir, table_dir, options["image_roots"], experiments)
    rows, rejects = [], []
    for path, table, kaggle in tables:
        source_file = path.relative_to(raw_dir).as_posix()
        absent = [c for c in columns.values() if c not in table.columns and not (kaggle and path.name in KAGGLE_TEST)]
        if absent:
            raise ParseError(f"{source.dir_name}: {source_file} lacks column(s) {', '.join(absent)}")
        for i, record in enumerate(table.to_dict("records")):
            plate, well, experiment = record["plate"].strip(), record["well"].strip(), record["experiment"].strip()
            if not (plate.isdigit() and well and experiment):
                rejects.append((source_file, i + 1, f"incomplete location experiment={experiment!r} plate={plate!r} well={well!r}"))
                continue
            base = {category: record.get(column) for category, column in columns.items()}
            if sirna_column is not None:
                sirna = (record.get(sirna_column) or "").strip()
                control = record.get("well_type", "").strip() == NEGATIVE_CONTROL or (integers and sirna == INTEGER_NEGATIVE_CONTROL)
                base["sirna"] = None if control or not sirna else integer_label.format(id=sirna) if integers else sirna
            base.update(source_file=source_file, source_row=i + 1, plate=f"{experiment}_{plate}", well=well)
            base["cell_type"] = record["cell_type"] if "cell_type" in record else experiment.split("-")[0]
            for site in [record["site"].strip()] if not kaggle else sites:
                stem = f"{roots[record['_split']]}/{experiment}/Plate{plate}/{well}_s{site}"
                files = {c.key: f"{stem}_{c.key}.png" for c in source.channels}
                rows.extend(channel_rows({**base, "field": site}, files, source.channels))
    return ParsedSource(frame(rows), rejects_frame(rejects))
