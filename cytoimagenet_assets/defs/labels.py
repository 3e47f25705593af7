"""The label-side tables: ``merged_metadata``, ``label_candidates`` and ``cytoimagenet_labels``
(the class table, which also registers each class as a ``cytoimagenet_class`` partition)."""

from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.metadata import png_markdown, table_metadata
from cytoimagenet_assets.defs.resources import DataHomeResource, redacted
from cytoimagenet_assets.defs.sources import table_key
from cytoimagenet_assets.download.plan import obtainable_files
from cytoimagenet_assets.labels import report
from cytoimagenet_assets.labels.assign import (
    CATEGORIES,
    AssignConfig,
    assign_labels,
    class_summary,
    label_counts_table,
    membership_changes,
    with_class_keys,
)
from cytoimagenet_assets.labels.availability import unavailable_reasons, unavailable_summary
from cytoimagenet_assets.labels.merge import drop_overlaps, merge_sources
from cytoimagenet_assets.markdown import markdown_table
from cytoimagenet_assets.storage import DataHome, read_parquet, write_bytes, write_parquet, write_sql_table

GROUP = "labels"
MERGED_KEY = dg.AssetKey("merged_metadata")
CANDIDATES_KEY = dg.AssetKey("label_candidates")
LABELS_KEY = dg.AssetKey("cytoimagenet_labels")
CLASS_PARTITIONS = dg.DynamicPartitionsDefinition(name="cytoimagenet_class")
ASSIGNMENT_COLUMNS = ["idx", "database", "dir_name", "channel_paths", *CATEGORIES]
WHY_LEFT_OUT = ("Rows that cannot become images take no part in label assignment: metadata-only rows (no image file named) "
                "and rows whose files are neither on disk nor in the source's remote index would fill classes that then "
                "shrink or fail when their images are built.")


