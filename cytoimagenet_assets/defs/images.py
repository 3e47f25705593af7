"""Per-class images (``class_images``, one partition per class), the sensor that keeps those
partitions in step with the class table, and the published dataset (``cytoimagenet_dataset``)."""

import functools
import json
import os

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.cluster import CORES_ENV
from cytoimagenet_assets.defs.class_partitions import built_fingerprints, classes_in_flight, partition_requests
from cytoimagenet_assets.defs.failures import step_failures
from cytoimagenet_assets.defs.jobs import class_images_job
from cytoimagenet_assets.defs.keys import (
    CLASS_IMAGES_KEY,
    CLASS_PARTITIONS,
    DATASET_KEY,
    LABELS_KEY,
    MERGED_KEY,
)
from cytoimagenet_assets.defs.metadata import result
from cytoimagenet_assets.defs.resources import DataHomeResource, DownloadsResource
from cytoimagenet_assets.images.dataset import publish_dataset
from cytoimagenet_assets.images.partition_inputs import build_class_images, class_rows, fetch_class_images

asset = functools.partial(dg.asset, group_name="images")  # every asset of this domain is in its group


class ClassImagesConfig(dg.Config):
    """Processes per class (default: every core of the machine running it; on a Dask worker, the cores
    of its slot: the machine's cores over the worker slots on it)."""

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

    @asset(
        key=CLASS_IMAGES_KEY,
        deps=[LABELS_KEY, MERGED_KEY],
        partitions_def=CLASS_PARTITIONS,
        kinds={"png"},
        pool="io",
        check_specs=[check],
        retry_policy=dg.RetryPolicy(max_retries=1, delay=10),  # errors a retry can help with (FetchFailed, I/O)
        description="The PNGs of one class (merged channels, crops to reach the target, quality-checked) under "
        "dataset/<class_key>/, with its metadata.csv. One partition per class: each fails and reruns on its own.",
    )
    def class_images(
        context: dg.AssetExecutionContext, config: ClassImagesConfig, data: DataHomeResource, downloads: DownloadsResource
    ) -> dg.MaterializeResult:
        home, key = data.home(), context.partition_key
        cores = int(os.environ.get(CORES_ENV) or 0) or os.cpu_count() or 1
        with step_failures():
            inputs = class_rows(home, key)
            fetched = fetch_class_images(inputs, fetchable, downloads.fetching(context.log.info), warn=context.log.warning)
            built = build_class_images(home, inputs, fetched, workers=config.workers or cores)
        context.log.info(built.summary)
        return result(built.report, {check.name: (built.problems, {"images": built.report["images"]})})

    return class_images


@dg.sensor(
    job=class_images_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the cytoimagenet_class partitions equal to the class table and requests one run per class "
    "whose fingerprint (its images, target, seed) changed since the last tick, unless a run of that class is already "
    "queued or in progress (a backfill from the UI, a headless build).",
)
def class_partitions_sensor(context: dg.SensorEvaluationContext, data: DataHomeResource):
    path = data.home().classes_table()
    if not path.exists():
        return dg.SkipReason("no class table yet: materialize cytoimagenet_labels")
    current = dict(pd.read_parquet(path, columns=["class_key", "fingerprint"]).itertuples(index=False, name=None))
    seen = json.loads(context.cursor) if context.cursor else built_fingerprints(context.instance)
    in_flight = classes_in_flight(context.instance)  # building them now: from the current class table
    changed = sorted(k for k, fingerprint in current.items() if seen.get(k) != fingerprint and k not in in_flight)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, run_key=f"{k}:{current[k]}") for k in changed],
        dynamic_partitions_requests=partition_requests(context.instance, list(current)),
        cursor=json.dumps(current, sort_keys=True),
    )


def dataset_asset(catalog: Catalog) -> dg.AssetsDefinition:
    @asset(
        key=DATASET_KEY,
        deps=[CLASS_IMAGES_KEY],
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
        with step_failures():
            dataset = publish_dataset(home, catalog.name)
        if dataset.missing:
            context.log.warning(f"{len(dataset.missing)} classes not built yet; the dataset holds the other {len(dataset.built)}")
        report = {**dataset.report(home), "sql_catalog": home.db_url_shown}
        return result(report, {"classes_listed_once": (dataset.problems, dataset.check_report())})

    return cytoimagenet_dataset


def defs(catalog: Catalog) -> dg.Definitions:
    """The images domain: each class's images (and the sensor that follows the class table) and the dataset."""
    return dg.Definitions(assets=[class_images_asset(catalog), dataset_asset(catalog)], sensors=[class_partitions_sensor])
