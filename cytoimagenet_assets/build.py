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

With ``CYTOIMAGENET_DASK`` set to a Dask scheduler's address, every run goes to that cluster
(:mod:`cytoimagenet_assets.cluster`): the class runs all at once, as many at a time as there are
worker slots (and the ``io`` pool admits), the training run on a GPU worker when there is one.
Any build first marks failed the dead runs it can see and frees their pool slots; while a step
waits for a slot the build says who holds it; SIGTERM and SIGINT stop the build and its runs.
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from cytoimagenet_assets import cluster
from cytoimagenet_assets.defs.class_partitions import failed_and_missing_classes
from cytoimagenet_assets.defs.jobs import class_images_job, release_job, sources_job, tables_job
from cytoimagenet_assets.defs.keys import CLASS_PARTITIONS
from cytoimagenet_assets.storage import default_home

LAUNCHED_BY = {"cytoimagenet/launched_by": "build"}
# The code location workspace.yaml loads (its location_name) and the module it loads: a run recorded
# with that origin shows on the UI's overview, job and run pages like a run launched from the UI.
CODE_LOCATION, DEFINITIONS_MODULE = "cytoimagenet_assets", "cytoimagenet_assets.definitions"
# Where a build's run executes, "<host>:<pid>:<process start in clock ticks>": one tag, so run rows stay short.
PROCESS_TAG = "cytoimagenet/process"
# The console shows the steps' own messages and failures, not every Dagster event (the UI has them all):
# printing each DEBUG event was a quarter of a class run's overhead.
CONSOLE_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


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
    return {PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}:{_process_started(os.getpid()) or ''}"}


def run_process(run: dg.DagsterRun) -> tuple[str, int, str] | None:
    """(host, pid, process start) of a build's run, from its tag; None for other runs."""
    host, pid, started = (run.tags.get(PROCESS_TAG, "").rsplit(":", 2) + ["", "", ""])[:3]
    return (host, int(pid), started) if host and pid.isdigit() else None


SLOT_REPORT_S = (5.0, 60.0)  # a step waiting for a pool slot says who holds it after 5 s, then every minute


@dataclass(frozen=True)
class RunOutcome:
    """One run's end: its id, whether it succeeded, its wall time."""

    run_id: str | None
    success: bool
    seconds: float


def failed_steps(instance: dg.DagsterInstance, run_id: str | None) -> list[str]:
    """The keys of the steps that failed in run ``run_id``, from the instance (wherever it ran)."""
    if run_id is None:
        return []
    return sorted({r.event_log_entry.step_key for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)})


def slot_holders(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """For each pool in which a step of ``run_id`` waits for a slot: the pool, its limit, and the runs
    holding its slots (with their status), as a sentence."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    lines = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        waiting = [p.step_key for p in info.pending_steps if p.run_id == run_id and p.assigned_timestamp is None]
        if not waiting:
            continue
        holders = []
        for slot in info.claimed_slots:
            run = instance.get_run_by_id(slot.run_id)
            partition = run.tags.get("dagster/partition") if run else None
            status = run.status.value if run else "no longer in the instance"
            holders.append(f"run {slot.run_id} ({status}{', class ' + partition if partition else ''}, step {slot.step_key})")
        lines.append(
            f"{', '.join(waiting)} waits for a slot in pool {pool!r} (limit {info.slot_count}), held by "
            + ("; ".join(holders) or "nobody yet")
            + ". A dead holder is freed by the next build, or by `dagster instance concurrency set` / the UI's pool page."
        )
    return lines


@contextmanager
def reporting_slot_waits(instance: dg.DagsterInstance, run_id: str, log) -> Iterator[None]:
    """While run ``run_id`` executes here, say what its waiting steps wait for (SLOT_REPORT_S)."""
    done = threading.Event()

    def watch():
        wait = SLOT_REPORT_S[0]
        while not done.wait(wait):
            for line in slot_holders(instance, run_id):
                log(line)
                wait = SLOT_REPORT_S[1]

    watcher = threading.Thread(target=watch, name="slot-waits", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _ui_origins(job: str):
    """(remote origin, code origin) of ``job`` as the UI's code location serves it. Without them a
    headless run is listed under Runs only: the overview timeline and the job's page, which group
    runs by their code location, do not show it, and it cannot be re-executed from its page."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    loadable = LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE, working_directory=os.getcwd())
    location = ManagedGrpcPythonEnvCodeLocationOrigin(loadable, CODE_LOCATION)
    remote = RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job)
    code = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", os.getcwd()).get_reconstructable_job(job).get_python_origin()
    return remote, code


