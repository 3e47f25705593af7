"""The label-side tables: ``merged_metadata``, ``label_candidates`` and ``cytoimagenet_labels``
(the class table, which also keeps the ``cytoimagenet_class`` partitions equal to its classes)."""

import functools

import dagster as dg

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.catalog.settings import LabelSettings
from cytoimagenet_assets.defs.checks import label_table_checks
from cytoimagenet_assets.defs.class_partitions import sync_partitions
from cytoimagenet_assets.defs.failures import step_failures
from cytoimagenet_assets.defs.freshness import EAGER, EAGER_NOTE
from cytoimagenet_assets.defs.keys import CANDIDATES_KEY, LABELS_KEY, MERGED_KEY, table_key
from cytoimagenet_assets.defs.metadata import result, table_metadata
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.defs.settings import overrides_of, with_overrides
from cytoimagenet_assets.labels.tables import (
    candidates_report,
    left_out_report,
    rows_with_images,
    write_candidates,
    write_class_table,
    write_merged,
)

asset = functools.partial(dg.asset, group_name="labels")  # every asset of this domain is in its group

LabelAssignmentConfig = overrides_of(
    LabelSettings, "LabelAssignmentConfig", "Overrides of the catalog's label settings (unset: the catalog's values)."
)


def merged_metadata_asset(catalog: Catalog) -> dg.AssetsDefinition:
    sources = catalog.pretraining_sources

    @asset(
        key=MERGED_KEY,
        automation_condition=EAGER,
        deps=[table_key(s) for s in sources],
        kinds={"pandas", "parquet", "sql"},
        description="Every pretraining source's standardized metadata in one table (evaluation sets excluded), "
        "also written to the SQL catalog as table merged_metadata. Images two sources share (the catalog's "
        "overlaps) appear once." + EAGER_NOTE,
    )
    def merged_metadata(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        with step_failures():
            merged = write_merged(home, sources)
        for dir_name, why in merged.missing.items():
            context.log.warning(f"{dir_name} left out of the merge: {why}")
        merged_from = len(sources) - len(merged.missing)
        context.log.info(f"merged {len(merged.table)} rows from {merged_from} sources into {home.merged_table()} and the SQL catalog")
        return result({**table_metadata(merged.table, home.merged_table()), **merged.report(), "sql_catalog": home.db_url_shown})

    return merged_metadata


def label_candidates_asset(catalog: Catalog) -> dg.AssetsDefinition:
    threshold = catalog.labels.threshold

    @asset(
        key=CANDIDATES_KEY,
        automation_condition=EAGER,
        deps=[MERGED_KEY],
        kinds={"pandas", "parquet"},
        description=f"Images per (category, label) over the rows of merged_metadata that can become images (with files on "
        f"disk or in a remote index), multi-labels split on '|'; candidates are those with at least the catalog's "
        f"threshold ({threshold}). The rows left out are counted per source." + EAGER_NOTE,
    )
    def label_candidates(data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        merged, left_out = rows_with_images(catalog, home)
        counts = write_candidates(home, merged, threshold)
        return result({**candidates_report(counts), **left_out_report(left_out), "path": home.candidates_table()})

    return label_candidates


def cytoimagenet_labels_asset(catalog: Catalog) -> dg.AssetsDefinition:
    @asset(
        key=LABELS_KEY,
        automation_condition=EAGER,
        deps=[MERGED_KEY, CANDIDATES_KEY],
        kinds={"pandas", "parquet", "sql"},
        description="Weak labels: each image that can become one (files on disk or in a remote index) assigned to at most "
        "one class, least frequent labels first, large classes stratified-sampled down to the target. Registers "
        "each class as a cytoimagenet_class partition." + EAGER_NOTE,
    )
    def cytoimagenet_labels(
        context: dg.AssetExecutionContext, config: LabelAssignmentConfig, data: DataHomeResource
    ) -> dg.MaterializeResult:
        home = data.home()
        merged, left_out = rows_with_images(catalog, home)
        with step_failures(left_out_report(left_out)):
            table = write_class_table(home, merged, left_out, with_overrides(catalog.labels, config))
        keys = table.summary["class_key"].tolist()
        added, removed = sync_partitions(context.instance, keys)
        context.log.info(f"{len(keys)} classes, {len(table.assigned)} images; partitions +{added} -{removed}")
        report = {**table.report(), **left_out_report(left_out), "partitions_added": added, "partitions_removed": removed}
        return result({**report, "path": home.labels_table()})

    return cytoimagenet_labels


def defs(catalog: Catalog) -> dg.Definitions:
    """The labels domain: the merged table, the candidates and the class table, with their checks."""
    return dg.Definitions(
        assets=[merged_metadata_asset(catalog), label_candidates_asset(catalog), cytoimagenet_labels_asset(catalog)],
        asset_checks=label_table_checks(catalog),
    )
