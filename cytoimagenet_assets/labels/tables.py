"""The label step's tables under the data home: the merged metadata, the candidates and the class
table, each computed by the pure functions of this package and written atomically (Parquet and
the SQL catalog), with the class table's figures."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cytoimagenet_assets.catalog import Catalog, Source
from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES, LabelSettings
from cytoimagenet_assets.download.plan import obtainable_files
from cytoimagenet_assets.errors import StepFailed
from cytoimagenet_assets.labels.assign import assign_labels, class_summary, label_counts_table, membership_changes, with_class_keys
from cytoimagenet_assets.labels.availability import unavailable_reasons, unavailable_summary
from cytoimagenet_assets.labels.merge import drop_overlaps, merge_sources
from cytoimagenet_assets.labels.report import class_table_figures, classes_per_category, classes_per_database
from cytoimagenet_assets.markdown import Figure, Markdown, bullets, table
from cytoimagenet_assets.storage import DataHome, read_parquet, read_parquet_metadata, write_bytes, write_parquet, write_sql_table

ASSIGNMENT_COLUMNS = ["idx", "database", "dir_name", "channel_paths", *LABEL_CATEGORIES]
WHY_LEFT_OUT = (
    "Rows that cannot become images take no part in label assignment: metadata-only rows (no image file named) "
    "and rows whose files are neither on disk nor in the source's remote index would fill classes that then "
    "shrink or fail when their images are built."
)


class NoImageRows(StepFailed, ValueError):
    """No row of the merged table can become an image; ``left_out`` says per source why."""

    def __init__(self, left_out: pd.DataFrame):
        reasons = "; ".join(f"{d}: {n} {r}" for d, r, n in left_out.itertuples(index=False))
        super().__init__(
            f"no row of merged_metadata can become an image ({int(left_out['rows'].sum())} rows left out: {reasons}); "
            f"materialize the raw/ assets of the sources, or provide their files by hand"
        )
        self.left_out = left_out


def left_out_report(left_out: pd.DataFrame) -> dict:
    return {
        "rows_without_images": int(left_out["rows"].sum()),
        "rows_without_images_per_source": Markdown(WHY_LEFT_OUT + "\n\n" + table(left_out, max_rows=len(left_out), empty="none")),
    }


@dataclass
class Merged:
    table: pd.DataFrame
    duplicates: pd.DataFrame  # rows dropped per pair of overlapping sources
    sql_rows: int
    missing: dict[str, str]  # dir_name -> why its table is not in the merge

    def report(self) -> dict:
        per_source = self.table.groupby(["database", "dir_name"], observed=True).size().rename("images").reset_index()
        return {
            "sources_merged": int(per_source["dir_name"].nunique()),
            "sources_missing": bullets([f"{d}: {why}" for d, why in self.missing.items()]),
            "images_per_source": table(per_source, max_rows=len(per_source)),
            "sql_rows": self.sql_rows,
            "overlap_duplicates_dropped": int(self.duplicates["duplicate_rows"].sum()),
            "overlaps": table(self.duplicates, max_rows=len(self.duplicates), empty="none declared"),
        }


class NoSourceTables(StepFailed, FileNotFoundError):
    """Not one source has a standardized table to merge."""


def write_merged(home: DataHome, sources: tuple[Source, ...]) -> Merged:
    """Merge the sources' tables (images two sources share, the catalog's overlaps, kept once) into
    ``merged_metadata``, Parquet and SQL. A source without a table (its download or parse failed, or
    it was never materialized) is left out and named in ``missing``: one unreachable server out of
    forty must not hold back the other thirty-nine, nor pass unnoticed (the every_source_merged check)."""
    missing = {s.dir_name: missing_table_reason(home, s) for s in sources if not home.source_table(s.dir_name).is_file()}
    present = tuple(s for s in sources if s.dir_name not in missing)
    if not present:
        raise NoSourceTables(f"no source has a standardized table to merge: {'; '.join(f'{d}: {w}' for d, w in missing.items())}")
    names = {s.dir_name for s in present}
    overlaps = {s.dir_name: tuple(o for o in s.overlaps if o in names) for s in present if set(s.overlaps) & names}
    tables = {s.dir_name: read_parquet(home.source_table(s.dir_name)) for s in present}
    merged, duplicates = drop_overlaps(merge_sources(tables), overlaps)
    write_parquet(merged, home.merged_table())
    return Merged(merged, duplicates, write_sql_table(merged, "merged_metadata", home.db_url), missing)


def missing_table_reason(home: DataHome, source: Source) -> str:
    return f"no table at {home.source_table(source.dir_name)}: materialize raw/{source.dir_name} and source_metadata/{source.dir_name}"


def every_source_merged_check(home: DataHome, sources: tuple[Source, ...]) -> tuple[bool, dict]:
    """Every pretraining source has a table, so the merge holds all of them."""
    missing = {s.dir_name: missing_table_reason(home, s) for s in sources if not home.source_table(s.dir_name).is_file()}
    return not missing, {"sources_missing": bullets([f"{d}: {why}" for d, why in missing.items()]), "sources": len(sources)}


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


def candidates_report(counts: pd.DataFrame) -> dict:
    per_category = counts[counts["candidate"]].groupby("category").size().reindex(LABEL_CATEGORIES, fill_value=0)
    return {
        "dagster/row_count": len(counts),
        "candidates": int(counts["candidate"].sum()),
        "candidates_per_category": table(per_category.rename("candidates").reset_index(), max_rows=10),
        "most_frequent": table(counts, max_rows=15),
    }


@dataclass
class ClassTable:
    assigned: pd.DataFrame  # one row per image: idx, category, label, class_key
    summary: pd.DataFrame  # one row per class
    changes: pd.DataFrame  # classes added, removed or changed since the previous table
    first: bool  # no previous table
    figures: dict[str, bytes]
    settings: LabelSettings

    def report(self) -> dict:
        summary, status = self.summary, self.changes["status"].value_counts()
        changes = {
            name: int(status.get(kind, 0))
            for name, kind in (("classes_added", "added"), ("classes_removed", "removed"), ("classes_changed", "changed"))
        }
        return {
            "dagster/row_count": len(self.assigned),
            "classes": len(summary),
            "images": len(self.assigned),
            "classes_needing_upsampling": int(summary["needs_upsampling"].sum()),
            "settings": self.settings.record(),
            "classes_per_category": table(classes_per_category(summary), max_rows=10),
            "classes_per_database": table(classes_per_database(summary), max_rows=20),
            "class_table": table(summary[["class_key", "category", "label", "images", "databases"]], max_rows=25),
            "changes": {"first_materialization": self.first, **changes},
            "changed_classes": table(self.changes, max_rows=30, empty="no class changed"),
            **{f"plot_{name}": Figure(png, name) for name, png in self.figures.items()},
        }


def write_class_table(home: DataHome, merged: pd.DataFrame, left_out: pd.DataFrame, settings: LabelSettings) -> ClassTable:
    """Assign weak labels over ``merged`` (the rows that can become images; ``left_out`` the others,
    per source and reason: NoImageRows when ``merged`` is empty) and write ``cytoimagenet_labels`` (its settings in the
    Parquet footer, which the image step reads), ``cytoimagenet_classes`` and the figures."""
    if merged.empty:
        raise NoImageRows(left_out)
    assigned = with_class_keys(assign_labels(merged, settings))
    summary = class_summary(assigned, merged, settings)
    previous = pd.read_parquet(home.labels_table(), columns=["idx", "class_key"]) if home.labels_table().exists() else None
    write_parquet(assigned, home.labels_table(), metadata={"settings": settings.record()})
    write_parquet(summary, home.classes_table())
    write_sql_table(assigned, "cytoimagenet_labels", home.db_url)
    write_sql_table(summary, "cytoimagenet_classes", home.db_url)
    figures = class_table_figures(summary, read_parquet(home.candidates_table()), settings.threshold, settings.target)
    for name, png in figures.items():
        write_bytes(home.report_dir("cytoimagenet_labels") / f"{name}.png", png)
    return ClassTable(assigned, summary, membership_changes(previous, assigned), previous is None, figures, settings)


# The checks of the merged table and the class table: each gives (passed, report).
def no_evaluation_rows_check(merged: pd.DataFrame, evaluation: list[str]) -> tuple[bool, dict]:
    leaked = merged["dir_name"].isin(evaluation)
    return not leaked.any(), {"leaked_rows": int(leaked.sum())}


def one_class_per_image_check(home: DataHome) -> tuple[bool, dict]:
    labels = read_parquet(home.labels_table())
    twice = labels.loc[labels["idx"].duplicated(keep=False), "idx"].unique().tolist()
    return not twice, {"images_in_two_classes": len(twice), "examples": twice[:20]}


def class_sizes_check(home: DataHome) -> tuple[bool, dict]:
    """Every class holds between the threshold and the target the table was built with."""
    settings = LabelSettings.from_record(read_parquet_metadata(home.labels_table())["settings"])
    sizes = read_parquet(home.labels_table()).groupby("class_key").size()
    outside = sizes[(sizes < settings.threshold) | (sizes > settings.target)]
    return outside.empty, {"outside_bounds": outside.head(20).to_dict(), "threshold": settings.threshold, "target": settings.target}


def images_in_merged_check(home: DataHome) -> tuple[bool, dict]:
    labels = read_parquet(home.labels_table())
    unknown = sorted(set(labels["idx"]) - set(pd.read_parquet(home.merged_table(), columns=["idx"])["idx"]))
    return not unknown, {"unknown_images": len(unknown), "examples": unknown[:20]}
