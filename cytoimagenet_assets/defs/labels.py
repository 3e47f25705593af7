"""The label-side tables: ``merged_metadata``, ``label_candidates`` and ``cytoimagenet_labels``
(the class table, which also keeps the ``cytoimagenet_class`` partitions equal to its classes)."""

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.catalog.settings import LABEL_CATEGORIES, AssignConfig
from cytoimagenet_assets.defs.checks import class_table_checks, merged_table_checks
from cytoimagenet_assets.defs.keys import CANDIDATES_KEY, CLASS_PARTITIONS, LABELS_KEY, MERGED_KEY, table_key
from cytoimagenet_assets.defs.metadata import png_markdown, table_metadata
from cytoimagenet_assets.defs.resources import DataHomeResource, redacted
from cytoimagenet_assets.defs.settings import overrides_of, with_overrides
from cytoimagenet_assets.labels import report
from cytoimagenet_assets.labels.tables import rows_with_images, settings_record, write_candidates, write_class_table, write_merged
from cytoimagenet_assets.markdown import markdown_table

GROUP = "labels"
WHY_LEFT_OUT = (
    "Rows that cannot become images take no part in label assignment: metadata-only rows (no image file named) "
    "and rows whose files are neither on disk nor in the source's remote index would fill classes that then "
    "shrink or fail when their images are built."
)

LabelAssignmentConfig = overrides_of(
    AssignConfig, "LabelAssignmentConfig", "Overrides of the catalog's label settings (unset: the catalog's values)."
)


def class_partition_requests(instance: dg.DagsterInstance, keys: list[str]) -> list:
    """The requests that make the ``cytoimagenet_class`` partitions exactly ``keys``."""
    have = set(instance.get_dynamic_partitions(CLASS_PARTITIONS.name))
    add, delete = [k for k in keys if k not in have], sorted(have - set(keys))
    return [r for r in (add and CLASS_PARTITIONS.build_add_request(add), delete and CLASS_PARTITIONS.build_delete_request(delete)) if r]


def _apply(instance: dg.DagsterInstance, requests: list) -> tuple[int, int]:
    added = removed = 0
    for request in requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(CLASS_PARTITIONS.name, list(request.partition_keys))
            added += len(request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(CLASS_PARTITIONS.name, key)
            removed += len(request.partition_keys)
    return added, removed


def left_out_metadata(left_out: pd.DataFrame) -> dict:
    return {
        "rows_without_images": int(left_out["rows"].sum()),
        "rows_without_images_per_source": dg.MetadataValue.md(
            WHY_LEFT_OUT + "\n\n" + (markdown_table(left_out, max_rows=len(left_out)) if len(left_out) else "none")
        ),
    }


def merged_metadata_asset(catalog: Catalog) -> dg.AssetsDefinition:
    sources = catalog.pretraining_sources

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
        merged, duplicates, rows = write_merged(home, sources)
        context.log.info(
            f"merged {len(merged)} rows from {len(sources)} sources ({int(duplicates['duplicate_rows'].sum())} "
            f"rows another source also lists dropped) into {home.merged_table()} and the SQL catalog"
        )
        per_source = merged.groupby(["database", "dir_name"], observed=True).size().rename("images").reset_index()
        return dg.MaterializeResult(
            metadata={
                **table_metadata(merged, home.merged_table()),
                "images_per_source": dg.MetadataValue.md(markdown_table(per_source, max_rows=len(per_source))),
                "sql_catalog": redacted(home.db_url),
                "sql_rows": rows,
                "overlap_duplicates_dropped": int(duplicates["duplicate_rows"].sum()),
                "overlaps": dg.MetadataValue.md(
                    markdown_table(duplicates, max_rows=len(duplicates)) if len(duplicates) else "none declared"
                ),
            }
        )

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
        counts = write_candidates(home, merged, threshold)
        per_category = counts[counts["candidate"]].groupby("category").size().reindex(LABEL_CATEGORIES, fill_value=0)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(counts),
                "path": dg.MetadataValue.path(str(home.candidates_table())),
                "candidates": int(counts["candidate"].sum()),
                **left_out_metadata(left_out),
                "candidates_per_category": dg.MetadataValue.md(
                    markdown_table(per_category.rename("candidates").reset_index(), max_rows=10)
                ),
                "most_frequent": dg.MetadataValue.md(markdown_table(counts, max_rows=15)),
            }
        )

    return label_candidates


def cytoimagenet_labels_asset(catalog: Catalog) -> dg.AssetsDefinition:
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
    def cytoimagenet_labels(
        context: dg.AssetExecutionContext, config: LabelAssignmentConfig, data: DataHomeResource
    ) -> dg.MaterializeResult:
        home = data.home()
        settings = with_overrides(catalog.labels, config)
        merged, left_out = rows_with_images(catalog, home)
        if merged.empty:
            raise dg.Failure(
                description=f"no row of merged_metadata can become an image ({int(left_out['rows'].sum())} rows left out: "
                f"{'; '.join(f'{d}: {n} {r}' for d, r, n in left_out.itertuples(index=False))}); materialize "
                f"the raw/ assets of the sources, or provide their files by hand",
                metadata=left_out_metadata(left_out),
                allow_retries=False,
            )
        table = write_class_table(home, merged, settings)
        summary, status = table.summary, table.changes["status"].value_counts()
        added, removed = _apply(context.instance, class_partition_requests(context.instance, summary["class_key"].tolist()))
        context.log.info(f"{len(summary)} classes, {len(table.assigned)} images; partitions +{added} -{removed}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(table.assigned),
                "classes": len(summary),
                "images": len(table.assigned),
                **left_out_metadata(left_out),
                "classes_needing_upsampling": int(summary["needs_upsampling"].sum()),
                "settings": dg.MetadataValue.json(settings_record(settings)),
                "classes_per_category": dg.MetadataValue.md(markdown_table(report.classes_per_category(summary), max_rows=10)),
                "classes_per_database": dg.MetadataValue.md(markdown_table(report.classes_per_database(summary), max_rows=20)),
                "class_table": dg.MetadataValue.md(
                    markdown_table(summary[["class_key", "category", "label", "images", "databases"]], max_rows=25)
                ),
                "changes": dg.MetadataValue.json(
                    {
                        "first_materialization": table.first,
                        "classes_added": int(status.get("added", 0)),
                        "classes_removed": int(status.get("removed", 0)),
                        "classes_changed": int(status.get("changed", 0)),
                    }
                ),
                "changed_classes": dg.MetadataValue.md(
                    markdown_table(table.changes, max_rows=30) if len(table.changes) else "no class changed"
                ),
                "partitions_added": added,
                "partitions_removed": removed,
                **{f"plot_{name}": png_markdown(png, name) for name, png in table.figures.items()},
                "path": dg.MetadataValue.path(str(home.labels_table())),
            }
        )

    return cytoimagenet_labels


def defs(catalog: Catalog) -> dg.Definitions:
    """The labels domain: the merged table, the candidates and the class table, with their checks."""
    return dg.Definitions(
        assets=[merged_metadata_asset(catalog), label_candidates_asset(catalog), cytoimagenet_labels_asset(catalog)],
        asset_checks=[*merged_table_checks(catalog), *class_table_checks()],
    )
