"""Asset checks on every metadata table (schema and dtypes, unique idx, files exist, labels
normalized; on the merged table also that no evaluation set leaked into it) and on the class
table (one class per image, class sizes within the thresholds, every image in the merged table)."""

from typing import Callable

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.keys import LABELS_KEY, MERGED_KEY, table_key
from cytoimagenet_assets.defs.resources import DataHomeResource
from cytoimagenet_assets.markdown import markdown_table
from cytoimagenet_assets.sources.table import duplicate_idx, missing_files, table_problems, unnormalized_labels
from cytoimagenet_assets.storage import DataHome, read_parquet, read_parquet_metadata

TableReader = Callable[[DataHome], pd.DataFrame]


def _table_checks(key: dg.AssetKey, read: TableReader, files_must_exist: bool) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=key, name="schema", blocking=True, description="Columns and dtypes of the standardized table.")
    def schema(data: DataHomeResource) -> dg.AssetCheckResult:
        problems = table_problems(read(data.home()))
        return dg.AssetCheckResult(
            passed=not problems, metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")}
        )

    @dg.asset_check(asset=key, name="unique_idx", blocking=True, description="Every row has its own idx.")
    def unique_idx(data: DataHomeResource) -> dg.AssetCheckResult:
        duplicates = duplicate_idx(read(data.home()))
        return dg.AssetCheckResult(
            passed=not duplicates, metadata={"duplicated": len(duplicates), "examples": dg.MetadataValue.json(duplicates[:20])}
        )

    @dg.asset_check(
        asset=key,
        name="files_exist",
        blocking=files_must_exist,
        description="Every channel file a row references is on disk. A warning for real sources, whose "
        "metadata may be downloaded before their images; an error for generated ones.",
    )
    def files_exist(data: DataHomeResource) -> dg.AssetCheckResult:
        home = data.home()
        df = read(home)
        missing = pd.concat(
            [missing_files(group, home.raw_dir(d)) for d, group in df.groupby("dir_name", observed=True)]
            or [pd.DataFrame(columns=["idx", "path"])]
        )
        no_files = int((df["channel_paths"].map(len) == 0).sum())
        return dg.AssetCheckResult(
            passed=missing.empty and no_files == 0,
            severity=dg.AssetCheckSeverity.ERROR if files_must_exist else dg.AssetCheckSeverity.WARN,
            metadata={
                "missing_files": len(missing),
                "rows_without_image_files": no_files,
                "examples": dg.MetadataValue.md(markdown_table(missing, max_rows=20) if len(missing) else "none"),
            },
        )

    @dg.asset_check(
        asset=key, name="labels_normalized", blocking=True, description="Labels are lowercase, synonym-mapped, '|'-joined, genes suffixed."
    )
    def labels_normalized(data: DataHomeResource) -> dg.AssetCheckResult:
        bad = unnormalized_labels(read(data.home()))
        return dg.AssetCheckResult(passed=not bad, metadata={"unnormalized": dg.MetadataValue.json(bad)})

    return [schema, unique_idx, files_exist, labels_normalized]


def source_table_checks(catalog: Catalog) -> list[dg.AssetChecksDefinition]:
    """The table checks of every source's standardized metadata (files must exist for generated sources)."""
    checks = []
    for source in (s for s in catalog.sources if s.parser is not None):

        def read(home: DataHome, dir_name=source.dir_name) -> pd.DataFrame:
            return read_parquet(home.source_table(dir_name))

        checks += _table_checks(table_key(source), read, files_must_exist=source.download.method == "demo")
    return checks


def merged_table_checks(catalog: Catalog) -> list[dg.AssetChecksDefinition]:
    """The table checks of merged_metadata, and that no evaluation set leaked into it."""

    def read_merged(home: DataHome) -> pd.DataFrame:
        return read_parquet(home.merged_table())

    all_generated = all(s.download.method == "demo" for s in catalog.pretraining_sources)
    evaluation = sorted(s.dir_name for s in catalog.sources if s.evaluation_only)

    @dg.asset_check(
        asset=MERGED_KEY,
        name="no_evaluation_sources",
        blocking=True,
        description=f"No row comes from an evaluation-only source ({', '.join(evaluation) or 'none'}): that would leak the benchmark.",
    )
    def no_evaluation_sources(data: DataHomeResource) -> dg.AssetCheckResult:
        leaked = read_merged(data.home())["dir_name"].isin(evaluation)
        return dg.AssetCheckResult(passed=not leaked.any(), metadata={"leaked_rows": int(leaked.sum())})

    return [*_table_checks(MERGED_KEY, read_merged, files_must_exist=all_generated), no_evaluation_sources]


def class_table_checks() -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset=LABELS_KEY, name="one_class_per_image", blocking=True, description="No image is in two classes.")
    def one_class_per_image(data: DataHomeResource) -> dg.AssetCheckResult:
        labels = read_parquet(data.home().labels_table())
        twice = labels.loc[labels["idx"].duplicated(keep=False), "idx"].unique().tolist()
        return dg.AssetCheckResult(
            passed=not twice, metadata={"images_in_two_classes": len(twice), "examples": dg.MetadataValue.json(twice[:20])}
        )

    @dg.asset_check(
        asset=LABELS_KEY,
        name="class_sizes",
        blocking=True,
        description="Every class holds between threshold and target images (the settings it was built with).",
    )
    def class_sizes(data: DataHomeResource) -> dg.AssetCheckResult:
        path = data.home().labels_table()
        settings = read_parquet_metadata(path)["settings"]
        sizes = read_parquet(path).groupby("class_key").size()
        outside = sizes[(sizes < settings["threshold"]) | (sizes > settings["target"])]
        return dg.AssetCheckResult(
            passed=outside.empty,
            metadata={
                "outside_bounds": dg.MetadataValue.json(outside.head(20).to_dict()),
                "threshold": settings["threshold"],
                "target": settings["target"],
            },
        )

    @dg.asset_check(
        asset=LABELS_KEY, name="images_in_merged_table", blocking=True, description="Every labelled image is a row of merged_metadata."
    )
    def images_in_merged_table(data: DataHomeResource) -> dg.AssetCheckResult:
        home = data.home()
        labels = read_parquet(home.labels_table())
        merged = pd.read_parquet(home.merged_table(), columns=["idx"])
        unknown = sorted(set(labels["idx"]) - set(merged["idx"]))
        return dg.AssetCheckResult(
            passed=not unknown, metadata={"unknown_images": len(unknown), "examples": dg.MetadataValue.json(unknown[:20])}
        )

    return [one_class_per_image, class_sizes, images_in_merged_table]
