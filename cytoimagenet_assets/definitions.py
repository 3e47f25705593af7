"""The Dagster code location: ``defs`` for the catalog chosen by CYTOIMAGENET_CATALOG (default demo)."""

import os

import dagster as dg

from cytoimagenet_assets.catalog import Catalog, load_catalog
from cytoimagenet_assets.defs.checks import table_checks
from cytoimagenet_assets.defs.evaluation import evaluation_report_asset, upsampling_umap
from cytoimagenet_assets.defs.freshness import change_detection
from cytoimagenet_assets.defs.images import (
    class_images_asset,
    class_images_job,
    class_partitions_sensor,
    dataset_asset,
    dataset_shards_asset,
)
from cytoimagenet_assets.defs.labels import cytoimagenet_labels_asset, label_candidates_asset, merged_metadata_asset
from cytoimagenet_assets.defs.model import embeddings_asset, model_package_asset, pretrained_model_asset, training_shards_asset
from cytoimagenet_assets.defs.resources import DataHomeResource, downloads_from_env
from cytoimagenet_assets.defs.sources import source_assets

EXECUTOR_ENV = "CYTOIMAGENET_EXECUTOR"


def executor_from_env() -> dg.ExecutorDefinition | None:
    """Where a run's steps execute: processes of the run's own machine (Dagster's default), or
    ``CYTOIMAGENET_EXECUTOR=k8s`` one Kubernetes job per step (deploy/kubernetes), so the training
    step gets a GPU pod while the rest run on CPU nodes."""
    choice = os.environ.get(EXECUTOR_ENV, "")
    if choice == "":
        return None
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor  # only installed where runs launch on Kubernetes

        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV}={choice!r}: expected k8s, or unset for the default executor")


def build_definitions(catalog: Catalog, data_home: str = "") -> dg.Definitions:
    """All assets, checks and resources for ``catalog`` (``data_home`` overrides CYTOIMAGENET_HOME)."""
    sensors, schedules = change_detection(catalog)
    return dg.Definitions(
        assets=[
            *source_assets(catalog), merged_metadata_asset(catalog), label_candidates_asset(catalog),
            cytoimagenet_labels_asset(catalog), class_images_asset(catalog), dataset_asset(catalog),
            dataset_shards_asset(catalog),
            training_shards_asset(catalog), pretrained_model_asset(catalog), evaluation_report_asset(catalog),
            upsampling_umap, model_package_asset(catalog), embeddings_asset(catalog),
        ],
        asset_checks=table_checks(catalog),
        jobs=[class_images_job],
        sensors=[class_partitions_sensor, *sensors],
        schedules=schedules,
        resources={"data": DataHomeResource(root=data_home), "downloads": downloads_from_env()},
        executor=executor_from_env(),
    )


defs = build_definitions(load_catalog())