@contextmanager
def _recorded_with_ui_origin(instance: dg.DagsterInstance, job: str) -> Iterator[None]:
    """Runs created meanwhile carry ``job``'s UI origins (``execute_in_process`` takes none; the
    runs of this process execute one at a time)."""
    remote, code = _ui_origins(job)
    create = instance.create_run_for_job
    instance.create_run_for_job = lambda *args, **kwargs: create(*args, **kwargs, remote_job_origin=remote, job_code_origin=code)
    try:
        yield
    finally:
        del instance.create_run_for_job


def _execute(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition_key: str | None = None, log=print) -> RunOutcome:
    """One in-process run of the job named ``job``, recorded in ``instance``. The run executes in a
    thread of its own, so that SIGINT and SIGTERM reach this one at once (Dagster defers them while
    a run executes in the main thread, and never looks while a step waits for a pool slot): the run
    is then marked failed and its pool slots freed before the interrupt goes on."""
    run_id, started = str(uuid.uuid4()), time.perf_counter()
    task = os.environ.get(cluster.TASK_ENV)
    outcome: dict = {}

    def execute():
        try:
            with _recorded_with_ui_origin(instance, job):
                outcome["result"] = defs.resolve_job_def(job).execute_in_process(
                    run_config=CONSOLE_INFO,
                    instance=instance,
                    partition_key=partition_key,
                    raise_on_error=False,
                    run_id=run_id,
                    tags={**LAUNCHED_BY, **_process_tags(), **({cluster.TASK_TAG: task} if task else {})},
                )
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    runner = threading.Thread(target=execute, name=f"run-{run_id}", daemon=True)
    try:
        with reporting_slot_waits(instance, run_id, log):
            runner.start()
            while runner.is_alive():
                runner.join(0.5)
    except KeyboardInterrupt:
        run = instance.get_run_by_id(run_id)
        if run is not None:
            cluster.fail_run(instance, run, "the build was stopped (SIGINT/SIGTERM) during this run")
        raise
    if "error" in outcome:
        raise outcome["error"]
    return RunOutcome(run_id, outcome["result"].success, time.perf_counter() - started)


