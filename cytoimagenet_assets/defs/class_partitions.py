"""The class partitions' one owner (Dagster layer): keeping ``cytoimagenet_class`` equal to the class
table, and what the instance knows of each class's runs (in flight, the fingerprint last built,
failed or missing). The class table asset, the class sensor, the headless build and the rehearsal
all ask here, so they agree on which class needs a run."""

import dagster as dg

from cytoimagenet_assets.defs.jobs import class_images_job
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY, CLASS_PARTITIONS

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def partition_requests(instance: dg.DagsterInstance, keys: list[str]) -> list:
    """The requests that make the ``cytoimagenet_class`` partitions exactly ``keys`` (what a sensor returns)."""
    have = set(instance.get_dynamic_partitions(CLASS_PARTITIONS.name))
    add, delete = [k for k in keys if k not in have], sorted(have - set(keys))
    return [r for r in (add and CLASS_PARTITIONS.build_add_request(add), delete and CLASS_PARTITIONS.build_delete_request(delete)) if r]


def sync_partitions(instance: dg.DagsterInstance, keys: list[str]) -> tuple[int, int]:
    """Make the partitions exactly ``keys`` now (an asset cannot return requests, as a sensor does): (added, removed)."""
    added = removed = 0
    for request in partition_requests(instance, keys):
        names = list(request.partition_keys)
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(CLASS_PARTITIONS.name, names)
            added += len(names)
        else:
            for name in names:
                instance.delete_dynamic_partition(CLASS_PARTITIONS.name, name)
            removed += len(names)
    return added, removed


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


def failed_and_missing_classes(instance: dg.DagsterInstance) -> list[str]:
    """The class partitions whose latest attempt failed or that were never materialized (in
    partition order), as the UI's "failed and missing" selection; in-progress ones are excluded."""
    keys = instance.get_dynamic_partitions(CLASS_PARTITIONS.name)
    status = instance.get_status_by_partition(CLASS_IMAGES_KEY, keys, CLASS_PARTITIONS)
    if status is None:  # no status cache for this partitioning: fall back to materialized or not
        done = instance.get_materialized_partitions(CLASS_IMAGES_KEY)
        return [k for k in keys if k not in done]
    return [k for k in keys if status.get(k) in (None, dg.AssetPartitionStatus.FAILED)]
