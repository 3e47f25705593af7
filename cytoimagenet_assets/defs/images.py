"""Per-class images (``class_images``, one partition per class), the sensor that keeps those
partitions in step with the class table, and the published dataset (``cytoimagenet_dataset``)."""

import json
import os

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY, CLASS_PARTITIONS, DATASET_KEY, LABELS_KEY, MERGED_KEY, RELEASE_KEY
from cytoimagenet_assets.defs.labels import class_partition_requests
from cytoimagenet_assets.defs.metadata import png_markdown
from cytoimagenet_assets.defs.resources import DataHomeResource, DownloadsResource, redacted
from cytoimagenet_assets.images.classes import ClassBuildError, build_class, drop_summary, thumbnail_grid
from cytoimagenet_assets.images.dataset import EmptyDataset, class_folder_problems, composition_png, publish_dataset
from cytoimagenet_assets.images.inputs import FetchFailed, StaleClass, class_rows, fetch_class_images
from cytoimagenet_assets.images.release import DEFAULT_SHARD_BYTES, write_release
from cytoimagenet_assets.markdown import markdown_table

GROUP = "images"


class ClassImagesConfig(dg.Config):
    """Processes per class (default: every core of the machine running it)."""

    workers: int = 0


def class_images_asset(catalog: Catalog) -> dg.AssetsDefinition:
    """The per-class image asset; the catalog says which sources can fetch missing images (metadata first)."""
    fetchable = {s.dir_name: s for s in catalog.sources if s.download.method not in ("demo", "manual")}
    check = dg.AssetCheckSpec(
        "class_folder",
        asset=CLASS_IMAGES_KEY,
        description="The class folder holds exactly the PNGs of its metadata.csv, all 8-bit gray, "
        "between the threshold and the target in number.",
    )

    @dg.asset(
        key=CLASS_IMAGES_KEY,
        deps=[LABELS_KEY, MERGED_KEY],
        partitions_def=CLASS_PARTITIONS,
        group_name=GROUP,
        kinds={"png"},
        pool="io",
        check_specs=[check],
        retry_policy=dg.RetryPolicy(max_retries=1, delay=10),  # systemic, transient errors (I/O); not a ClassBuildError
        description="The PNGs of one class (merged channels, crops to reach the target, quality-checked) under "
        "dataset/<class_key>/, with its metadata.csv. One partition per class: each fails and reruns on its own.",
    )
    def class_images(
        context: dg.AssetExecutionContext, config: ClassImagesConfig, data: DataHomeResource, downloads: DownloadsResource
    ) -> dg.MaterializeResult:
        home, key = data.home(), context.partition_key
        try:
            inputs = class_rows(home, key)
            fetched = fetch_class_images(inputs, fetchable, downloads.fetching(context.log.info), warn=context.log.warning)
        except (StaleClass, FetchFailed) as exc:
            raise dg.Failure(description=str(exc.args[0])) from exc
        except ClassBuildError as exc:  # deterministic: retrying would fail the same way
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        settings, folder = inputs.settings, home.class_dir(key)
        try:
            result = build_class(
                key,
                inputs.label,
                inputs.category,
                inputs.rows,
                inputs.raw_dirs,
                folder,
                target=settings["target"],
                threshold=settings["threshold"],
                seed=settings["seed"],
                upsampling=settings["upsampling"],
                workers=config.workers or os.cpu_count() or 1,
            )
        except ClassBuildError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        meta = result.metadata
        problems = class_folder_problems(folder, pd.read_csv(folder / "metadata.csv"), settings["threshold"], settings["target"])
        context.log.info(f"{key}: {len(meta)} images from {result.images_in} rows in {result.seconds:.1f} s; dropped {len(result.drops)}")
        return dg.MaterializeResult(
            metadata={
                "label": inputs.label,
                "category": inputs.category,
                "images": len(meta),
                "originals": int((~meta["crop"]).sum()),
                "crops": int(meta["crop"].sum()),
                "upsampling": settings["upsampling"],
                "trimmed_to_target": result.trimmed,
                "source_rows": result.images_in,
                "dropped": len(result.drops),
                "dropped_by_reason": dg.MetadataValue.json(drop_summary(result.drops)),
                "dropped_images": dg.MetadataValue.md(markdown_table(result.drops, max_rows=50) if len(result.drops) else "none"),
                "images_per_second": round(result.images_in / max(result.seconds, 1e-9), 1),
                "bytes_fetched": fetched.bytes_downloaded,
                "files_fetched": fetched.files_fetched,
                "files_unavailable": len(fetched.unavailable),
                "fingerprint": inputs.fingerprint,
                "path": dg.MetadataValue.path(str(folder)),
                "samples": png_markdown(thumbnail_grid([folder / f for f in meta["filename"]]), f"{key} samples"),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=check.name,
                    passed=not problems,
                    metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"), "images": len(meta)},
                )
            ],
        )

    return class_images


class_images_job = dg.define_asset_job("class_images_job", selection=[CLASS_IMAGES_KEY])


@dg.sensor(
    job=class_images_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the cytoimagenet_class partitions equal to the class table and requests one run per class "
    "whose fingerprint (its images, target, seed) changed since the last tick.",
)
def class_partitions_sensor(context: dg.SensorEvaluationContext, data: DataHomeResource):
    path = data.home().classes_table()
    if not path.exists():
        return dg.SkipReason("no class table yet: materialize cytoimagenet_labels")
    current = dict(pd.read_parquet(path, columns=["class_key", "fingerprint"]).itertuples(index=False, name=None))
    seen = json.loads(context.cursor) if context.cursor else built_fingerprints(context.instance)
    changed = sorted(k for k, fingerprint in current.items() if seen.get(k) != fingerprint)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=f"{k}:{current[k]}") for k in changed],
        dynamic_partitions_requests=class_partition_requests(context.instance, list(current)),
        cursor=json.dumps(current, sort_keys=True),
    )


