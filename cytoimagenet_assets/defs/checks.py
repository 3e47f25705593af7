"""Asset checks on every metadata table (schema and dtypes, unique idx, files exist, labels
normalized; on the merged table also that no evaluation set leaked into it) and on the class
table (one class per image, class sizes within the thresholds, every image in the merged table).
The checks themselves are plain functions giving (passed, report); this module only declares them."""

from typing import Callable

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.keys import LABELS_KEY, MERGED_KEY, table_key
from cytoimagenet_assets.defs.metadata import as_metadata
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.labels import tables
from cytoimagenet_assets.sources.table import files_exist_check, labels_normalized_check, schema_check, unique_idx_check
from cytoimagenet_assets.storage import DataHome, read_parquet

Run = Callable[[DataHome], tuple[bool, dict]]


def _check(asset: dg.AssetKey, name: str, description: str, run: Run, blocking: bool = True) -> dg.AssetChecksDefinition:
    """A check of ``asset`` running ``run`` on the data home; a non-blocking one fails as a warning."""
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    @dg.asset_check(asset=asset, name=name, blocking=blocking, description=description)
    def check(data: DataHomeResource) -> dg.AssetCheckResult:
        passed, report = run(data.home())
        return dg.AssetCheckResult(passed=passed, severity=severity, metadata=as_metadata(report))

    return check


def _table_checks(key: dg.AssetKey, read: Callable[[DataHome], pd.DataFrame], files_must_exist: bool) -> list[dg.AssetChecksDefinition]:
    return [
        _check(key, "schema", "Columns and dtypes of the standardized table.", lambda home: schema_check(read(home))),
        _check(key, "unique_idx", "Every row has its own idx.", lambda home: unique_idx_check(read(home))),
        _check(
            key,
            "files_exist",
            "Every channel file a row references is on disk. A warning for real sources, whose metadata may be downloaded "
            "before their images; an error for generated ones.",
            lambda home: files_exist_check(read(home), home.raw_dir),
            blocking=files_must_exist,
        ),
        _check(
            key,
            "labels_normalized",
            "Labels are lowercase, synonym-mapped, '|'-joined, genes suffixed.",
            lambda home: labels_normalized_check(read(home)),
        ),
    ]


def source_table_checks(catalog: Catalog) -> list[dg.AssetChecksDefinition]:
    """The table checks of every source's standardized metadata (files must exist for generated sources)."""
    checks = []
    for source in (s for s in catalog.sources if s.parser is not None):

        def read(home: DataHome, dir_name=source.dir_name) -> pd.DataFrame:
            return read_parquet(home.source_table(dir_name))

        checks += _table_checks(table_key(source), read, files_must_exist=source.download.method == "demo")
    return checks


def label_table_checks(catalog: Catalog) -> list[dg.AssetChecksDefinition]:
    """The table checks of merged_metadata (and that no evaluation set leaked into it) and the class table's."""

    def read_merged(home: DataHome) -> pd.DataFrame:
        return read_parquet(home.merged_table())

    generated = all(s.download.method == "demo" for s in catalog.pretraining_sources)
    evaluation = sorted(s.dir_name for s in catalog.sources if s.evaluation_only)
    leak = f"No row comes from an evaluation-only source ({', '.join(evaluation) or 'none'}): that would leak the benchmark."
    return [
        *_table_checks(MERGED_KEY, read_merged, files_must_exist=generated),
        _check(MERGED_KEY, "no_evaluation_sources", leak, lambda home: tables.no_evaluation_rows_check(read_merged(home), evaluation)),
        _check(
            MERGED_KEY,
            "every_source_merged",
            "Every pretraining source had a table to merge (a source whose download or parse failed is left out of the merge).",
            lambda home: tables.every_source_merged_check(home, catalog.pretraining_sources),
            blocking=False,
        ),
        _check(LABELS_KEY, "one_class_per_image", "No image is in two classes.", tables.one_class_per_image_check),
        _check(
            LABELS_KEY,
            "class_sizes",
            "Every class holds between threshold and target images (the settings it was built with).",
            tables.class_sizes_check,
        ),
        _check(LABELS_KEY, "images_in_merged_table", "Every labelled image is a row of merged_metadata.", tables.images_in_merged_check),
    ]