class LocalRuns:
    """Runs in this process, one after another (the default)."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, log):
        self.defs, self.instance, self.log = defs, instance, log

    def run(self, job: str, partition_key: str | None = None) -> RunOutcome:
        return _execute(self.defs, self.instance, job, partition_key, self.log)

    def run_each(self, job: str, keys: list[str]) -> Iterator[tuple[str, RunOutcome]]:
        for key in keys:
            yield key, self.run(job, key)


class DaskRuns:
    """Runs as tasks of a Dask cluster (CYTOIMAGENET_DASK), each in a fresh process on a worker."""

    def __init__(self, address: str, instance: dg.DagsterInstance, log):
        self.address, self.instance, self.log = address, instance, log
        self.client = cluster.connect(address)
        self.env = cluster.run_environment()
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        slots = sum(w.get("nthreads", 1) for w in workers.values())
        log(f"Dask cluster {address}: {len(workers)} workers, {slots} slots")
        storage = instance.event_log_storage
        io = storage.get_concurrency_info("io").slot_count if storage.supports_global_concurrency_limits else slots
        if io < slots:
            log(f"pool 'io' admits {io} class runs at a time, the cluster has {slots} slots: `dagster instance concurrency set io {slots}`")

    def close(self) -> None:
        self.client.close()

    def _submit(self, job: str, partition_key: str | None, resources: dict | None = None):
        args = ["-m", "cytoimagenet_assets.build", "--run", job] + (["--partition", partition_key] if partition_key else [])
        task = cluster.task_key(f"{job}-{partition_key}" if partition_key else job)
        return self.client.submit(cluster.execute_on_worker, args, self.env, task, key=task, pure=False, resources=resources)

    def _outcome(self, future) -> RunOutcome:
        from distributed import KilledWorker

        try:
            done: cluster.TaskResult = future.result()
        except KilledWorker as exc:
            task = str(future.key)
            failed = cluster.fail_earlier_attempts(self.instance, task)
            self.log(f"Dask task {task}: its workers died while running it, {exc}; run(s) {', '.join(failed) or 'none'} marked failed")
            return RunOutcome(failed[0] if failed else None, False, 0.0)
        except cluster.WorkerNotReady as exc:
            self.log(str(exc))
            return RunOutcome(None, False, 0.0)
        if not done.success:
            self.log(f"run {done.run_id} on {done.worker} failed; its last lines:\n{done.output_tail}")
        return RunOutcome(done.run_id, done.success, done.seconds)

    def run(self, job: str, partition_key: str | None = None) -> RunOutcome:
        resources = cluster.gpu_resources(self.client) if job == release_job.name else None
        if resources:
            self.log(f"{job}: on a worker with a {cluster.GPU_RESOURCE} resource")
        return self._outcome(self._submit(job, partition_key, resources))

    def run_each(self, job: str, keys: list[str]) -> Iterator[tuple[str, RunOutcome]]:
        from distributed import as_completed

        futures = {self._submit(job, key): key for key in keys}
        done, failed, last = 0, 0, time.monotonic()
        for future in as_completed(list(futures), loop=self.client.loop):
            outcome = self._outcome(future)
            done, failed = done + 1, failed + (not outcome.success)
            if time.monotonic() - last > 10 or done == len(keys):
                self.log(f"{job}: {done} of {len(keys)} runs finished ({failed} failed)")
                last = time.monotonic()
            yield futures[future], outcome


def fail_dead_runs(instance: dg.DagsterInstance, log=print) -> list[str]:
    """Mark failed the unfinished runs this build started on this host whose process is gone
    (killed by the OS), so their partitions count as failed, not in progress, and free the pool
    slots they held. Returns their ids."""
    host, dead = socket.gethostname(), []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=cluster.UNFINISHED, tags=LAUNCHED_BY)):
        process = run_process(run)
        if process is None or process[0] != host or _alive(process[1], process[2]):
            continue
        partition = run.tags.get("dagster/partition")
        cluster.fail_run(
            instance,
            run,
            f"the process of this run (pid {process[1]} on {host}) is gone: killed by the operating system or a reboot; "
            "marked failed by the build",
        )
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


def free_slots_of_finished_runs(instance: dg.DagsterInstance, log=print) -> list[str]:
    """Free the pool slots still claimed by runs that have finished or are gone from the instance
    (marked failed by run monitoring, deleted): nobody will release them otherwise. Returns those runs."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    freed = []
    for pool in sorted(storage.get_concurrency_keys()):
        for run_id in sorted(storage.get_concurrency_info(pool).active_run_ids):
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
                log(f"pool {pool!r}: freed the slot of run {run_id} ({run.status.value if run else 'deleted'})")
                freed.append(run_id)
    return freed


def release_dead_runs(instance: dg.DagsterInstance, log=print) -> None:
    """What every build does before it waits on anything: dead runs failed, their slots free."""
    fail_dead_runs(instance, log)
    free_slots_of_finished_runs(instance, log)


def _build_classes(runs: LocalRuns | DaskRuns, keys: list[str], log, build: Build) -> None:
    """One run per class partition in ``keys``; their wall times and failures go into ``build``."""
    for key, outcome in runs.run_each(class_images_job.name, keys):
        if not outcome.success:
            build.failed_classes.append(key)
        build.class_run_seconds[key] = outcome.seconds
    failed = [k for k in keys if k in build.failed_classes]
    log(f"class images: {len(keys) - len(failed)} of {len(keys)} classes built" + (f"; failed: {', '.join(failed)}" if failed else ""))


def _runs(defs: dg.Definitions, instance: dg.DagsterInstance, log) -> LocalRuns | DaskRuns:
    """Where this build's runs execute: the Dask cluster of CYTOIMAGENET_DASK, or this process."""
    address = cluster.dask_address()
    return DaskRuns(address, instance, log) if address else LocalRuns(defs, instance, log)