def rows_with_images(catalog: Catalog, home: DataHome) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The merged rows (assignment columns) that can become images, and per source and reason how
    many cannot."""
    merged = pd.read_parquet(home.table_path("merged_metadata"), columns=ASSIGNMENT_COLUMNS)
    sources = catalog.by_dir_name
    obtainable = {d: obtainable_files(sources[d], home.raw_dir(d)) for d in merged["dir_name"].unique() if d in sources}
    reasons = unavailable_reasons(merged, obtainable)
    return merged[reasons.isna()].reset_index(drop=True), unavailable_summary(merged, reasons)


def left_out_metadata(left_out: pd.DataFrame) -> dict:
    return {
        "rows_without_images": int(left_out["rows"].sum()),
        "rows_without_images_per_source": dg.MetadataValue.md(
            WHY_LEFT_OUT + "\n\n" + (markdown_table(left_out, max_rows=len(left_out)) if len(left_out) else "none")),
    }


def merged_metadata_asset(catalog: Catalog) -> dg.AssetsDefinition:
    sources = catalog.pretraining_sources
    names = {s.dir_name for s in sources}
    overlaps = {s.dir_name: tuple(o for o in s.overlaps if o in names) for s in sources if set(s.overlaps) & names}

    @dg.asset(
        key=MERGED_KEY,
        automation_condition=dg.AutomationCondition.eager(),
        deps=[table_key(s) for s in sources],
        group_name=GROUP,
        kinds={"pandas", "parquet", "sql"},
        description="Every pretraining source's standardized metadata in one table (evaluation sets excluded), "
                    "also written to the SQL catalog as table merged_metadata. Images two sources share (the catalog's "
                    "overlaps) appear once.",
    )
    def merged_metadata(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        tables = {s.dir_name: read_parquet(home.table_path("source_metadata", s.dir_name)) for s in sources}
        merged, duplicates = drop_overlaps(merge_sources(tables), overlaps)
        if len(duplicates):
            context.log.info(f"dropped {int(duplicates['duplicate_rows'].sum())} rows that another source also lists")
        path = write_parquet(merged, home.table_path("merged_metadata"))
        rows = write_sql_table(merged, "merged_metadata", home.db_url)
        context.log.info(f"merged {len(merged)} rows from {len(tables)} sources into {path} and the SQL catalog")
        per_source = merged.groupby(["database", "dir_name"], observed=True).size().rename("images").reset_index()
        return dg.MaterializeResult(metadata={
            **table_metadata(merged, path),
            "images_per_source": dg.MetadataValue.md(markdown_table(per_source, max_rows=len(per_source))),
            "sql_catalog": redacted(home.db_url),
            "sql_rows": rows,
            "overlap_duplicates_dropped": int(duplicates["duplicate_rows"].sum()),
            "overlaps": dg.MetadataValue.md(markdown_table(duplicates, max_rows=len(duplicates)) if len(duplicates) else "none declared"),
        })

    return merged_metadata


def label_candidates_asset(catalog: Catalog) -> dg.AssetsDefinition:
    threshold = catalog.labels.threshold

    @dg.asset(
        key=CANDIDATES_KEY,
        automation_condition=dg.AutomationCondition.eager(),
        deps=[MERGED_KEY],
        group_name=GROUP,
        kinds={"pandas", "parquet"},
        description=f"Images per (category, label) over the rows of merged_metadata that can become images (with files on "
                    f"disk or in a remote index), multi-labels split on '|'; candidates are those with at least the catalog's "
                    f"threshold ({threshold}). The rows left out are counted per source.",
    )
    def label_candidates(data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        merged, left_out = rows_with_images(catalog, home)
        counts = label_counts_table(merged).assign(candidate=lambda t: t["count"] >= threshold)
        path = write_parquet(counts, home.table_path("label_candidates"))
        per_category = counts[counts["candidate"]].groupby("category").size().reindex(CATEGORIES, fill_value=0)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(counts),
            "path": dg.MetadataValue.path(str(path)),
            "candidates": int(counts["candidate"].sum()),
            **left_out_metadata(left_out),
            "candidates_per_category": dg.MetadataValue.md(markdown_table(per_category.rename("candidates").reset_index(), max_rows=10)),
            "most_frequent": dg.MetadataValue.md(markdown_table(counts, max_rows=15)),
        })

    return label_candidates


class LabelAssignmentConfig(dg.Config):
    """Overrides of the catalog's label thresholds (unset: the catalog's values)."""

    threshold: Optional[int] = None
    target: Optional[int] = None
    cap: Optional[int] = None
    seed: Optional[int] = None
    upsampling: Optional[str] = None  # "original" or "top_up"
    categories: list[str] = list(CATEGORIES)


def cytoimagenet_labels_asset(catalog: Catalog) -> dg.AssetsDefinition:
    defaults = catalog.labels

    @dg.asset(
        key=LABELS_KEY,
        automation_condition=dg.AutomationCondition.eager(),
        deps=[MERGED_KEY, CANDIDATES_KEY],
        group_name=GROUP,
        kinds={"pandas", "parquet", "sql"},
        description="Weak labels: each image that can become one (files on disk or in a remote index) assigned to at most "
                    "one class, least frequent labels first, large classes stratified-sampled down to the target. Registers "
                    "each class as a cytoimagenet_class partition.",
    )
    def cytoimagenet_labels(context: dg.AssetExecutionContext, config: LabelAssignmentConfig, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        settings = AssignConfig(
            threshold=config.threshold or defaults.threshold, target=config.target or defaults.target,
            cap=config.cap or defaults.cap, seed=catalog.seed if config.seed is None else config.seed,
            categories=tuple(config.categories), upsampling=config.upsampling or defaults.upsampling,
        )
        merged, left_out = rows_with_images(catalog, home)
        if merged.empty:
            raise dg.Failure(description=f"no row of merged_metadata can become an image ({int(left_out['rows'].sum())} rows left out: "
                                         f"{'; '.join(f'{d}: {n} {r}' for d, r, n in left_out.itertuples(index=False))}); materialize "
                                         f"the raw/ assets of the sources, or provide their files by hand",
                             metadata=left_out_metadata(left_out), allow_retries=False)
        assigned = with_class_keys(assign_labels(merged, settings))
        summary = class_summary(assigned, merged, settings)
        labels_path = home.table_path("cytoimagenet_labels")
        previous = pd.read_parquet(labels_path, columns=["idx", "class_key"]) if labels_path.exists() else None
        changes = membership_changes(previous, assigned)

        write_parquet(assigned, labels_path, metadata={"settings": _settings_json(settings)})
        write_parquet(summary, home.table_path("cytoimagenet_classes"))
        write_sql_table(assigned, "cytoimagenet_labels", home.db_url)
        write_sql_table(summary, "cytoimagenet_classes", home.db_url)
        added, removed = _sync_partitions(context.instance, summary["class_key"].tolist())
        context.log.info(f"{len(summary)} classes, {len(assigned)} images; partitions +{added} -{removed}")

        counts = read_parquet(home.table_path("label_candidates"))
        figures = _figures(summary, counts, settings)
        figure_dir = home.report_dir("cytoimagenet_labels")
        figure_dir.mkdir(parents=True, exist_ok=True)
        for name, png in figures.items():
            write_bytes(figure_dir / f"{name}.png", png)
        status = changes["status"].value_counts()
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(assigned),
            "classes": len(summary),
            "images": len(assigned),
            **left_out_metadata(left_out),
            "classes_needing_upsampling": int(summary["needs_upsampling"].sum()),
            "settings": dg.MetadataValue.json(_settings_json(settings)),
            "classes_per_category": dg.MetadataValue.md(markdown_table(report.classes_per_category(summary), max_rows=10)),
            "classes_per_database": dg.MetadataValue.md(markdown_table(report.classes_per_database(summary), max_rows=20)),
            "class_table": dg.MetadataValue.md(markdown_table(summary[["class_key", "category", "label", "images", "databases"]], max_rows=25)),
            "changes": dg.MetadataValue.json({"first_materialization": previous is None, "classes_added": int(status.get("added", 0)),
                                              "classes_removed": int(status.get("removed", 0)), "classes_changed": int(status.get("changed", 0))}),
            "changed_classes": dg.MetadataValue.md(markdown_table(changes, max_rows=30) if len(changes) else "no class changed"),
            "partitions_added": added,
            "partitions_removed": removed,
            **{f"plot_{name}": png_markdown(png, name) for name, png in figures.items()},
            "path": dg.MetadataValue.path(str(labels_path)),
        })

    return cytoimagenet_labels


def _settings_json(settings: AssignConfig) -> dict:
    return {"threshold": settings.threshold, "target": settings.target, "cap": settings.cap, "seed": settings.seed,
            "categories": list(settings.categories), "upsampling": settings.upsampling}


def partition_changes(existing: list[str], keys: list[str]) -> tuple[list[str], list[str]]:
    """(keys to add, keys to delete) so that the partitions become exactly ``keys``."""
    have = set(existing)
    return [k for k in keys if k not in have], sorted(have - set(keys))


def _sync_partitions(instance: dg.DagsterInstance, keys: list[str]) -> tuple[int, int]:
    """Make the cytoimagenet_class partitions exactly the current classes."""
    new, vanished = partition_changes(instance.get_dynamic_partitions(CLASS_PARTITIONS.name), keys)
    if new:
        instance.add_dynamic_partitions(CLASS_PARTITIONS.name, new)
    for key in vanished:
        instance.delete_dynamic_partition(CLASS_PARTITIONS.name, key)
    return len(new), len(vanished)


def _figures(summary: pd.DataFrame, counts: pd.DataFrame, settings: AssignConfig) -> dict[str, bytes]:
    top = max(int(counts["count"].max()) if len(counts) else 1, settings.threshold * 4)
    thresholds = np.unique(np.geomspace(1, top, 60).astype(int))
    return {
        "classes_per_category": report.bar_png(report.classes_per_category(summary), "category", "labels", "classes per category"),
        "classes_per_database": report.bar_png(report.classes_per_database(summary), "database", "labels", "classes per database"),
        "images_per_class": report.histogram_png(summary, settings.threshold, settings.target),
        "threshold_curve": report.threshold_curve_png(report.candidates_by_threshold(counts, thresholds), settings.threshold),
    }
