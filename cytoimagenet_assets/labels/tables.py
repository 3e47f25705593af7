"""The label step's tables under the data home: the merged metadata, the candidates and the class
table, each computed by the pure functions of this package and written atomically (Parquet and
the SQL catalog), with the class table's figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from cytoimagenet_assets.catalog import Catalog, Source
from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES, AssignConfig
from cytoimagenet_assets.download.plan import obtainable_files
from cytoimagenet_assets.labels.assign import assign_labels, class_summary, label_counts_table, membership_changes, with_class_keys
from cytoimagenet_assets.labels.availability import unavailable_reasons, unavailable_summary
from cytoimagenet_assets.labels.merge import drop_overlaps, merge_sources
from cytoimagenet_assets.labels.report import class_table_figures
from cytoimagenet_assets.storage import DataHome, read_parquet, write_bytes, write_parquet, write_sql_table

ASSIGNMENT_COLUMNS = ["idx", "database", "dir_name", "channel_paths", *LABEL_CATEGORIES]


def write_merged(home: DataHome, sources: tuple[Source, ...]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Merge the sources' tables (images two sources share, the catalog's overlaps, kept once) into
    ``merged_metadata``: (the table, the duplicates dropped per pair, rows written to SQL)."""
    names = {s.dir_name for s in sources}
    overlaps = {s.dir_name: tuple(o for o in s.overlaps if o in names) for s in sources if set(s.overlaps) & names}
    tables = {s.dir_name: read_parquet(home.source_table(s.dir_name)) for s in sources}
    merged, duplicates = drop_overlaps(merge_sources(tables), overlaps)
    write_parquet(merged, home.merged_table())
    return merged, duplicates, write_sql_table(merged, "merged_metadata", home.db_url)


def rows_with_images(catalog: Catalog, home: DataHome) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The merged rows (assignment columns) that can become images, and per source and reason how
    many cannot."""
    merged = pd.read_parquet(home.merged_table(), columns=ASSIGNMENT_COLUMNS)
    sources = catalog.by_dir_name
    obtainable = {d: obtainable_files(sources[d], home.raw_dir(d)) for d in merged["dir_name"].unique() if d in sources}
    reasons = unavailable_reasons(merged, obtainable)
    return merged[reasons.isna()].reset_index(drop=True), unavailable_summary(merged, reasons)


def write_candidates(home: DataHome, merged: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Images per (category, label) of ``merged``, candidates being those with at least ``threshold``."""
    counts = label_counts_table(merged).assign(candidate=lambda t: t["count"] >= threshold)
    write_parquet(counts, home.candidates_table())
    return counts


def settings_record(settings: AssignConfig) -> dict:
    """The settings as JSON-ready values (stored with the class table, shown in the UI)."""
    return {**asdict(settings), "categories": list(settings.categories)}


@dataclass
class ClassTable:
    assigned: pd.DataFrame  # one row per image: idx, category, label, class_key
    summary: pd.DataFrame  # one row per class
    changes: pd.DataFrame  # classes added, removed or changed since the previous table
    first: bool  # no previous table
    figures: dict[str, bytes]


def write_class_table(home: DataHome, merged: pd.DataFrame, settings: AssignConfig) -> ClassTable:
    """Assign weak labels over ``merged`` and write ``cytoimagenet_labels`` (its settings in the
    Parquet footer, which the image step reads), ``cytoimagenet_classes`` and the figures."""
    assigned = with_class_keys(assign_labels(merged, settings))
    summary = class_summary(assigned, merged, settings)
    previous = pd.read_parquet(home.labels_table(), columns=["idx", "class_key"]) if home.labels_table().exists() else None
    write_parquet(assigned, home.labels_table(), metadata={"settings": settings_record(settings)})
    write_parquet(summary, home.classes_table())
    write_sql_table(assigned, "cytoimagenet_labels", home.db_url)
    write_sql_table(summary, "cytoimagenet_classes", home.db_url)
    figures = class_table_figures(summary, read_parquet(home.candidates_table()), settings.threshold, settings.target)
    for name, png in figures.items():
        write_bytes(home.report_dir("cytoimagenet_labels") / f"{name}.png", png)
    return ClassTable(assigned, summary, membership_changes(previous, assigned), previous is None, figures)
