"""Build the whole asset graph headless, recording every run in the Dagster instance
(``DAGSTER_HOME``), so that ``dagster dev`` on the same instance shows them.

    python -m cytoimagenet_assets.build                        # everything
    python -m cytoimagenet_assets.build --failed-and-missing   # only the classes that failed or were never built

Each stage is a named job of the code location, so its runs say what they are in the UI: first
``tables_job`` (everything that does not depend on the class images: sources, tables, class table);
then ``class_images_job`` once per class partition — each class has its own status and error, as the
sensor would launch them; then ``release_job`` (everything downstream of the class images). A class
that fails does not stop the others; the exit status says whether all succeeded, and the last line
gives each stage's time.

``--failed-and-missing`` does what the UI's "Materialize → failed and missing" does for
``class_images``: it asks the instance for each class partition's status and launches one run per
partition that failed or has never been materialized — nothing else (classes already built and
runs in progress are left alone; rebuild the downstream assets afterwards if the dataset should
include the repaired classes). A run this build started whose process is gone (killed by the OS:
OOM, reboot) is not in progress: it is marked failed first, and so rebuilt. Each run records the
host, process id and process start time it runs in; runs launched by the daemon or the UI are
left to the instance's run monitoring (``dagster.yaml``).
"""

import argparse
import os
import socket
import sys
import time
from pathlib import Path

import dagster as dg

from cytoimagenet_assets.defs.images import class_images_job, release_job, tables_job
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY, CLASS_PARTITIONS

LAUNCHED_BY = {"cytoimagenet/launched_by": "build"}
HOST_TAG, PID_TAG, STARTED_TAG = "cytoimagenet/host", "cytoimagenet/pid", "cytoimagenet/process_started"
UNFINISHED = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.CANCELING]


def _process_started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22): with the pid,
    it tells a live process from a later one that reuses a dead run's pid. None if there is no such
    process (or no /proc: then liveness alone decides)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return None
    except OSError:
        return ""


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_started(pid)
    return now is None or not started or now == "" or now == started


def _process_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), STARTED_TAG: _process_started(os.getpid()) or ""}


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition_key: str | None = None) -> bool:
    """One in-process run of the job named ``job`` recorded in ``instance``; True when it succeeded."""
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition_key, raise_on_error=False, tags={**LAUNCHED_BY, **_process_tags()}
    )
    return result.success


def fail_dead_runs(instance: dg.DagsterInstance, log=print) -> list[str]:
    """Mark failed the unfinished runs this build started on this host whose process is gone
    (killed by the OS), so their partitions count as failed, not in progress. Returns their ids."""
    host, dead = socket.gethostname(), []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED, tags=LAUNCHED_BY)):
        if run.tags.get(HOST_TAG) != host or not run.tags.get(PID_TAG, "").isdigit():
            continue
        if _alive(int(run.tags[PID_TAG]), run.tags.get(STARTED_TAG)):
            continue
        partition = run.tags.get("dagster/partition")
        instance.report_run_failed(
            run,
            message=f"the process of this run (pid {run.tags[PID_TAG]} on {host}) is gone: killed "
            "by the operating system or a reboot; marked failed by the build",
        )
        log(f"run {run.run_id}{' (class ' + partition + ')' if partition else ''}: its process is gone; marked failed")
        dead.append(run.run_id)
    return dead


def _build_classes(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[str], log) -> list[str]:
    """One run per class partition in ``keys``; returns the keys whose run failed."""
    failed = [key for key in keys if not _run(defs, instance, class_images_job.name, partition_key=key)]
    log(f"class images: {len(keys) - len(failed)} of {len(keys)} classes built" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return failed


def build_all(defs: dg.Definitions, instance: dg.DagsterInstance, log=print) -> bool:
    """The tables (tables_job), one run per class (class_images_job), then the rest (release_job);
    ends with each stage's time."""
    seconds: dict[str, float] = {}

    def timed(stage: str, work):
        started = time.perf_counter()
        try:
            return work()
        finally:
            seconds[stage] = time.perf_counter() - started

    ok = timed("tables", lambda: _run(defs, instance, tables_job.name))
    if not ok:
        log("the tables upstream of the class images failed; see the run in the UI")
    else:
        failed = timed("class images", lambda: _build_classes(defs, instance, instance.get_dynamic_partitions(CLASS_PARTITIONS.name), log))
        ok = timed("dataset, model, evaluation", lambda: _run(defs, instance, release_job.name)) and not failed
    stages = ", ".join(f"{stage} {t:.0f} s" for stage, t in seconds.items())
    log(f"{'built' if ok else 'finished with failures'} in {sum(seconds.values()):.0f} s ({stages})")
    return ok


def failed_and_missing_classes(instance: dg.DagsterInstance) -> list[str]:
    """The class partitions whose latest attempt failed or that were never materialized (in
    partition order), as the UI's "failed and missing" selection; in-progress ones are excluded."""
    keys = instance.get_dynamic_partitions(CLASS_PARTITIONS.name)
    status = instance.get_status_by_partition(CLASS_IMAGES_KEY, keys, CLASS_PARTITIONS)
    if status is None:  # no status cache for this partitioning: fall back to materialized or not
        done = instance.get_materialized_partitions(CLASS_IMAGES_KEY)
        return [k for k in keys if k not in done]
    return [k for k in keys if status.get(k) in (None, dg.AssetPartitionStatus.FAILED)]


def rebuild_failed_and_missing(defs: dg.Definitions, instance: dg.DagsterInstance, log=print) -> bool:
    """One run per failed or missing class partition, nothing else; True when all of them succeeded.
    Runs whose process is gone are marked failed first, so their classes are rebuilt too."""
    fail_dead_runs(instance, log)
    keys = failed_and_missing_classes(instance)
    if not keys:
        log("class images: no failed or missing classes")
        return True
    failed = _build_classes(defs, instance, keys, log)
    if len(failed) < len(keys):
        log("rebuild cytoimagenet_dataset and what follows it (or run the full build) so the dataset includes the rebuilt classes")
    return not failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.build", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--failed-and-missing",
        action="store_true",
        help="launch one run per class_images partition that failed or was never built, nothing else",
    )
    args = parser.parse_args(argv)

    from cytoimagenet_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        ok = rebuild_failed_and_missing(defs, instance) if args.failed_and_missing else build_all(defs, instance)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
