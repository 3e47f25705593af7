"""Build the whole asset graph headless, recording every run in the Dagster instance
(``DAGSTER_HOME``), so that ``dagster dev`` on the same instance shows them.

    python -m cytoimagenet_assets.build                        # everything
    python -m cytoimagenet_assets.build --failed-and-missing   # only the classes that failed or were never built

Each stage is a named job of the code location, so its runs say what they are in the UI: first
``sources_job`` (each source's files and table), then ``tables_job`` (the merged table and the
class table); then ``class_images_job`` once per class partition — each class has its own status and
error, as the sensor would launch them; then ``release_job`` (everything downstream of the class
images). A source or a class that fails does not stop the others (a failed source is named and left
out of the merge); the exit status says whether all succeeded, and the last line gives each stage's time.

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
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from cytoimagenet_assets.defs.images import class_images_job, release_job, sources_job, tables_job
from cytoimagenet_assets.defs.keys import CLASS_IMAGES_KEY, CLASS_PARTITIONS

LAUNCHED_BY = {"cytoimagenet/launched_by": "build"}
HOST_TAG, PID_TAG, STARTED_TAG = "cytoimagenet/host", "cytoimagenet/pid", "cytoimagenet/process_started"
# The console shows the steps' own messages and failures, not every Dagster event (the UI has them all):
# printing each DEBUG event was a quarter of a class run's overhead.
CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
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


def _execute(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition_key: str | None = None):
    """One in-process run of the job named ``job``, recorded in ``instance``."""
    return defs.resolve_job_def(job).execute_in_process(
        run_config=CONSOLE_INFO,
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
        tags={**LAUNCHED_BY, **_process_tags()},
    )


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition_key: str | None = None) -> bool:
    """:func:`_execute`; True when the run succeeded."""
    return _execute(defs, instance, job, partition_key).success


def fail_dead_runs(instance: dg.DagsterInstance, log=print) -> list[str]:
    """Mark failed the unfinished runs this build started on this host whose process is gone
    (killed by the OS), so their partitions count as failed, not in progress, and free the pool
    slots they held. Returns their ids."""
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
        if instance.event_log_storage.supports_global_concurrency_limits:
            # the pool slots it held (class_images' "io") die with it, or the rerun's steps wait for them forever
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(f"run {run.run_id}{' (class ' + partition + ')' if partition else ''}: its process is gone; marked failed")
        dead.append(run.run_id)
    return dead


@dataclass
class Build:
    """What a build did: each stage's seconds, what failed, and each class run's wall time."""

    seconds: dict[str, float] = field(default_factory=dict)
    failed_sources: list[str] = field(default_factory=list)
    failed_classes: list[str] = field(default_factory=list)
    class_run_seconds: dict[str, float] = field(default_factory=dict)
    completed: bool = False  # every stage ran (some sources or classes may still have failed)

    @property
    def ok(self) -> bool:
        return self.completed and not self.failed_sources and not self.failed_classes


def _build_classes(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[str], log, build: Build) -> None:
    """One run per class partition in ``keys``; their wall times and failures go into ``build``."""
    for key in keys:
        started = time.perf_counter()
        if not _run(defs, instance, class_images_job.name, partition_key=key):
            build.failed_classes.append(key)
        build.class_run_seconds[key] = time.perf_counter() - started
    failed = [k for k in keys if k in build.failed_classes]
    log(f"class images: {len(keys) - len(failed)} of {len(keys)} classes built" + (f"; failed: {', '.join(failed)}" if failed else ""))


def _failed_sources(result) -> list[str]:
    """The sources (dir names) of which a step failed in the sources_job run ``result`` (step keys
    are the asset keys joined by ``__``: raw__<dir_name>, source_metadata__<dir_name>)."""
    return sorted({event.step_key.split("__")[-1] for event in result.all_events if event.is_step_failure})


def build_all(defs: dg.Definitions, instance: dg.DagsterInstance, log=print) -> Build:
    """The sources (sources_job), the tables (tables_job), one run per class (class_images_job), then
    the rest (release_job); ends with each stage's time. A failing source is named and left out of
    the merge; the build stops only when the tables cannot be made."""
    build = Build()

    def timed(stage: str, work):
        started = time.perf_counter()
        try:
            return work()
        finally:
            build.seconds[stage] = time.perf_counter() - started

    sources = timed("sources", lambda: _execute(defs, instance, sources_job.name))
    if not sources.success:
        build.failed_sources = _failed_sources(sources)
        log(f"sources that failed (left out of the merge; see their runs in the UI): {', '.join(build.failed_sources)}")
    if not timed("tables", lambda: _run(defs, instance, tables_job.name)):
        log("the tables upstream of the class images failed; see the run in the UI")
    else:
        keys = instance.get_dynamic_partitions(CLASS_PARTITIONS.name)
        timed("class images", lambda: _build_classes(defs, instance, keys, log, build))
        build.completed = timed("dataset, model, evaluation", lambda: _run(defs, instance, release_job.name))
    stages = ", ".join(f"{stage} {t:.0f} s" for stage, t in build.seconds.items())
    log(f"{'built' if build.ok else 'finished with failures'} in {sum(build.seconds.values()):.0f} s ({stages})")
    return build


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
    build = Build()
    _build_classes(defs, instance, keys, log, build)
    if len(build.failed_classes) < len(keys):
        log("rebuild cytoimagenet_dataset and what follows it (or run the full build) so the dataset includes the rebuilt classes")
    return not build.failed_classes


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
        ok = rebuild_failed_and_missing(defs, instance) if args.failed_and_missing else build_all(defs, instance).ok
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
