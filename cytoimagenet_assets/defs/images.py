"""Per-class images (``class_images``, one partition per class), the sensor that keeps those
partitions in step with the class table, and the published dataset (``cytoimagenet_dataset``)."""

import functools
import json
import os

import dagster as dg
import pandas as pd

from cytoimagenet_assets.catalog import Catalog
from cytoimagenet_assets.cluster import CORES_ENV
from cytoimagenet_assets.defs.keys import (
    CLASS_IMAGES_KEY,
    CLASS_PARTITIONS,
    DATASET_KEY,
    LABELS_KEY,
    MERGED_KEY,
    RELEASE_KEY,
    class_partition_requests,
)
from cytoimagenet_assets.defs.metadata import result
from cytoimagenet_assets.defs.resources import DataHomeResource, DownloadsResource
from cytoimagenet_assets.images.class_partition import FetchFailed, StaleClass, build_class_images, class_rows, fetch_class_images
from cytoimagenet_assets.images.classes import ClassBuildError
from cytoimagenet_assets.images.dataset import EmptyDataset, publish_dataset
from cytoimagenet_assets.images.release import DEFAULT_SHARD_BYTES, release_dataset

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
        try:
            cores = int(os.environ.get(CORES_ENV) or 0) or os.cpu_count() or 1
            built = build_class_images(home, inputs, fetched, workers=config.workers or cores)
        except ClassBuildError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        context.log.info(built.summary)
        return result(built.report, {check.name: (built.problems, {"images": built.report["images"]})})

    return class_images


class_images_job = dg.define_asset_job("class_images_job", selection=[CLASS_IMAGES_KEY])
_images = dg.AssetSelection.assets(CLASS_IMAGES_KEY)
# The headless build's stages around the class images (each class is a run of class_images_job). The
# sources are a job of their own so that one failing source does not stop the merge of the others.
_sources = dg.AssetSelection.groups("sources")
sources_job = dg.define_asset_job(
    "sources_job",
    selection=_sources,
    description="Each source's files and table (and the evaluation sets' files); a failing source fails alone.",
)
tables_job = dg.define_asset_job(
    "tables_job",
    selection=dg.AssetSelection.all() - _images.downstream() - _sources,
    description="The merged table (of the sources that have a table), the candidates and the class table.",
)
release_job = dg.define_asset_job(
    "release_job",
    selection=_images.downstream() - _images,
    description="Everything after the class images: the dataset and its release, the model, its package and embeddings, the evaluation.",
)


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
        dynamic_partitions_requests=class_partition_requests(context.instance, list(current)),
        cursor=json.dumps(current, sort_keys=True),
    )


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def classes_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """The class partitions with a run queued or in progress: a second run of one would build it twice."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
    return {
        run.tags["dagster/partition"]
        for run in runs
        if "dagster/partition" in run.tags and (run.job_name == class_images_job.name or CLASS_IMAGES_KEY in (run.asset_selection or ()))
    }


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
        try:
            dataset = publish_dataset(home, catalog.name)
        except EmptyDataset as exc:
            raise dg.Failure(description=str(exc)) from exc
        if dataset.missing:
            context.log.warning(f"{len(dataset.missing)} classes not built yet; the dataset holds the other {len(dataset.built)}")
        report = {**dataset.report(home), "sql_catalog": home.db_url_shown}
        return result(report, {"classes_listed_once": (dataset.problems, dataset.check_report())})

    return cytoimagenet_dataset


class DatasetShardsConfig(dg.Config):
    shard_bytes: int = DEFAULT_SHARD_BYTES  # at most this many bytes per tar shard


def dataset_shards_asset(catalog: Catalog) -> dg.AssetsDefinition:
    licenses = {s.dir_name: (s.name, s.license) for s in catalog.sources}

    @asset(
        key=RELEASE_KEY,
        deps=[DATASET_KEY],
        kinds={"webdataset", "parquet"},
        description="The published dataset as WebDataset tar shards (PNG + JSON of the release's columns + class index per "
        "sample), a Parquet index, SHA-256 checksums and a dataset card with the Hugging Face YAML header, under "
        "release/webdataset/: what multi-node training streams and the Hub reads.",
    )
    def dataset_shards(context: dg.AssetExecutionContext, config: DatasetShardsConfig, data: DataHomeResource) -> dg.MaterializeResult:
        release = release_dataset(data.home(), licenses, catalog.name, config.shard_bytes, log=context.log.info)
        return result(release.report())

    return dataset_shards


def defs(catalog: Catalog) -> dg.Definitions:
    """The images domain: each class's images (and the sensor that follows the class table), the dataset and its release."""
    return dg.Definitions(
        assets=[class_images_asset(catalog), dataset_asset(catalog), dataset_shards_asset(catalog)],
        jobs=[sources_job, tables_job, class_images_job, release_job],
        sensors=[class_partitions_sensor],
    )