def build_all(defs: dg.Definitions, instance: dg.DagsterInstance, log=print) -> Build:
    """The sources (sources_job), the tables (tables_job), one run per class (class_images_job), then
    the rest (release_job); ends with each stage's time. A failing source is named and left out of
    the merge; the build stops only when the tables cannot be made."""
    build = Build()
    release_dead_runs(instance, log)
    runs = _runs(defs, instance, log)

    def timed(stage: str, work):
        started = time.perf_counter()
        try:
            return work()
        finally:
            build.seconds[stage] = time.perf_counter() - started

    try:
        sources = timed("sources", lambda: runs.run(sources_job.name))
        if not sources.success:
            # step keys are the asset keys joined by "__": raw__<dir_name>, source_metadata__<dir_name>
            build.failed_sources = sorted({step.split("__")[-1] for step in failed_steps(instance, sources.run_id)})
            log(f"sources that failed (left out of the merge; see their runs in the UI): {', '.join(build.failed_sources) or 'unknown'}")
        if not timed("tables", lambda: runs.run(tables_job.name)).success:
            log("the tables upstream of the class images failed; see the run in the UI")
        else:
            keys = instance.get_dynamic_partitions(CLASS_PARTITIONS.name)
            timed("class images", lambda: _build_classes(runs, keys, log, build))
            build.completed = timed("dataset, model, evaluation", lambda: runs.run(release_job.name)).success
    finally:
        if isinstance(runs, DaskRuns):
            runs.close()
    stages = ", ".join(f"{stage} {t:.0f} s" for stage, t in build.seconds.items())
    log(f"{'built' if build.ok else 'finished with failures'} in {sum(build.seconds.values()):.0f} s ({stages})")
    return build


def rebuild_failed_and_missing(defs: dg.Definitions, instance: dg.DagsterInstance, log=print) -> bool:
    """One run per failed or missing class partition, nothing else; True when all of them succeeded.
    Runs whose process is gone are marked failed first, so their classes are rebuilt too."""
    release_dead_runs(instance, log)
    keys = failed_and_missing_classes(instance)
    if not keys:
        log("class images: no failed or missing classes")
        return True
    build = Build()
    runs = _runs(defs, instance, log)
    try:
        _build_classes(runs, keys, log, build)
    finally:
        if isinstance(runs, DaskRuns):
            runs.close()
    if len(build.failed_classes) < len(keys):
        log("rebuild cytoimagenet_dataset and what follows it (or run the full build) so the dataset includes the rebuilt classes")
    return not build.failed_classes


def where_it_goes(instance: dg.DagsterInstance) -> str:
    """The data home and the Dagster instance this build writes to (said at its start and end)."""
    return f"data home: {default_home()} (CYTOIMAGENET_HOME); runs recorded in the instance at {instance.root_directory} (DAGSTER_HOME)"


def _stop_on_sigterm() -> None:
    """SIGTERM stops the build as Ctrl-C does: the run in progress is marked failed, its slots freed."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cytoimagenet_assets.build", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--failed-and-missing",
        action="store_true",
        help="launch one run per class_images partition that failed or was never built, nothing else",
    )
    parser.add_argument("--run", metavar="JOB", help="execute one run of JOB in this process, nothing else (what a Dask worker runs)")
    parser.add_argument("--partition", metavar="KEY", help="with --run: the partition (class) of that run")
    args = parser.parse_args(argv)

    from cytoimagenet_assets.definitions import defs

    _stop_on_sigterm()
    with dg.DagsterInstance.get() as instance:
        try:
            if args.run:
                release_dead_runs(instance)
                ok = _execute(defs, instance, args.run, args.partition).success
            elif args.failed_and_missing:
                ok = rebuild_failed_and_missing(defs, instance)
            else:
                print(where_it_goes(instance))
                ok = build_all(defs, instance).ok
                print(where_it_goes(instance))
        except KeyboardInterrupt:
            print(
                "build stopped: the run in progress is marked failed and its pool slots freed; run the build again to go on",
                file=sys.stderr,
            )
            return 130
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