def built_fingerprints(instance: dg.DagsterInstance) -> dict[str, str]:
    """The fingerprint each class partition was last built with (from its materialization metadata),
    so a fresh sensor does not rebuild classes that a headless build or an earlier sensor already made."""
    found: dict[str, str] = {}
    cursor = None
    while True:
        batch = instance.fetch_materializations(CLASS_IMAGES_KEY, limit=1000, cursor=cursor, ascending=False)
        for record in batch.records:
            materialization = record.asset_materialization
            fingerprint = materialization.metadata.get("fingerprint") if materialization else None
            if materialization and materialization.partition and fingerprint is not None:
                found.setdefault(materialization.partition, str(fingerprint.value))
        if not batch.has_more:
            return found
        cursor = batch.cursor


def dataset_asset(catalog: Catalog) -> dg.AssetsDefinition:
    @dg.asset(
        key=DATASET_KEY,
        deps=[CLASS_IMAGES_KEY],
        group_name=GROUP,
        kinds={"csv", "sql"},
        description="The published dataset: dataset/metadata.csv over every built class (the release's columns), "
        "a dataset card (dataset/README.md), the SQL table images, and composition figures.",
        check_specs=[
            dg.AssetCheckSpec(
                "classes_listed_once",
                asset=DATASET_KEY,
                description="Every built class is in metadata.csv and no source image (idx) is in two classes.",
            )
        ],
    )
    def cytoimagenet_dataset(context: dg.AssetExecutionContext, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        try:
            dataset = publish_dataset(home, catalog.name)
        except EmptyDataset as exc:
            raise dg.Failure(description=str(exc)) from exc
        metadata, missing, upsampling = dataset.metadata, dataset.missing, dataset.upsampling
        if missing:
            context.log.warning(f"{len(missing)} classes not built yet; the dataset holds the other {len(dataset.built)}")
        per_category = metadata.drop_duplicates("path")["category"].value_counts().rename("classes").rename_axis("category").reset_index()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(metadata),
                "classes": int(metadata["path"].nunique()),
                "classes_missing": dg.MetadataValue.json(missing[:50]),
                "crops": int(metadata["crop"].sum()),
                "crop_share": upsampling["crop_share"],
                "scaling_histogram": dg.MetadataValue.json(upsampling["scaling_histogram"]),
                "classes_per_category": dg.MetadataValue.md(markdown_table(per_category, max_rows=10)),
                "card": dg.MetadataValue.md(dataset.card),
                "composition": png_markdown(composition_png(metadata), "composition"),
                "sql_catalog": redacted(home.db_url),
                "sql_rows": dataset.sql_rows,
                "path": dg.MetadataValue.path(str(home.dataset_dir())),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="classes_listed_once",
                    passed=not dataset.problems,
                    metadata={
                        "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in dataset.problems) or "none"),
                        "classes_built": len(dataset.built),
                        "crop_share": upsampling["crop_share"],
                        "scaling_histogram": dg.MetadataValue.json(upsampling["scaling_histogram"]),
                    },
                )
            ],
        )

    return cytoimagenet_dataset


class DatasetShardsConfig(dg.Config):
    shard_bytes: int = DEFAULT_SHARD_BYTES  # at most this many bytes per tar shard


def dataset_shards_asset(catalog: Catalog) -> dg.AssetsDefinition:
    licenses = {s.dir_name: (s.name, s.license) for s in catalog.sources}

    @dg.asset(
        key=RELEASE_KEY,
        deps=[DATASET_KEY],
        group_name=GROUP,
        kinds={"webdataset", "parquet"},
        description="The published dataset as WebDataset tar shards (PNG + JSON of the release's columns + class index per "
        "sample), a Parquet index, SHA-256 checksums and a dataset card with the Hugging Face YAML header, under "
        "release/webdataset/: what multi-node training streams and the Hub reads.",
    )
    def dataset_shards(context: dg.AssetExecutionContext, config: DatasetShardsConfig, data: DataHomeResource) -> dg.MaterializeResult:
        home = data.home()
        metadata = pd.read_csv(home.dataset_metadata())
        step = max(1, len(metadata) // 10)
        release = write_release(
            metadata,
            home.dataset_dir(),
            home.webdataset_dir(),
            licenses,
            catalog.name,
            config.shard_bytes,
            progress=lambda n, total: n % step == 0 and context.log.info(f"{n} of {total} images written"),
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": release.samples,
                "shards": len(release.shards),
                "bytes": int(release.shards["bytes"].sum()),
                "shard_table": dg.MetadataValue.md(markdown_table(release.shards, max_rows=50)),
                "card": dg.MetadataValue.md((home.webdataset_card()).read_text(encoding="utf-8")),
                "path": dg.MetadataValue.path(str(home.webdataset_dir())),
            }
        )

    return dataset_shards


def defs(catalog: Catalog) -> dg.Definitions:
    """The images domain: each class's images (and the sensor that follows the class table), the dataset and its release."""
    return dg.Definitions(
        assets=[class_images_asset(catalog), dataset_asset(catalog), dataset_shards_asset(catalog)],
        jobs=[class_images_job],
        sensors=[class_partitions_sensor],
    )
