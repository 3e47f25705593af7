"""The Dagster code location: ``defs`` for the catalog chosen by CYTOIMAGENET_CATALOG (default demo),
each domain's definitions (sources, labels, images, model, release, evaluation) and the jobs, merged
with the resources and the executor."""

import os

import dagster as dg

from cytoimagenet_assets.catalog import Catalog, load_catalog
from cytoimagenet_assets.defs import evaluation, images, jobs, labels, model, release, sources
from cytoimagenet_assets.defs.resources import DataHomeResource, downloads_from_env

EXECUTOR_ENV = "CYTOIMAGENET_EXECUTOR"
DOMAINS = (sources, labels, images, model, release, evaluation, jobs)


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
    return dg.Definitions.merge(
        *(domain.defs(catalog) for domain in DOMAINS),
        dg.Definitions(
            executor=executor_from_env(),
            resources={"data": DataHomeResource(root=data_home), "downloads": downloads_from_env(mirrors=dict(catalog.mirrors))},
        ),
    )


defs = build_definitions(load_catalog())
